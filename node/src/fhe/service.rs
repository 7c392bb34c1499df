//! A node's side of encrypted inference (§16): the qlinear models it serves, its server-key
//! cache, and the handling of every §16 request. Runs on a blocking thread: TFHE work takes
//! seconds. Every failure is a typed error frame and the node keeps serving.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use quorate_crypto::SecretKey;
use quorate_crypto::tensor_digest::{Digest32, sha256};
use quorate_protocol::messages::{ErrorCode, ErrorFrame};
use quorate_protocol::receipt::{JobKind, ReceiptPayload};

use crate::audit::AuditLog;
use quorate_fhe::qlinear::{MAX_MODEL_LEN, QLinear};

/// The qlinear models of a node and, with the `fhe` feature, its key cache.
pub struct FheService {
    /// Qlinear models by SHA-256 of their file.
    pub models: HashMap<Digest32, Arc<QLinear>>,
    #[cfg(feature = "fhe")]
    keys: quorate_fhe::keycache::KeyCache,
}

/// Loads every `*.json` in `dir` as a qlinear model (§16.1); a file that is not one is an error.
pub fn load_models(dir: &Path, node: &str) -> anyhow::Result<HashMap<Digest32, Arc<QLinear>>> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read models folder {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    let mut models = HashMap::new();
    for path in paths {
        let bytes = crate::files::read_limited(&path, MAX_MODEL_LEN)?;
        let model = QLinear::parse(&bytes).with_context(|| format!("model {}", path.display()))?;
        let digest = sha256(&bytes);
        tracing::info!(
            node = %node,
            "serving {} sha256:{} on tfhe (encrypted inference)",
            path.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            hex::encode(digest)
        );
        models.insert(digest, Arc::new(model));
    }
    Ok(models)
}

impl FheService {
    /// Loads the models in `dir`; `max_keys` bounds the decompressed server keys kept.
    pub fn load(dir: &Path, node: &str, max_keys: usize) -> anyhow::Result<Self> {
        #[cfg(not(feature = "fhe"))]
        let _ = max_keys;
        Ok(Self {
            models: load_models(dir, node)?,
            #[cfg(feature = "fhe")]
            keys: quorate_fhe::keycache::KeyCache::new(max_keys),
        })
    }
}

/// Signs a receipt and makes it durable before the reply leaves (§12.4).
pub fn sign_and_log(
    payload: &ReceiptPayload,
    key: &SecretKey,
    audit: &AuditLog,
) -> Result<Vec<u8>, ErrorFrame> {
    let internal = |e: String| ErrorFrame::new(ErrorCode::Internal, e);
    let receipt = payload.sign(key).map_err(|e| internal(e.to_string()))?;
    audit.append(&receipt)?;
    Ok(receipt)
}

/// A receipt payload for §16 work.
pub fn payload(
    job_id: [u8; 16],
    nonce: Vec<u8>,
    model_digest: Digest32,
    commitments: (
        Vec<quorate_protocol::receipt::Commitment>,
        Vec<quorate_protocol::receipt::Commitment>,
    ),
    runtime: &str,
) -> ReceiptPayload {
    ReceiptPayload {
        job_id,
        nonce,
        kind: JobKind::FheMember,
        model_digest,
        inputs: commitments.0,
        outputs: commitments.1,
        provider: "tfhe-cpu".into(),
        runtime: runtime.into(),
        issued_at: crate::clock::unix_now(),
        previous: None,
        policy: None,
    }
}

#[cfg(feature = "fhe")]
mod enabled {
    use quorate_protocol::fhe::{
        AggregateRequest, EvalRequest, FheRequest, FheResponse, aggregate_commitments,
        aggregate_model_digest, eval_commitments,
    };

    use super::*;
    use quorate_fhe::engine;
    use quorate_fhe::keycache::ChunkOutcome;

    fn invalid(e: anyhow::Error) -> ErrorFrame {
        ErrorFrame::new(ErrorCode::InvalidInput, format!("{e:#}"))
    }

