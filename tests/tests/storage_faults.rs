//! Storage faults (§12.4.1) on a real node process whose audit log lives on a small tmpfs
//! that the test mounts (CI runs as root): a full disk is answered `storage_unavailable` with
//! no result, health keeps being answered, the node recovers by itself when space returns
//! (twice), and afterwards the log holds exactly the receipts of the jobs that were answered,
//! in order, nothing torn, and verifies. A file system that goes read-only under the node
//! (ext4 on a loop device, `errors=remount-ro`, an error injected through ext4's
//! `trigger_fs_error`) is answered the same way; such a file system stays read-only until it
//! is unmounted, so the test then stops the node, mounts it again as an operator would and
//! finds every answered receipt in the log. A disk that fills up after the node reserved
//! room ahead of its records (§12.4.3) still takes records into that room.

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

/// A node process, killed when dropped: a test that fails half-way leaves no node running.
struct NodeProcess(Child);

impl std::ops::Deref for NodeProcess {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for NodeProcess {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_node(config: &Path) -> NodeProcess {
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
    NodeProcess(child)
}

/// A one-node local mesh, stopped: its keys, roster and node.toml are what the tests reuse.
fn stopped_mesh(dir: &Path) -> LocalMesh {
    let mut mesh = LocalMesh::start(
        &dir.join("mesh"),
        1,
        &repo_root().join("models"),
        &quorate_bin(),
    )
    .unwrap();
    mesh.stop_all().unwrap();
    mesh
}

/// node-1's configuration with its audit log at `log`.
fn config_with_log(mesh: &LocalMesh, log: &Path) -> std::path::PathBuf {
    let node_dir = mesh.dir.join("nodes/node-1");
    let config = node_dir.join("node-faulty-disk.toml");
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
    config
}

/// node-1 of a stopped one-node mesh under `dir`, started with its audit log on a tmpfs of
/// `kib` KiB: the mesh, the tmpfs, the log's path and the node's process.
fn node_on_tmpfs(dir: &Path, kib: u64) -> (LocalMesh, Tmpfs, std::path::PathBuf, NodeProcess) {
    let mesh = stopped_mesh(dir);
    let disk = Tmpfs::mount(&dir.join("disk"), kib);
    let log = disk.0.join("audit.qlog");
    let node = start_node(&config_with_log(&mesh, &log));
    (mesh, disk, log, node)
}

/// Stops the client and the node, then checks that the log holds exactly the `answered`
/// receipts, in order, and nothing torn; returns what the scan found.
fn stop_and_check_log(
    jobs: Jobs,
    node: &mut NodeProcess,
    log: &Path,
    answered: &[Vec<u8>],
) -> quorate_protocol::audit_log::Scan {
    drop(jobs);
    node.kill().unwrap();
    node.wait().unwrap();
    let s = scan(&std::fs::read(log).unwrap()).unwrap();
    assert_eq!(s.torn_bytes, 0);
    assert_eq!(s.records, answered);
    s
}

/// A client of node-1 sending the bundled sample to mlp.onnx.
struct Jobs {
    rt: tokio::runtime::Runtime,
    client: MeshClient,
    entry: quorate_protocol::roster::Entry,
    input: quorate_protocol::tensor::Tensor,
    model: [u8; 32],
}

impl Jobs {
    fn new(mesh: &LocalMesh) -> Self {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let client = {
            let _guard = rt.enter();
            MeshClient::new(
                &mesh.client_key,
                mesh.roster.clone(),
                Duration::from_secs(20),
            )
            .unwrap()
        };
        let (input, model) = mlp_sample(&repo_root().join("models")).unwrap();
        Self {
            rt,
            client,
            entry: mesh.roster.by_name("node-1").unwrap().clone(),
            input,
            model,
        }
    }

    /// One job: its receipt as the log holds it (§18.1: without the inclusion receipt the
    /// reply added in header 394), or the client's error in words.
    fn infer(&self) -> Result<Vec<u8>, String> {
        let req = fresh_request(self.model, vec![self.input.clone()], None).unwrap();
        self.rt
            .block_on(self.client.infer(&self.entry, &req))
            .map(|(response, _)| quorate_protocol::tlog::leaf_bytes(&response.receipt).unwrap())
            .map_err(|e| format!("{e:#}"))
    }

