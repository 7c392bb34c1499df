//! The crate graph points one way (CONTRIBUTING.md, "Layering"), and the offline verifier
//! pulls in nothing heavy: no ONNX Runtime, QUIC, async runtime, TFHE, C code or OS
//! randomness, so it builds for the browser and under Python.

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
    (
        "node",
        &["crypto", "protocol", "runtime", "transport", "split", "fhe"],
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
