//! The round-trip part of goal 1 measured as a job crosses: to a QUIC server in a process of
//! its own (`quorate bench echo`, started by the bench), not only to one in the bench's own
//! process. A job's request leaves the client's process and wakes the node's; an echo
//! server sharing the client's runtime may be answered by a thread that is awake already,
//! which a node never is.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use anyhow::{Context, bail};
use quorate_crypto::{PublicKey, SecretKey};
use quorate_transport::{PinnedKeys, TlsIdentity, TransportSettings, bind_server};

/// `quorate bench echo`: a QUIC server on loopback for the bench's round-trip baseline.
#[derive(clap::Args, Debug)]
pub struct BenchEchoArgs {
    /// The only client key admitted (hex, 32 bytes).
    #[arg(long, value_name = "HEX")]
    pub client_key: String,
    /// Bytes of every answer.
    #[arg(long, value_name = "N")]
    pub response_len: usize,
}

/// Largest answer the echo server makes (a reply frame's limit, §7.5).
const MAX_RESPONSE: usize = 16 << 20;

/// Serves until stdin closes (the bench ended or died): one line on stdout first,
/// `listening ADDR KEY_HEX`.
pub fn run(args: &BenchEchoArgs) -> anyhow::Result<std::process::ExitCode> {
    if args.response_len > MAX_RESPONSE {
        bail!("--response-len must be at most {MAX_RESPONSE}");
    }
    let client_key = hex::decode(&args.client_key)
        .ok()
        .and_then(|b| PublicKey::from_bytes(&b).ok())
        .context("--client-key must be an Ed25519 public key in hex (64 digits)")?;
    let rt = tokio::runtime::Runtime::new()?;
    let (addr, key) = serve(&rt, &client_key, args.response_len)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening {addr} {}", hex::encode(key.to_bytes()))?;
    out.flush()?;
    drop(out);
    // Blocks this thread, not the runtime's; returns at end of input.
    std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink())?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Serves on `rt`, on loopback, a QUIC server admitting only `client` and answering every
/// request with `response_len` bytes, as a node admits pinned keys; its address and key.
pub fn serve(
    rt: &tokio::runtime::Runtime,
    client: &PublicKey,
    response_len: usize,
) -> anyhow::Result<(SocketAddr, PublicKey)> {
    let key = SecretKey::generate()?;
    let server = {
        let _entered = rt.enter();
        bind_server(
            "127.0.0.1:0".parse()?,
            Arc::new(TlsIdentity::from_secret_key(&key)?),
            PinnedKeys::from_keys([*client]),
            TransportSettings::default(),
        )?
    };
    let addr = server.local_addr()?;
    rt.spawn(async move {
        server
            .serve(move |_, _| async move { vec![0u8; response_len] })
            .await
    });
    Ok((addr, key.public_key()))
}

/// A `quorate bench echo` process, stopped on drop.
pub struct EchoProcess {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its key, to pin.
    pub key: PublicKey,
}

impl EchoProcess {
    /// Starts `exe bench echo` admitting `client` and answering `response_len` bytes.
    pub fn start(exe: &Path, client: &PublicKey, response_len: usize) -> anyhow::Result<Self> {
        let mut child = Command::new(exe)
            .args(["bench", "echo", "--client-key"])
            .arg(hex::encode(client.to_bytes()))
            .arg("--response-len")
            .arg(response_len.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start the echo server process")?;
        let mut line = String::new();
        let stdout = child.stdout.take().context("echo server stdout")?;
        BufReader::new(stdout).read_line(&mut line)?;
        let parsed = (|| {
            let mut words = line.split_whitespace();
            (words.next() == Some("listening")).then_some(())?;
            let addr: SocketAddr = words.next()?.parse().ok()?;
            let key = PublicKey::from_bytes(&hex::decode(words.next()?).ok()?).ok()?;
            Some((addr, key))
        })();
        match parsed {
            Some((addr, key)) => Ok(Self { child, addr, key }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the echo server process did not start: {line:?}")
            }
        }
    }
}

impl Drop for EchoProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
