//! Evidence bundles (§14.6) and their offline check (§14.7).
//!
//! A bundle gathers, for one verified job, each replica's signed receipt with the outputs it
//! revealed (and their salts), the policy, the quorum and the nodes its author accuses. The
//! check trusts nothing the author says: it re-verifies every signature and commitment and
//! recomputes who is proven wrong from the signed statements alone.

use ciborium::value::Value;
use quorate_crypto::tensor_digest::{Digest32, SALT_LEN};
use quorate_crypto::{KeyId, PublicKey};

use crate::cbor::{self, read};
use crate::governance::{Governance, Scope};
use crate::messages::common::{MAX_TENSORS, tensor_from, tensor_value};
use crate::policy::{Policy, PolicyError};
use crate::receipt::{self, JOB_ID_LEN, JobKind, MAX_RECEIPT_LEN, ReceiptPayload};
use crate::tensor::Tensor;
use crate::verified_job::{MAX_REPLICAS, proven_wrong_by};

/// Content type in field 1 of every bundle; also how a file is recognised as one.
pub const BUNDLE_CONTENT_TYPE: &str = "application/vnd.quorate.evidence+cbor";
/// Bundle format version (field 2).
pub const BUNDLE_VERSION: u64 = 1;
/// Largest bundle accepted, in bytes.
pub const MAX_BUNDLE_LEN: usize = 64 << 20;
/// Most entries (replica results) in one bundle.
pub const MAX_ENTRIES: usize = MAX_REPLICAS;

/// One replica's signed result as revealed by the client.
#[derive(Clone, Debug, PartialEq)]
pub struct BundleEntry {
    /// The replica's receipt, as received.
    pub receipt: Vec<u8>,
    /// The outputs it returned, in the receipt's output order.
    pub outputs: Vec<Tensor>,
    /// Their salts (when the commitments are salted).
    pub salts: Option<Vec<[u8; SALT_LEN]>>,
}

/// An evidence bundle (§14.6).
#[derive(Clone, Debug, PartialEq)]
pub struct Bundle {
    /// The job's comparison policy; its digest is in every receipt.
    pub policy: Policy,
    /// The job's quorum (the check uses at least 2).
    pub quorum: u64,
    /// One entry per replica that answered.
    pub entries: Vec<BundleEntry>,
    /// Key ids the author accuses (a claim, re-checked, never trusted).
    pub accused: Vec<KeyId>,
}

/// Why a bundle is invalid as a whole (§14.7): nothing in it convicts anyone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// Not a well-formed bundle.
    #[error("malformed bundle: {0}")]
    Malformed(String),
    /// A receipt is signed by a key the verifier does not trust.
    #[error("entry {entry}: signer {kid} is not a trusted node")]
    UnknownKey {
        /// Entry index.
        entry: usize,
        /// Its key id.
        kid: KeyId,
    },
    /// A receipt's signature does not verify.
    #[error("entry {entry}: bad signature by {kid}: the receipt was altered")]
    BadSignature {
        /// Entry index.
        entry: usize,
        /// Its key id.
        kid: KeyId,
    },
    /// The revealed outputs do not match the receipt's commitments.
    #[error("entry {entry}: revealed outputs do not match the commitments signed by {kid}")]
    TensorMismatch {
        /// Entry index.
        entry: usize,
        /// Its key id.
        kid: KeyId,
    },
    /// The receipts are not about one and the same job.
    #[error("entry {entry}: {what} differs from the first receipt: not the same job")]
    NotSameJob {
        /// Entry index.
        entry: usize,
        /// The field that differs.
        what: &'static str,
    },
}

impl From<cbor::CborError> for BundleError {
    fn from(e: cbor::CborError) -> Self {
        BundleError::Malformed(e.to_string())
    }
}
impl From<read::FieldError> for BundleError {
    fn from(e: read::FieldError) -> Self {
        BundleError::Malformed(e.to_string())
    }
}
impl From<PolicyError> for BundleError {
    fn from(e: PolicyError) -> Self {
        BundleError::Malformed(e.to_string())
    }
}
impl From<crate::messages::MessageError> for BundleError {
    fn from(e: crate::messages::MessageError) -> Self {
        BundleError::Malformed(e.to_string())
    }
}

