//! `quorate roster` as an operator runs it: draft, add, sign, show, and every refusal.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use quorate_protocol::roster::{Roster, RosterError};
use quorate_tests::{quorate, repo_root, text};
use serde_json::Value;

struct Mesh {
    dir: tempfile::TempDir,
}

impl Mesh {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn s(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_string()
    }

    fn keygen(&self, name: &str) {
        let o = quorate(["keygen", "--out", &self.s(name)]);
        assert!(o.status.success(), "{}", text(&o));
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = quorate(args);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        text(&o)
    }

    /// Runs a command that must fail with exit status `code`; returns its output.
    fn fails(&self, code: i32, args: &[&str]) -> String {
        let o = quorate(args);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", text(&o));
        text(&o)
    }

    /// A draft with one node and one client, signed by `admin.key` into `roster.cose`.
    fn signed() -> Self {
        let m = Self::new();
        for k in ["admin.key", "node1.key", "analyst.key"] {
            m.keygen(k);
        }
        let draft = m.s("roster.json");
        m.ok(&["roster", "init", "--mesh", "hospitals", "--out", &draft]);
        let model = repo_root().join("models/mlp.onnx");
        m.ok(&[
            "roster",
            "add",
            &draft,
            "--name",
            "node1",
            "--key",
            &m.s("node1.key.pub"),
            "--addr",
            "10.0.0.1:4433",
            "--model",
            model.to_str().unwrap(),
            "--provider",
            "XNNPACK",
            "--provider",
            "cpu",
        ]);
        m.ok(&[
            "roster",
            "add",
            &draft,
            "--name",
            "analyst",
            "--key",
            &m.s("analyst.key.pub"),
            "--role",
            "client",
        ]);
        m.ok(&[
            "roster",
            "sign",
            &draft,
            "--admin",
            &m.s("admin.key"),
            "--valid-for",
            "30d",
            "--out",
            &m.s("roster.cose"),
        ]);
        m
    }

    fn show_json(&self, extra: &[&str]) -> (Option<i32>, Value) {
        let mut args = vec![
            "roster".to_string(),
            "show".into(),
            self.s("roster.cose"),
            "--json".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let o = quorate(&args);
        let v = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("show --json printed no JSON ({e}): {}", text(&o)));
        (o.status.code(), v)
    }
}

