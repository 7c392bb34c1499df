//! Signed roster vectors (§10): a valid roster and every way an authority's signature,
//! the entries or the governance can be wrong.

use std::collections::BTreeMap;

use super::{GENERATED_BY, ISSUED_AT, VALIDITY, int, key, pk_hex};
use ciborium::value::Value as Cbor;
use quorate_crypto::SecretKey;
use quorate_crypto::tensor_digest::sha256;
use quorate_protocol::cbor;
use quorate_protocol::cose;
use quorate_protocol::governance::{EnsembleRule, Governance, Grant, Scope, VerificationRule};
use quorate_protocol::policy::Policy;
use quorate_protocol::roster::{Entry, ROSTER_CONTENT_TYPE, Role, Roster};
use serde_json::{Value, json};

fn admin() -> SecretKey {
    key(0x41)
}

fn sample_roster() -> Roster {
    let model = |name: &str| sha256(name.as_bytes());
    Roster {
        governance: Default::default(),
        mesh: "hospitals".into(),
        serial: 7,
        issued_at: ISSUED_AT,
        expires_at: ISSUED_AT + VALIDITY,
        entries: vec![
            Entry {
                name: "st-mary-1".into(),
                key: key(0x51).public_key(),
                role: Role::Node,
                addresses: vec!["10.1.0.1:4433".into(), "[fd00::1]:4433".into()],
                models: vec![model("mlp.onnx bytes"), model("logistic.onnx bytes")],
                providers: vec!["openvino:NPU".into(), "cpu".into()],
            },
            Entry {
                name: "st-mary-2".into(),
                key: key(0x52).public_key(),
                role: Role::Node,
                addresses: vec!["10.1.0.2:4433".into()],
                models: vec![model("mlp.onnx bytes")],
                providers: vec!["cpu".into()],
            },
            Entry {
                name: "research-client".into(),
                key: key(0x53).public_key(),
                role: Role::Client,
                addresses: vec![],
                models: vec![],
                providers: vec![],
            },
        ],
    }
}

fn roster_json(r: &Roster) -> Value {
    let mut v = json!({
        "mesh": r.mesh,
        "serial": r.serial,
        "issued_at": r.issued_at,
        "expires_at": r.expires_at,
        "entries": r.entries.iter().map(|e| json!({
            "name": e.name,
            "role": e.role.name(),
            "key": hex::encode(e.key.to_bytes()),
            "addresses": e.addresses,
            "models": e.models.iter().map(hex::encode).collect::<Vec<_>>(),
            "providers": e.providers,
        })).collect::<Vec<_>>(),
    });
    // §10.6: governance as the CBOR of field 7, present only when it is not the default.
    if r.governance != Governance::default() {
        v["governance"] = json!(hex::encode(
            cbor::encode(&r.governance.to_value().unwrap()).unwrap()
        ));
    }
    v
}

/// A governance other than the default: a calibrated tolerance across providers for one
/// model with a quorum of 3, and ensembles of at least 4 members with threshold 3.
fn calibrated_governance() -> Governance {
    let mut g = Governance::default();
    g.verification.push(VerificationRule {
        model: Some([0x77; 32]),
        grants: vec![Grant {
            policy: Policy::Tolerance {
                atol: 0.02,
                rtol: 0.0,
            },
            scope: Scope::AnyProvider,
        }],
        min_quorum: 3,
    });
    g.ensemble = EnsembleRule {
        min_members: 4,
        min_threshold: 3,
    };
    g
}

struct RosterCase<'a> {
    description: &'a str,
    signed: &'a [u8],
    authority: &'a SecretKey,
    now: u64,
    error: Option<(&'a str, &'a str)>,
    content: Option<&'a Roster>,
}

fn roster_vector(c: RosterCase<'_>) -> Value {
    let mut v = json!({
        "generated_by": GENERATED_BY,
        "type": "roster",
        "spec": "§10.1, §10.2, §10.3",
        "description": c.description,
        "expect": if c.error.is_some() { "invalid" } else { "valid" },
        "authority_key": pk_hex(c.authority),
        "now": c.now,
        "roster": hex::encode(c.signed),
    });
    if let Some((code, detail)) = c.error {
        v["error"] = json!(code);
        v["error_detail"] = json!(detail);
    }
    if let Some(r) = c.content {
        v["content"] = roster_json(r);
    }
    v
}

