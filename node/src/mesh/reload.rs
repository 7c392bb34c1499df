//! The roster a running node holds: reloading it on SIGHUP or when its file changes, and
//! refusing to serve once it expired or stopped listing the node (§10.3.1, §12.1).
//!
//! The decision whether an offered roster replaces the held one is the sans-IO
//! [`quorate_protocol::roster::check_rotation`]; this module reads the file, swaps the
//! roster and the pinned keys, and logs. Closing the connections of removed keys is done by
//! the endpoint ([`MeshEndpoint::close_unpinned`]) in [`watch`].

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use quorate_crypto::PublicKey;
use quorate_crypto::tensor_digest::{Digest32, sha256};
use quorate_protocol::governance::Governance;
use quorate_protocol::roster::{
    Entry, MAX_ROSTER_LEN, Member, Roster, Rotation, Standing, check_rotation,
};

use crate::clock::unix_now;
use quorate_protocol::time::utc;
use quorate_transport::{MeshEndpoint, PinnedKeys};

/// What made the node look at its roster file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// SIGHUP: the file is read and judged whatever it holds.
    Signal,
    /// The periodic poll: the file is judged only if it changed since the last look.
    Poll,
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Trigger::Signal => "on SIGHUP",
            Trigger::Poll => "after the file changed",
        })
    }
}

/// The outcome of one look at the roster file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// Poll only: the file is as it was at the last look.
    NotChanged,
    /// The file holds exactly the roster in use.
    Unchanged,
    /// The file could not be read, or its roster was refused; the held roster stays.
    Refused {
        /// Machine-readable reason: `unreadable`, a §10.3 failure name, `older_serial` or
        /// `same_serial`.
        code: &'static str,
        /// Why, for the operator.
        reason: String,
    },
    /// The new roster replaced the held one.
    Replaced {
        /// Serial before.
        from: u64,
        /// Serial after.
        to: u64,
        /// Members added (by key).
        added: usize,
        /// Members removed (by key).
        removed: usize,
        /// Members whose data changed.
        changed: usize,
        /// Names of the members added and removed (for the log).
        names: String,
        /// How the new roster lists this node.
        standing: Standing,
    },
}

/// What the last look at the file found, so that a poll acts only on a change.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Bytes(Digest32),
    Unreadable(String),
}

struct Held {
    roster: Roster,
    bytes: Vec<u8>,
    standing: Standing,
    /// The expiry warning was logged for this roster.
    warned: bool,
    /// The expiry itself was logged for this roster.
    expired_logged: bool,
}

/// The verified roster a node holds, the pinned keys derived from it, and the rules for
/// replacing it (§10.3).
pub struct RosterKeeper {
    node: String,
    key: PublicKey,
    admin: PublicKey,
    path: PathBuf,
    pinned: PinnedKeys,
    held: RwLock<Held>,
    last_seen: std::sync::Mutex<Option<Seen>>,
}

impl std::fmt::Debug for RosterKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RosterKeeper")
            .field("node", &self.node)
            .field("path", &self.path)
            .field("serial", &self.serial())
            .finish_non_exhaustive()
    }
}

/// Reads a roster file, refusing one larger than a signed roster may be (§10.1).
pub fn read_roster_file(path: &Path) -> Result<Vec<u8>, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_ROSTER_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() > MAX_ROSTER_LEN {
        return Err(format!(
            "{} is larger than a signed roster may be ({MAX_ROSTER_LEN} bytes)",
            path.display()
        ));
    }
    Ok(bytes)
}

