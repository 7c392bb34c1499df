//! The verifier page (`web/`, issue #18) gives exactly the report `quorate verify --json` gives,
//! in a real browser, from file:// and from `quorate verify --serve`, and asks nothing of the
//! network. Debian's Chromium is driven by `web/test/verifier.mjs` (npm `playwright-core`).
//! `scripts/setup-web-tests.sh` (run by `scripts/test`) installs Chromium, the npm package and
//! builds the page into `web/dist/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use quorate_tests::{quorate, quorate_bin, repo_root, text};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

fn require_setup() {
    let web = repo_root().join("web");
    for need in [
        web.join("dist/verifier-wasm.js"),
        web.join("test/node_modules/playwright-core/package.json"),
        chromium(),
    ] {
        assert!(
            need.exists(),
            "{} is missing: run ./scripts/setup-web-tests.sh (./scripts/test does it for you)",
            need.display()
        );
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// `quorate verify ARGS --json` run in `cwd`, so that its labels are the relative paths the
/// page sees.
fn verify_json(cwd: &Path, args: &[&str]) -> (bool, serde_json::Value) {
    let o = Command::new(quorate_bin())
        .current_dir(cwd)
        .arg("verify")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let json = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("quorate verify --json printed no JSON ({e}): {}", text(&o)));
    (o.status.success(), json)
}

fn serve(web_dir: &Path) -> (Server, String) {
    let mut child = Command::new(quorate_bin())
        .args(["verify", "--serve", "127.0.0.1:0", "--web-dir"])
        .arg(web_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let server = Server(child);
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("quorate verify --serve printed {line:?}"))
        .to_string();
    (server, url)
}

#[test]
fn the_page_reports_what_the_cli_reports_and_refuses_a_tampered_receipt_offline() {
    require_setup();
    let tmp = tempfile::tempdir().unwrap();
    let demo = tmp.path().join("demo");
    let o = quorate(["demo", "--nodes", "3", "--keep", demo.to_str().unwrap()]);
    assert!(o.status.success(), "quorate demo failed: {}", text(&o));

    // The auditor's folder: the demo's receipts and every node's audit log.
    let case = tmp.path().join("case");
    copy_dir(&demo.join("receipts"), &case.join("receipts"));
    for node in std::fs::read_dir(demo.join("nodes")).unwrap() {
        let node = node.unwrap().path();
        let log = node.join("audit.qlog");
        let dest = case.join("logs").join(node.file_name().unwrap());
        std::fs::create_dir_all(&dest).unwrap();
        std::fs::copy(&log, dest.join("audit.qlog")).unwrap();
    }
    let roster = demo.join("roster.cose");
    let admin = demo.join("admin.pub");
    let trust = [
        "--roster",
        roster.to_str().unwrap(),
        "--admin",
        admin.to_str().unwrap(),
    ];
    let (ok, expected_folder) = verify_json(tmp.path(), &[&["case"][..], &trust].concat());
    assert!(
        ok,
        "the CLI refused the demo's artefacts: {expected_folder}"
    );
    assert!(expected_folder["receipts"].as_array().unwrap().len() > 3);

    // One receipt with a flipped byte in its signature (the last field of the COSE_Sign1).
    let first = std::fs::read_dir(demo.join("receipts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cose"))
        .min()
        .unwrap();
    let name = first.file_name().unwrap().to_str().unwrap().to_string();
    let mut bytes = std::fs::read(&first).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 0x01;
    let tampered_dir = tmp.path().join("tampered");
    std::fs::create_dir_all(&tampered_dir).unwrap();
    let tampered = tampered_dir.join(&name);
    std::fs::write(&tampered, &bytes).unwrap();
    let (ok, expected_tampered) =
        verify_json(&tampered_dir, &[&[name.as_str()][..], &trust].concat());
    assert!(!ok, "the CLI accepted a tampered receipt");
    assert_eq!(expected_tampered["receipts"][0]["error"], "bad_signature");

    let dist = repo_root().join("web/dist");
    let (_server, url) = serve(&dist);
    let file_url = format!(
        "file://{}",
        dist.canonicalize().unwrap().join("index.html").display()
    );
    let cfg = serde_json::json!({
        "pages": [file_url, url],
        "roster": roster, "admin": admin,
        "folder": case, "expected_folder": expected_folder,
        "tampered": tampered, "expected_tampered": expected_tampered,
        "profile": tmp.path(),
    });
    let cfg_path = tmp.path().join("page-test.json");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let out = Command::new("node")
        .current_dir(repo_root().join("web/test"))
        .arg("verifier.mjs")
        .arg(&cfg_path)
        .env("CHROMIUM", chromium())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the page test failed:\n{}",
        text(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("page checks: 2 passed, 0 failed"),
        "{stdout}"
    );
}

#[test]
fn serve_refuses_an_address_that_is_not_loopback() {
    for addr in ["0.0.0.0:0", "192.0.2.1:8080", "[::]:0"] {
        let o = quorate(["verify", "--serve", addr]);
        assert!(!o.status.success(), "--serve {addr} was accepted");
        assert!(
            text(&o).contains("loopback address only"),
            "--serve {addr}: {}",
            text(&o)
        );
    }
}

#[test]
fn serve_without_a_built_page_says_how_to_build_it() {
    let empty = tempfile::tempdir().unwrap();
    let o = quorate([
        "verify",
        "--serve",
        "127.0.0.1:0",
        "--web-dir",
        empty.path().to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("scripts/build-web"), "{}", text(&o));
}
