//! Shared by the benches: where criterion writes, and reading medians back for ratios.
// Each bench compiles its own copy of this module and uses a different subset of it.
#![allow(dead_code)]

use std::path::PathBuf;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Criterion's output folder (honours CARGO_TARGET_DIR).
pub fn out_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root().join("target"), PathBuf::from)
        .join("criterion")
}

/// The median of `group/id` from this run's estimates, in nanoseconds.
pub fn median_ns(group: &str, id: &str) -> Option<f64> {
    let path = out_dir().join(group).join(id).join("new/estimates.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    v["median"]["point_estimate"].as_f64()
}

/// A criterion runner for mesh benches: `samples` samples, half a second of warm-up,
/// `seconds` of measurement, writing under [`out_dir`], command-line flags honoured.
pub fn mesh_criterion(samples: usize, seconds: u64) -> criterion::Criterion {
    criterion::Criterion::default()
        .output_directory(&out_dir())
        .sample_size(samples)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(seconds))
        .configure_from_args()
}

/// The bundled single-patient sample (`models/samples/features.npy`) as the `features` input.
pub fn sample_features() -> quorate_protocol::tensor::Tensor {
    let bytes = std::fs::read(root().join("models/samples/features.npy"))
        .expect("the bundled sample is readable");
    quorate_protocol::tensor_file::parse_npy(&bytes, "features").expect("the bundled sample parses")
}

/// A multi-threaded runtime and a mesh client for `mesh`'s roster, created inside it (the
/// client's endpoint belongs to that runtime; callers enter it before using the client).
pub fn runtime_and_client(
    mesh: &quorate_cli::local::LocalMesh,
) -> (
    tokio::runtime::Runtime,
    quorate_node::mesh::client::MeshClient,
) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let client = {
        let _entered = rt.enter();
        quorate_node::mesh::client::MeshClient::new(
            &mesh.client_key,
            mesh.roster.clone(),
            std::time::Duration::from_secs(30),
        )
        .expect("a mesh client")
    };
    (rt, client)
}
