//! File helpers: durable atomic writes and secret-key files.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use quorate_crypto::{PublicKey, SecretKey};

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsync, rename,
/// fsync of the directory. A crash leaves either the old file or the new one, never a torn one.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let (tmp, file) = write_temporary(path, bytes, mode)?;
    let result = (|| {
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        File::open(folder_of(path))?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

/// The folder `path` is in (`.` for a bare file name).
pub fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Writes `bytes` with `mode` to a new temporary file beside `path` (`.NAME.tmp-PID`, §12.6.1),
/// not yet flushed, and returns its path and the open file; removes it if the write fails.
/// [`write_atomic`] and the writers of many jobs' files at once flush and rename it.
pub fn write_temporary(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<(PathBuf, File)> {
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    let tmp = folder_of(path).join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes).map(|()| f));
    match written {
        Ok(file) => Ok((tmp, file)),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(anyhow::Error::new(e).context(format!("cannot write {}", path.display())))
        }
    }
}

/// Reads a file with a size limit, so a wrong path cannot make us read gigabytes.
pub fn read_limited(path: &Path, limit: u64) -> anyhow::Result<Vec<u8>> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.len() > limit {
        bail!(
            "{} is {} bytes; the limit for this kind of file is {limit}",
            path.display(),
            meta.len()
        );
    }
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The public-key file beside a secret-key file: `PATH.pub`.
pub fn pub_path(secret: &Path) -> PathBuf {
    let mut p = secret.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

/// Writes a new key pair: the secret key (mode 0600) to `path`, the public key to `path.pub`.
pub fn write_keypair(path: &Path, key: &SecretKey, force: bool) -> anyhow::Result<()> {
    let public = pub_path(path);
    if !force {
        for p in [path, public.as_path()] {
            if p.exists() {
                bail!(
                    "{} already exists; pass --force to overwrite it",
                    p.display()
                );
            }
        }
    }
    let pem = key.to_pem()?;
    write_atomic(path, pem.as_bytes(), 0o600)?;
    write_atomic(&public, key.public_key().to_pem()?.as_bytes(), 0o644)
}

/// Refuses a secret-key file that other users can read or write (as ssh does).
pub fn check_private_mode(path: &Path) -> anyhow::Result<()> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read key {}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        bail!(
            "key {} is readable by other users (mode {:o}); run: chmod 600 {}",
            path.display(),
            meta.permissions().mode() & 0o777,
            path.display()
        );
    }
    Ok(())
}

/// Loads a secret key, refusing a file that others can read (as ssh does).
pub fn load_secret_key(path: &Path) -> anyhow::Result<SecretKey> {
    check_private_mode(path)?;
    let pem = zeroize::Zeroizing::new(
        String::from_utf8(read_limited(path, 16 << 10)?)
            .with_context(|| format!("{} is not text", path.display()))?,
    );
    SecretKey::from_pem(&pem).with_context(|| format!("key {}", path.display()))
}

/// Loads a public key (`.pub`, SPKI PEM); weak keys are refused.
pub fn load_public_key(path: &Path) -> anyhow::Result<PublicKey> {
    let pem = String::from_utf8(read_limited(path, 16 << 10)?)
        .with_context(|| format!("{} is not text", path.display()))?;
    PublicKey::from_pem(&pem).with_context(|| format!("public key {}", path.display()))
}
