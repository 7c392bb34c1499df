//! The roster (§10): the signed allowlist of a mesh. Nothing that is not on it may connect.

use ciborium::value::Value;
use quorate_crypto::tensor_digest::Digest32;
use quorate_crypto::{PublicKey, SecretKey};

use crate::cbor::{self, read, read::FieldError};
use crate::cose::{self, CoseError};
use crate::governance::Governance;

pub mod rotation;

pub use rotation::{Member, RosterDiff, Rotation, RotationError, Standing, check_rotation};

/// Content type of a signed roster (§10.1).
pub const ROSTER_CONTENT_TYPE: &str = "application/vnd.quorate.roster+cbor";
/// Format version.
pub const ROSTER_VERSION: u64 = 1;
/// Largest signed roster accepted.
pub const MAX_ROSTER_LEN: usize = 1 << 20;
/// Most entries in a roster.
pub const MAX_ENTRIES: usize = 1024;
/// Most addresses, models or providers per entry.
pub const MAX_LIST: usize = 64;
/// Longest name, address or provider string.
pub const MAX_TEXT: usize = 256;

/// What a roster entry may do (§10.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Serves models and answers requests.
    Node,
    /// Only sends requests.
    Client,
}

impl Role {
    fn code(self) -> u64 {
        match self {
            Role::Node => 1,
            Role::Client => 2,
        }
    }
    /// The role's name.
    pub fn name(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Client => "client",
        }
    }
}

/// One member of the mesh (§10.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Unique name.
    pub name: String,
    /// Its Ed25519 identity (pinned in TLS).
    pub key: PublicKey,
    /// Node or client.
    pub role: Role,
    /// `host:port` addresses (nodes).
    pub addresses: Vec<String>,
    /// SHA-256 digests of the models it serves (nodes).
    pub models: Vec<Digest32>,
    /// Execution providers it offers, in preference order (informative).
    pub providers: Vec<String>,
}

/// The signed content of a roster (§10.1).
#[derive(Clone, Debug, PartialEq)]
pub struct Roster {
    /// Mesh name.
    pub mesh: String,
    /// Monotonic serial; a node SHOULD refuse a roster older than the one it has.
    pub serial: u64,
    /// Unix seconds when signed.
    pub issued_at: u64,
    /// Unix seconds after which the roster MUST be refused.
    pub expires_at: u64,
    /// The members.
    pub entries: Vec<Entry>,
    /// What verified jobs and ensembles may be (§10.6); field 7, absent when it is
    /// [`Governance::default`].
    pub governance: Governance,
}

/// Errors checking a roster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RosterError {
    /// The COSE layer is malformed or violates the profile.
    #[error(transparent)]
    Cose(#[from] CoseError),
    /// The content is malformed.
    #[error("roster: {0}")]
    Malformed(String),
    /// Not signed by the roster authority the caller trusts.
    #[error("roster is not signed by the trusted roster authority (kid {0})")]
    ForeignSigner(String),
    /// The signature does not verify.
    #[error("roster signature is invalid: the roster was altered after signing")]
    BadSignature,
    /// Expired (or not yet valid).
    #[error("roster expired at {expires_at} (now {now}); ask the roster authority for a new one")]
    Expired {
        /// Expiry time.
        expires_at: u64,
        /// The time it was checked.
        now: u64,
    },
    /// Issued in the future beyond the allowed clock skew.
    #[error("roster issued at {issued_at}, in the future (now {now})")]
    NotYetValid {
        /// Issue time.
        issued_at: u64,
        /// The time it was checked.
        now: u64,
    },
}

impl RosterError {
    /// The failure name of §10.3 (`malformed`, `foreign_signer`, `bad_signature`,
    /// `expired`, `not_yet_valid`), used by `--json` output and the conformance vectors.
    pub fn failure_name(&self) -> &'static str {
        match self {
            RosterError::ForeignSigner(_) => "foreign_signer",
            RosterError::BadSignature => "bad_signature",
            RosterError::Expired { .. } => "expired",
            RosterError::NotYetValid { .. } => "not_yet_valid",
            RosterError::Cose(_) | RosterError::Malformed(_) => "malformed",
        }
    }
}

impl From<FieldError> for RosterError {
    fn from(e: FieldError) -> Self {
        RosterError::Malformed(e.to_string())
    }
}

impl From<cbor::CborError> for RosterError {
    fn from(e: cbor::CborError) -> Self {
        RosterError::Malformed(e.to_string())
    }
}

/// Allowed clock skew for `issued_at` (§10.3).
pub const MAX_SKEW_SECS: u64 = 300;

fn texts(list: &[String]) -> Value {
    Value::Array(list.iter().map(|s| Value::Text(s.clone())).collect())
}

