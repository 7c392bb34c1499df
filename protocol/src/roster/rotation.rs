//! Replacing the roster a member holds with a newly offered one (§10.3, the rules that apply
//! after a roster is accepted).
//!
//! The decision is pure: the caller passes the roster it holds (decoded and as the bytes it
//! was accepted from), the bytes offered, the pinned authority key and `now`, and gets back
//! either what to do or a typed reason to keep the held roster. Reading files, signals and
//! closing connections are the caller's business.

use quorate_crypto::{KeyId, PublicKey};

use super::{Entry, Roster, RosterError};

/// The member that decides: the name and identity key a roster must list for it.
#[derive(Clone, Copy, Debug)]
pub struct Member<'a> {
    /// Its roster name.
    pub name: &'a str,
    /// Its identity key.
    pub key: &'a PublicKey,
}

/// How a roster lists the deciding member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Listed under its name with its key: it may take part in the mesh.
    Listed,
    /// No entry carries its name: it has been removed (revoked).
    Removed,
    /// Its name is listed with another key: its identity has been revoked or replaced.
    KeyChanged {
        /// Key id of the key the roster lists for the name.
        listed: KeyId,
    },
}

impl Standing {
    /// How `roster` lists `me`.
    pub fn of(roster: &Roster, me: Member<'_>) -> Standing {
        match roster.by_name(me.name) {
            None => Standing::Removed,
            Some(e) if &e.key == me.key => Standing::Listed,
            Some(e) => Standing::KeyChanged {
                listed: e.key.key_id(),
            },
        }
    }

    /// Whether the member may serve and connect under the roster.
    pub fn is_listed(&self) -> bool {
        matches!(self, Standing::Listed)
    }
}

impl std::fmt::Display for Standing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Standing::Listed => f.write_str("listed with its key"),
            Standing::Removed => f.write_str("no longer listed"),
            Standing::KeyChanged { listed } => {
                write!(f, "listed with another key ({listed})")
            }
        }
    }
}

/// What changed between two rosters. Members are matched by key, their identity; the name
/// is for people (§10.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RosterDiff {
    /// Entries of the new roster whose key the old one did not list.
    pub added: Vec<Entry>,
    /// Entries of the old roster whose key the new one does not list: revoked members.
    pub removed: Vec<Entry>,
    /// Names of members listed in both with the same key but other data (name, role,
    /// addresses, models or providers).
    pub changed: Vec<String>,
}

impl RosterDiff {
    /// The difference from `old` to `new`.
    pub fn between(old: &Roster, new: &Roster) -> Self {
        let mut diff = RosterDiff::default();
        for e in &new.entries {
            match old.by_key(&e.key) {
                None => diff.added.push(e.clone()),
                Some(o) if o != e => diff.changed.push(e.name.clone()),
                Some(_) => {}
            }
        }
        diff.removed = old
            .entries
            .iter()
            .filter(|e| new.by_key(&e.key).is_none())
            .cloned()
            .collect();
        diff
    }

    /// The keys no longer on the roster: connections authenticated with them are closed.
    pub fn removed_keys(&self) -> impl Iterator<Item = &PublicKey> {
        self.removed.iter().map(|e| &e.key)
    }
}

/// The decision on an offered roster that may replace the held one.
#[derive(Clone, Debug, PartialEq)]
pub enum Rotation {
    /// The offered roster is byte for byte the one held: nothing to do.
    Unchanged,
    /// The offered roster verifies and is newer: it replaces the held one.
    Replace {
        /// The new roster.
        roster: Roster,
        /// What changed.
        diff: RosterDiff,
        /// How the new roster lists the deciding member. Anything but
        /// [`Standing::Listed`] means the member has been revoked and MUST stop accepting
        /// connections and requests.
        standing: Standing,
    },
}

/// Why an offered roster does not replace the held one (§10.3).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RotationError {
    /// The offered roster fails verification (steps 1–6 of §10.3).
    #[error("the new roster does not verify: {0}")]
    Invalid(#[from] RosterError),
    /// The offered roster has a lower serial than the held one.
    #[error(
        "the new roster has serial {offered}, lower than serial {held} in use; a member never goes back to an older roster"
    )]
    OlderSerial {
        /// Serial of the held roster.
        held: u64,
        /// Serial of the offered roster.
        offered: u64,
    },
    /// The offered roster differs from the held one but carries the same serial.
    #[error(
        "the new roster differs from the one in use but has the same serial {serial}; the roster authority must sign every new roster with a higher serial"
    )]
    SameSerial {
        /// The serial both carry.
        serial: u64,
    },
}

impl RotationError {
    /// Stable machine-readable name of the failure: the §10.3 failure name for a roster
    /// that does not verify, `older_serial` or `same_serial` otherwise.
    pub fn code(&self) -> &'static str {
        match self {
            RotationError::Invalid(e) => e.failure_name(),
            RotationError::OlderSerial { .. } => "older_serial",
            RotationError::SameSerial { .. } => "same_serial",
        }
    }
}