impl BundleError {
    /// Stable machine-readable code (§14.7).
    pub fn code(&self) -> &'static str {
        match self {
            BundleError::Malformed(_) => "malformed",
            BundleError::UnknownKey { .. } => "unknown_key",
            BundleError::BadSignature { .. } => "bad_signature",
            BundleError::TensorMismatch { .. } => "tensor_mismatch",
            BundleError::NotSameJob { .. } => "not_same_job",
        }
    }
}

/// What a valid bundle proves (§14.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleReport {
    /// The job.
    pub job_id: [u8; JOB_ID_LEN],
    /// The model.
    pub model: Digest32,
    /// The policy as given.
    pub policy: String,
    /// Witnesses needed to convict: the bundle's quorum, raised to the roster's minimum and
    /// to at least 2.
    pub quorum: usize,
    /// What the governance allows for this bundle (§10.6).
    pub governance: GovernanceCheck,
    /// Every signer, in entry order.
    pub signers: Vec<KeyId>,
    /// Signers proven wrong by their own signed outputs.
    pub convicted: Vec<KeyId>,
    /// Signers the author accuses that the bundle does not prove wrong, with the reason.
    pub unproven: Vec<Unproven>,
}

/// The governance that applies to a bundle (§10.6, §14.7 step 5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GovernanceCheck {
    /// The witness scope of the policy's grant, when the roster grants it for the model.
    pub scope: Option<Scope>,
    /// The rule's minimum quorum.
    pub min_quorum: u64,
    /// Why the bundle can convict nobody under the governance, if it cannot: policy not
    /// granted, or quorum below the roster minimum.
    pub refusal: Option<String>,
}

/// An accusation the bundle does not prove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unproven {
    /// The accused key id.
    pub kid: KeyId,
    /// Stable machine-readable reason (§14.7): `policy_not_granted`, `quorum_below_minimum`,
    /// `too_few_witnesses`, `not_outvoted` or `not_a_signer`.
    pub code: &'static str,
    /// Why the accusation is not proven, for people.
    pub reason: String,
}

/// Who a set of signed results proves wrong under the mesh's governance (§14.7 step 5): the
/// shared judgement of the offline checker and of the client that writes the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    /// The governance that applies.
    pub governance: GovernanceCheck,
    /// Witnesses needed: `max(quorum, min_quorum, 2)`.
    pub threshold: usize,
    /// Indices of the results proven wrong.
    pub convicted: Vec<usize>,
    /// For each result not proven wrong, why: a code of [`Unproven::code`] and a sentence
    /// (by index; `None` for the convicted).
    pub reasons: Vec<Option<(&'static str, String)>>,
}

/// Judges results of one job on `model` under `policy` with `quorum`: `outputs[i]` were
/// signed by a node that ran on `envs[i]` = (provider, runtime) (receipt fields 8 and 9).
///
/// A result `x` is proven wrong only when the roster grants `policy` for `model`, `quorum` is
/// at least the rule's min_quorum, and at least `max(quorum, min_quorum, 2)` other results
/// that the grant's scope admits against `x` agree pairwise and each disagrees with `x`.
pub fn judge(
    governance: &Governance,
    model: &Digest32,
    policy: &Policy,
    quorum: u64,
    outputs: &[&[Tensor]],
    envs: &[(&str, &str)],
) -> Judgement {
    let n = outputs.len();
    let (scope, min_quorum, refusal) = match governance.grant(model, policy) {
        Err(e) => (
            None,
            governance
                .rule_for(model)
                .map_or(crate::governance::MIN_QUORUM, |r| r.min_quorum),
            Some((
                "policy_not_granted",
                format!("policy not granted by the roster: {e}"),
            )),
        ),
        Ok((grant, min)) => {
            let refusal = governance.check_quorum(model, quorum).err().map(|e| {
                (
                    "quorum_below_minimum",
                    format!("quorum below the roster minimum: {e}"),
                )
            });
            (Some(grant.scope), min, refusal)
        }
    };
    let threshold = usize::try_from(quorum.max(min_quorum))
        .unwrap_or(usize::MAX)
        .max(2);
    let check = GovernanceCheck {
        scope,
        min_quorum,
        refusal: refusal.as_ref().map(|(_, why)| why.clone()),
    };
    let scope = match (scope, refusal) {
        (Some(scope), None) => scope,
        (_, refusal) => {
            let why = refusal.unwrap_or(("policy_not_granted", String::new()));
            return Judgement {
                governance: check,
                threshold,
                convicted: Vec::new(),
                reasons: vec![Some(why); n],
            };
        }
    };
    let env = |i: usize| envs.get(i).copied().unwrap_or(("", ""));
    let admits = |j: usize, x: usize| scope.admits(env(j), env(x));
    let convicted = proven_wrong_by(policy, outputs, threshold, &admits);
    let reasons = (0..n)
        .map(|x| {
            if convicted.contains(&x) {
                return None;
            }
            let witnesses = (0..n).filter(|&j| j != x && admits(j, x)).count();
            let (provider, runtime) = env(x);
            let plural = if witnesses == 1 { "" } else { "es" };
            Some(match scope {
                Scope::SameProvider if witnesses < threshold => (
                    "too_few_witnesses",
                    format!(
                        "only {witnesses} witness{plural} of the accused's provider and runtime ({provider}, {runtime}); {threshold} needed (scope same_provider)"
                    ),
                ),
                Scope::AnyProvider if witnesses < threshold => (
                    "too_few_witnesses",
                    format!("only {witnesses} other witness{plural}; {threshold} needed"),
                ),
                _ => (
                    "not_outvoted",
                    format!(
                        "no {threshold} admitted witnesses agree with each other and disagree with it (scope {})",
                        scope.name()
                    ),
                ),
            })
        })
        .collect();
    Judgement {
        governance: check,
        threshold,
        convicted,
        reasons,
    }
}

