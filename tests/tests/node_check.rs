//! `quorate node --check-config` (§12.1): a good configuration passes; each broken part is
//! named with a clear reason, the exit status is 1, and nothing is written.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use quorate_cli::local::LocalMesh;
use quorate_tests::{quorate, quorate_bin, repo_root, text};

fn check(config: &Path) -> (bool, String) {
    let o = quorate(["node", "--check-config", config.to_str().unwrap()]);
    (o.status.success(), text(&o))
}

#[test]
fn check_config_passes_a_good_node_and_names_each_broken_part() {
    let dir = tempfile::tempdir().unwrap();
    let mut mesh =
        LocalMesh::start(dir.path(), 1, &repo_root().join("models"), &quorate_bin()).unwrap();
    mesh.stop_all().unwrap();
    let node = dir.path().join("nodes/node-1");
    let config = node.join("node.toml");
    let audit = node.join("audit.qlog");
    let audit_before = std::fs::read(&audit).unwrap();

    let (ok, out) = check(&config);
    assert!(ok, "{out}");
    for line in [
        "ok    config:",
        "ok    key:",
        "ok    admin:",
        "ok    roster entry: \"node-1\" with this key",
        "ok    listen:",
        "ok    models:",
        "ok    audit log:",
        "configuration ok",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
    assert!(!out.contains("FAIL"), "{out}");
    // The local mesh's roster lasts a day: valid, with a warning to renew it.
    assert!(
        out.contains("warn  roster:")
            && out.contains("serial 1, 2 entries")
            && out.contains("sign a new one soon"),
        "{out}"
    );

    // A secret key others can read.
    let key = dir.path().join("keys/node-1.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, out) = check(&config);
    assert!(!ok, "{out}");
    assert!(out.contains("FAIL  key:"), "{out}");
    assert!(out.contains("1 checks failed"), "{out}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // A roster checked against another authority's key.
    let admin = dir.path().join("admin.pub");
    let admin_bytes = std::fs::read(&admin).unwrap();
    let other = dir.path().join("other");
    let o = quorate(["keygen", "--out", other.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let other_pub = dir.path().join("other.pub");
    std::fs::copy(&other_pub, &admin).unwrap();
    let (ok, out) = check(&config);
    assert!(!ok, "{out}");
    assert!(out.contains("FAIL  roster:"), "{out}");
    std::fs::write(&admin, &admin_bytes).unwrap();

    // A model file that is not ONNX.
    let bad = node.join("models/broken.onnx");
    std::fs::write(&bad, b"not a model").unwrap();
    let (ok, out) = check(&config);
    assert!(!ok, "{out}");
    assert!(
        out.contains("FAIL  models:") && out.contains("broken.onnx"),
        "{out}"
    );
    std::fs::remove_file(&bad).unwrap();

    // An audit log that is not one, and an unknown configuration key.
    std::fs::write(&audit, b"garbage").unwrap();
    let (ok, out) = check(&config);
    assert!(!ok, "{out}");
    assert!(out.contains("is not an audit log"), "{out}");
    std::fs::write(&audit, &audit_before).unwrap();
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{good}max_concurent = 3\n")).unwrap();
    let (ok, out) = check(&config);
    assert!(!ok, "{out}");
    assert!(
        out.contains("FAIL  config:") && out.contains("unknown field"),
        "{out}"
    );
    std::fs::write(&config, &good).unwrap();

    // Everything restored: passes again, and the checks wrote nothing.
    let (ok, out) = check(&config);
    assert!(ok, "{out}");
    assert_eq!(std::fs::read(&audit).unwrap(), audit_before);
}