impl RosterKeeper {
    /// Holds `roster`, verified at start-up from `bytes` read from `path`, for the node
    /// `node` with identity `key`; `admin` is the pinned roster authority key.
    pub fn new(
        node: &str,
        key: PublicKey,
        admin: PublicKey,
        path: &Path,
        roster: Roster,
        bytes: Vec<u8>,
    ) -> Self {
        let standing = Standing::of(
            &roster,
            Member {
                name: node,
                key: &key,
            },
        );
        let seen = Seen::Bytes(sha256(&bytes));
        Self {
            node: node.to_string(),
            key,
            admin,
            path: path.to_path_buf(),
            pinned: PinnedKeys::from_keys(roster.entries.iter().map(|e| e.key)),
            held: RwLock::new(Held {
                roster,
                bytes,
                standing,
                warned: false,
                expired_logged: false,
            }),
            last_seen: std::sync::Mutex::new(Some(seen)),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Held> {
        self.held.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Held> {
        self.held.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The keys accepted from peers: those of the current roster (§7.3).
    pub fn pinned(&self) -> &PinnedKeys {
        &self.pinned
    }

    /// A copy of the roster in use.
    pub fn roster(&self) -> Roster {
        self.read().roster.clone()
    }

    /// The governance of the roster in use (§10.6); a reload may replace it.
    pub fn governance(&self) -> Governance {
        self.read().roster.governance.clone()
    }

    /// Serial of the roster in use.
    pub fn serial(&self) -> u64 {
        self.read().roster.serial
    }

    /// The name the roster in use gives `key`, if it lists it.
    pub fn name_of(&self, key: &PublicKey) -> Option<String> {
        self.read().roster.by_key(key).map(|e| e.name.clone())
    }

    /// Why the node may not accept connections or requests at `now`, if it may not
    /// (§10.3): its roster expired, or the roster in use does not list it with its key.
    pub fn refusal(&self, now: u64) -> Option<String> {
        let held = self.read();
        if !held.standing.is_listed() {
            return Some(format!(
                "node {:?} has been revoked: roster serial {} {}; the roster authority must issue a roster that lists it",
                self.node, held.roster.serial, held.standing
            ));
        }
        if held.roster.expired_at(now) {
            return Some(format!(
                "the node's roster (serial {}) expired at {}; the roster authority must issue a new one",
                held.roster.serial,
                utc(held.roster.expires_at)
            ));
        }
        None
    }

    /// Logs, once per roster, the warning that it is about to expire and the expiry itself
    /// (§10.3: a member SHOULD load a newer roster before its roster expires).
    pub fn check_expiry(&self, now: u64) {
        let mut held = self.write();
        let r = &held.roster;
        let (serial, expires_at, warn_from) = (r.serial, r.expires_at, r.expiry_warning_from());
        if now >= expires_at {
            if !held.expired_logged {
                held.expired_logged = true;
                held.warned = true;
                tracing::error!(
                    node = %self.node,
                    "roster serial {serial} expired at {}: refusing new connections and requests until a newer roster is loaded from {} (SIGHUP or file change)",
                    utc(expires_at),
                    self.path.display()
                );
            }
        } else if now >= warn_from && !held.warned {
            held.warned = true;
            tracing::warn!(
                node = %self.node,
                "roster serial {serial} expires at {} (in {} s); the roster authority must issue a new one, and this node loads it from {} on SIGHUP or when the file changes",
                utc(expires_at),
                expires_at - now,
                self.path.display()
            );
        }
    }

    /// Reads the roster file and replaces the roster in use if the rules of §10.3 allow;
    /// swaps the pinned keys with it. Never panics on a bad file: every problem is a
    /// [`Reload::Refused`] and the held roster stays.
    pub fn reload(&self, trigger: Trigger, now: u64) -> Reload {
        let read = read_roster_file(&self.path);
        let seen = match &read {
            Ok(bytes) => Seen::Bytes(sha256(bytes)),
            Err(e) => Seen::Unreadable(e.clone()),
        };
        {
            let mut last = self
                .last_seen
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if trigger == Trigger::Poll && last.as_ref() == Some(&seen) {
                return Reload::NotChanged;
            }
            *last = Some(seen);
        }
        let bytes = match read {
            Ok(bytes) => bytes,
            Err(reason) => {
                return Reload::Refused {
                    code: "unreadable",
                    reason,
                };
            }
        };
        let mut held = self.write();
        let decision = check_rotation(
            &held.roster,
            &held.bytes,
            &bytes,
            &self.admin,
            now,
            Member {
                name: &self.node,
                key: &self.key,
            },
        );
        match decision {
            Ok(Rotation::Unchanged) => Reload::Unchanged,
            Err(e) => Reload::Refused {
                code: e.code(),
                reason: e.to_string(),
            },
            Ok(Rotation::Replace {
                roster,
                diff,
                standing,
            }) => {
                let from = held.roster.serial;
                let to = roster.serial;
                // §7.3: the new pinned set applies to every handshake from now on.
                self.pinned.replace(roster.entries.iter().map(|e| e.key));
                *held = Held {
                    roster,
                    bytes,
                    standing: standing.clone(),
                    warned: false,
                    expired_logged: false,
                };
                Reload::Replaced {
                    from,
                    to,
                    added: diff.added.len(),
                    removed: diff.removed.len(),
                    changed: diff.changed.len(),
                    names: member_names(&diff.added, &diff.removed),
                    standing,
                }
            }
        }
    }
}

/// `; added: a, b; removed: c` with at most a few names per list, for the reload log line.
fn member_names(added: &[Entry], removed: &[Entry]) -> String {
    const SHOWN: usize = 8;
    let list = |entries: &[Entry]| {
        let mut names: Vec<String> = entries
            .iter()
            .take(SHOWN)
            .map(|e| format!("{} ({})", e.name, e.key.key_id()))
            .collect();
        if entries.len() > SHOWN {
            names.push(format!("and {} more", entries.len() - SHOWN));
        }
        names.join(", ")
    };
    let mut out = String::new();
    if !added.is_empty() {
        out.push_str(&format!("; added: {}", list(added)));
    }
    if !removed.is_empty() {
        out.push_str(&format!("; removed: {}", list(removed)));
    }
    out
}

/// Applies one reload: closes the connections of keys the new roster removed and logs one
/// line. Returns the number of connections closed.
pub fn apply(
    keeper: &RosterKeeper,
    endpoint: &MeshEndpoint,
    trigger: Trigger,
    outcome: &Reload,
) -> usize {
    let node = &keeper.node;
    match outcome {
        Reload::NotChanged | Reload::Unchanged => 0,
        Reload::Refused { code, reason } => {
            tracing::warn!(
                node = %node,
                "roster reload {trigger} refused ({code}), keeping serial {}: {reason}",
                keeper.serial()
            );
            0
        }
        Reload::Replaced {
            from,
            to,
            added,
            removed,
            changed,
            names,
            standing,
        } => {
            // §10.3: connections authenticated with a key the new roster removed are closed.
            let closed = endpoint.close_unpinned("the key is no longer on the roster");
            tracing::info!(
                node = %node,
                "roster serial {from} -> {to} {trigger}: +{added} members, -{removed} members, {changed} changed, closed {closed} connections{names}"
            );
            if !standing.is_listed() {
                tracing::error!(
                    node = %node,
                    "roster serial {to} revokes this node ({standing}): refusing new connections and requests until a roster that lists it with its key is loaded"
                );
            }
            closed
        }
    }
}

/// Runs for the life of the node: reloads the roster on SIGHUP (`hangup`) and, every
/// `poll` (none: never), when its file changed; checks expiry every second.
pub async fn watch(
    keeper: Arc<RosterKeeper>,
    endpoint: MeshEndpoint,
    poll: Option<Duration>,
    mut hangup: Option<tokio::signal::unix::Signal>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut next_poll = poll.map(|p| tokio::time::Instant::now() + p);
    loop {
        let trigger = tokio::select! {
            _ = tick.tick() => {
                keeper.check_expiry(unix_now());
                match (next_poll, poll) {
                    (Some(at), Some(every)) if tokio::time::Instant::now() >= at => {
                        next_poll = Some(tokio::time::Instant::now() + every);
                        Some(Trigger::Poll)
                    }
                    _ => None,
                }
            }
            got = async {
                match hangup.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                if got.is_none() {
                    hangup = None;
                    None
                } else {
                    Some(Trigger::Signal)
                }
            }
        };
        let Some(trigger) = trigger else { continue };
        let k = Arc::clone(&keeper);
        let outcome = tokio::task::spawn_blocking(move || k.reload(trigger, unix_now())).await;
        match outcome {
            Ok(outcome) => {
                apply(&keeper, &endpoint, trigger, &outcome);
                // A roster that is already about to expire warns at once.
                keeper.check_expiry(unix_now());
            }
            Err(e) => tracing::warn!(node = %keeper.node, "roster reload failed: {e}"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use quorate_crypto::SecretKey;
    use quorate_protocol::roster::Role;

    use super::*;

    struct Fixture {
        dir: tempfile::TempDir,
        admin: SecretKey,
        node: SecretKey,
        client: SecretKey,
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().unwrap(),
                admin: SecretKey::from_seed(&[1; 32]),
                node: SecretKey::from_seed(&[2; 32]),
                client: SecretKey::from_seed(&[3; 32]),
            }
        }

        fn path(&self) -> PathBuf {
            self.dir.path().join("roster.cose")
        }

        fn roster(&self, serial: u64, with_client: bool, expires_at: u64) -> Roster {
            let mut entries = vec![Entry {
                name: "n1".into(),
                key: self.node.public_key(),
                role: Role::Node,
                addresses: vec!["127.0.0.1:4000".into()],
                models: vec![],
                providers: vec![],
            }];
            if with_client {
                entries.push(Entry {
                    name: "c".into(),
                    key: self.client.public_key(),
                    role: Role::Client,
                    addresses: vec![],
                    models: vec![],
                    providers: vec![],
                });
            }
            Roster {
                governance: Default::default(),
                mesh: "m".into(),
                serial,
                issued_at: 1000,
                expires_at,
                entries,
            }
        }

        fn write(&self, r: &Roster) -> Vec<u8> {
            let bytes = r.sign(&self.admin).unwrap();
            std::fs::write(self.path(), &bytes).unwrap();
            bytes
        }

        fn keeper(&self) -> RosterKeeper {
            let r = self.roster(1, true, 5000);
            let bytes = self.write(&r);
            RosterKeeper::new(
                "n1",
                self.node.public_key(),
                self.admin.public_key(),
                &self.path(),
                r,
                bytes,
            )
        }
    }

    #[test]
    fn a_newer_roster_replaces_the_roster_and_the_pinned_keys() {
        let f = Fixture::new();
        let k = f.keeper();
        assert!(k.pinned().contains(&f.client.public_key()));
        assert_eq!(k.reload(Trigger::Poll, 2000), Reload::NotChanged);
        assert_eq!(k.reload(Trigger::Signal, 2000), Reload::Unchanged);
        f.write(&f.roster(2, false, 5000));
        let out = k.reload(Trigger::Poll, 2000);
        assert!(
            matches!(
                out,
                Reload::Replaced {
                    from: 1,
                    to: 2,
                    added: 0,
                    removed: 1,
                    ..
                }
            ),
            "{out:?}"
        );
        assert_eq!(k.serial(), 2);
        assert!(!k.pinned().contains(&f.client.public_key()));
        assert!(k.pinned().contains(&f.node.public_key()));
        assert_eq!(k.refusal(2000), None);
        assert_eq!(k.name_of(&f.node.public_key()).as_deref(), Some("n1"));
    }

    #[test]
    fn bad_files_are_refused_and_the_roster_kept() {
        let f = Fixture::new();
        let k = f.keeper();
        let good = f.roster(2, false, 5000).sign(&f.admin).unwrap();
        let foreign = f
            .roster(2, false, 5000)
            .sign(&SecretKey::from_seed(&[9; 32]))
            .unwrap();
        let expired = f.roster(2, false, 1500).sign(&f.admin).unwrap();
        let older = f.roster(0, true, 5000).sign(&f.admin).unwrap();
        let same = f.roster(1, false, 5000).sign(&f.admin).unwrap();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (good[..good.len() / 2].to_vec(), "malformed"),
            (b"not cbor at all".to_vec(), "malformed"),
            (vec![], "malformed"),
            (foreign, "foreign_signer"),
            (expired, "expired"),
            (older, "older_serial"),
            (same, "same_serial"),
            (vec![0; MAX_ROSTER_LEN + 1], "unreadable"),
        ];
        for (bytes, want) in cases {
            std::fs::write(f.path(), &bytes).unwrap();
            match k.reload(Trigger::Poll, 2000) {
                Reload::Refused { code, reason } => {
                    assert_eq!(code, want, "{reason}");
                    assert!(!reason.is_empty());
                }
                other => panic!("{want}: {other:?}"),
            }
            // The same file is not judged again by a poll, but is on SIGHUP.
            assert_eq!(k.reload(Trigger::Poll, 2000), Reload::NotChanged);
            assert!(matches!(
                k.reload(Trigger::Signal, 2000),
                Reload::Refused { .. }
            ));
            assert_eq!(k.serial(), 1);
            assert!(k.pinned().contains(&f.client.public_key()));
        }
        std::fs::remove_file(f.path()).unwrap();
        assert!(matches!(
            k.reload(Trigger::Signal, 2000),
            Reload::Refused {
                code: "unreadable",
                ..
            }
        ));
        assert_eq!(k.refusal(2000), None);
    }

    #[test]
    fn expiry_and_revocation_stop_the_node_until_a_newer_roster_arrives() {
        let f = Fixture::new();
        let k = f.keeper();
        assert_eq!(k.refusal(4999), None);
        let why = k.refusal(5000).unwrap();
        assert!(why.contains("expired"), "{why}");
        k.check_expiry(5000);

        // A roster that no longer lists the node is accepted, and revokes it.
        let mut without = f.roster(2, true, 9000);
        without.entries.remove(0);
        f.write(&without);
        let out = k.reload(Trigger::Signal, 5000);
        assert!(
            matches!(
                out,
                Reload::Replaced {
                    standing: Standing::Removed,
                    ..
                }
            ),
            "{out:?}"
        );
        let why = k.refusal(5000).unwrap();
        assert!(why.contains("revoked"), "{why}");

        // One that lists it again brings it back.
        f.write(&f.roster(3, true, 9000));
        assert!(matches!(
            k.reload(Trigger::Poll, 5000),
            Reload::Replaced {
                standing: Standing::Listed,
                ..
            }
        ));
        assert_eq!(k.refusal(5000), None);
    }
}
