//! Goal 4 of the hot path: `quorate verify` of an audit log against the cores' raw
//! `verify_strict` rate (§6.4).

use quorate_crypto::SecretKey;
use quorate_protocol::audit_log;
use quorate_protocol::receipt::{self, Commitment, JobKind, ReceiptPayload};
use quorate_protocol::tensor::Tensor;
use quorate_verify::TrustStore;

use super::sample::{median, time_ns};

/// Rates in receipts per second.
pub struct Audit {
    /// Receipts in the log.
    pub n: usize,
    /// `quorate verify` of the whole log (read, parse, look up, verify, report).
    pub verify_rate: f64,
    /// Raw `verify_strict` on one core over the receipts' signed bytes.
    pub raw_one_core: f64,
    /// The cores the verifier may use.
    pub cores: usize,
}

impl Audit {
    /// The verifier's rate over what the cores could do with raw `verify_strict` alone.
    pub fn ratio(&self) -> f64 {
        self.verify_rate / (self.cores as f64 * self.raw_one_core)
    }
}

/// A receipt like a mesh job's: one salted input, one salted output.
fn receipt(i: u32, key: &SecretKey) -> anyhow::Result<Vec<u8>> {
    let x = Tensor::from_f32("features", vec![1, 30], &[i as f32; 30])?;
    let y = Tensor::from_f32("probabilities", vec![1, 2], &[0.25, 0.75])?;
    Ok(ReceiptPayload {
        job_id: quorate_crypto::random::bytes()?,
        nonce: quorate_crypto::random::bytes::<32>()?.to_vec(),
        kind: JobKind::Infer,
        model_digest: [3; 32],
        inputs: vec![Commitment::to(&x, Some(&[5; 32]))],
        outputs: vec![Commitment::to(&y, Some(&[6; 32]))],
        provider: "CPUExecutionProvider".into(),
        runtime: "onnxruntime".into(),
        issued_at: 1_763_900_000 + u64::from(i),
        previous: None,
        policy: None,
    }
    .sign(key)?)
}

/// Writes an audit log of `n` receipts into `dir`, then times `quorate verify` of it
/// `rounds` times and raw `verify_strict` of (up to 20,000 of) its signatures on one core.
pub fn audit(dir: &std::path::Path, n: usize, rounds: usize) -> anyhow::Result<Audit> {
    let key = SecretKey::generate()?;
    let mut log = audit_log::MAGIC.to_vec();
    let mut raw = Vec::new();
    for i in 0..n {
        let r = receipt(i as u32, &key)?;
        if raw.len() < 20_000 {
            let parsed = receipt::parse(&r)?;
            let sig = ed25519_dalek::Signature::from_slice(&parsed.sign1.signature)?;
            raw.push((parsed.sign1.to_be_signed, sig));
        }
        log.extend(audit_log::record(&r));
    }
    let path = dir.join("audit.qlog");
    std::fs::write(&path, &log)?;
    drop(log);
    let mut trust = TrustStore::default();
    trust.add(key.public_key(), "node");
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&key.public_key().to_bytes())?;

    let mut bad = 0usize;
    let mut ours = Vec::new();
    let mut base = Vec::new();
    for _ in 0..rounds {
        // What `quorate verify` does with the log, minus printing a line per receipt.
        let (ns, tally) = time_ns(&mut || {
            crate::verify_files::verify_streaming(
                std::slice::from_ref(&path),
                &trust,
                &[],
                &[],
                &mut drop,
            )
        });
        ours.push(ns);
        bad += tally.failed + n.abs_diff(tally.total);
        let (ns, failed) = time_ns(&mut || {
            raw.iter()
                .filter(|(msg, sig)| vk.verify_strict(msg, sig).is_err())
                .count()
        });
        base.push(ns);
        bad += failed;
    }
    anyhow::ensure!(bad == 0, "{bad} receipts of the audit failed to verify");
    Ok(Audit {
        n,
        verify_rate: n as f64 / (median(ours) / 1e9),
        raw_one_core: raw.len() as f64 / (median(base) / 1e9),
        cores: std::thread::available_parallelism().map_or(1, |c| c.get()),
    })
}