/// Decodes the roster payload, lets `edit` change it, and signs the result as the authority
/// would (a validly signed roster with bad content).
fn resign(r: &Roster, k: &SecretKey, edit: impl FnOnce(&mut Vec<(Cbor, Cbor)>)) -> Vec<u8> {
    let mut v: Cbor = ciborium::de::from_reader(r.to_cbor().unwrap().as_slice()).unwrap();
    let Cbor::Map(m) = &mut v else { panic!() };
    edit(m);
    cose::sign(cbor::encode(&v).unwrap(), ROSTER_CONTENT_TYPE, k).unwrap()
}

pub(super) fn rosters(out: &mut BTreeMap<String, Value>) {
    let a = admin();
    let r = sample_roster();
    let good = r.sign(&a).unwrap();
    let now = ISSUED_AT + 3600;
    let mut put = |name: &str, c: RosterCase<'_>| {
        out.insert(format!("{name}.json"), roster_vector(c));
    };
    put(
        "roster_good",
        RosterCase {
            description: "two nodes and a client, signed by the roster authority, checked an hour after issue",
            signed: &good,
            authority: &a,
            now,
            error: None,
            content: Some(&r),
        },
    );
    put(
        "roster_good_clock_skew",
        RosterCase {
            description: "checked 300 s before its issue time: the largest clock skew allowed (§10.3)",
            signed: &good,
            authority: &a,
            now: ISSUED_AT - 300,
            error: None,
            content: Some(&r),
        },
    );
    put(
        "roster_bad_expired",
        RosterCase {
            description: "the good roster checked at its expiry time: expires_at is the first second it is invalid",
            signed: &good,
            authority: &a,
            now: r.expires_at,
            error: Some(("expired", "expired at")),
            content: None,
        },
    );
    put(
        "roster_bad_not_yet_valid",
        RosterCase {
            description: "the good roster checked 301 s before its issue time",
            signed: &good,
            authority: &a,
            now: ISSUED_AT - 301,
            error: Some(("not_yet_valid", "in the future")),
            content: None,
        },
    );
    let rogue = key(0x42);
    let foreign = r.sign(&rogue).unwrap();
    put(
        "roster_bad_foreign_signed",
        RosterCase {
            description: "the same content signed by a key that is not the pinned authority",
            signed: &foreign,
            authority: &a,
            now,
            error: Some((
                "foreign_signer",
                "not signed by the trusted roster authority",
            )),
            content: None,
        },
    );
    let mut tampered = good.clone();
    let pos = tampered.windows(9).position(|w| w == b"st-mary-2").unwrap();
    tampered[pos + 8] = b'3';
    put(
        "roster_bad_tampered",
        RosterCase {
            description: "one byte of an entry name changed after signing (st-mary-2 -> st-mary-3)",
            signed: &tampered,
            authority: &a,
            now,
            error: Some(("bad_signature", "altered after signing")),
            content: None,
        },
    );
    let mut dup = r.clone();
    dup.entries[2].key = dup.entries[0].key;
    let dup = dup.sign(&a).unwrap();
    put(
        "roster_bad_duplicate_key",
        RosterCase {
            description: "validly signed; the client entry carries the key of node st-mary-1",
            signed: &dup,
            authority: &a,
            now,
            error: Some(("malformed", "duplicate name or key")),
            content: None,
        },
    );
    let mut dup_name = r.clone();
    dup_name.entries[1].name = "st-mary-1".into();
    let dup_name = dup_name.sign(&a).unwrap();
    put(
        "roster_bad_duplicate_name",
        RosterCase {
            description: "validly signed; two entries are named st-mary-1",
            signed: &dup_name,
            authority: &a,
            now,
            error: Some(("malformed", "duplicate name or key")),
            content: None,
        },
    );
    // A small-order point: (0, -1), encoded 0xec ff .. ff 7f (vectors/v1/keys_bad_weak.json).
    let weak =
        hex::decode("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f").unwrap();
    let weak = resign(&r, &a, |m| {
        let Cbor::Array(entries) = &mut m[5].1 else {
            panic!()
        };
        let Cbor::Map(e) = &mut entries[1] else {
            panic!()
        };
        e[1].1 = Cbor::Bytes(weak);
    });
    put(
        "roster_bad_weak_key",
        RosterCase {
            description: "validly signed; st-mary-2's key is a point of small order (§2.3)",
            signed: &weak,
            authority: &a,
            now,
            error: Some(("malformed", "weak public key")),
            content: None,
        },
    );
    let mut governed = r.clone();
    governed.governance = calibrated_governance();
    let signed = governed.sign(&a).unwrap();
    put(
        "roster_good_governance",
        RosterCase {
            description: "the good roster with governance in field 7 (§10.6): a calibrated policy across providers for one model with quorum 3, ensembles of at least 4 members",
            signed: &signed,
            authority: &a,
            now,
            error: None,
            content: Some(&governed),
        },
    );
    let mut lax = calibrated_governance();
    lax.verification[1].min_quorum = 1;
    let lax_value = lax.to_value().unwrap();
    let one_witness = resign(&r, &a, |m| m.push((int(7), lax_value)));
    put(
        "roster_bad_governance_one_witness",
        RosterCase {
            description: "validly signed; its governance lets a single witness convict (min_quorum 1, §10.6 requires at least 2)",
            signed: &one_witness,
            authority: &a,
            now,
            error: Some(("malformed", "min quorum")),
            content: None,
        },
    );
    let default_value = Governance::default().to_value().unwrap();
    let explicit = resign(&r, &a, |m| m.push((int(7), default_value)));
    put(
        "roster_bad_governance_explicit_default",
        RosterCase {
            description: "validly signed; field 7 spells out the default governance, which §10.6 writes only by omission",
            signed: &explicit,
            authority: &a,
            now,
            error: Some(("malformed", "omit it")),
            content: None,
        },
    );
    let unknown = resign(&r, &a, |m| m.push((int(8), Cbor::Text("x".into()))));
    put(
        "roster_bad_unknown_field",
        RosterCase {
            description: "validly signed; the roster map has a field 8 that version 1 does not define",
            signed: &unknown,
            authority: &a,
            now,
            error: Some(("malformed", "unknown key 8")),
            content: None,
        },
    );
    let bad_role = resign(&r, &a, |m| {
        let Cbor::Array(entries) = &mut m[5].1 else {
            panic!()
        };
        let Cbor::Map(e) = &mut entries[2] else {
            panic!()
        };
        e[2].1 = int(3);
    });
    put(
        "roster_bad_unknown_role",
        RosterCase {
            description: "validly signed; an entry has role 3, which is not defined",
            signed: &bad_role,
            authority: &a,
            now,
            error: Some(("malformed", "unknown role 3")),
            content: None,
        },
    );
    let payload = r.to_cbor().unwrap();
    assert_eq!(
        &payload[..3],
        &[0xa6, 0x01, 0x01],
        "version must come first"
    );
    let mut non_det = vec![0xa6, 0x01, 0x18, 0x01];
    non_det.extend_from_slice(&payload[3..]);
    let non_det = cose::sign(non_det, ROSTER_CONTENT_TYPE, &a).unwrap();
    put(
        "roster_bad_non_deterministic",
        RosterCase {
            description: "validly signed; the payload encodes version 1 as 0x18 0x01 (not shortest form, RFC 8949 §4.2.1)",
            signed: &non_det,
            authority: &a,
            now,
            error: Some(("malformed", "not deterministically encoded")),
            content: None,
        },
    );
    let as_receipt =
        cose::sign(payload, quorate_protocol::receipt::RECEIPT_CONTENT_TYPE, &a).unwrap();
    put(
        "roster_bad_content_type",
        RosterCase {
            description: "the roster content signed by the authority as a receipt: a signature over one kind of document is never accepted as another (§4.1)",
            signed: &as_receipt,
            authority: &a,
            now,
            error: Some(("malformed", "content type")),
            content: None,
        },
    );
}
