//! The roster draft (§10.4): the unsigned JSON the roster authority reviews and edits, its
//! strict parsing, and its conversion to and from the signed roster's entries.

use quorate_crypto::tensor_digest::Digest32;
use quorate_crypto::{IdentityError, PublicKey};
use quorate_protocol::governance::{EnsembleRule, Governance, Grant, Scope, VerificationRule};
use quorate_protocol::policy::Policy;
use quorate_protocol::roster::{Entry, MAX_ENTRIES, MAX_LIST, MAX_TEXT, Role, Roster, RosterError};
use serde::{Deserialize, Serialize};

/// The `format` value of a version-1 draft.
pub const DRAFT_FORMAT: &str = "quorate-roster-draft/1";
/// Largest draft file read (a full roster of [`MAX_ENTRIES`] entries fits easily).
pub const MAX_DRAFT_LEN: u64 = 8 << 20;
/// Largest model file hashed by `roster add --model` (the protobuf limit of an ONNX file).
pub const MAX_MODEL_FILE_LEN: u64 = 2 << 30;

/// Role of a draft entry, as written in the JSON draft and on the command line (§10.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DraftRole {
    /// Serves models and answers requests.
    Node,
    /// Only sends requests.
    Client,
}

impl From<DraftRole> for Role {
    fn from(r: DraftRole) -> Role {
        match r {
            DraftRole::Node => Role::Node,
            DraftRole::Client => Role::Client,
        }
    }
}

impl From<Role> for DraftRole {
    fn from(r: Role) -> DraftRole {
        match r {
            Role::Node => DraftRole::Node,
            Role::Client => DraftRole::Client,
        }
    }
}

/// One member in a draft; the JSON form of [`Entry`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DraftEntry {
    /// Unique name.
    pub name: String,
    /// `node` or `client`.
    pub role: DraftRole,
    /// Ed25519 public key, 64 lowercase hex digits (RFC 8032 encoding).
    pub key: String,
    /// `host:port` addresses (nodes).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// SHA-256 digests of served model files, 64 hex digits each (nodes).
    #[serde(default)]
    pub models: Vec<String>,
    /// Execution providers offered, in preference order (informative).
    #[serde(default)]
    pub providers: Vec<String>,
}

/// An unsigned roster: everything of §10.1 except the times, which are set when signing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterDraft {
    /// Always [`DRAFT_FORMAT`].
    pub format: String,
    /// Mesh name.
    pub mesh: String,
    /// Serial of the next signed roster (§10.3: serials only grow).
    pub serial: u64,
    /// The members.
    pub entries: Vec<DraftEntry>,
    /// What verified jobs and ensembles may be (§10.6); absent means the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub governance: Option<DraftGovernance>,
}

/// The draft form of the mesh's governance (§10.6).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DraftGovernance {
    /// Verification rules: per model (hex digest) or for every model (`"model": null`).
    pub verification: Vec<DraftRule>,
    /// The ensemble rule.
    pub ensemble: DraftEnsembleRule,
}

/// One verification rule of a draft.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DraftRule {
    /// Hex SHA-256 of the model, or `null` for every model no other rule names.
    pub model: Option<String>,
    /// Policies allowed, e.g. `{"policy": "exact", "scope": "same_provider"}`.
    pub policies: Vec<DraftGrant>,
    /// The smallest quorum that may accept or convict (at least 2).
    pub min_quorum: u64,
}

/// One policy a draft rule grants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DraftGrant {
    /// As `--policy` takes it: `exact`, `default`, `tolerance:atol=A,rtol=B`.
    pub policy: String,
    /// `same_provider` or `any_provider`.
    pub scope: String,
}

/// The ensemble rule of a draft.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DraftEnsembleRule {
    /// The fewest members an ensemble may have (at least 3).
    pub min_members: u32,
    /// The lowest threshold it may use (at least 2).
    pub min_threshold: u32,
}

fn governance_from_draft(d: &DraftGovernance) -> Result<Governance, DraftError> {
    let bad = |why: String| DraftError::Governance(why);
    let mut verification = Vec::new();
    for r in &d.verification {
        let model = r.model.as_deref().map(parse_digest).transpose()?;
        let mut grants = Vec::new();
        for g in &r.policies {
            let policy = Policy::parse(&g.policy).map_err(|e| bad(e.to_string()))?;
            let scope = Scope::parse(&g.scope).ok_or_else(|| {
                bad(format!(
                    "scope {:?}: use same_provider or any_provider",
                    g.scope
                ))
            })?;
            grants.push(Grant { policy, scope });
        }
        verification.push(VerificationRule {
            model,
            grants,
            min_quorum: r.min_quorum,
        });
    }
    let g = Governance {
        verification,
        ensemble: EnsembleRule {
            min_members: d.ensemble.min_members,
            min_threshold: d.ensemble.min_threshold,
        },
    };
    // The roster's own decoder states every rule (§10.6).
    let value = g.to_value().map_err(|e| bad(e.to_string()))?;
    Governance::from_value(&value).map_err(|e| bad(e.to_string()))
}

