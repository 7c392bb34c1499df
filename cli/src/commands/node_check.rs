//! `quorate node --check-config FILE`: checks a node's configuration and everything it names
//! the way the node would at start (§12.1), without serving and without writing any file.
//! Every check is printed as `ok`, `warn` or `FAIL` with its reason; the exit status is 1 when
//! any check failed, so the command can gate a deployment.

use std::net::UdpSocket;
use std::path::Path;
use std::process::ExitCode;

use quorate_node::clock::unix_now;
use quorate_node::files::{load_public_key, load_secret_key};
use quorate_node::mesh::config::NodeConfig;
use quorate_node::mesh::models::Models;
use quorate_node::mesh::reload::read_roster_file;
use quorate_protocol::audit_log;
use quorate_protocol::roster::Roster;

/// Roster validity left below which the check warns (a week).
const EXPIRY_WARNING_SECS: u64 = 7 * 24 * 3600;

#[derive(Default)]
struct Report {
    failed: usize,
    warned: usize,
}

impl Report {
    fn ok(&mut self, what: &str, detail: impl std::fmt::Display) {
        println!("ok    {what}: {detail}");
    }
    fn warn(&mut self, what: &str, detail: impl std::fmt::Display) {
        self.warned += 1;
        println!("warn  {what}: {detail}");
    }
    fn fail(&mut self, what: &str, detail: impl std::fmt::Display) {
        self.failed += 1;
        println!(
            "FAIL  {what}: {}",
            detail.to_string().replace('\n', "\n        ")
        );
    }
}

/// Runs the checks on the configuration at `path`.
pub fn check_config(path: &Path) -> anyhow::Result<ExitCode> {
    let mut r = Report::default();
    let cfg = match NodeConfig::load(path) {
        Ok(cfg) => {
            r.ok("config", format!("{} parses", path.display()));
            cfg
        }
        Err(e) => {
            r.fail("config", format!("{e:#}"));
            return Ok(summary(&r));
        }
    };
    let key = match load_secret_key(&cfg.key) {
        Ok(k) => {
            r.ok(
                "key",
                format!("{} (key id {})", cfg.key.display(), k.public_key().key_id()),
            );
            Some(k.public_key())
        }
        Err(e) => {
            r.fail("key", format!("{e:#}"));
            None
        }
    };
    let admin = match load_public_key(&cfg.admin) {
        Ok(k) => {
            r.ok(
                "admin",
                format!("{} (key id {})", cfg.admin.display(), k.key_id()),
            );
            Some(k)
        }
        Err(e) => {
            r.fail("admin", format!("{e:#}"));
            None
        }
    };
    let roster = check_roster(&mut r, &cfg, admin.as_ref());
    let entry = roster
        .as_ref()
        .and_then(|ro| ro.by_name(&cfg.name).cloned());
    match (&roster, &entry, &key) {
        (Some(_), None, _) => r.fail("roster entry", format!("no node named {:?}", cfg.name)),
        (Some(_), Some(e), Some(k)) if e.key != *k => r.fail(
            "roster entry",
            format!(
                "the roster lists another key for {:?} than {} holds",
                cfg.name,
                cfg.key.display()
            ),
        ),
        (Some(_), Some(e), _) => {
            r.ok("roster entry", format!("{:?} with this key", cfg.name));
            let listen = cfg.listen.to_string();
            if !e.addresses.contains(&listen) {
                r.warn(
                    "listen",
                    format!(
                        "{listen} is not among the roster's addresses for this node {:?}",
                        e.addresses
                    ),
                );
            }
        }
        _ => {}
    }
    check_listen(&mut r, &cfg);
    let providers = cfg.provider_list()?;
    for p in &providers {
        match p.availability() {
            Ok(()) => r.ok("provider", format!("{} available", p.label())),
            Err(why) => r.warn(
                "provider",
                format!("{} unavailable, will fall back: {why}", p.label()),
            ),
        }
    }
    match Models::load(&cfg.models, &cfg.name, cfg.intra_threads, &providers) {
        Ok(models) if models.is_empty() => r.warn(
            "models",
            format!("{} holds no *.onnx model", cfg.models.display()),
        ),
        Ok(models) => {
            r.ok("models", format!("{} models load", models.len()));
            if let Some(e) = &entry {
                let unlisted = models
                    .providers()
                    .filter(|(d, _)| !e.models.contains(d))
                    .count();
                if unlisted > 0 {
                    r.warn(
                        "models",
                        format!("{unlisted} models are not listed for this node in the roster; clients will not send jobs for them"),
                    );
                }
            }
        }
        Err(e) => r.fail("models", format!("{e:#}")),
    }
    check_audit_log(&mut r, &cfg.audit_log);
    Ok(summary(&r))
}