fn mlp_sha256() -> String {
    let sums = std::fs::read_to_string(repo_root().join("models/SHA256SUMS")).unwrap();
    sums.lines()
        .find(|l| l.ends_with(" mlp.onnx"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn public_key_hex(m: &Mesh, name: &str) -> String {
    let pem = std::fs::read_to_string(m.path(name)).unwrap();
    hex::encode(
        quorate_crypto::PublicKey::from_pem(&pem)
            .unwrap()
            .to_bytes(),
    )
}

#[test]
fn init_add_sign_show_round_trip() {
    let m = Mesh::signed();
    let shown = m.ok(&[
        "roster",
        "show",
        &m.s("roster.cose"),
        "--admin",
        &m.s("admin.key.pub"),
    ]);
    assert!(shown.contains("VALID"), "{shown}");
    assert!(
        shown.contains("node1") && shown.contains("analyst"),
        "{shown}"
    );
    assert!(shown.contains(&mlp_sha256()), "{shown}");

    let (code, v) = m.show_json(&["--admin", &m.s("admin.key.pub")]);
    assert_eq!(code, Some(0));
    assert_eq!(v["valid"], true);
    assert_eq!(v["mesh"], "hospitals");
    assert_eq!(v["serial"], 1);
    let node = &v["entries"][0];
    assert_eq!(node["name"], "node1");
    assert_eq!(node["role"], "node");
    assert_eq!(node["key"], public_key_hex(&m, "node1.key.pub"));
    assert_eq!(node["models"][0], mlp_sha256().as_str());
    assert_eq!(node["addresses"][0], "10.0.0.1:4433");
    // Provider names are normalised to their configuration names, order kept.
    assert_eq!(node["providers"], serde_json::json!(["xnnpack", "cpu"]));
    assert_eq!(v["entries"][1]["role"], "client");
    let validity = v["expires_at"].as_u64().unwrap() - v["issued_at"].as_u64().unwrap();
    assert_eq!(validity, 30 * 86_400);

    // The signed roster carries exactly the draft.
    let draft: Value =
        serde_json::from_slice(&std::fs::read(m.path("roster.json")).unwrap()).unwrap();
    for field in ["format", "mesh", "serial"] {
        assert_eq!(v[field], draft[field], "{field}");
    }
    for (shown, drafted) in v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .zip(draft["entries"].as_array().unwrap())
    {
        let mut shown = shown.clone();
        shown.as_object_mut().unwrap().remove("key_id");
        assert_eq!(&shown, drafted);
    }

    // And the library verifier, as a node runs it, agrees.
    let admin = quorate_node::files::load_public_key(&m.path("admin.key.pub")).unwrap();
    let bytes = std::fs::read(m.path("roster.cose")).unwrap();
    let r = Roster::verify(&bytes, &admin, v["checked_at"].as_u64().unwrap()).unwrap();
    assert_eq!(r.entries.len(), 2);
    assert_eq!(
        hex::encode(r.entries[0].models[0]),
        mlp_sha256(),
        "model digest is SHA-256 of the file (§3.4)"
    );
}

#[test]
fn add_refuses_duplicate_names_and_keys_weak_keys_and_secret_keys() {
    let m = Mesh::signed();
    let draft = m.s("roster.json");
    let before = std::fs::read(m.path("roster.json")).unwrap();
    m.keygen("other.key");
    let out = m.fails(
        2,
        &[
            "roster",
            "add",
            &draft,
            "--name",
            "node1",
            "--key",
            &m.s("other.key.pub"),
        ],
    );
    assert!(out.contains("already in the roster"), "{out}");
    let out = m.fails(
        2,
        &[
            "roster",
            "add",
            &draft,
            "--name",
            "node2",
            "--key",
            &m.s("node1.key.pub"),
        ],
    );
    assert!(out.contains("has the key of entry \"node1\""), "{out}");
    let out = m.fails(
        2,
        &[
            "roster",
            "add",
            &draft,
            "--name",
            "node2",
            "--key",
            &m.s("other.key"),
        ],
    );
    assert!(out.contains("is a secret key"), "{out}");

    // An SPKI PEM holding a small-order point (RFC 8410 prefix + the identity point).
    let mut der = hex::decode("302a300506032b6570032100").unwrap();
    der.push(1);
    der.extend([0u8; 31]);
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64(&der)
    );
    std::fs::write(m.path("weak.pub"), pem).unwrap();
    let out = m.fails(
        2,
        &[
            "roster",
            "add",
            &draft,
            "--name",
            "node2",
            "--key",
            &m.s("weak.pub"),
        ],
    );
    assert!(out.contains("weak public key"), "{out}");

    let out = m.fails(
        2,
        &[
            "roster",
            "add",
            &draft,
            "--name",
            "node2",
            "--key",
            &m.s("other.key.pub"),
            "--provider",
            "tpu",
        ],
    );
    assert!(out.contains("unknown execution provider"), "{out}");
    let out = m.fails(
        2,
        &[
            "roster",
            "add",
            &draft,
            "--name",
            "node2",
            "--key",
            &m.s("other.key.pub"),
            "--addr",
            "10.0.0.2",
        ],
    );
    assert!(out.contains("HOST:PORT"), "{out}");
    let out = m.fails(
        2,
        &[
            "roster",
            "add",
            &draft,
            "--name",
            "c2",
            "--key",
            &m.s("other.key.pub"),
            "--role",
            "client",
            "--model-digest",
            &mlp_sha256(),
        ],
    );
    assert!(out.contains("is a client"), "{out}");
    assert_eq!(
        std::fs::read(m.path("roster.json")).unwrap(),
        before,
        "a refused add must leave the draft untouched"
    );

    // A digest given by hand, with the sha256: prefix sha256sum users paste.
    m.ok(&[
        "roster",
        "add",
        &draft,
        "--name",
        "node2",
        "--key",
        &m.s("other.key.pub"),
        "--addr",
        "[fd00::2]:4433",
        "--model-digest",
        &format!("sha256:{}", mlp_sha256().to_uppercase()),
    ]);
    let v: Value = serde_json::from_slice(&std::fs::read(m.path("roster.json")).unwrap()).unwrap();
    assert_eq!(v["entries"][2]["models"][0], mlp_sha256().as_str());
}

#[test]
fn sign_serials_only_grow_and_are_written_back() {
    let m = Mesh::signed();
    let draft = m.s("roster.json");
    let sign = |extra: &[&str]| {
        let mut args = vec![
            "roster".to_string(),
            "sign".into(),
            draft.clone(),
            "--admin".into(),
            m.s("admin.key"),
            "--valid-for".into(),
            "12h".into(),
            "--out".into(),
            m.s("roster.cose"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        quorate(&args)
    };
    m.ok(&["roster", "remove", &draft, "--name", "analyst"]);
    let o = sign(&["--serial", "5"]);
    assert!(o.status.success(), "{}", text(&o));
    let (_, v) = m.show_json(&["--admin", &m.s("admin.key.pub")]);
    assert_eq!(v["serial"], 5);
    assert_eq!(v["entries"].as_array().unwrap().len(), 1);
    let written: Value =
        serde_json::from_slice(&std::fs::read(m.path("roster.json")).unwrap()).unwrap();
    assert_eq!(written["serial"], 5);

    let before = std::fs::read(m.path("roster.cose")).unwrap();
    let o = sign(&["--serial", "4"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("serials only grow"), "{}", text(&o));
    assert_eq!(std::fs::read(m.path("roster.cose")).unwrap(), before);

    for bad in ["30", "0d", "1w"] {
        let o = quorate([
            "roster",
            "sign",
            &draft,
            "--admin",
            &m.s("admin.key"),
            "--valid-for",
            bad,
            "--out",
            &m.s("x.cose"),
        ]);
        assert!(!o.status.success(), "--valid-for {bad} accepted");
        assert!(!m.path("x.cose").exists());
    }
    // The authority's key must be private to its owner.
    let admin = m.path("admin.key");
    let mut perms = std::fs::metadata(&admin).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    std::fs::set_permissions(&admin, perms).unwrap();
    let o = sign(&[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("chmod 600"), "{}", text(&o));
}

#[test]
fn show_names_the_reason_for_every_rejection() {
    let m = Mesh::signed();
    let admin_pub = m.s("admin.key.pub");
    let shown = |file: &Path, extra: &[&str]| {
        let mut args = vec![
            "roster".to_string(),
            "show".into(),
            file.to_str().unwrap().to_string(),
            "--admin".into(),
            admin_pub.clone(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        quorate(&args)
    };
    let expect = |file: &Path, extra: &[&str], code: &str, words: &str| {
        let o = shown(file, extra);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(text(&o).contains(words), "{code}: {}", text(&o));
        let mut json = extra.to_vec();
        json.push("--json");
        let o = shown(file, &json);
        assert_eq!(o.status.code(), Some(1));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["valid"], false);
        assert_eq!(v["error"], code, "{v}");
    };
    let cose = m.path("roster.cose");
    let (_, good) = m.show_json(&["--admin", &admin_pub]);
    let expires = good["expires_at"].as_u64().unwrap();

    // Expired, and the auditor's --at sees it valid at an earlier time.
    expect(
        &cose,
        &["--at", &expires.to_string()],
        "expired",
        "expired at",
    );
    let o = shown(&cose, &["--at", &(expires - 1).to_string()]);
    assert!(o.status.success(), "{}", text(&o));
    let issued = good["issued_at"].as_u64().unwrap();
    expect(
        &cose,
        &["--at", &(issued - 301).to_string()],
        "not_yet_valid",
        "in the future",
    );
    let o = shown(&cose, &["--at", &(issued - 300).to_string()]);
    assert!(
        o.status.success(),
        "300 s of skew are allowed: {}",
        text(&o)
    );

    // Signed by someone else: names both key ids.
    m.keygen("rogue.key");
    let rogue = m.path("rogue.cose");
    m.ok(&[
        "roster",
        "sign",
        &m.s("roster.json"),
        "--admin",
        &m.s("rogue.key"),
        "--valid-for",
        "1d",
        "--out",
        rogue.to_str().unwrap(),
    ]);
    expect(
        &rogue,
        &[],
        "foreign_signer",
        "pinned roster authority is key id",
    );

    // One byte of the mesh name changed after signing.
    let mut bytes = std::fs::read(&cose).unwrap();
    let pos = bytes.windows(9).position(|w| w == b"hospitals").unwrap();
    bytes[pos] = b'H';
    let tampered = m.path("tampered.cose");
    std::fs::write(&tampered, &bytes).unwrap();
    expect(&tampered, &[], "bad_signature", "altered after signing");

    let garbage = m.path("garbage.cose");
    std::fs::write(&garbage, b"not a roster").unwrap();
    expect(&garbage, &[], "malformed", "REJECTED");

    // A validly signed roster whose content breaks §10.3 (two entries, one key).
    let admin = quorate_node::files::load_secret_key(&m.path("admin.key")).unwrap();
    let bytes = std::fs::read(&cose).unwrap();
    let admin_pk = admin.public_key();
    let mut r = Roster::verify(&bytes, &admin_pk, issued).unwrap();
    r.entries[1].key = r.entries[0].key;
    let dup = m.path("dup.cose");
    std::fs::write(&dup, r.sign(&admin).unwrap()).unwrap();
    assert!(matches!(
        Roster::verify(&std::fs::read(&dup).unwrap(), &admin_pk, issued),
        Err(RosterError::Malformed(_))
    ));
    expect(&dup, &[], "malformed", "duplicate");

    // Unreadable input is a usage error (2), not a verdict.
    let o = shown(&m.path("missing.cose"), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn hand_edited_drafts_are_checked() {
    let m = Mesh::signed();
    let path = m.path("roster.json");
    let original = std::fs::read_to_string(&path).unwrap();
    let sign = || {
        quorate([
            "roster",
            "sign",
            path.to_str().unwrap(),
            "--admin",
            &m.s("admin.key"),
            "--valid-for",
            "1d",
            "--out",
            &m.s("edited.cose"),
        ])
    };
    for (edit, words) in [
        (
            original.replacen("\"addresses\"", "\"adresses\"", 1),
            "adresses",
        ),
        (
            original.replacen("quorate-roster-draft/1", "quorate-roster-draft/9", 1),
            "quorate-roster-draft/9",
        ),
        (
            original.replacen("\"analyst\"", "\"node1\"", 1),
            "names must be unique",
        ),
        (
            original.replacen("\"role\": \"client\"", "\"role\": \"admin\"", 1),
            "admin",
        ),
    ] {
        assert_ne!(edit, original, "edit for {words} did not apply");
        std::fs::write(&path, &edit).unwrap();
        let o = sign();
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains(words), "{words}: {}", text(&o));
        assert!(!m.path("edited.cose").exists());
    }
    std::fs::write(&path, &original).unwrap();
    assert!(sign().status.success());

    let o = quorate([
        "roster",
        "init",
        "--mesh",
        "again",
        "--out",
        path.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("--force"), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), original);
}

#[test]
fn help_teaches_the_workflow() {
    let top = text(&quorate(["roster", "--help"]));
    for sub in ["init", "add", "remove", "sign", "show"] {
        assert!(top.contains(sub), "{sub} missing from: {top}");
    }
    let sign = text(&quorate(["roster", "sign", "--help"]));
    assert!(
        sign.contains("--serial") && sign.contains("Example"),
        "{sign}"
    );
    let show = text(&quorate(["roster", "show", "--help"]));
    assert!(
        show.contains("300 s") && show.contains("Exit status"),
        "{show}"
    );
    let add = text(&quorate(["roster", "add", "--help"]));
    assert!(
        add.contains("sha256sum") && add.contains("--role client"),
        "{add}"
    );
}

fn base64(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
