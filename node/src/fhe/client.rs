//! The client's side of encrypted inference (§16): key files, server-key upload in chunks,
//! evaluation and aggregation requests with receipt checks, and decryption of the sum.

use std::path::Path;

use anyhow::{Context, anyhow, bail, ensure};
use quorate_crypto::tensor_digest::{Digest32, sha256};
use quorate_fhe::tfhe::prelude::*;
use quorate_fhe::tfhe::{ClientKey, CompactPublicKey, FheInt32};
use quorate_protocol::fhe::{
    AggregateRequest, EvalRequest, Expected, FheRequest, FheResponse, KeyChunk, MAX_KEY_CHUNK_LEN,
    MAX_SCORE_CIPHERTEXT_LEN, aggregate_commitments, aggregate_model_digest, check_receipt,
    eval_commitments,
};
use quorate_protocol::messages::{Request, Response};
use quorate_protocol::receipt::ReceiptPayload;
use quorate_protocol::roster::Entry;

use crate::files::{read_limited, write_atomic};
use crate::mesh::client::MeshClient;
use quorate_fhe::engine::{self, KeySet, MAX_CLIENT_KEY_LEN, MAX_PUBLIC_KEY_LEN};
use quorate_fhe::qlinear::{FEATURES, MAX_ABS_SCORE};
use quorate_protocol::fhe::MAX_SERVER_KEY_LEN;

/// File names inside a keys directory (§16.2).
pub mod files {
    /// The client key (mode 0600; never leaves the client).
    pub const CLIENT: &str = "client.key";
    /// The compressed server key sent to nodes.
    pub const SERVER: &str = "server.key";
    /// The compact public key the client encrypts with.
    pub const PUBLIC: &str = "public.key";
}

/// The client's keys, loaded from a keys directory.
pub struct ClientKeys {
    /// Secret key.
    pub client: ClientKey,
    /// Public encryption key.
    pub public: CompactPublicKey,
    /// Serialized compressed server key, as uploaded.
    pub server_bytes: Vec<u8>,
    /// Its SHA-256 (§16.3).
    pub server_digest: Digest32,
}

/// Writes a key set to `dir`; returns the sizes written (client, server, public).
pub fn save_keys(keys: &KeySet, dir: &Path) -> anyhow::Result<(usize, usize, usize)> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let client = zeroize::Zeroizing::new(engine::to_bytes(&keys.client, MAX_CLIENT_KEY_LEN)?);
    let server = engine::to_bytes(&keys.server, MAX_SERVER_KEY_LEN)?;
    let public = engine::to_bytes(&keys.public, MAX_PUBLIC_KEY_LEN)?;
    write_atomic(&dir.join(files::CLIENT), &client, 0o600)?;
    write_atomic(&dir.join(files::SERVER), &server, 0o644)?;
    write_atomic(&dir.join(files::PUBLIC), &public, 0o644)?;
    Ok((client.len(), server.len(), public.len()))
}