fn governance_to_draft(g: &Governance) -> Option<DraftGovernance> {
    (*g != Governance::default()).then(|| DraftGovernance {
        verification: g
            .verification
            .iter()
            .map(|r| DraftRule {
                model: r.model.map(hex::encode),
                policies: r
                    .grants
                    .iter()
                    .map(|g| DraftGrant {
                        policy: g.policy.describe(),
                        scope: g.scope.name().into(),
                    })
                    .collect(),
                min_quorum: r.min_quorum,
            })
            .collect(),
        ensemble: DraftEnsembleRule {
            min_members: g.ensemble.min_members,
            min_threshold: g.ensemble.min_threshold,
        },
    })
}

impl RosterDraft {
    /// An empty draft (serial 1).
    pub fn new(mesh: &str) -> Result<Self, DraftError> {
        check_text("mesh name", mesh)?;
        Ok(Self {
            format: DRAFT_FORMAT.into(),
            mesh: mesh.into(),
            serial: 1,
            entries: Vec::new(),
            governance: None,
        })
    }

    /// Parses a draft file strictly (unknown fields and other formats refused).
    pub fn parse(bytes: &[u8]) -> Result<Self, DraftError> {
        let draft: Self =
            serde_json::from_slice(bytes).map_err(|e| DraftError::Json(e.to_string()))?;
        if draft.format != DRAFT_FORMAT {
            return Err(DraftError::Format(draft.format));
        }
        Ok(draft)
    }

    /// Pretty JSON with a final newline, as written to disk.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// Errors turning a draft (or command-line input) into roster entries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DraftError {
    /// Not JSON, or a field is missing, misspelt or of the wrong type.
    #[error("roster draft is not valid: {0}")]
    Json(String),
    /// The `format` field names another format.
    #[error("roster draft has format {0:?}; this version reads {DRAFT_FORMAT:?}")]
    Format(String),
    /// A name, address or provider is empty or too long.
    #[error("{what} {value:?} must be 1 to {MAX_TEXT} bytes")]
    Text {
        /// Which field.
        what: &'static str,
        /// Its value (possibly cut).
        value: String,
    },
    /// A list is longer than the roster allows.
    #[error("{what} has {found} items; a roster allows at most {max}")]
    TooMany {
        /// Which list.
        what: String,
        /// Items present.
        found: usize,
        /// The limit.
        max: usize,
    },
    /// The governance section is not valid (§10.6).
    #[error("governance: {0}")]
    Governance(String),
    /// Two entries share a name.
    #[error("an entry named {0:?} is already in the roster; names must be unique (§10.3)")]
    DuplicateName(String),
    /// Two entries share a key.
    #[error(
        "entry {name:?} has the key of entry {existing:?} (key id {key_id}); keys must be unique (§10.3)"
    )]
    DuplicateKey {
        /// The new entry.
        name: String,
        /// The entry that already has the key.
        existing: String,
        /// The key id.
        key_id: String,
    },
    /// The key is a small-order or mixed-order point.
    #[error(
        "entry {name:?}: weak public key refused (§2.3): a point of small or mixed order is never a valid identity"
    )]
    WeakKey {
        /// The entry.
        name: String,
    },
    /// The key is not 32 bytes of hex or not a point encoding.
    #[error("entry {name:?}: key must be 64 hex digits encoding an Ed25519 public key ({problem})")]
    MalformedKey {
        /// The entry.
        name: String,
        /// What was wrong.
        problem: String,
    },
    /// A model digest is not 64 hex digits.
    #[error(
        "model digest {0:?} must be 64 hex digits (the SHA-256 of the .onnx file, as sha256sum prints it)"
    )]
    Digest(String),
    /// An address is not `host:port`.
    #[error("address {0:?} must be HOST:PORT with a port from 1 to 65535 (IPv6 as [addr]:port)")]
    Address(String),
    /// A client entry lists addresses or models.
    #[error(
        "entry {0:?} is a client: clients serve nothing, so they take no addresses or models (use --role node)"
    )]
    ClientServes(String),
    /// The validity period is empty or overflows.
    #[error("expiry {expires_at} is not after the issue time {issued_at}")]
    Validity {
        /// Issue time.
        issued_at: u64,
        /// Expiry time.
        expires_at: u64,
    },
    /// The roster codec refused the result.
    #[error(transparent)]
    Roster(#[from] RosterError),
}

