//! The crate graph points one way (CONTRIBUTING.md, "Layering"), and the offline verifier
//! pulls in nothing heavy: no ONNX Runtime, QUIC, async runtime, TFHE, C code or OS
//! randomness, so it builds for the browser and under Python. The `quorate` binary carries
//! no test-only misbehaviour: only `quorate-adversary` turns on quorate-node's `test-util`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use quorate_tests::repo_root;

/// Each workspace crate and the workspace crates it may depend on (normal dependencies).
const ALLOWED: &[(&str, &[&str])] = &[
    ("crypto", &[]),
    ("protocol", &["crypto"]),
    ("verify", &["crypto", "protocol"]),
    // The browser page's verifier: quorate-verify for wasm32, nothing above it.
    ("web/wasm", &["verify"]),
    ("split", &["crypto", "protocol"]),
    ("runtime", &["crypto", "protocol"]),
    ("transport", &["crypto", "protocol"]),
    ("fhe", &["crypto", "protocol"]),
    // The mesh client checks inclusion receipts and promises with the auditor's own code.
    (
        "node",
        &[
            "crypto",
            "protocol",
            "verify",
            "runtime",
            "transport",
            "split",
            "fhe",
        ],
    ),
    (
        "cli",
        &[
            "crypto",
            "protocol",
            "verify",
            "runtime",
            "transport",
            "split",
            "fhe",
            "node",
        ],
    ),
    // The test-only lying node: a node and nothing else.
    ("adversary", &["node"]),
];

/// The `quorate-*` crates named in the `[dependencies]` table of `dir/Cargo.toml`.
fn workspace_deps(dir: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo_root().join(dir).join("Cargo.toml")).unwrap();
    let mut in_deps = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps && let Some(name) = line.strip_prefix("quorate-") {
            let name: String = name
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            out.insert(name);
        }
    }
    out
}

#[test]
fn workspace_crates_depend_only_on_layers_below_them() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    for (krate, may) in &allowed {
        for dep in workspace_deps(krate) {
            assert!(
                may.contains(&dep.as_str()),
                "{krate} depends on quorate-{dep}, which is not below it (CONTRIBUTING.md)"
            );
        }
    }
    // Every crate directory of the workspace is in the table, so a new crate gets a place.
    let manifest = std::fs::read_to_string(repo_root().join("Cargo.toml")).unwrap();
    let members = manifest
        .lines()
        .find(|l| l.starts_with("members"))
        .expect("workspace members line");
    for name in members.split('"').skip(1).step_by(2) {
        assert!(
            name == "tests" || allowed.contains_key(name),
            "workspace member {name} has no place in the layering table"
        );
    }
}

/// The packages in the normal (non-dev) dependency tree of `quorate-verify` for `target`.
fn verify_tree(target: &str) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(repo_root())
        .args([
            "tree",
            "--offline",
            "-p",
            "quorate-verify",
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "--target",
            target,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_verifier_pulls_in_no_runtime_network_tfhe_c_code_or_os_randomness() {
    for target in ["x86_64-unknown-linux-gnu", "wasm32-unknown-unknown"] {
        let tree = verify_tree(target);
        assert!(
            tree.contains("quorate-protocol") && tree.contains("ed25519-dalek"),
            "the tree was not read: {tree:?}"
        );
        for heavy in [
            "ort",
            "ort-sys",
            "quinn",
            "rustls",
            "tokio",
            "tfhe",
            "ring",
            "getrandom",
            "cc",
        ] {
            assert!(
                !tree.contains(heavy),
                "quorate-verify depends on {heavy} for {target}"
            );
        }
    }
}

/// The features of `of` enabled when `package` is built alone (normal and build dependencies,
/// as `cargo build -p <package>` resolves them), as `cargo tree` prints them.
fn features_when_built_alone(package: &str, of: &str) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(repo_root())
        .args([
            "tree",
            "--offline",
            "-p",
            package,
            "-e",
            "normal,build,features",
            "-i",
            of,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_quorate_binary_built_alone_has_no_test_util_and_only_the_adversary_turns_it_on() {
    // Cargo unifies features across the packages of one build, so this is about `quorate`
    // built on its own (`cargo build -p quorate-cli`, as ./scripts/demo does).
    let cli = features_when_built_alone("quorate-cli", "quorate-node");
    assert!(
        cli.contains("quorate-node feature \"fhe\""),
        "the tree was not read: {cli}"
    );
    assert!(
        !cli.contains("test-util"),
        "quorate-cli turns on quorate-node's test-util:\n{cli}"
    );
    let adversary = features_when_built_alone("quorate-adversary", "quorate-node");
    assert!(
        adversary.contains("quorate-node feature \"test-util\""),
        "{adversary}"
    );
    // No manifest but quorate-node's own (which defines it) and the adversary's names it.
    let root = repo_root();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let members = manifest
        .lines()
        .find(|l| l.starts_with("members"))
        .expect("workspace members line");
    for name in members.split('"').skip(1).step_by(2) {
        let text = std::fs::read_to_string(root.join(name).join("Cargo.toml")).unwrap();
        assert!(
            name == "node" || name == "adversary" || !text.contains("test-util"),
            "{name}/Cargo.toml turns on test-util; only quorate-adversary may"
        );
    }
}

/// The Python package is its own cargo workspace (`python/`) with its own lock file, which
/// `./scripts/test-python` builds with `--locked`: a dependency added to a crate it uses must
/// be recorded there too, or that step fails at the very end of CI.
#[test]
fn the_python_packages_lock_file_records_every_dependency_of_the_crates_it_uses() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(repo_root().join("python"))
        .args(["metadata", "--locked", "--format-version", "1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python/Cargo.lock is stale; run `cd python && cargo update -w` and commit it:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
