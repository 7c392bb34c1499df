//! The bundled models and sample of `models/`, as the end-to-end tests use them.

use std::path::PathBuf;

use quorate_crypto::tensor_digest::sha256;
use quorate_protocol::tensor::Tensor;
use quorate_protocol::tensor_file::parse_npy;

/// The folder of the bundled models.
pub fn models() -> PathBuf {
    super::repo_root().join("models")
}

/// The bundled sample input (`samples/features.npy`) as the tensor `features`.
pub fn sample() -> Tensor {
    parse_npy(
        &std::fs::read(models().join("samples/features.npy")).unwrap(),
        "features",
    )
    .unwrap()
}

/// The digest of `hospital-{i}.onnx`.
pub fn hospital(i: usize) -> [u8; 32] {
    sha256(&std::fs::read(models().join(format!("hospital-{i}.onnx"))).unwrap())
}