fn check_text(what: &'static str, value: &str) -> Result<(), DraftError> {
    if value.is_empty() || value.len() > MAX_TEXT {
        let mut value = value.to_string();
        if value.len() > 64 {
            let mut cut = 64;
            while !value.is_char_boundary(cut) {
                cut -= 1;
            }
            value.truncate(cut);
            value.push('…');
        }
        return Err(DraftError::Text { what, value });
    }
    Ok(())
}

pub(super) fn check_list(what: String, found: usize, max: usize) -> Result<(), DraftError> {
    if found > max {
        return Err(DraftError::TooMany { what, found, max });
    }
    Ok(())
}

/// Parses a model digest: 64 hex digits, optionally prefixed `sha256:`.
pub fn parse_digest(s: &str) -> Result<Digest32, DraftError> {
    let hexits = s.strip_prefix("sha256:").unwrap_or(s);
    let mut d = [0u8; 32];
    hex::decode_to_slice(hexits.to_ascii_lowercase(), &mut d)
        .map_err(|_| DraftError::Digest(s.into()))?;
    Ok(d)
}

/// Checks an address is `host:port` (IPv6 hosts in brackets).
pub fn check_address(addr: &str) -> Result<(), DraftError> {
    let bad = || DraftError::Address(addr.into());
    check_text("address", addr)?;
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let port_ok = port.parse::<u16>().is_ok_and(|p| p != 0) && !port.starts_with('+');
    let host_ok = !host.is_empty()
        && !host.chars().any(char::is_whitespace)
        && (!host.contains(':') || (host.starts_with('[') && host.ends_with(']')));
    if !port_ok || !host_ok {
        return Err(bad());
    }
    Ok(())
}

fn parse_key(name: &str, key: &str) -> Result<PublicKey, DraftError> {
    let bytes = hex::decode(key).map_err(|e| DraftError::MalformedKey {
        name: name.into(),
        problem: e.to_string(),
    })?;
    PublicKey::from_bytes(&bytes).map_err(|e| match e {
        IdentityError::WeakKey => DraftError::WeakKey { name: name.into() },
        e => DraftError::MalformedKey {
            name: name.into(),
            problem: e.to_string(),
        },
    })
}

/// Checks one draft entry against the entries already accepted and converts it (§10.2, §10.3).
pub fn entry_from_draft(e: &DraftEntry, existing: &[Entry]) -> Result<Entry, DraftError> {
    check_text("name", &e.name)?;
    let key = parse_key(&e.name, &e.key)?;
    if existing.iter().any(|x| x.name == e.name) {
        return Err(DraftError::DuplicateName(e.name.clone()));
    }
    if let Some(x) = existing.iter().find(|x| x.key == key) {
        return Err(DraftError::DuplicateKey {
            name: e.name.clone(),
            existing: x.name.clone(),
            key_id: key.key_id().to_string(),
        });
    }
    let role = Role::from(e.role);
    if role == Role::Client && !(e.addresses.is_empty() && e.models.is_empty()) {
        return Err(DraftError::ClientServes(e.name.clone()));
    }
    for (what, list) in [
        ("addresses", &e.addresses),
        ("models", &e.models),
        ("providers", &e.providers),
    ] {
        check_list(format!("entry {:?}: {what}", e.name), list.len(), MAX_LIST)?;
    }
    for a in &e.addresses {
        check_address(a)?;
    }
    for p in &e.providers {
        check_text("provider", p)?;
    }
    let models = e
        .models
        .iter()
        .map(|m| parse_digest(m))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Entry {
        name: e.name.clone(),
        key,
        role,
        addresses: e.addresses.clone(),
        models,
        providers: e.providers.clone(),
    })
}

