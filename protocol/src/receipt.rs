//! Receipts (§4): a COSE_Sign1 by a node over a deterministic-CBOR map that commits to the
//! job, the model, the inputs and the outputs.

use ciborium::value::Value;
use quorate_crypto::tensor_digest::sha256;
use quorate_crypto::tensor_digest::{Digest32, SALT_LEN};
use quorate_crypto::{KeyId, SecretKey};

use crate::cbor::{self, read, read::FieldError};
use crate::cose::{self, CoseError, UncheckedSign1};
use crate::tensor::{MAX_NAME_LEN, Tensor};

/// Content type of a receipt (§4.1).
pub const RECEIPT_CONTENT_TYPE: &str = "application/vnd.quorate.receipt+cbor";
/// Format version written in field 1.
pub const RECEIPT_VERSION: u64 = 1;
/// Largest receipt accepted, in bytes.
pub const MAX_RECEIPT_LEN: usize = 64 << 10;
/// Most input or output commitments in one receipt.
pub const MAX_COMMITMENTS: usize = 64;
/// Job id length.
pub const JOB_ID_LEN: usize = 16;
/// Shortest and longest client nonce.
pub const NONCE_LEN: std::ops::RangeInclusive<usize> = 16..=64;
/// Longest provider or runtime string.
pub const MAX_LABEL_LEN: usize = 128;

mod key {
    pub const VERSION: u64 = 1;
    pub const JOB_ID: u64 = 2;
    pub const NONCE: u64 = 3;
    pub const KIND: u64 = 4;
    pub const MODEL: u64 = 5;
    pub const INPUTS: u64 = 6;
    pub const OUTPUTS: u64 = 7;
    pub const PROVIDER: u64 = 8;
    pub const RUNTIME: u64 = 9;
    pub const TIME: u64 = 10;
    pub const PREVIOUS: u64 = 11;
    pub const POLICY: u64 = 12;
    pub const ALL: [u64; 12] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
}

/// What kind of work a receipt attests (§4.3). Codes never change meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobKind {
    /// A local run (`quorate run`).
    Local,
    /// One replica of a mesh inference job.
    Infer,
    /// One stage of a pipeline job.
    Stage,
    /// A member of a private ensemble.
    EnsembleMember,
    /// A member of an encrypted (FHE) job.
    FheMember,
}

impl JobKind {
    /// The §4.3 code.
    pub fn code(self) -> u64 {
        match self {
            JobKind::Local => 1,
            JobKind::Infer => 2,
            JobKind::Stage => 3,
            JobKind::EnsembleMember => 4,
            JobKind::FheMember => 5,
        }
    }
    /// The kind of a §4.3 code.
    pub fn from_code(c: u64) -> Option<Self> {
        [
            JobKind::Local,
            JobKind::Infer,
            JobKind::Stage,
            JobKind::EnsembleMember,
            JobKind::FheMember,
        ]
        .into_iter()
        .find(|k| k.code() == c)
    }
    /// A short human name.
    pub fn name(self) -> &'static str {
        match self {
            JobKind::Local => "local",
            JobKind::Infer => "infer",
            JobKind::Stage => "stage",
            JobKind::EnsembleMember => "ensemble-member",
            JobKind::FheMember => "fhe-member",
        }
    }
}

/// A commitment to one named tensor (§4.2, fields 6 and 7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commitment {
    /// The tensor's name in the model.
    pub name: String,
    /// Its §3.2 or §3.3 digest.
    pub digest: Digest32,
    /// Whether the digest is the salted form.
    pub salted: bool,
}

impl Commitment {
    /// Commits to `tensor`, salted when `salt` is given.
    pub fn to(tensor: &Tensor, salt: Option<&[u8; SALT_LEN]>) -> Self {
        Self {
            name: tensor.name().to_string(),
            digest: tensor.digest(salt),
            salted: salt.is_some(),
        }
    }

    /// Whether a revealed tensor (and salt) matches this commitment.
    pub fn matches(&self, tensor: &Tensor, salt: Option<&[u8; SALT_LEN]>) -> bool {
        self.salted == salt.is_some() && tensor.digest(salt) == self.digest
    }
}