/// Whether `bytes` look like a bundle (field 1 holds the bundle content type): cheap, for
/// telling files apart before the strict decode.
pub fn looks_like_bundle(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(64)];
    head.first().is_some_and(|b| b & 0xe0 == 0xa0)
        && head
            .windows(BUNDLE_CONTENT_TYPE.len())
            .any(|w| w == BUNDLE_CONTENT_TYPE.as_bytes())
}

impl Bundle {
    /// Deterministic CBOR encoding (§14.6).
    pub fn encode(&self) -> Result<Vec<u8>, BundleError> {
        let entries = self
            .entries
            .iter()
            .map(|e| {
                Value::Array(vec![
                    Value::Bytes(e.receipt.clone()),
                    Value::Array(e.outputs.iter().map(tensor_value).collect()),
                    match &e.salts {
                        None => Value::Null,
                        Some(s) => {
                            Value::Array(s.iter().map(|s| Value::Bytes(s.to_vec())).collect())
                        }
                    },
                ])
            })
            .collect();
        let m = vec![
            (read::int(1), Value::Text(BUNDLE_CONTENT_TYPE.into())),
            (read::int(2), read::int(BUNDLE_VERSION)),
            (read::int(3), Value::Bytes(self.policy.to_cbor()?)),
            (read::int(4), read::int(self.quorum)),
            (read::int(5), Value::Array(entries)),
            (
                read::int(6),
                Value::Array(
                    self.accused
                        .iter()
                        .map(|k| Value::Bytes(k.0.to_vec()))
                        .collect(),
                ),
            ),
        ];
        Ok(cbor::encode(&Value::Map(m))?)
    }

