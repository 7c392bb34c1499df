//! The COSE Receipt shape shared by inclusion and consistency receipts (§18.4, §18.5;
//! RFC 9942): a tagged COSE_Sign1 with a detached payload, the Merkle root the verifier
//! recomputes from the proof.

use ciborium::value::{Integer, Value};
use quorate_crypto::tensor_digest::Digest32;
use quorate_crypto::{KeyId, SecretKey};

use super::{
    HEADER_ISSUED_AT, HEADER_OLD_ROOT, HEADER_OLD_SIZE, HEADER_TREE_SIZE, HEADER_VDP, HEADER_VDS,
    MAX_COSE_RECEIPT_LEN, TlogError, VDP_CONSISTENCY, VDP_INCLUSION, VDS_RFC9162_SHA256,
};
use crate::cbor;
use crate::cose::{ALG_ED25519, ALG_EDDSA};

const COSE_SIGN1_TAG: u64 = 18;
const LABEL_ALG: i64 = 1;
const LABEL_KID: i64 = 4;

/// Which proof a COSE receipt carries in header 396.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProofKind {
    /// `vdp` key -1 (§18.4).
    Inclusion,
    /// `vdp` key -2 (§18.5).
    Consistency,
}

impl ProofKind {
    fn vdp_key(self) -> i64 {
        match self {
            ProofKind::Inclusion => VDP_INCLUSION,
            ProofKind::Consistency => VDP_CONSISTENCY,
        }
    }
    fn name(self) -> &'static str {
        match self {
            ProofKind::Inclusion => "inclusion",
            ProofKind::Consistency => "consistency",
        }
    }
}

/// A structurally valid COSE receipt whose proof and signature are not yet checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UncheckedCoseReceipt {
    /// The signer's key id, which is the log id.
    pub kid: KeyId,
    /// `alg`: EdDSA (-8) or Ed25519 (-19).
    pub alg: i64,
    /// The size of the tree whose root is the detached payload.
    pub tree_size: u64,
    /// Unix seconds when the node signed.
    pub issued_at: u64,
    /// Consistency receipts only: the older tree's size and root, both signed (§18.5).
    pub old: Option<(u64, Digest32)>,
    /// The bytes of the single proof in header 396.
    pub proof: Vec<u8>,
    /// The signature bytes (64).
    pub signature: Vec<u8>,
    protected: Vec<u8>,
}

impl UncheckedCoseReceipt {
    /// RFC 9052 `Sig_structure` with the detached payload `root` (§18.4).
    pub fn to_be_signed(&self, root: &Digest32) -> Result<Vec<u8>, TlogError> {
        sig_structure(&self.protected, root)
    }
}

fn sig_structure(protected: &[u8], root: &Digest32) -> Result<Vec<u8>, TlogError> {
    Ok(cbor::encode(&Value::Array(vec![
        Value::Text("Signature1".into()),
        Value::Bytes(protected.to_vec()),
        Value::Bytes(Vec::new()),
        Value::Bytes(root.to_vec()),
    ]))?)
}

fn int(i: i64) -> Value {
    Value::Integer(Integer::from(i))
}

/// What the signer puts in the protected header besides alg, kid and vds.
pub(super) struct Binding {
    pub tree_size: u64,
    pub issued_at: u64,
    pub old: Option<(u64, Digest32)>,
}

/// Signs `root` as a COSE receipt carrying `proof` under `kind` (§18.4, §18.5).
pub(super) fn sign(
    binding: &Binding,
    kind: ProofKind,
    proof: Vec<u8>,
    root: &Digest32,
    key: &SecretKey,
) -> Result<Vec<u8>, TlogError> {
    sign_statement(binding, root, key)?.receipt(kind, proof)
}

/// The node's signature over "the tree of `tree size` leaves has root `root`" (§18.4): the
/// protected header and the signature of a COSE receipt, which cover the root and not the
/// proof. One statement serves every leaf of that tree: each leaf's inclusion receipt is the
/// statement with that leaf's proof in the unprotected header (§18.11.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedStatement {
    protected: Vec<u8>,
    signature: Vec<u8>,
}