    impl FheService {
        /// Handles one §16 request (blocking).
        pub fn handle(
            &self,
            peer: &quorate_crypto::PublicKey,
            req: FheRequest,
            key: &SecretKey,
            audit: &AuditLog,
        ) -> Result<FheResponse, ErrorFrame> {
            match req {
                FheRequest::KeyChunk(c) => {
                    let (digest, total) = (c.key_digest, c.total_len);
                    // §17.11: uploads and keys belong to the peer that sent them.
                    let owner = peer.to_bytes();
                    let received = match self.keys.chunk(owner, c, crate::clock::unix_now())? {
                        ChunkOutcome::Partial(n) => {
                            return Ok(FheResponse::KeyOk {
                                key_digest: digest,
                                received: n,
                                ready: false,
                            });
                        }
                        ChunkOutcome::Ready => total,
                        ChunkOutcome::Complete(bytes) => {
                            self.keys
                                .install(owner, digest, &bytes, crate::clock::unix_now())?;
                            total
                        }
                    };
                    Ok(FheResponse::KeyOk {
                        key_digest: digest,
                        received,
                        ready: true,
                    })
                }
                FheRequest::Eval(r) => self.eval(r, key, audit),
                FheRequest::Aggregate(r) => self.aggregate(r, key, audit),
            }
        }

        fn server_key(
            &self,
            digest: &Digest32,
        ) -> Result<Arc<quorate_fhe::tfhe::ServerKey>, ErrorFrame> {
            self.keys.get(digest, crate::clock::unix_now()).ok_or_else(|| {
                ErrorFrame::new(
                    ErrorCode::InvalidInput,
                    format!(
                        "unknown server key sha256:{}: upload it first (§16.3); it may have been evicted",
                        hex::encode(digest)
                    ),
                )
            })
        }

        fn eval(
            &self,
            r: EvalRequest,
            key: &SecretKey,
            audit: &AuditLog,
        ) -> Result<FheResponse, ErrorFrame> {
            let model = self.models.get(&r.model).cloned().ok_or_else(|| {
                ErrorFrame::new(
                    ErrorCode::UnknownModel,
                    format!("no qlinear model sha256:{}", hex::encode(r.model)),
                )
            })?;
            let sk = self.server_key(&r.key_digest)?;
            quorate_fhe::tfhe::set_server_key((*sk).clone());
            let input = engine::decode_input(&r.ciphertext).map_err(invalid)?;
            let score = engine::eval_planes(&model, &input);
            let bytes = engine::encode_score(&score)
                .map_err(|e| ErrorFrame::new(ErrorCode::Internal, format!("{e:#}")))?;
            let p = payload(
                r.job_id,
                r.nonce.clone(),
                r.model,
                eval_commitments(&r, &bytes),
                engine::RUNTIME,
            );
            Ok(FheResponse::Result {
                aggregate: false,
                receipt: sign_and_log(&p, key, audit)?,
                ciphertext: bytes,
            })
        }

        fn aggregate(
            &self,
            r: AggregateRequest,
            key: &SecretKey,
            audit: &AuditLog,
        ) -> Result<FheResponse, ErrorFrame> {
            let sk = self.server_key(&r.key_digest)?;
            quorate_fhe::tfhe::set_server_key((*sk).clone());
            let scores = r
                .scores
                .iter()
                .enumerate()
                .map(|(i, s)| engine::decode_score(s, &sk).with_context(|| format!("score {i}")))
                .collect::<anyhow::Result<Vec<_>>>()
                .map_err(invalid)?;
            let sum = engine::aggregate(&scores);
            let bytes = engine::encode_score(&sum)
                .map_err(|e| ErrorFrame::new(ErrorCode::Internal, format!("{e:#}")))?;
            let p = payload(
                r.job_id,
                r.nonce.clone(),
                aggregate_model_digest(),
                aggregate_commitments(&r, &bytes),
                engine::RUNTIME,
            );
            Ok(FheResponse::Result {
                aggregate: true,
                receipt: sign_and_log(&p, key, audit)?,
                ciphertext: bytes,
            })
        }
    }
}
