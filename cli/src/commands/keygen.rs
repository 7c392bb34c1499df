//! `quorate keygen`: a new Ed25519 identity (§2.1).

use std::path::PathBuf;
use std::process::ExitCode;

use quorate_crypto::SecretKey;

use quorate_node::files::{pub_path, write_keypair};

/// Arguments of `quorate keygen`.
#[derive(clap::Args)]
#[command(
    after_help = "The secret key is written as PKCS#8 PEM (RFC 8410) with mode 0600; the public key\n\
as SPKI PEM to PATH.pub. The key id printed is the one receipts carry in their `kid` header.\n\n\
Example:\n  quorate keygen --out keys/node1.key"
)]
pub struct KeygenArgs {
    /// Where to write the secret key; the public key goes to PATH.pub.
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// Overwrite existing key files.
    #[arg(long)]
    pub force: bool,
}

/// Runs `quorate keygen`.
pub fn run(args: &KeygenArgs) -> anyhow::Result<ExitCode> {
    let key = SecretKey::generate()?;
    write_keypair(&args.out, &key, args.force)?;
    println!("key id {}", key.public_key().key_id());
    println!(
        "secret key: {} (mode 0600, keep it private)",
        args.out.display()
    );
    println!("public key: {}", pub_path(&args.out).display());
    Ok(ExitCode::SUCCESS)
}