    /// Strict decoding: deterministic CBOR, every field present and bounded.
    pub fn decode(bytes: &[u8]) -> Result<Self, BundleError> {
        let v = cbor::decode_deterministic(bytes, MAX_BUNDLE_LEN)?;
        let f = read::int_map(&v, "bundle", &[1, 2, 3, 4, 5, 6])?;
        if f.len() != 6 {
            return Err(BundleError::Malformed("fields 1 to 6 are required".into()));
        }
        // int_map returns entries in key order; all six are present.
        let field = |k: u64| f[(k - 1) as usize].1;
        if read::text(field(1), "content type", 64)? != BUNDLE_CONTENT_TYPE {
            return Err(BundleError::Malformed("not an evidence bundle".into()));
        }
        let version = read::uint(field(2), "version")?;
        if version != BUNDLE_VERSION {
            return Err(BundleError::Malformed(format!(
                "unsupported bundle version {version}"
            )));
        }
        let policy = Policy::from_cbor(read::bytes_range(field(3), "policy", 1, 256)?)?;
        let quorum = read::uint(field(4), "quorum")?;
        let mut entries = Vec::new();
        for e in read::array(field(5), "entries", MAX_ENTRIES)? {
            let [receipt, outputs, salts] = read::array(e, "entry", 3)? else {
                return Err(BundleError::Malformed(
                    "an entry is [receipt, outputs, salts]".into(),
                ));
            };
            let outputs = read::array(outputs, "outputs", MAX_TENSORS)?
                .iter()
                .map(tensor_from)
                .collect::<Result<Vec<_>, _>>()?;
            let salts = match salts {
                Value::Null => None,
                s => Some(
                    read::array(s, "salts", MAX_TENSORS)?
                        .iter()
                        .map(|s| read::bytes_n(s, "salt"))
                        .collect::<Result<Vec<_>, _>>()?,
                ),
            };
            entries.push(BundleEntry {
                receipt: read::bytes_range(receipt, "receipt", 1, MAX_RECEIPT_LEN)?.to_vec(),
                outputs,
                salts,
            });
        }
        let accused = read::array(field(6), "accused", MAX_ENTRIES)?
            .iter()
            .map(|k| read::bytes_n(k, "accused").map(KeyId))
            .collect::<Result<Vec<_>, _>>()?;
        if quorum == 0 || quorum > entries.len().max(1) as u64 {
            return Err(BundleError::Malformed(format!(
                "quorum {quorum} is not between 1 and the {} entries",
                entries.len()
            )));
        }
        Ok(Self {
            policy,
            quorum,
            entries,
            accused,
        })
    }
}

fn same_job(a: &ReceiptPayload, b: &ReceiptPayload) -> Option<&'static str> {
    if a.job_id != b.job_id {
        Some("job id")
    } else if a.nonce != b.nonce {
        Some("nonce")
    } else if a.kind != b.kind {
        Some("job kind")
    } else if a.model_digest != b.model_digest {
        Some("model")
    } else if a.inputs != b.inputs {
        Some("input commitments")
    } else if a.previous != b.previous {
        Some("previous receipt")
    } else if a.policy != b.policy {
        Some("policy")
    } else {
        None
    }
}

/// Checks a bundle offline (§14.7) and returns who it proves wrong under `governance` (the
/// roster's, §10.6). `trust` maps a key id to the node key the verifier trusts (e.g. from the
/// roster); an unknown signer invalidates the bundle, as does any bad signature, mismatched
/// tensor, or receipt of another job.
pub fn check_bundle(
    bundle: &Bundle,
    trust: &dyn Fn(&KeyId) -> Option<PublicKey>,
    governance: &Governance,
) -> Result<BundleReport, BundleError> {
    let policy_digest = bundle.policy.digest()?;
    let mut payloads: Vec<ReceiptPayload> = Vec::new();
    let mut signers: Vec<KeyId> = Vec::new();
    for (i, e) in bundle.entries.iter().enumerate() {
        let r = receipt::parse(&e.receipt)
            .map_err(|err| BundleError::Malformed(format!("entry {i}: receipt: {err}")))?;
        let kid = r.kid();
        let key = trust(&kid).ok_or(BundleError::UnknownKey { entry: i, kid })?;
        r.sign1
            .verify(&key)
            .map_err(|_| BundleError::BadSignature { entry: i, kid })?;
        if signers.contains(&kid) {
            return Err(BundleError::Malformed(format!(
                "entry {i}: {kid} signs twice; one entry per node"
            )));
        }
        let p = r.payload;
        if !matches!(p.kind, JobKind::Infer | JobKind::Stage) {
            return Err(BundleError::Malformed(format!(
                "entry {i}: a {} receipt is not a replica of a verified job",
                p.kind.name()
            )));
        }
        if p.policy != Some(policy_digest) {
            return Err(BundleError::NotSameJob {
                entry: i,
                what: "policy",
            });
        }
        if let Some(first) = payloads.first()
            && let Some(what) = same_job(first, &p)
        {
            return Err(BundleError::NotSameJob { entry: i, what });
        }
        let salt = |j: usize| e.salts.as_ref().and_then(|s| s.get(j));
        let salts_ok = e.salts.as_ref().is_none_or(|s| s.len() == e.outputs.len());
        if !salts_ok
            || p.outputs.len() != e.outputs.len()
            || p.outputs
                .iter()
                .zip(&e.outputs)
                .enumerate()
                .any(|(j, (c, t))| c.name != t.name() || !c.matches(t, salt(j)))
        {
            return Err(BundleError::TensorMismatch { entry: i, kid });
        }
        signers.push(kid);
        payloads.push(p);
    }
    let first = payloads
        .first()
        .ok_or_else(|| BundleError::Malformed("a bundle holds at least one entry".into()))?;
    let outputs: Vec<&[Tensor]> = bundle
        .entries
        .iter()
        .map(|e| e.outputs.as_slice())
        .collect();
    let envs: Vec<(&str, &str)> = payloads
        .iter()
        .map(|p| (p.provider.as_str(), p.runtime.as_str()))
        .collect();
    let j = judge(
        governance,
        &first.model_digest,
        &bundle.policy,
        bundle.quorum,
        &outputs,
        &envs,
    );
    let convicted: Vec<KeyId> = j.convicted.iter().map(|&i| signers[i]).collect();
    let unproven = bundle
        .accused
        .iter()
        .filter(|k| !convicted.contains(k))
        .map(|k| {
            let (code, reason) = signers
                .iter()
                .position(|s| s == k)
                .and_then(|i| j.reasons[i].clone())
                .unwrap_or(("not_a_signer", "not a signer of the bundle".to_string()));
            Unproven {
                kid: *k,
                code,
                reason,
            }
        })
        .collect();
    Ok(BundleReport {
        job_id: first.job_id,
        model: first.model_digest,
        policy: bundle.policy.describe(),
        quorum: j.threshold,
        governance: j.governance,
        unproven,
        signers,
        convicted,
    })
}