/// The signed content of a receipt (§4.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptPayload {
    /// Job id chosen by the client.
    pub job_id: [u8; JOB_ID_LEN],
    /// Client nonce (16 to 64 bytes).
    pub nonce: Vec<u8>,
    /// Kind of job.
    pub kind: JobKind,
    /// SHA-256 of the model file (§3.4).
    pub model_digest: Digest32,
    /// Input commitments in the model's input order.
    pub inputs: Vec<Commitment>,
    /// Output commitments in the model's output order.
    pub outputs: Vec<Commitment>,
    /// Execution provider that ran the model.
    pub provider: String,
    /// Runtime and version, e.g. `onnxruntime 1.31.1`.
    pub runtime: String,
    /// Unix time in seconds when the node signed.
    pub issued_at: u64,
    /// Digest of the previous stage's receipt (§4.5), for pipeline stages.
    pub previous: Option<Digest32>,
    /// Digest of the comparison policy (§4.2), for verified jobs.
    pub policy: Option<Digest32>,
}

/// Errors decoding or checking a receipt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    /// The COSE layer is malformed or violates the profile.
    #[error(transparent)]
    Cose(#[from] CoseError),
    /// The payload is malformed.
    #[error("payload: {0}")]
    Payload(String),
    /// Format version not understood.
    #[error("unsupported receipt version {0}")]
    Version(u64),
}

impl From<cbor::CborError> for ReceiptError {
    fn from(e: cbor::CborError) -> Self {
        ReceiptError::Payload(e.to_string())
    }
}

impl From<FieldError> for ReceiptError {
    fn from(e: FieldError) -> Self {
        ReceiptError::Payload(e.to_string())
    }
}

#[cfg(test)]
fn commitments_value(list: &[Commitment]) -> Value {
    Value::Array(
        list.iter()
            .map(|c| {
                Value::Array(vec![
                    Value::Text(c.name.clone()),
                    Value::Bytes(c.digest.to_vec()),
                    Value::Bool(c.salted),
                ])
            })
            .collect(),
    )
}

fn commitments_from(v: &Value, field: &'static str) -> Result<Vec<Commitment>, FieldError> {
    let items = read::array(v, field, MAX_COMMITMENTS)?;
    let mut out: Vec<Commitment> = Vec::with_capacity(items.len());
    for item in items {
        let parts = read::array(item, field, 3)?;
        let [name, digest, salted] = parts else {
            return Err(FieldError {
                field,
                problem: "each commitment is [name, digest, salted]".into(),
            });
        };
        let name = read::text(name, field, MAX_NAME_LEN)?;
        if name.is_empty() || out.iter().any(|c| c.name == name) {
            return Err(FieldError {
                field,
                problem: format!("empty or repeated tensor name {name:?}"),
            });
        }
        out.push(Commitment {
            name: name.to_string(),
            digest: read::bytes_n::<32>(digest, field)?,
            salted: read::boolean(salted, field)?,
        });
    }
    Ok(out)
}

impl ReceiptPayload {
    /// Deterministic CBOR encoding of the payload map (§4.2), written head by head: the keys
    /// 1 to 12 are one byte each, so their numeric order is the order of their encodings
    /// (§1.3), and the values are integers, byte and text strings, booleans and arrays of
    /// them, each written with its shortest head. Every payload signed takes this path, so it
    /// builds no value tree; a test holds it equal to the generic encoder.
    pub fn to_cbor(&self) -> Result<Vec<u8>, ReceiptError> {
        let commitments = self.inputs.len() + self.outputs.len();
        let mut out = Vec::with_capacity(200 + self.nonce.len() + 64 * commitments);
        self.write_cbor(&mut out)?;
        Ok(out)
    }

    /// Appends [`Self::to_cbor`]'s bytes to `out`, so that many payloads can share one buffer
    /// (a batch, §5.1).
    pub fn write_cbor(&self, out: &mut Vec<u8>) -> Result<(), ReceiptError> {
        use crate::cbor::write::{array, boolean, bytes, map, text, uint};
        let fields = 10 + usize::from(self.previous.is_some()) + usize::from(self.policy.is_some());
        map(out, fields);
        uint(out, key::VERSION);
        uint(out, RECEIPT_VERSION);
        uint(out, key::JOB_ID);
        bytes(out, &self.job_id);
        uint(out, key::NONCE);
        bytes(out, &self.nonce);
        uint(out, key::KIND);
        uint(out, self.kind.code());
        uint(out, key::MODEL);
        bytes(out, &self.model_digest);
        for (k, list) in [(key::INPUTS, &self.inputs), (key::OUTPUTS, &self.outputs)] {
            uint(out, k);
            array(out, list.len());
            for c in list {
                array(out, 3);
                text(out, &c.name);
                bytes(out, &c.digest);
                boolean(out, c.salted);
            }
        }
        uint(out, key::PROVIDER);
        text(out, &self.provider);
        uint(out, key::RUNTIME);
        text(out, &self.runtime);
        uint(out, key::TIME);
        uint(out, self.issued_at);
        for (k, digest) in [(key::PREVIOUS, &self.previous), (key::POLICY, &self.policy)] {
            if let Some(d) = digest {
                uint(out, k);
                bytes(out, d);
            }
        }
        Ok(())
    }