impl ClientKeys {
    /// Loads the keys written by `quorate fhe keygen`.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        // §17.11: the TFHE client key decrypts every result; like identity keys it must not
        // be readable by other users.
        crate::files::check_private_mode(&dir.join(files::CLIENT))?;
        let client_bytes =
            zeroize::Zeroizing::new(read_limited(&dir.join(files::CLIENT), MAX_CLIENT_KEY_LEN)?);
        let client: ClientKey =
            engine::from_bytes(&client_bytes, MAX_CLIENT_KEY_LEN, "client key")?;
        let public: CompactPublicKey = engine::from_bytes(
            &read_limited(&dir.join(files::PUBLIC), MAX_PUBLIC_KEY_LEN)?,
            MAX_PUBLIC_KEY_LEN,
            "public key",
        )?;
        let server_bytes = read_limited(&dir.join(files::SERVER), MAX_SERVER_KEY_LEN)?;
        Ok(Self::from_parts(client, public, server_bytes))
    }

    /// Keys held in memory (tests, the demo).
    pub fn from_parts(client: ClientKey, public: CompactPublicKey, server_bytes: Vec<u8>) -> Self {
        Self {
            server_digest: sha256(&server_bytes),
            client,
            public,
            server_bytes,
        }
    }

    /// Encrypts quantized features (§16.4).
    pub fn encrypt(&self, q: &[u16; FEATURES]) -> anyhow::Result<Vec<u8>> {
        engine::encrypt_input(&self.public, q)
    }

    /// Checks that the three keys belong together (§16.2), so that a mixed-up key set is
    /// refused before anything is sent: nodes cannot tell a ciphertext for another key from a
    /// valid one. A random value encrypted with the public key must decrypt with the client
    /// key, and one homomorphic addition with the server key must decrypt right (blocking:
    /// decompresses the server key, about a second).
    pub fn check_consistent(&self) -> anyhow::Result<()> {
        let probe = i16::from_le_bytes(quorate_crypto::random::bytes::<2>()?) >> 1;
        let list = quorate_fhe::tfhe::CompactCiphertextList::builder(&self.public)
            .push(probe)
            .build();
        let ct: quorate_fhe::tfhe::FheInt16 = list
            .expand()
            .map_err(|e| anyhow!("{e}"))?
            .get(0)
            .map_err(|e| anyhow!("{e}"))?
            .context("empty probe list")?;
        let v: i16 = ct.decrypt(&self.client);
        ensure!(
            v == probe,
            "public.key does not belong to client.key: ciphertexts would be for another key"
        );
        let server = engine::server_key_from_bytes(&self.server_bytes)?.decompress();
        quorate_fhe::tfhe::set_server_key(server);
        let w: i16 = (&ct + 1i16).decrypt(&self.client);
        quorate_fhe::tfhe::unset_server_key();
        ensure!(
            w == probe + 1,
            "server.key does not belong to client.key: nodes would compute noise"
        );
        Ok(())
    }

    /// Decrypts a sum of `members` scores and checks it lies in the range valid models can
    /// produce: outside it, the ciphertexts were not computed under this key (§16.5).
    pub fn decrypt_sum(&self, bytes: &[u8], members: usize) -> anyhow::Result<i64> {
        let params: <FheInt32 as ParameterSetConformant>::ParameterSet =
            quorate_fhe::tfhe::shortint::parameters::PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128
                .into();
        let ct: FheInt32 = quorate_fhe::tfhe::safe_serialization::safe_deserialize_conformant(
            bytes,
            MAX_SCORE_CIPHERTEXT_LEN as u64,
            &params,
        )
        .map_err(|e| anyhow!("the encrypted result does not decode: {e}"))?;
        let v: i32 = ct.decrypt(&self.client);
        let v = i64::from(v);
        let bound = MAX_ABS_SCORE * members as i64;
        ensure!(
            v.abs() <= bound,
            "the decrypted result {v} lies outside ±{bound}, which no sum of {members} valid \
             scores can reach: the aggregator did not add scores computed under this key"
        );
        Ok(v)
    }
}

async fn fhe_request(
    mesh: &MeshClient,
    node: &Entry,
    req: FheRequest,
) -> anyhow::Result<FheResponse> {
    match mesh.request(node, &Request::Fhe(req)).await? {
        Response::Fhe(r) => Ok(r),
        Response::Error(e) => Err(anyhow!("node {:?} refused: {e}", node.name)),
        _ => bail!("node {:?} answered with another message type", node.name),
    }
}