fn read_texts(v: &Value, field: &'static str) -> Result<Vec<String>, FieldError> {
    read::array(v, field, MAX_LIST)?
        .iter()
        .map(|t| read::text(t, field, MAX_TEXT).map(str::to_string))
        .collect()
}

impl Roster {
    /// Deterministic CBOR of the roster (§10.1).
    pub fn to_cbor(&self) -> Result<Vec<u8>, RosterError> {
        let entries = self
            .entries
            .iter()
            .map(|e| {
                Value::Map(vec![
                    (read::int(1), Value::Text(e.name.clone())),
                    (read::int(2), Value::Bytes(e.key.to_bytes().to_vec())),
                    (read::int(3), read::int(e.role.code())),
                    (read::int(4), texts(&e.addresses)),
                    (
                        read::int(5),
                        Value::Array(e.models.iter().map(|m| Value::Bytes(m.to_vec())).collect()),
                    ),
                    (read::int(6), texts(&e.providers)),
                ])
            })
            .collect();
        let mut fields = vec![
            (read::int(1), read::int(ROSTER_VERSION)),
            (read::int(2), Value::Text(self.mesh.clone())),
            (read::int(3), read::int(self.serial)),
            (read::int(4), read::int(self.issued_at)),
            (read::int(5), read::int(self.expires_at)),
            (read::int(6), Value::Array(entries)),
        ];
        // §10.6: the default governance is written by leaving field 7 out, so a roster that
        // never set any has the same bytes as before governance existed.
        if self.governance != Governance::default() {
            fields.push((read::int(7), self.governance.to_value()?));
        }
        Ok(cbor::encode(&Value::Map(fields))?)
    }