    /// The same encoding through the generic deterministic encoder (§1.3).
    #[cfg(test)]
    pub(crate) fn to_cbor_by_value(&self) -> Result<Vec<u8>, ReceiptError> {
        let mut m = vec![
            (read::int(key::VERSION), read::int(RECEIPT_VERSION)),
            (read::int(key::JOB_ID), Value::Bytes(self.job_id.to_vec())),
            (read::int(key::NONCE), Value::Bytes(self.nonce.clone())),
            (read::int(key::KIND), read::int(self.kind.code())),
            (
                read::int(key::MODEL),
                Value::Bytes(self.model_digest.to_vec()),
            ),
            (read::int(key::INPUTS), commitments_value(&self.inputs)),
            (read::int(key::OUTPUTS), commitments_value(&self.outputs)),
            (read::int(key::PROVIDER), Value::Text(self.provider.clone())),
            (read::int(key::RUNTIME), Value::Text(self.runtime.clone())),
            (read::int(key::TIME), read::int(self.issued_at)),
        ];
        if let Some(p) = self.previous {
            m.push((read::int(key::PREVIOUS), Value::Bytes(p.to_vec())));
        }
        if let Some(p) = self.policy {
            m.push((read::int(key::POLICY), Value::Bytes(p.to_vec())));
        }
        Ok(cbor::encode(&Value::Map(m))?)
    }

    /// Strict decoding: deterministic CBOR, known keys only, every field bounded.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, ReceiptError> {
        let value = cbor::decode_deterministic(bytes, MAX_RECEIPT_LEN)?;
        let entries = read::int_map(&value, "payload", &key::ALL)?;
        let get = |k: u64| entries.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        let need = |k: u64, name: &'static str| {
            get(k).ok_or_else(|| ReceiptError::Payload(format!("field {name} ({k}) is missing")))
        };
        let version = read::uint(need(key::VERSION, "version")?, "version")?;
        if version != RECEIPT_VERSION {
            return Err(ReceiptError::Version(version));
        }
        let kind_code = read::uint(need(key::KIND, "kind")?, "kind")?;
        let kind = JobKind::from_code(kind_code).ok_or_else(|| {
            ReceiptError::Payload(format!("field kind: unknown job kind {kind_code}"))
        })?;
        Ok(Self {
            job_id: read::bytes_n(need(key::JOB_ID, "job id")?, "job id")?,
            nonce: read::bytes_range(
                need(key::NONCE, "nonce")?,
                "nonce",
                *NONCE_LEN.start(),
                *NONCE_LEN.end(),
            )?
            .to_vec(),
            kind,
            model_digest: read::bytes_n(need(key::MODEL, "model")?, "model")?,
            inputs: commitments_from(need(key::INPUTS, "inputs")?, "inputs")?,
            outputs: commitments_from(need(key::OUTPUTS, "outputs")?, "outputs")?,
            provider: read::text(need(key::PROVIDER, "provider")?, "provider", MAX_LABEL_LEN)?
                .to_string(),
            runtime: read::text(need(key::RUNTIME, "runtime")?, "runtime", MAX_LABEL_LEN)?
                .to_string(),
            issued_at: read::uint(need(key::TIME, "time")?, "time")?,
            previous: get(key::PREVIOUS)
                .map(|v| read::bytes_n(v, "previous"))
                .transpose()?,
            policy: get(key::POLICY)
                .map(|v| read::bytes_n(v, "policy"))
                .transpose()?,
        })
    }

    /// Looks a commitment up by tensor name among inputs and outputs.
    pub fn commitment(&self, name: &str) -> Option<&Commitment> {
        self.inputs
            .iter()
            .chain(&self.outputs)
            .find(|c| c.name == name)
    }

    /// Signs the payload into a receipt (§4.1).
    pub fn sign(&self, key: &SecretKey) -> Result<Vec<u8>, ReceiptError> {
        Ok(cose::sign(self.to_cbor()?, RECEIPT_CONTENT_TYPE, key)?)
    }

    /// The payload encoded (§4.2), to be signed later, alone or in a batch (§12.4.2).
    pub fn encode(&self) -> Result<EncodedPayload, ReceiptError> {
        Ok(EncodedPayload(self.to_cbor()?))
    }
}

