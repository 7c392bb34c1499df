//! `quorate verify` of a long audit log streams (§6.4): every record is verified and
//! reported, and the verifier's memory stays bounded by a round of receipts, not the log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use quorate_crypto::SecretKey;
use quorate_protocol::audit_log;
use quorate_protocol::receipt::{Commitment, JobKind, ReceiptPayload};
use quorate_protocol::tensor::Tensor;
use quorate_tests::quorate_bin;

/// Records in the log: about 27 MB, several rounds of the verifier.
const N: usize = 60_000;
/// The verifier's largest resident memory allowed, in KiB. Holding every report of this log
/// at once (as `quorate verify` once did) took about 180 MiB; streaming takes about 40 MiB.
const MAX_RSS_KIB: u64 = 96 * 1024;

fn receipt(i: usize, key: &SecretKey) -> Vec<u8> {
    let x = Tensor::from_f32("features", vec![1, 30], &[i as f32; 30]).unwrap();
    let y = Tensor::from_f32("probabilities", vec![1, 2], &[0.25, 0.75]).unwrap();
    ReceiptPayload {
        job_id: [(i % 251) as u8; 16],
        nonce: (i as u64).to_le_bytes().repeat(4),
        kind: JobKind::Infer,
        model_digest: [3; 32],
        inputs: vec![Commitment::to(&x, Some(&[5; 32]))],
        outputs: vec![Commitment::to(&y, Some(&[6; 32]))],
        provider: "CPUExecutionProvider".into(),
        runtime: "onnxruntime".into(),
        issued_at: 1_763_900_000 + i as u64,
        previous: None,
        policy: None,
    }
    .sign(key)
    .unwrap()
}

/// The high-water mark of resident memory of a running process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn a_long_audit_log_is_verified_record_by_record_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::from_seed(&[9; 32]);
    let path = dir.path().join("node.qlog");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    file.write_all(audit_log::MAGIC).unwrap();
    for i in 0..N {
        let mut r = receipt(i, &key);
        if i == 41_234 {
            let last = r.len() - 1;
            r[last] ^= 1; // one altered signature, far into the log
        }
        file.write_all(&audit_log::record(&r)).unwrap();
    }
    file.write_all(&[0, 0, 1]).unwrap(); // a torn tail
    drop(file);
    let public = dir.path().join("node.pub");
    std::fs::write(&public, key.public_key().to_pem().unwrap()).unwrap();

    let mut child = std::process::Command::new(quorate_bin())
        .args(["verify", path.to_str().unwrap(), "--trust"])
        .arg(&public)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap());
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        peak = peak.max(peak_rss_kib(pid).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = reader.join().unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "an altered receipt and a torn tail must fail the audit"
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.len(),
        N + 2,
        "one line per record, the tail, and the total"
    );
    let failed: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("FAIL"))
        .copied()
        .collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(
        failed[0].contains("node.qlog#41234: bad signature"),
        "{failed:?}"
    );
    assert!(
        failed[1].contains("node.qlog#tail: malformed: torn tail of 3 bytes"),
        "{failed:?}"
    );
    assert!(
        lines[7].contains("node.qlog#7:"),
        "reports keep the log's order"
    );
    assert_eq!(
        lines[N + 1],
        format!("{} of {} receipts verified", N - 1, N + 1)
    );
    assert!(peak > 0, "the verifier's memory was never seen");
    assert!(
        peak <= MAX_RSS_KIB,
        "verifying {N} records took {peak} KiB resident, more than {MAX_RSS_KIB}"
    );
    eprintln!("peak resident memory of `quorate verify` over {N} records: {peak} KiB");
}
