//! `quorate verify` on transparency-log artefacts (§18.8), as an auditor runs it on files:
//! every equivocation-bundle vector convicts exactly when it is a good one, and every
//! audit-log vector matches its signed head exactly when it is a good one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use quorate_crypto::PublicKey;
use quorate_tests::{quorate, read_json, text, vector_files};

fn hex_field(v: &serde_json::Value, field: &str) -> Vec<u8> {
    hex::decode(v[field].as_str().unwrap()).unwrap()
}

/// Writes the vector's public key as a `.pub` file and returns its path.
fn trust(dir: &std::path::Path, v: &serde_json::Value) -> String {
    let key = PublicKey::from_bytes(&hex_field(v, "public_key")).unwrap();
    let path = dir.join("log.pub");
    std::fs::write(&path, key.to_pem().unwrap()).unwrap();
    path.display().to_string()
}

#[test]
fn equivocation_bundles_convict_exactly_when_they_prove_a_fork() {
    let mut seen = (0, 0);
    for file in vector_files("v1/tlog") {
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("equivocation_") {
            continue;
        }
        let v = read_json(&file);
        let dir = tempfile::tempdir().unwrap();
        let public = trust(dir.path(), &v);
        let bundle = dir.path().join(format!("{name}.equivocation"));
        std::fs::write(&bundle, hex_field(&v, "bundle")).unwrap();
        let o = quorate(["verify", bundle.to_str().unwrap(), "--trust", &public]);
        let out = text(&o);
        if v["expect"] == "valid" {
            seen.0 += 1;
            assert!(o.status.success(), "{name}: {out}");
            assert!(
                out.contains("EQUIVOCATED: it signed two roots for size"),
                "{name}: {out}"
            );
        } else {
            seen.1 += 1;
            assert!(!o.status.success(), "{name} must not convict: {out}");
            assert!(
                out.contains("proves nothing against the log"),
                "{name}: {out}"
            );
        }
        // The same verdict when the bundle is found in a directory, in JSON.
        let o = quorate([
            "verify",
            dir.path().to_str().unwrap(),
            "--trust",
            &public,
            "--json",
        ]);
        let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            doc["transparency_log"][0]["ok"],
            v["expect"] == "valid",
            "{name}"
        );
        assert_eq!(doc["ok"], v["expect"] == "valid", "{name}");
    }
    assert!(seen.0 >= 2 && seen.1 >= 5, "vectors seen: {seen:?}");
}

#[test]
fn audit_logs_are_checked_against_signed_heads() {
    let mut seen = 0;
    for file in vector_files("v1/tlog") {
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("audit_log_") {
            continue;
        }
        seen += 1;
        let v = read_json(&file);
        let dir = tempfile::tempdir().unwrap();
        let public = trust(dir.path(), &v);
        let log = dir.path().join("node.qlog");
        let head = dir.path().join("head.cose");
        std::fs::write(&log, hex_field(&v, "log")).unwrap();
        std::fs::write(&head, hex_field(&v, "head")).unwrap();
        let o = quorate([
            "verify",
            log.to_str().unwrap(),
            "--head",
            head.to_str().unwrap(),
            "--trust",
            &public,
        ]);
        let out = text(&o);
        if v["expect"] == "valid" {
            assert!(o.status.success(), "{name}: {out}");
            assert!(
                out.contains("records reproduce the signed head"),
                "{name}: {out}"
            );
        } else {
            assert!(!o.status.success(), "{name}: {out}");
            let code = v["error"].as_str().unwrap();
            assert!(
                out.contains(&format!("({code})")),
                "{name} must fail with {code}: {out}"
            );
        }
    }
    assert!(seen >= 3, "audit-log vectors seen: {seen}");
}

#[test]
fn a_head_of_an_untrusted_log_or_without_its_log_is_a_failure() {
    let good = read_json(&quorate_tests::vector_path("v1/tlog/audit_log_good.json"));
    let dir = tempfile::tempdir().unwrap();
    let public = trust(dir.path(), &good);
    let head = dir.path().join("head.cose");
    std::fs::write(&head, hex_field(&good, "head")).unwrap();
    let log = dir.path().join("node.qlog");
    std::fs::write(&log, hex_field(&good, "log")).unwrap();
    // Its log is not given: nothing to check the head against.
    let receipt_only = dir.path().join("empty.qlog");
    std::fs::write(&receipt_only, quorate_protocol::audit_log::MAGIC).unwrap();
    let o = quorate([
        "verify",
        receipt_only.to_str().unwrap(),
        "--head",
        head.to_str().unwrap(),
        "--trust",
        &public,
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("no audit log of"), "{}", text(&o));
    // Trusting another key: the head's log is unknown.
    let other = dir.path().join("other.pub");
    std::fs::write(
        &other,
        quorate_crypto::SecretKey::from_seed(&[7; 32])
            .public_key()
            .to_pem()
            .unwrap(),
    )
    .unwrap();
    let o = quorate([
        "verify",
        log.to_str().unwrap(),
        "--head",
        head.to_str().unwrap(),
        "--trust",
        other.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("is not among the trusted keys"),
        "{}",
        text(&o)
    );
}