/// Decodes and checks in one call.
pub fn check_bundle_bytes(
    bytes: &[u8],
    trust: &dyn Fn(&KeyId) -> Option<PublicKey>,
    governance: &Governance,
) -> Result<BundleReport, BundleError> {
    check_bundle(&Bundle::decode(bytes)?, trust, governance)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::governance::{Grant, VerificationRule};
    use crate::receipt::Commitment;
    use quorate_crypto::SecretKey;

    /// The default governance, also granting `policy` with `scope`.
    fn granting(policy: Policy, scope: Scope) -> Governance {
        let mut g = Governance::default();
        g.verification[0].grants.push(Grant { policy, scope });
        g
    }

    fn entry(key: &SecretKey, policy: &Policy, y: f32) -> BundleEntry {
        let input = Tensor::from_f32("x", vec![1], &[0.5]).unwrap();
        let out = Tensor::from_f32("y", vec![1], &[y]).unwrap();
        let payload = ReceiptPayload {
            job_id: [1; 16],
            nonce: vec![2; 16],
            kind: JobKind::Infer,
            model_digest: [3; 32],
            inputs: vec![Commitment::to(&input, Some(&[4; 32]))],
            outputs: vec![Commitment::to(&out, Some(&[5; 32]))],
            provider: "CPUExecutionProvider".into(),
            runtime: "onnxruntime 1.31.1".into(),
            issued_at: 1,
            previous: None,
            policy: Some(policy.digest().unwrap()),
        };
        BundleEntry {
            receipt: payload.sign(key).unwrap(),
            outputs: vec![out],
            salts: Some(vec![[5; 32]]),
        }
    }

    #[test]
    fn convicts_only_the_outlier_and_never_on_forged_claims() {
        let keys: Vec<SecretKey> = (1..=4u8).map(|i| SecretKey::from_seed(&[i; 32])).collect();
        let trust = |kid: &KeyId| {
            keys.iter()
                .map(SecretKey::public_key)
                .find(|k| k.key_id() == *kid)
        };
        let p = Policy::Tolerance {
            atol: 1e-3,
            rtol: 0.0,
        };
        let kid = |i: usize| keys[i].public_key().key_id();
        let gov = granting(p, Scope::SameProvider);
        let good = Bundle {
            policy: p,
            quorum: 2,
            entries: vec![
                entry(&keys[0], &p, 1.0),
                entry(&keys[1], &p, 1.0004),
                entry(&keys[2], &p, 1.5),
            ],
            accused: vec![kid(2)],
        };
        let bytes = good.encode().unwrap();
        assert!(looks_like_bundle(&bytes));
        assert_eq!(Bundle::decode(&bytes).unwrap(), good);
        let r = check_bundle_bytes(&bytes, &trust, &gov).unwrap();
        assert_eq!(r.convicted, vec![kid(2)]);
        assert!(r.unproven.is_empty());

        // Accusing an honest node proves nothing against it.
        let mut forged = good.clone();
        forged.accused = vec![kid(0)];
        let r = check_bundle(&forged, &trust, &gov).unwrap();
        assert_eq!(r.convicted, vec![kid(2)]);
        assert_eq!(r.unproven.len(), 1);
        assert_eq!(r.unproven[0].kid, kid(0));
        // A quorum of 1 is below the roster minimum: one witness never convicts.
        let mut lone = good.clone();
        lone.entries.truncate(2);
        lone.entries[1] = entry(&keys[2], &p, 1.5);
        lone.quorum = 1;
        assert!(
            check_bundle(&lone, &trust, &gov)
                .unwrap()
                .convicted
                .is_empty()
        );
        // Tampered tensor, bad signature, unknown key, other job: the whole bundle is void.
        let mut t = good.clone();
        t.entries[0].outputs[0] = Tensor::from_f32("y", vec![1], &[1.5]).unwrap();
        assert!(matches!(
            check_bundle(&t, &trust, &gov),
            Err(BundleError::TensorMismatch { entry: 0, .. })
        ));
        let mut s = good.clone();
        let n = s.entries[1].receipt.len();
        s.entries[1].receipt[n - 1] ^= 1;
        assert!(matches!(
            check_bundle(&s, &trust, &gov),
            Err(BundleError::BadSignature { entry: 1, .. })
        ));
        let mut u = good.clone();
        u.entries[0] = entry(&SecretKey::from_seed(&[9; 32]), &p, 1.0);
        assert!(matches!(
            check_bundle(&u, &trust, &gov),
            Err(BundleError::UnknownKey { entry: 0, .. })
        ));
        let mut o = good.clone();
        o.entries[2] = entry(&keys[3], &Policy::Exact, 1.5);
        assert!(matches!(
            check_bundle(&o, &trust, &gov),
            Err(BundleError::NotSameJob { entry: 2, .. })
        ));
    }

    #[test]
    fn governance_decides_which_witnesses_count() {
        let keys: Vec<SecretKey> = (1..=4u8).map(|i| SecretKey::from_seed(&[i; 32])).collect();
        let trust = |kid: &KeyId| {
            keys.iter()
                .map(SecretKey::public_key)
                .find(|k| k.key_id() == *kid)
        };
        let kid = |i: usize| keys[i].public_key().key_id();
        let p = Policy::Tolerance {
            atol: 1e-3,
            rtol: 0.0,
        };
        let b = Bundle {
            policy: p,
            quorum: 2,
            entries: vec![
                entry(&keys[0], &p, 1.0),
                entry(&keys[1], &p, 1.0),
                entry(&keys[2], &p, 1.5),
            ],
            accused: vec![kid(2)],
        };
        // Not granted by the default governance: nobody is convicted, and the reason says so.
        let r = check_bundle(&b, &trust, &Governance::default()).unwrap();
        assert!(r.convicted.is_empty());
        assert!(r.unproven[0].reason.contains("not granted"), "{r:?}");
        // Granted, but the roster asks for 3 witnesses.
        let mut g = granting(p, Scope::SameProvider);
        g.verification.insert(
            0,
            VerificationRule {
                model: Some([3; 32]),
                grants: vec![Grant {
                    policy: p,
                    scope: Scope::SameProvider,
                }],
                min_quorum: 3,
            },
        );
        let r = check_bundle(&b, &trust, &g).unwrap();
        assert!(r.convicted.is_empty());
        assert!(r.unproven[0].reason.contains("quorum below"), "{r:?}");
        // Granted with quorum 2: the liar is convicted.
        let r = check_bundle(&b, &trust, &granting(p, Scope::SameProvider)).unwrap();
        assert_eq!(r.convicted, vec![kid(2)]);
        assert_eq!(r.governance.scope, Some(Scope::SameProvider));
    }
}