/// Decides whether the signed roster `offered` replaces `held` (§10.3).
///
/// `held_bytes` are the bytes `held` was accepted from. In order:
/// 1. bytes identical to `held_bytes`: [`Rotation::Unchanged`], without verifying again;
/// 2. the offered roster MUST verify under `admin` at `now` (§10.3 steps 1–6);
/// 3. its serial MUST NOT be lower than the held one, and a different roster with the same
///    serial is refused;
/// 4. otherwise it replaces the held roster, and `standing` says whether it still lists `me`
///    under its name with its key.
pub fn check_rotation(
    held: &Roster,
    held_bytes: &[u8],
    offered: &[u8],
    admin: &PublicKey,
    now: u64,
    me: Member<'_>,
) -> Result<Rotation, RotationError> {
    if offered == held_bytes {
        return Ok(Rotation::Unchanged);
    }
    let roster = Roster::verify(offered, admin, now)?;
    if roster.serial < held.serial {
        return Err(RotationError::OlderSerial {
            held: held.serial,
            offered: roster.serial,
        });
    }
    if roster.serial == held.serial {
        return Err(RotationError::SameSerial {
            serial: roster.serial,
        });
    }
    let diff = RosterDiff::between(held, &roster);
    let standing = Standing::of(&roster, me);
    Ok(Rotation::Replace {
        roster,
        diff,
        standing,
    })
}

/// The longest a member warns ahead of its roster's expiry, at least (one hour).
pub const EXPIRY_WARNING_MIN_SECS: u64 = 3600;

impl Roster {
    /// Whether the roster has expired at `now` (§10.3 step 5: `now >= expires_at`).
    pub fn expired_at(&self, now: u64) -> bool {
        now >= self.expires_at
    }