impl SignedStatement {
    /// The COSE receipt of this statement carrying `proof` under `kind`.
    pub(super) fn receipt(&self, kind: ProofKind, proof: Vec<u8>) -> Result<Vec<u8>, TlogError> {
        let vdp = Value::Map(vec![(
            int(kind.vdp_key()),
            Value::Array(vec![Value::Bytes(proof)]),
        )]);
        Ok(cbor::encode(&Value::Tag(
            COSE_SIGN1_TAG,
            Box::new(Value::Array(vec![
                Value::Bytes(self.protected.clone()),
                Value::Map(vec![(int(HEADER_VDP), vdp)]),
                Value::Null,
                Value::Bytes(self.signature.clone()),
            ])),
        ))?)
    }
}

/// Signs the statement of `binding` about `root` (§18.4, §18.5).
pub(super) fn sign_statement(
    binding: &Binding,
    root: &Digest32,
    key: &SecretKey,
) -> Result<SignedStatement, TlogError> {
    let mut protected = vec![
        (int(LABEL_ALG), int(ALG_EDDSA)),
        (
            int(LABEL_KID),
            Value::Bytes(key.public_key().key_id().0.to_vec()),
        ),
        (int(HEADER_VDS), int(VDS_RFC9162_SHA256)),
        (int(HEADER_TREE_SIZE), cbor::read::int(binding.tree_size)),
        (int(HEADER_ISSUED_AT), cbor::read::int(binding.issued_at)),
    ];
    if let Some((size, old_root)) = binding.old {
        protected.push((int(HEADER_OLD_SIZE), cbor::read::int(size)));
        protected.push((int(HEADER_OLD_ROOT), Value::Bytes(old_root.to_vec())));
    }
    let protected = cbor::encode(&Value::Map(protected))?;
    let signature = key.sign(&sig_structure(&protected, root)?);
    Ok(SignedStatement {
        protected,
        signature: signature.0.to_vec(),
    })
}

fn label(k: &Value) -> Option<i64> {
    match k {
        Value::Integer(i) => i64::try_from(i128::from(*i)).ok(),
        _ => None,
    }
}

fn header(m: impl Into<String>) -> TlogError {
    TlogError::Header(m.into())
}

fn uint(v: &Value, what: &str) -> Result<u64, TlogError> {
    match v {
        Value::Integer(i) => u64::try_from(*i).map_err(|_| header(format!("{what}: not a uint"))),
        _ => Err(header(format!("{what}: not a uint"))),
    }
}

/// Strict decoding of a COSE receipt carrying one proof of `kind` (§18.8.2 steps 1–4).
pub(super) fn parse(bytes: &[u8], kind: ProofKind) -> Result<UncheckedCoseReceipt, TlogError> {
    let value = cbor::decode_deterministic(bytes, MAX_COSE_RECEIPT_LEN)?;
    let structure = |m: &str| TlogError::Structure(m.to_string());
    let Value::Tag(COSE_SIGN1_TAG, inner) = value else {
        return Err(structure("not a tagged COSE_Sign1 (tag 18)"));
    };
    let Value::Array(parts) = *inner else {
        return Err(structure("COSE_Sign1 must be an array"));
    };
    let [
        Value::Bytes(protected),
        Value::Map(unprotected),
        payload,
        Value::Bytes(signature),
    ] = <[Value; 4]>::try_from(parts).map_err(|_| structure("COSE_Sign1 has four elements"))?
    else {
        return Err(structure("COSE_Sign1 is [bstr, map, payload, bstr]"));
    };
    if payload != Value::Null {
        return Err(structure(
            "the payload must be detached (nil): it is the root",
        ));
    }
    if signature.len() != 64 {
        return Err(structure("an Ed25519 signature is 64 bytes"));
    }
    let mut out = parse_protected(&protected, kind)?;
    out.proof = parse_unprotected(&unprotected, kind)?;
    out.signature = signature;
    out.protected = protected;
    Ok(out)
}