    /// Strict decoding: known keys only, names and keys unique, no weak keys.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, RosterError> {
        let v = cbor::decode_deterministic(bytes, MAX_ROSTER_LEN)?;
        let m = read::int_map(&v, "roster", &[1, 2, 3, 4, 5, 6, 7])?;
        if m.len() < 6
            || m[..6]
                .iter()
                .enumerate()
                .any(|(i, (k, _))| *k != i as u64 + 1)
        {
            return Err(RosterError::Malformed(
                "fields 1 to 6 are all required".into(),
            ));
        }
        let governance = match m.get(6) {
            None => Governance::default(),
            Some((_, g)) => {
                let g = Governance::from_value(g)?;
                // Canonical form: the default is written by omission only.
                if g == Governance::default() {
                    return Err(RosterError::Malformed(
                        "field 7 holds the default governance; omit it".into(),
                    ));
                }
                g
            }
        };
        let version = read::uint(m[0].1, "version")?;
        if version != ROSTER_VERSION {
            return Err(RosterError::Malformed(format!(
                "unsupported version {version}"
            )));
        }
        let mut entries: Vec<Entry> = Vec::new();
        for e in read::array(m[5].1, "entries", MAX_ENTRIES)? {
            let f = read::int_map(e, "entry", &[1, 2, 3, 4, 5, 6])?;
            if f.len() != 6 {
                return Err(RosterError::Malformed(
                    "entry fields 1 to 6 are all required".into(),
                ));
            }
            let name = read::text(f[0].1, "name", MAX_TEXT)?.to_string();
            let key = PublicKey::from_bytes(read::bytes_range(f[1].1, "key", 32, 32)?)
                .map_err(|e| RosterError::Malformed(format!("entry {name:?}: {e}")))?;
            let role = match read::uint(f[2].1, "role")? {
                1 => Role::Node,
                2 => Role::Client,
                r => {
                    return Err(RosterError::Malformed(format!(
                        "entry {name:?}: unknown role {r}"
                    )));
                }
            };
            if name.is_empty() || entries.iter().any(|x| x.name == name || x.key == key) {
                return Err(RosterError::Malformed(format!(
                    "entry {name:?}: empty or duplicate name or key"
                )));
            }
            let models = read::array(f[4].1, "models", MAX_LIST)?
                .iter()
                .map(|d| read::bytes_n::<32>(d, "models"))
                .collect::<Result<_, _>>()?;
            entries.push(Entry {
                name,
                key,
                role,
                addresses: read_texts(f[3].1, "addresses")?,
                models,
                providers: read_texts(f[5].1, "providers")?,
            });
        }
        Ok(Self {
            mesh: read::text(m[1].1, "mesh", MAX_TEXT)?.to_string(),
            serial: read::uint(m[2].1, "serial")?,
            issued_at: read::uint(m[3].1, "issued_at")?,
            expires_at: read::uint(m[4].1, "expires_at")?,
            entries,
            governance,
        })
    }

    /// Signs the roster with the roster authority's key (§10.1).
    pub fn sign(&self, admin: &SecretKey) -> Result<Vec<u8>, RosterError> {
        Ok(cose::sign(self.to_cbor()?, ROSTER_CONTENT_TYPE, admin)?)
    }

    /// Verifies a signed roster against the pinned authority key at time `now` (§10.3).
    pub fn verify(bytes: &[u8], admin: &PublicKey, now: u64) -> Result<Self, RosterError> {
        let sign1 = cose::parse(bytes, ROSTER_CONTENT_TYPE, MAX_ROSTER_LEN)?;
        if sign1.kid != admin.key_id() {
            return Err(RosterError::ForeignSigner(sign1.kid.to_string()));
        }
        sign1.verify(admin).map_err(|_| RosterError::BadSignature)?;
        let roster = Self::from_cbor(&sign1.payload)?;
        if now >= roster.expires_at {
            return Err(RosterError::Expired {
                expires_at: roster.expires_at,
                now,
            });
        }
        if roster.issued_at > now.saturating_add(MAX_SKEW_SECS) {
            return Err(RosterError::NotYetValid {
                issued_at: roster.issued_at,
                now,
            });
        }
        Ok(roster)
    }

    /// The entry with this name.
    pub fn by_name(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The entry with this key.
    pub fn by_key(&self, key: &PublicKey) -> Option<&Entry> {
        self.entries.iter().find(|e| &e.key == key)
    }

    /// The node entries (not clients), in roster order.
    pub fn nodes(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.role == Role::Node)
    }

    /// Nodes serving a model digest.
    pub fn serving(&self, model: &Digest32) -> impl Iterator<Item = &Entry> {
        self.entries
            .iter()
            .filter(move |e| e.role == Role::Node && e.models.contains(model))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(admin: &SecretKey) -> (Roster, Vec<u8>) {
        let node = SecretKey::from_seed(&[5; 32]).public_key();
        let client = SecretKey::from_seed(&[6; 32]).public_key();
        let r = Roster {
            mesh: "test".into(),
            serial: 1,
            issued_at: 1000,
            expires_at: 2000,
            entries: vec![
                Entry {
                    name: "n1".into(),
                    key: node,
                    role: Role::Node,
                    addresses: vec!["127.0.0.1:4000".into()],
                    models: vec![[1; 32]],
                    providers: vec!["cpu".into()],
                },
                Entry {
                    name: "c".into(),
                    key: client,
                    role: Role::Client,
                    addresses: vec![],
                    models: vec![],
                    providers: vec![],
                },
            ],
            governance: Governance::default(),
        };
        let signed = r.sign(admin).unwrap();
        (r, signed)
    }

    #[test]
    fn verify_checks_signer_signature_and_expiry() {
        let admin = SecretKey::from_seed(&[1; 32]);
        let (r, signed) = sample(&admin);
        assert_eq!(
            Roster::verify(&signed, &admin.public_key(), 1500).unwrap(),
            r
        );
        assert!(matches!(
            Roster::verify(&signed, &admin.public_key(), 2000),
            Err(RosterError::Expired { .. })
        ));
        assert!(matches!(
            Roster::verify(&signed, &admin.public_key(), 100),
            Err(RosterError::NotYetValid { .. })
        ));
        let other = SecretKey::from_seed(&[2; 32]);
        assert!(matches!(
            Roster::verify(&signed, &other.public_key(), 1500),
            Err(RosterError::ForeignSigner(_))
        ));
        let (_, resigned) = sample(&other);
        assert!(Roster::verify(&resigned, &admin.public_key(), 1500).is_err());
        let mut t = signed.clone();
        let n = t.len();
        t[n - 70] ^= 1;
        assert!(Roster::verify(&t, &admin.public_key(), 1500).is_err());
        assert_eq!(r.serving(&[1; 32]).count(), 1);
    }

    #[test]
    fn governance_is_signed_in_field_7_and_the_default_is_written_by_omission() {
        let admin = SecretKey::from_seed(&[1; 32]);
        let (mut r, _) = sample(&admin);
        let plain = r.to_cbor().unwrap();
        assert_eq!(
            Roster::from_cbor(&plain).unwrap().governance,
            Governance::default()
        );
        r.governance.ensemble.min_members = 5;
        let governed = r.to_cbor().unwrap();
        assert!(governed.len() > plain.len());
        assert_eq!(Roster::from_cbor(&governed).unwrap(), r);
        // The default written out explicitly is not canonical.
        let mut fields = match cbor::decode_deterministic(&plain, MAX_ROSTER_LEN).unwrap() {
            Value::Map(m) => m,
            _ => unreachable!(),
        };
        fields.push((read::int(7), Governance::default().to_value().unwrap()));
        let explicit = cbor::encode(&Value::Map(fields)).unwrap();
        assert!(Roster::from_cbor(&explicit).is_err());
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let admin = SecretKey::from_seed(&[1; 32]);
        let (mut r, _) = sample(&admin);
        r.entries[1].key = r.entries[0].key;
        let bytes = r.to_cbor().unwrap();
        assert!(Roster::from_cbor(&bytes).is_err());
    }
}