    /// From when a member warns that this roster is about to expire (§10.3: it SHOULD load a
    /// newer one before): once less than a tenth of the validity period or less than an hour
    /// remains, whichever comes first, and never before `issued_at`.
    pub fn expiry_warning_from(&self) -> u64 {
        let validity = self.expires_at.saturating_sub(self.issued_at);
        let lead = (validity / 10).max(EXPIRY_WARNING_MIN_SECS).min(validity);
        self.expires_at - lead
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use quorate_crypto::SecretKey;

    use super::super::Role;
    use super::*;

    fn entry(name: &str, seed: u8, role: Role) -> Entry {
        Entry {
            name: name.into(),
            key: SecretKey::from_seed(&[seed; 32]).public_key(),
            role,
            addresses: if role == Role::Node {
                vec!["127.0.0.1:4000".into()]
            } else {
                vec![]
            },
            models: vec![],
            providers: vec![],
        }
    }

    fn roster(serial: u64, entries: Vec<Entry>) -> Roster {
        Roster {
            governance: Default::default(),
            mesh: "m".into(),
            serial,
            issued_at: 1000,
            expires_at: 5000,
            entries,
        }
    }

    struct Fixture {
        admin: SecretKey,
        me: PublicKey,
        held: Roster,
        held_bytes: Vec<u8>,
    }

    impl Fixture {
        fn new() -> Self {
            let admin = SecretKey::from_seed(&[1; 32]);
            let held = roster(
                5,
                vec![
                    entry("n1", 10, Role::Node),
                    entry("c1", 11, Role::Client),
                    entry("c2", 12, Role::Client),
                ],
            );
            let held_bytes = held.sign(&admin).unwrap();
            Self {
                me: held.entries[0].key,
                admin,
                held,
                held_bytes,
            }
        }

        fn check(&self, offered: &[u8], now: u64) -> Result<Rotation, RotationError> {
            check_rotation(
                &self.held,
                &self.held_bytes,
                offered,
                &self.admin.public_key(),
                now,
                Member {
                    name: "n1",
                    key: &self.me,
                },
            )
        }
    }

    #[test]
    fn identical_bytes_are_a_no_op_even_without_verifying() {
        let f = Fixture::new();
        assert_eq!(f.check(&f.held_bytes, 2000), Ok(Rotation::Unchanged));
        // Identical bytes are not re-verified: an expired held roster is the caller's
        // concern (expiry while running), not a refused reload.
        assert_eq!(f.check(&f.held_bytes, 9000), Ok(Rotation::Unchanged));
    }

    #[test]
    fn a_higher_serial_replaces_and_reports_the_difference() {
        let f = Fixture::new();
        let mut new = f.held.clone();
        new.serial = 6;
        new.entries.remove(1); // c1 revoked
        new.entries[1].addresses = vec![]; // c2 unchanged
        new.entries.push(entry("c3", 13, Role::Client));
        new.entries[0].models = vec![[7; 32]]; // n1 changed
        let signed = new.sign(&f.admin).unwrap();
        let Ok(Rotation::Replace {
            roster,
            diff,
            standing,
        }) = f.check(&signed, 2000)
        else {
            panic!("not replaced")
        };
        assert_eq!(roster, new);
        assert_eq!(standing, Standing::Listed);
        assert_eq!(diff.added.len(), 1);
        assert_eq!(diff.added[0].name, "c3");
        assert_eq!(diff.removed.len(), 1);
        assert_eq!(diff.removed[0].name, "c1");
        assert_eq!(diff.changed, vec!["n1".to_string()]);
        let removed: Vec<_> = diff.removed_keys().copied().collect();
        assert_eq!(removed, vec![f.held.entries[1].key]);
    }

    #[test]
    fn a_lower_serial_is_refused() {
        let f = Fixture::new();
        let mut old = f.held.clone();
        old.serial = 4;
        let e = f.check(&old.sign(&f.admin).unwrap(), 2000).unwrap_err();
        assert_eq!(
            e,
            RotationError::OlderSerial {
                held: 5,
                offered: 4
            }
        );
        assert_eq!(e.code(), "older_serial");
        assert!(e.to_string().contains("lower than serial 5"), "{e}");
    }

    #[test]
    fn a_different_roster_with_the_same_serial_is_refused() {
        let f = Fixture::new();
        // Same serial, one member fewer.
        let mut other = f.held.clone();
        other.entries.pop();
        let e = f.check(&other.sign(&f.admin).unwrap(), 2000).unwrap_err();
        assert_eq!(e, RotationError::SameSerial { serial: 5 });
        assert_eq!(e.code(), "same_serial");
        // Same serial and content, re-signed with a new validity: still a different roster.
        let mut resigned = f.held.clone();
        resigned.expires_at = 9000;
        let e = f
            .check(&resigned.sign(&f.admin).unwrap(), 2000)
            .unwrap_err();
        assert_eq!(e, RotationError::SameSerial { serial: 5 });
    }

    #[test]
    fn a_roster_that_does_not_verify_is_refused_with_its_failure_name() {
        let f = Fixture::new();
        let mut newer = f.held.clone();
        newer.serial = 6;
        let signed = newer.sign(&f.admin).unwrap();
        // Expired at `now`.
        let e = f.check(&signed, 5000).unwrap_err();
        assert!(matches!(
            e,
            RotationError::Invalid(RosterError::Expired { .. })
        ));
        assert_eq!(e.code(), "expired");
        // Signed by someone else.
        let foreign = newer.sign(&SecretKey::from_seed(&[2; 32])).unwrap();
        assert_eq!(
            f.check(&foreign, 2000).unwrap_err().code(),
            "foreign_signer"
        );
        // Truncated, empty, not CBOR at all.
        for bad in [&signed[..signed.len() / 2], &[][..], &b"not a roster"[..]] {
            let e = f.check(bad, 2000).unwrap_err();
            assert_eq!(e.code(), "malformed", "{e}");
        }
        // Altered after signing.
        let mut altered = signed.clone();
        let n = altered.len();
        altered[n - 70] ^= 1;
        assert!(matches!(
            f.check(&altered, 2000),
            Err(RotationError::Invalid(_))
        ));
        // Verification comes before the serial rule: an unsigned lower serial says why it
        // is invalid, not that it is older.
        let mut old = f.held.clone();
        old.serial = 1;
        let foreign_old = old.sign(&SecretKey::from_seed(&[2; 32])).unwrap();
        assert_eq!(
            f.check(&foreign_old, 2000).unwrap_err().code(),
            "foreign_signer"
        );
    }

    #[test]
    fn a_roster_without_this_member_or_with_another_key_revokes_it() {
        let f = Fixture::new();
        let mut without = f.held.clone();
        without.serial = 6;
        without.entries.remove(0);
        let Ok(Rotation::Replace { standing, diff, .. }) =
            f.check(&without.sign(&f.admin).unwrap(), 2000)
        else {
            panic!("not replaced")
        };
        assert_eq!(standing, Standing::Removed);
        assert!(!standing.is_listed());
        assert_eq!(diff.removed[0].name, "n1");

        let mut rekeyed = f.held.clone();
        rekeyed.serial = 7;
        rekeyed.entries[0].key = SecretKey::from_seed(&[20; 32]).public_key();
        let Ok(Rotation::Replace { standing, .. }) =
            f.check(&rekeyed.sign(&f.admin).unwrap(), 2000)
        else {
            panic!("not replaced")
        };
        assert_eq!(
            standing,
            Standing::KeyChanged {
                listed: rekeyed.entries[0].key.key_id()
            }
        );
        assert!(standing.to_string().contains("another key"));
    }

    #[test]
    fn expiry_and_its_warning() {
        let mut r = roster(1, vec![]);
        assert!(!r.expired_at(4999));
        assert!(r.expired_at(5000));
        // 4000 s of validity: a tenth is 400 s, less than an hour, so warn an hour ahead.
        assert_eq!(r.expiry_warning_from(), 5000 - 3600);
        // 30 days: warn 3 days ahead.
        r.expires_at = r.issued_at + 30 * 86_400;
        assert_eq!(r.expiry_warning_from(), r.expires_at - 3 * 86_400);
        // Shorter than an hour: warn from the start.
        r.expires_at = r.issued_at + 60;
        assert_eq!(r.expiry_warning_from(), r.issued_at);
        // Nonsense (expires before issue) does not underflow.
        r.expires_at = r.issued_at - 1;
        assert_eq!(r.expiry_warning_from(), r.expires_at);
    }
}