fn check_roster(
    r: &mut Report,
    cfg: &NodeConfig,
    admin: Option<&quorate_crypto::PublicKey>,
) -> Option<Roster> {
    let bytes = match read_roster_file(&cfg.roster) {
        Ok(b) => b,
        Err(e) => {
            r.fail("roster", e);
            return None;
        }
    };
    let admin = admin?;
    let now = unix_now();
    match Roster::verify(&bytes, admin, now) {
        Ok(ro) => {
            let left = ro.expires_at.saturating_sub(now);
            let text = format!(
                "{} serial {}, {} entries, expires in {} h",
                cfg.roster.display(),
                ro.serial,
                ro.entries.len(),
                left / 3600
            );
            if left < EXPIRY_WARNING_SECS {
                r.warn("roster", format!("{text}: sign a new one soon (§10.3)"));
            } else {
                r.ok("roster", text);
            }
            Some(ro)
        }
        Err(e) => {
            r.fail("roster", format!("{}: {e}", cfg.roster.display()));
            None
        }
    }
}

/// The listen address must be bindable; in use usually means the node is already running.
fn check_listen(r: &mut Report, cfg: &NodeConfig) {
    match UdpSocket::bind(cfg.listen) {
        Ok(_) => r.ok("listen", format!("{} can be bound", cfg.listen)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => r.warn(
            "listen",
            format!("{} is in use (is this node already running?)", cfg.listen),
        ),
        Err(e) => r.fail("listen", format!("cannot bind {}: {e}", cfg.listen)),
    }
}

/// An existing log must be a readable audit log; a new one must be creatable. Nothing is
/// written: a torn tail is reported, not cut.
fn check_audit_log(r: &mut Report, path: &Path) {
    match std::fs::read(path) {
        Ok(bytes) => match audit_log::scan(&bytes) {
            Ok(s) if s.torn_bytes > 0 => r.warn(
                "audit log",
                format!(
                    "{}: {} receipts and a torn tail of {} bytes, which the node drops at start",
                    path.display(),
                    s.records.len(),
                    s.torn_bytes
                ),
            ),
            Ok(s) => r.ok(
                "audit log",
                format!("{}: {} receipts", path.display(), s.records.len()),
            ),
            Err(_) => r.fail(
                "audit log",
                format!("{} is not an audit log", path.display()),
            ),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let existing = dir
                .ancestors()
                .find(|d| d.exists())
                .unwrap_or(Path::new("."));
            match tempfile::tempfile_in(existing) {
                Ok(_) => r.ok("audit log", format!("{} will be created", path.display())),
                Err(e) => r.fail(
                    "audit log",
                    format!(
                        "{} cannot be created: {} is not writable ({e})",
                        path.display(),
                        existing.display()
                    ),
                ),
            }
        }
        Err(e) => r.fail("audit log", format!("cannot read {}: {e}", path.display())),
    }
}

fn summary(r: &Report) -> ExitCode {
    if r.failed > 0 {
        println!(
            "{} checks failed, {} warnings: the node would not start",
            r.failed, r.warned
        );
        ExitCode::from(1)
    } else {
        println!("configuration ok ({} warnings)", r.warned);
        ExitCode::SUCCESS
    }
}