fn parse_protected(bytes: &[u8], kind: ProofKind) -> Result<UncheckedCoseReceipt, TlogError> {
    let Value::Map(entries) = cbor::decode_deterministic(bytes, MAX_COSE_RECEIPT_LEN)? else {
        return Err(header("the protected header must be a map"));
    };
    let mut allowed = vec![
        LABEL_ALG,
        LABEL_KID,
        HEADER_VDS,
        HEADER_TREE_SIZE,
        HEADER_ISSUED_AT,
    ];
    if kind == ProofKind::Consistency {
        allowed.extend([HEADER_OLD_SIZE, HEADER_OLD_ROOT]);
    }
    if entries.len() != allowed.len() {
        return Err(header(format!(
            "the protected header of a {} receipt holds exactly the labels {allowed:?}",
            kind.name()
        )));
    }
    let get = |l: i64| -> Result<Value, TlogError> {
        entries
            .iter()
            .find(|(k, _)| label(k) == Some(l))
            .map(|(_, v)| v.clone())
            .ok_or_else(|| header(format!("protected header label {l} is missing")))
    };
    let vds = match get(HEADER_VDS)? {
        Value::Integer(i) => i64::try_from(i128::from(i)).unwrap_or(i64::MIN),
        _ => return Err(header("vds must be an integer")),
    };
    if vds != VDS_RFC9162_SHA256 {
        return Err(TlogError::Vds(vds));
    }
    let alg = match get(LABEL_ALG)? {
        Value::Integer(i) => i64::try_from(i128::from(i)).unwrap_or(0),
        _ => 0,
    };
    if alg != ALG_EDDSA && alg != ALG_ED25519 {
        return Err(header(format!(
            "alg {alg} is not EdDSA (-8) or Ed25519 (-19)"
        )));
    }
    let kid = match get(LABEL_KID)? {
        Value::Bytes(b) => KeyId::from_slice(&b),
        _ => None,
    }
    .ok_or_else(|| header("kid must be a 16-byte key id"))?;
    let old = match kind {
        ProofKind::Inclusion => None,
        ProofKind::Consistency => {
            let size = uint(&get(HEADER_OLD_SIZE)?, "old tree size")?;
            let root = match get(HEADER_OLD_ROOT)? {
                Value::Bytes(b) => <[u8; 32]>::try_from(b.as_slice()).ok(),
                _ => None,
            }
            .ok_or_else(|| header("old root must be 32 bytes"))?;
            Some((size, root))
        }
    };
    Ok(UncheckedCoseReceipt {
        kid,
        alg,
        tree_size: uint(&get(HEADER_TREE_SIZE)?, "tree size")?,
        issued_at: uint(&get(HEADER_ISSUED_AT)?, "issued at")?,
        old,
        proof: Vec::new(),
        signature: Vec::new(),
        protected: Vec::new(),
    })
}

/// The unprotected header is exactly `{396: {kind: [bstr]}}` (§18.4).
fn parse_unprotected(entries: &[(Value, Value)], kind: ProofKind) -> Result<Vec<u8>, TlogError> {
    let missing = TlogError::MissingProof(kind.name());
    let vdp = match entries {
        [] => return Err(missing),
        [(k, v)] if label(k) == Some(HEADER_VDP) => v,
        _ => return Err(header("the unprotected header holds only 396 (vdp)")),
    };
    let Value::Map(proofs) = vdp else {
        return Err(header("vdp must be a map"));
    };
    match proofs.as_slice() {
        [(k, Value::Array(list))] if label(k) == Some(kind.vdp_key()) => match list.as_slice() {
            [Value::Bytes(proof)] => Ok(proof.clone()),
            _ => Err(header("vdp holds exactly one proof, as a byte string")),
        },
        [] => Err(missing),
        [(k, _)] if label(k).is_some_and(|l| l == VDP_INCLUSION || l == VDP_CONSISTENCY) => {
            Err(missing)
        }
        _ => Err(header(
            "vdp holds one entry, -1 (inclusion) or -2 (consistency)",
        )),
    }
}