/// Turns a draft into the roster of §10.1 valid from `issued_at` until `expires_at`.
///
/// Every rule a verifier applies to the content (§10.3) is checked here with a precise error,
/// and the encoding is then decoded again with the verifier's own decoder, so whatever this
/// returns will be accepted by every node.
pub fn draft_to_roster(
    draft: &RosterDraft,
    issued_at: u64,
    expires_at: u64,
) -> Result<Roster, DraftError> {
    if draft.format != DRAFT_FORMAT {
        return Err(DraftError::Format(draft.format.clone()));
    }
    check_text("mesh name", &draft.mesh)?;
    check_list("entries".into(), draft.entries.len(), MAX_ENTRIES)?;
    if expires_at <= issued_at {
        return Err(DraftError::Validity {
            issued_at,
            expires_at,
        });
    }
    let mut entries: Vec<Entry> = Vec::with_capacity(draft.entries.len());
    for e in &draft.entries {
        let entry = entry_from_draft(e, &entries)?;
        entries.push(entry);
    }
    let roster = Roster {
        governance: match &draft.governance {
            Some(g) => governance_from_draft(g)?,
            None => Governance::default(),
        },
        mesh: draft.mesh.clone(),
        serial: draft.serial,
        issued_at,
        expires_at,
        entries,
    };
    let decoded = Roster::from_cbor(&roster.to_cbor()?)?;
    if decoded != roster {
        return Err(DraftError::Roster(RosterError::Malformed(
            "the roster does not survive encoding".into(),
        )));
    }
    Ok(roster)
}

/// The draft form of a roster's entry.
pub fn entry_to_draft(e: &Entry) -> DraftEntry {
    DraftEntry {
        name: e.name.clone(),
        role: e.role.into(),
        key: hex::encode(e.key.to_bytes()),
        addresses: e.addresses.clone(),
        models: e.models.iter().map(hex::encode).collect(),
        providers: e.providers.clone(),
    }
}

/// The draft a roster was signed from (times dropped): `quorate roster show --json` prints
/// this, so a signed roster can be turned back into an editable draft.
pub fn roster_to_draft(r: &Roster) -> RosterDraft {
    RosterDraft {
        format: DRAFT_FORMAT.into(),
        mesh: r.mesh.clone(),
        serial: r.serial,
        entries: r.entries.iter().map(entry_to_draft).collect(),
        governance: governance_to_draft(&r.governance),
    }
}

/// Parses a validity period: a positive integer with a unit `s`, `m`, `h` or `d`
/// (`90s`, `15m`, `12h`, `30d`). Returns seconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let help = || format!("{s:?} is not a duration: use a number with s, m, h or d, e.g. 30d");
    let split = s.len().checked_sub(1).ok_or_else(help)?;
    let (num, unit) = (s.get(..split).ok_or_else(help)?, &s[split..]);
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(help()),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return Err(help());
    }
    let n: u64 = num.parse().map_err(|_| help())?;
    let secs = n
        .checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too long"))?;
    if secs == 0 {
        return Err(format!(
            "{s:?} is empty: a roster must be valid for some time"
        ));
    }
    Ok(secs)
}