/// Uploads the server key to `node` unless it already holds it (§16.3); `progress` hears
/// `(received, total)` after each chunk.
pub async fn upload_key(
    mesh: &MeshClient,
    node: &Entry,
    keys: &ClientKeys,
    progress: &mut dyn FnMut(u64, u64),
) -> anyhow::Result<()> {
    let total = keys.server_bytes.len() as u64;
    for (i, chunk) in keys.server_bytes.chunks(MAX_KEY_CHUNK_LEN).enumerate() {
        let req = FheRequest::KeyChunk(KeyChunk {
            key_digest: keys.server_digest,
            total_len: total,
            offset: (i * MAX_KEY_CHUNK_LEN) as u64,
            data: chunk.to_vec(),
        });
        match fhe_request(mesh, node, req).await? {
            FheResponse::KeyOk {
                key_digest,
                received,
                ready,
            } if key_digest == keys.server_digest => {
                progress(received, total);
                if ready {
                    return Ok(());
                }
            }
            _ => bail!(
                "node {:?} answered a key chunk with something else",
                node.name
            ),
        }
    }
    bail!(
        "node {:?} took the whole server key but did not report it ready",
        node.name
    )
}

/// Asks `node` to evaluate `model` on an encrypted input; checks the receipt.
pub async fn eval(
    mesh: &MeshClient,
    node: &Entry,
    model: Digest32,
    keys: &ClientKeys,
    ciphertext: Vec<u8>,
) -> anyhow::Result<(Vec<u8>, Vec<u8>, ReceiptPayload)> {
    let req = EvalRequest {
        job_id: quorate_crypto::random::bytes()?,
        nonce: quorate_crypto::random::bytes::<32>()?.to_vec(),
        model,
        key_digest: keys.server_digest,
        ciphertext,
    };
    match fhe_request(mesh, node, FheRequest::Eval(req.clone())).await? {
        FheResponse::Result {
            aggregate: false,
            ciphertext,
            receipt,
        } => {
            let (inputs, outputs) = eval_commitments(&req, &ciphertext);
            let expected = Expected {
                job_id: &req.job_id,
                nonce: &req.nonce,
                model,
                inputs,
                outputs,
            };
            let p = check_receipt(&receipt, &expected, &node.key).with_context(|| {
                format!(
                    "node {:?} returned a score that fails verification",
                    node.name
                )
            })?;
            Ok((ciphertext, receipt, p))
        }
        _ => bail!(
            "node {:?} answered an evaluation with something else",
            node.name
        ),
    }
}

/// Asks `node` to add encrypted scores; checks the receipt.
pub async fn aggregate(
    mesh: &MeshClient,
    node: &Entry,
    keys: &ClientKeys,
    scores: Vec<Vec<u8>>,
) -> anyhow::Result<(Vec<u8>, Vec<u8>, ReceiptPayload)> {
    let req = AggregateRequest {
        job_id: quorate_crypto::random::bytes()?,
        nonce: quorate_crypto::random::bytes::<32>()?.to_vec(),
        key_digest: keys.server_digest,
        scores,
    };
    match fhe_request(mesh, node, FheRequest::Aggregate(req.clone())).await? {
        FheResponse::Result {
            aggregate: true,
            ciphertext,
            receipt,
        } => {
            let (inputs, outputs) = aggregate_commitments(&req, &ciphertext);
            let expected = Expected {
                job_id: &req.job_id,
                nonce: &req.nonce,
                model: aggregate_model_digest(),
                inputs,
                outputs,
            };
            let p = check_receipt(&receipt, &expected, &node.key).with_context(|| {
                format!(
                    "node {:?} returned a sum that fails verification",
                    node.name
                )
            })?;
            Ok((ciphertext, receipt, p))
        }
        _ => bail!(
            "node {:?} answered an aggregation with something else",
            node.name
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn attack_l4_a_world_readable_fhe_client_key_is_loaded() {
        // The check comes before the key is read, so any bytes will do.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(files::CLIENT);
        std::fs::write(&path, b"not a key").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = ClientKeys::load(dir.path()).err().unwrap();
        assert!(
            format!("{e:#}").contains("readable by other users"),
            "{e:#}"
        );
    }
}