    fn health(&self) {
        self.rt
            .block_on(self.client.health(&self.entry))
            .expect("health is answered through storage faults");
    }
}

impl Drop for Jobs {
    fn drop(&mut self) {
        self.client.close();
    }
}

/// A 16 MiB ext4 file system on a loop device, mounted with `errors=remount-ro`; unmounted
/// and detached on drop.
struct LoopExt4 {
    image: std::path::PathBuf,
    device: String,
    mount: std::path::PathBuf,
}

fn run_ok(program: &str, args: &[&str]) -> String {
    let o = Command::new(program).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "{program} {args:?} failed (this test needs root and loop devices; CI runs as root): {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

impl LoopExt4 {
    fn create(dir: &Path) -> Self {
        let image = dir.join("disk.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(16 << 20)
            .unwrap();
        let device = run_ok("losetup", &["-f", "--show", image.to_str().unwrap()]);
        run_ok("mkfs.ext4", &["-q", &device]);
        let disk = Self {
            image,
            device,
            mount: dir.join("ext4"),
        };
        disk.mount();
        disk
    }

    fn mount(&self) {
        std::fs::create_dir_all(&self.mount).unwrap();
        let mount = self.mount.to_str().unwrap();
        run_ok("mount", &["-o", "errors=remount-ro", &self.device, mount]);
    }

    fn unmount(&self) {
        run_ok("umount", &[self.mount.to_str().unwrap()]);
    }

    /// Makes ext4 record an error, which (`errors=remount-ro`) turns it read-only at once.
    fn inject_error(&self) {
        let name = Path::new(&self.device).file_name().unwrap();
        let trigger = Path::new("/sys/fs/ext4")
            .join(name)
            .join("trigger_fs_error");
        std::fs::write(&trigger, "1").unwrap_or_else(|e| {
            panic!(
                "cannot inject an ext4 error through {}: {e}",
                trigger.display()
            )
        });
    }
}

impl Drop for LoopExt4 {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
        let _ = std::fs::remove_file(&self.image);
    }
}

#[test]
fn a_file_system_gone_read_only_is_answered_storage_unavailable_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = stopped_mesh(dir.path());
    let disk = LoopExt4::create(dir.path());
    let log = disk.mount.join("audit.qlog");
    let config = config_with_log(&mesh, &log);
    let mut node = start_node(&config);

    let jobs = Jobs::new(&mesh);
    let mut answered = Vec::new();
    for _ in 0..3 {
        answered.push(jobs.infer().unwrap());
    }
    disk.inject_error();
    for i in 0..4 {
        let e = jobs
            .infer()
            .expect_err("a job was answered while the audit log could not be written");
        assert!(e.contains("StorageUnavailable"), "job {i}: {e}");
        jobs.health();
    }
    assert!(node.try_wait().unwrap().is_none(), "the node exited");
    drop(jobs);
    node.kill().unwrap();
    node.wait().unwrap();

    // The operator unmounts and mounts the file system again: every answered receipt is
    // there, nothing else, nothing torn, and a node started on it serves again.
    disk.unmount();
    disk.mount();
    let s = scan(&std::fs::read(&log).unwrap()).unwrap();
    assert_eq!(s.torn_bytes, 0);
    assert_eq!(s.records, answered);
    let mut node = start_node(&config);
    let after = Jobs::new(&mesh).infer().unwrap();
    node.kill().unwrap();
    node.wait().unwrap();
    let s = scan(&std::fs::read(&log).unwrap()).unwrap();
    assert_eq!(s.records.len(), answered.len() + 1);
    assert_eq!(s.records.last(), Some(&after));
}

#[test]
fn a_full_audit_disk_is_answered_storage_unavailable_and_the_node_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    // The same node, its audit log on a 256 KiB tmpfs.
    let (mesh, disk, log, mut node) = node_on_tmpfs(dir.path(), 256);

    let jobs = Jobs::new(&mesh);
    let mut answered = Vec::new();
    // Ok(true): answered (its receipt kept); Ok(false): refused with storage_unavailable.
    let mut run = |what: &str| -> bool {
        match jobs.infer() {
            Ok(receipt) => {
                answered.push(receipt);
                true
            }
            Err(e) => {
                assert!(e.contains("StorageUnavailable"), "{what}: {e}");
                false
            }
        }
    };
    let healthy = || jobs.health();

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

    stop_and_check_log(jobs, &mut node, &log, &answered);
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

/// §12.4.3: the zeros a node reserved ahead of its records are its own, durable space. On a
/// disk that fills up after the first commit reserved them, the node goes on answering jobs
/// into them (a full disk without the reserve refuses all but the few the last page takes),
/// and the log then holds exactly the answered receipts, nothing torn, the unused zeros
/// still reserved.
#[test]
fn a_full_disk_still_takes_records_into_the_reserved_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (mesh, disk, log, mut node) = node_on_tmpfs(dir.path(), 4096);
    let jobs = Jobs::new(&mesh);
    let mut answered = vec![jobs.infer().unwrap()];
    fill(&disk.0.join("filler"));
    for i in 0..150 {
        match jobs.infer() {
            Ok(receipt) => answered.push(receipt),
            Err(e) => panic!("job {i} on a full disk, with room reserved: {e}"),
        }
    }
    let s = stop_and_check_log(jobs, &mut node, &log, &answered);
    let used: usize = answered.iter().skip(1).map(|r| r.len() + 36).sum();
    assert!(
        used > 32 * 1024,
        "the jobs wrote {used} bytes, not past a page's slack"
    );
    assert!(s.reserved_bytes > 0 && s.reserved_bytes < 1 << 20);
}