/// Stable machine-readable code of a roster verification failure (used by `--json` output
/// and the conformance vectors).
pub fn failure_code(e: &RosterError) -> &'static str {
    e.failure_name()
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorate_crypto::SecretKey;

    fn entry(name: &str, seed: u8) -> DraftEntry {
        DraftEntry {
            name: name.into(),
            role: DraftRole::Node,
            key: hex::encode(SecretKey::from_seed(&[seed; 32]).public_key().to_bytes()),
            addresses: vec!["127.0.0.1:4433".into()],
            models: vec![hex::encode([7u8; 32])],
            providers: vec!["cpu".into()],
        }
    }

    #[test]
    fn draft_and_roster_convert_both_ways() {
        let mut d = RosterDraft::new("m").unwrap();
        d.entries.push(entry("a", 1));
        d.entries.push(DraftEntry {
            role: DraftRole::Client,
            addresses: vec![],
            models: vec![],
            providers: vec![],
            ..entry("c", 2)
        });
        let r = draft_to_roster(&d, 10, 20).unwrap();
        assert_eq!(r.entries[0].models, vec![[7u8; 32]]);
        assert_eq!(r.entries[1].role, Role::Client);
        assert_eq!(roster_to_draft(&r), d);
        assert_eq!(RosterDraft::parse(d.to_json().as_bytes()).unwrap(), d);
    }

    #[test]
    fn governance_in_a_draft_is_signed_into_the_roster_and_read_back() {
        let mut d = RosterDraft::new("m").unwrap();
        d.entries.push(entry("a", 1));
        let json = r#"{"verification": [
            {"model": null, "policies": [{"policy": "exact", "scope": "same_provider"}], "min_quorum": 2},
            {"model": "0707070707070707070707070707070707070707070707070707070707070707",
             "policies": [{"policy": "tolerance:atol=0.02,rtol=0", "scope": "any_provider"}], "min_quorum": 3}],
            "ensemble": {"min_members": 4, "min_threshold": 3}}"#;
        d.governance = Some(serde_json::from_str(json).unwrap());
        let r = draft_to_roster(&d, 10, 20).unwrap();
        assert_eq!(r.governance.rule_for(&[7; 32]).unwrap().min_quorum, 3);
        assert_eq!(r.governance.ensemble.min_members, 4);
        let back = roster_to_draft(&r);
        assert_eq!(draft_to_roster(&back, 10, 20).unwrap(), r);
        // A rule that lets one witness convict is refused before anything is signed.
        let mut bad = d.clone();
        if let Some(g) = bad.governance.as_mut() {
            g.verification[0].min_quorum = 1;
        }
        assert!(matches!(
            draft_to_roster(&bad, 10, 20),
            Err(DraftError::Governance(_))
        ));
        let mut bad = d;
        if let Some(g) = bad.governance.as_mut() {
            g.verification[0].policies[0].scope = "everyone".into();
        }
        assert!(matches!(
            draft_to_roster(&bad, 10, 20),
            Err(DraftError::Governance(_))
        ));
    }

    #[test]
    fn drafts_violating_section_10_3_are_refused_precisely() {
        let mut d = RosterDraft::new("m").unwrap();
        d.entries.push(entry("a", 1));
        d.entries.push(entry("a", 2));
        assert_eq!(
            draft_to_roster(&d, 10, 20),
            Err(DraftError::DuplicateName("a".into()))
        );
        d.entries[1] = entry("b", 1);
        assert!(matches!(
            draft_to_roster(&d, 10, 20),
            Err(DraftError::DuplicateKey { .. })
        ));
        // A small-order point (the identity, y = 1).
        d.entries[1] = entry("b", 2);
        d.entries[1].key = format!("01{}", "00".repeat(31));
        assert_eq!(
            draft_to_roster(&d, 10, 20),
            Err(DraftError::WeakKey { name: "b".into() })
        );
        d.entries[1] = entry("b", 2);
        d.entries[1].addresses = vec!["no-port".into()];
        assert!(matches!(
            draft_to_roster(&d, 10, 20),
            Err(DraftError::Address(_))
        ));
        d.entries[1] = entry("b", 2);
        d.entries[1].role = DraftRole::Client;
        assert_eq!(
            draft_to_roster(&d, 10, 20),
            Err(DraftError::ClientServes("b".into()))
        );
        d.entries[1] = entry("b", 2);
        d.entries[1].models = vec!["abcd".into()];
        assert!(matches!(
            draft_to_roster(&d, 10, 20),
            Err(DraftError::Digest(_))
        ));
        d.entries[1] = entry("b", 2);
        assert!(draft_to_roster(&d, 10, 20).is_ok());
        assert!(matches!(
            draft_to_roster(&d, 20, 20),
            Err(DraftError::Validity { .. })
        ));
        d.entries[1].name = "x".repeat(MAX_TEXT + 1);
        assert!(matches!(
            draft_to_roster(&d, 10, 20),
            Err(DraftError::Text { .. })
        ));
    }

    #[test]
    fn draft_parsing_is_strict() {
        let good = RosterDraft::new("m").unwrap().to_json();
        assert!(RosterDraft::parse(good.as_bytes()).is_ok());
        let extra = good.replacen("\"serial\"", "\"seriall\": 1, \"serial\"", 1);
        assert!(matches!(
            RosterDraft::parse(extra.as_bytes()),
            Err(DraftError::Json(_))
        ));
        let other = good.replace(DRAFT_FORMAT, "quorate-roster-draft/2");
        assert!(matches!(
            RosterDraft::parse(other.as_bytes()),
            Err(DraftError::Format(_))
        ));
    }

    #[test]
    fn durations_and_addresses() {
        assert_eq!(parse_duration("30d"), Ok(30 * 86_400));
        assert_eq!(parse_duration("12h"), Ok(12 * 3600));
        assert_eq!(parse_duration("15m"), Ok(900));
        assert_eq!(parse_duration("90s"), Ok(90));
        for bad in [
            "",
            "d",
            "30",
            "30x",
            "-1d",
            "+1d",
            "0d",
            "1.5d",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        for good in ["10.0.0.1:4433", "node1.example:1", "[::1]:4433"] {
            assert!(check_address(good).is_ok(), "{good}");
        }
        for bad in [
            "10.0.0.1", ":4433", "h:0", "h:65536", "::1:4433", "h :1", "h:+1",
        ] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
    }
}
