//! Goal 4 of the hot path: `quorate verify` of an audit log against the cores' raw
//! `verify_strict` rate (§6.4).

use quorate_crypto::SecretKey;
use quorate_crypto::batch::{Item, verify_each};
use quorate_protocol::audit_log;
use quorate_protocol::receipt::{self, Commitment, JobKind, ReceiptPayload};
use quorate_protocol::tensor::Tensor;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use super::sample::{median, time_ns};

/// Rates in receipts per second.
pub struct Audit {
    /// Receipts in the log.
    pub n: usize,
    /// `quorate verify` of the whole log, the process from start to exit (read, parse, look
    /// up, verify, print a line per receipt).
    pub verify_rate: f64,
    /// Raw `verify_strict` on one core over the receipts' signed bytes.
    pub raw_one_core: f64,
    /// quorate's strict check (the same verdicts, §6.2) on one core over the same
    /// signatures, in sets as the verifier takes them: not part of the ratio, printed so that
    /// what the primitive gains and what the process loses can be told apart.
    pub ours_one_core: f64,
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

/// Runs `exe verify LOG --trust KEY`, reading its report as it comes; the number of receipt
/// lines it printed, or `None` when it failed.
fn verify_command(exe: &Path, log: &Path, trusted: &Path) -> Option<usize> {
    let mut child = Command::new(exe)
        .arg("verify")
        .arg(log)
        .arg("--trust")
        .arg(trusted)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let lines = BufReader::new(child.stdout.take()?)
        .lines()
        .map_while(Result::ok)
        .filter(|l| l.starts_with("OK ") || l.starts_with("FAIL "))
        .count();
    child.wait().ok()?.success().then_some(lines)
}

/// Writes an audit log of `n` receipts into `dir`, then times `quorate verify` (the binary
/// `exe`) of it `rounds` times, and raw `verify_strict` of (up to 20,000 of) its signatures
/// on one core, and quorate's strict check of the same.
pub fn audit(exe: &Path, dir: &Path, n: usize, rounds: usize) -> anyhow::Result<Audit> {
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
    let trusted = dir.join("audit-node.pub");
    std::fs::write(&trusted, key.public_key().to_pem()?)?;
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&key.public_key().to_bytes())?;

    let public = key.public_key();
    let signatures: Vec<[u8; 64]> = raw.iter().map(|(_, sig)| sig.to_bytes()).collect();
    let items: Vec<Item<'_>> = raw
        .iter()
        .zip(&signatures)
        .map(|((msg, _), sig)| Item {
            message: msg,
            signature: sig,
            key: &public,
        })
        .collect();
    let mut bad = 0usize;
    let mut ours = Vec::new();
    let mut base = Vec::new();
    let mut strict = Vec::new();
    for _ in 0..rounds {
        // The command as a user runs it, from its start to its exit, a line per receipt
        // written to a pipe that is drained as it fills (counted, so a missing line shows).
        let (ns, lines) = time_ns(&mut || verify_command(exe, &path, &trusted));
        ours.push(ns);
        bad += lines.map_or(n, |lines| n.abs_diff(lines));
        let (ns, failed) = time_ns(&mut || {
            raw.iter()
                .filter(|(msg, sig)| vk.verify_strict(msg, sig).is_err())
                .count()
        });
        base.push(ns);
        bad += failed;
        let (ns, failed) = time_ns(&mut || {
            items
                .chunks(crate::verify_files::CHUNK)
                .map(|set| verify_each(set).iter().filter(|r| r.is_err()).count())
                .sum::<usize>()
        });
        strict.push(ns);
        bad += failed;
    }
    anyhow::ensure!(bad == 0, "{bad} receipts of the audit failed to verify");
    Ok(Audit {
        n,
        verify_rate: n as f64 / (median(ours) / 1e9),
        raw_one_core: raw.len() as f64 / (median(base) / 1e9),
        ours_one_core: raw.len() as f64 / (median(strict) / 1e9),
        cores: std::thread::available_parallelism().map_or(1, |c| c.get()),
    })
}