/// A payload's deterministic encoding (§4.2), made only by [`ReceiptPayload::encode`], so
/// whatever signs it later signs a well-formed payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedPayload(Vec<u8>);

impl EncodedPayload {
    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Signs it into a single receipt (§4.1): the bytes [`ReceiptPayload::sign`] gives.
    pub fn sign(&self, key: &SecretKey) -> Result<Vec<u8>, ReceiptError> {
        Ok(cose::sign(self.0.clone(), RECEIPT_CONTENT_TYPE, key)?)
    }
}

/// A receipt whose structure and payload are valid but whose signature is not yet checked.
#[derive(Debug, Clone)]
pub struct UncheckedReceipt {
    /// The COSE layer (key id, signed bytes, signature).
    pub sign1: UncheckedSign1,
    /// The decoded payload.
    pub payload: ReceiptPayload,
}

impl UncheckedReceipt {
    /// The signer's key id.
    pub fn kid(&self) -> KeyId {
        self.sign1.kid
    }
}

/// Parses a single receipt strictly (§4.4 steps 1–4).
pub fn parse(bytes: &[u8]) -> Result<UncheckedReceipt, ReceiptError> {
    let sign1 = cose::parse_receipt(bytes, RECEIPT_CONTENT_TYPE, MAX_RECEIPT_LEN)?;
    let payload = ReceiptPayload::from_cbor(&sign1.payload)?;
    Ok(UncheckedReceipt { sign1, payload })
}

/// The digest of a receipt (§4.5): SHA-256 over the receipt's bytes as signed, that is
/// without the inclusion receipts of header 394 (§18.1), so attaching them later changes
/// neither chains nor evidence. Bytes that are not a receipt are hashed as they are.
pub fn receipt_digest(bytes: &[u8]) -> Digest32 {
    match crate::tlog::leaf_bytes(bytes) {
        Ok(leaf) => sha256(&leaf),
        Err(_) => sha256(bytes),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn commitment() -> impl Strategy<Value = Commitment> {
        ("[a-z]{1,8}|.{0,30}", any::<[u8; 32]>(), any::<bool>()).prop_map(
            |(name, digest, salted)| Commitment {
                name,
                digest,
                salted,
            },
        )
    }

    fn payload() -> impl Strategy<Value = ReceiptPayload> {
        (
            (
                any::<[u8; 16]>(),
                proptest::collection::vec(any::<u8>(), 16..=64),
                0usize..5,
                any::<[u8; 32]>(),
            ),
            (
                proptest::collection::vec(commitment(), 0..4),
                proptest::collection::vec(commitment(), 0..30),
                ".{0,80}",
                ".{0,80}",
            ),
            (
                any::<u64>(),
                proptest::option::of(any::<[u8; 32]>()),
                proptest::option::of(any::<[u8; 32]>()),
            ),
        )
            .prop_map(
                |(
                    (job_id, nonce, kind, model_digest),
                    (inputs, outputs, provider, runtime),
                    (issued_at, previous, policy),
                )| ReceiptPayload {
                    job_id,
                    nonce,
                    kind: [
                        JobKind::Local,
                        JobKind::Infer,
                        JobKind::Stage,
                        JobKind::EnsembleMember,
                        JobKind::FheMember,
                    ][kind],
                    model_digest,
                    inputs,
                    outputs,
                    provider,
                    runtime,
                    issued_at,
                    previous,
                    policy,
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        /// The head-by-head encoding is byte for byte the generic deterministic encoder's, and
        /// strict decoding gives the payload back.
        #[test]
        fn direct_encoding_is_the_deterministic_encoding(p in payload()) {
            let direct = p.to_cbor().unwrap();
            prop_assert_eq!(&direct, &p.to_cbor_by_value().unwrap());
            // Appended after other bytes (a batch's shared buffer), it is the same encoding.
            let mut shared = vec![0xa5; 3];
            p.write_cbor(&mut shared).unwrap();
            prop_assert_eq!(&shared[3..], &direct[..]);
            // Payloads the strict decoder accepts (names unique and bounded, §4.2) come back.
            if let Ok(back) = ReceiptPayload::from_cbor(&direct) {
                prop_assert_eq!(back, p);
            }
        }
    }
}
