//! Shared helpers of quorate's end-to-end and conformance tests (in `tests/tests/`).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Test helpers: failing loudly is their job.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

pub mod batch;
pub mod bundled;
pub mod impair;
pub mod netns;
pub mod openvino;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `quorate` binary built by the same `cargo test` run (target/<profile>/quorate).
pub fn quorate_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let bin = exe
        .ancestors()
        .skip(1)
        .take(3)
        .map(|d| d.join("quorate"))
        .find(|p| p.is_file());
    match bin {
        Some(b) => b,
        None => panic!(
            "the quorate binary is not built next to {}; build it first: `cargo build --workspace --bins` (./scripts/test does)",
            exe.display()
        ),
    }
}

/// Runs `quorate` with `args` and returns its output.
pub fn quorate<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    match Command::new(quorate_bin()).args(args).output() {
        Ok(o) => o,
        Err(e) => panic!("cannot start quorate: {e}"),
    }
}

/// stdout and stderr as one string, for assertions and failure messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A file under `spec/vectors/`.
pub fn vector_path(rel: &str) -> PathBuf {
    repo_root().join("spec/vectors").join(rel)
}

/// Every JSON file under `spec/vectors/<dir>`, sorted.
pub fn vector_files(dir: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(vector_path(dir))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Reads and parses a JSON file.
pub fn read_json(path: &Path) -> serde_json::Value {
    let bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Writes the generated vectors into `spec/vectors/<dir>` when `QUORATE_REGENERATE_VECTORS`
/// is set; in every case asserts that the folder holds exactly what the generator produces.
pub fn check_or_regenerate(
    dir: &str,
    generated: &std::collections::BTreeMap<String, serde_json::Value>,
) {
    let path = vector_path(dir);
    if std::env::var_os("QUORATE_REGENERATE_VECTORS").is_some() {
        std::fs::create_dir_all(&path).unwrap();
        for (name, v) in generated {
            std::fs::write(
                path.join(name),
                serde_json::to_string_pretty(v).unwrap() + "\n",
            )
            .unwrap();
        }
    }
    for (name, v) in generated {
        let on_disk = read_json(&path.join(name));
        assert_eq!(
            &on_disk, v,
            "spec/vectors/{dir}/{name} differs from the generator; regenerate and review the diff"
        );
    }
    assert_eq!(
        vector_files(dir).len(),
        generated.len(),
        "spec/vectors/{dir} holds files the generator does not write"
    );
}

/// Checks what every vector file must say: how it was generated, and an expectation that
/// agrees with its name (`_bad_` files are invalid, the others valid).
pub fn check_vector_header(name: &str, v: &serde_json::Value) {
    assert!(
        v["generated_by"].is_string(),
        "{name} does not say how it was generated"
    );
    assert_eq!(
        name.contains("_bad_"),
        v["expect"] == "invalid",
        "{name}: file name and expectation disagree"
    );
}

/// The tensors of a JSON tensor file (`outputs.json`).
pub fn tensors(path: &Path) -> Vec<quorate_protocol::tensor::Tensor> {
    quorate_protocol::tensor_file::parse_json(&std::fs::read(path).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .map(|r| r.tensor)
        .collect()
}

/// The bundled mlp.onnx on the bundled sample, run locally with `quorate run` under `dir`:
/// the outputs a mesh job on the same input must equal.
pub fn whole_model_outputs(dir: &Path) -> Vec<quorate_protocol::tensor::Tensor> {
    let models = repo_root().join("models");
    let key = dir.join("local.key");
    let o = quorate([
        std::ffi::OsStr::new("keygen"),
        "--out".as_ref(),
        key.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let out = dir.join("whole");
    let o = quorate([
        std::ffi::OsStr::new("run"),
        "--model".as_ref(),
        models.join("mlp.onnx").as_os_str(),
        "--input".as_ref(),
        models.join("samples/features.npy").as_os_str(),
        "--key".as_ref(),
        key.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    tensors(&out.join("outputs.json"))
}

/// A multi-threaded tokio runtime with I/O and timers, as the mesh client needs.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}
