//! Storage faults (§12.4.1) on a real node process whose audit log lives on a small tmpfs
//! that the test mounts (CI runs as root): a full disk is answered `storage_unavailable` with
//! no result, health keeps being answered, the node recovers by itself when space returns
//! (twice), and afterwards the log holds exactly the receipts of the jobs that were answered,
//! in order, nothing torn, and verifies. (Linux refuses to remount a file system read-only
//! while the node holds its log open for writing, so that case, which takes the same path
//! in the node, is not performed here.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use quorate_cli::local::{LocalMesh, mlp_sample};
use quorate_node::mesh::client::{MeshClient, fresh_request};
use quorate_protocol::audit_log::scan;
use quorate_tests::{quorate_bin, repo_root};

/// Mounts a tmpfs of `kib` KiB on `dir`, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, kib: u64) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let o = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={kib}k,mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "this test mounts a small tmpfs for the audit log and needs root (CI runs as root): {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Self(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system holding `dir` with `filler` until it has no space left.
fn fill(filler: &Path) {
    let mut f = std::fs::File::create(filler).unwrap();
    let chunk = [0u8; 4096];
    loop {
        match f.write_all(&chunk).and_then(|()| f.sync_all()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(28) => return, // ENOSPC
            Err(e) => panic!("filling the tmpfs: {e}"),
        }
    }
}

fn start_node(config: &Path) -> Child {
    let mut child = Command::new(quorate_bin())
        .args(["node", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("listening"), "node did not start: {line}");
    child
}

#[test]
fn a_full_audit_disk_is_answered_storage_unavailable_and_the_node_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let mut mesh = LocalMesh::start(
        &dir.path().join("mesh"),
        1,
        &repo_root().join("models"),
        &quorate_bin(),
    )
    .unwrap();
    mesh.stop_all().unwrap();
    // The same node, its audit log on a 256 KiB tmpfs.
    let disk = Tmpfs::mount(&dir.path().join("disk"), 256);
    let log = disk.0.join("audit.qlog");
    let node_dir = mesh.dir.join("nodes/node-1");
    let config = node_dir.join("node-tmpfs.toml");
    let text = std::fs::read_to_string(node_dir.join("node.toml")).unwrap();
    assert!(text.contains("audit_log = \"audit.qlog\""));
    std::fs::write(
        &config,
        text.replace(
            "audit_log = \"audit.qlog\"",
            &format!("audit_log = {log:?}"),
        ),
    )
    .unwrap();
    let mut node = start_node(&config);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let client = MeshClient::new(
        &mesh.client_key,
        mesh.roster.clone(),
        Duration::from_secs(20),
    )
    .unwrap();
    let entry = mesh.roster.by_name("node-1").unwrap().clone();
    let (input, model) = mlp_sample(&repo_root().join("models")).unwrap();
    let job = || fresh_request(model, vec![input.clone()], None).unwrap();
    let mut answered = Vec::new();
    // Ok(true): answered (its receipt kept); Ok(false): refused with storage_unavailable.
    let mut run = |what: &str| -> bool {
        match rt.block_on(client.infer(&entry, &job())) {
            Ok((resp, _)) => {
                answered.push(resp.receipt);
                true
            }
            Err(e) => {
                let e = format!("{e:#}");
                assert!(e.contains("StorageUnavailable"), "{what}: {e}");
                false
            }
        }
    };
    let healthy = || {
        rt.block_on(client.health(&entry))
            .expect("health is answered through storage faults");
    };

    assert!(run("before any fault"));
    // Disk full: the log's last page may still take a few records; then every job is
    // refused, until space returns.
    let filler = disk.0.join("filler");
    fill(&filler);
    let mut slack = 0;
    while run("disk full") {
        slack += 1;
        assert!(slack < 64, "a full disk never refused a job");
    }
    for _ in 0..3 {
        assert!(!run("disk still full"));
        healthy();
    }
    std::fs::remove_file(&filler).unwrap();
    assert!(run("space returned"));
    assert!(run("and again"));
    // Full again, then space again: recovery is not a one-off.
    fill(&filler);
    while run("full again") {}
    assert!(!run("full again"));
    healthy();
    std::fs::remove_file(&filler).unwrap();
    assert!(run("space returned again"));

    client.close();
    node.kill().unwrap();
    node.wait().unwrap();
    // The log holds exactly the answered receipts, in order, and nothing torn.
    let s = scan(&std::fs::read(&log).unwrap()).unwrap();
    assert_eq!(s.torn_bytes, 0);
    assert_eq!(s.records, answered);
    assert!(answered.len() >= 4 + slack);
    let o = quorate_tests::quorate([
        "verify",
        log.to_str().unwrap(),
        "--roster",
        mesh.dir.join("roster.cose").to_str().unwrap(),
        "--admin",
        mesh.dir.join("admin.pub").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", quorate_tests::text(&o));
}
