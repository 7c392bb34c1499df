//! The models a node serves, loaded once at start and shared by its job services.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use quorate_crypto::tensor_digest::Digest32;
use quorate_protocol::messages::{ErrorCode, ErrorFrame};
use quorate_runtime::LoadedModel;
use quorate_runtime::providers::Provider;

/// ONNX models by SHA-256 of their file.
pub struct Models {
    onnx: HashMap<Digest32, Arc<LoadedModel>>,
}

impl Models {
    /// Loads every `*.onnx` in `dir` on the first provider of `providers` that takes it,
    /// logging each model and every provider passed over.
    pub fn load(
        dir: &Path,
        node: &str,
        intra_threads: usize,
        providers: &[Provider],
    ) -> anyhow::Result<Self> {
        let mut onnx = HashMap::new();
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read models folder {}", dir.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
            .collect();
        entries.sort();
        for path in entries {
            let bytes =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let (model, passed_over) =
                LoadedModel::with_providers(&bytes, intra_threads, providers)
                    .with_context(|| format!("model {}", path.display()))?;
            for why in passed_over {
                tracing::warn!(node = %node, "{}: provider passed over: {why}", path.display());
            }
            let file_name = path.file_name().and_then(|n| n.to_str());
            tracing::info!(
                node = %node,
                "serving {} sha256:{} on {}",
                file_name.unwrap_or_default(),
                hex::encode(model.digest),
                model.provider
            );
            onnx.insert(model.digest, Arc::new(model));
        }
        Ok(Self { onnx })
    }

    /// The model with this digest, or `unknown_model`.
    pub fn onnx(&self, digest: &Digest32) -> Result<Arc<LoadedModel>, ErrorFrame> {
        self.onnx.get(digest).cloned().ok_or_else(|| {
            ErrorFrame::new(
                ErrorCode::UnknownModel,
                format!("no model sha256:{}", hex::encode(digest)),
            )
        })
    }

    /// Every model with the provider it runs on.
    pub fn providers(&self) -> impl Iterator<Item = (Digest32, String)> + '_ {
        self.onnx.iter().map(|(d, m)| (*d, m.provider.clone()))
    }

    /// How many models are served.
    pub fn len(&self) -> usize {
        self.onnx.len()
    }

    /// True when no model is served.
    pub fn is_empty(&self) -> bool {
        self.onnx.is_empty()
    }
}
