//! ONNX Runtime: finding the library, one environment per process, sessions, and
//! converting between quorate tensors and ORT values.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use anyhow::{Context, anyhow, bail};
use ort::environment::Environment;
use ort::session::builder::AutoDevicePolicy;
use ort::session::{Session, SessionInputValue};
use ort::value::{TensorElementType, ValueType};
use quorate_protocol::tensor::{DType, Tensor};

use crate::convert::{from_ort, to_ort};
use crate::plugin::{
    CPU_EP_NAME, OPENVINO_EP_NAME, device_kind, openvino_plugin, runtime_with_plugin,
};
use crate::providers::{Precision, Provider};

/// The ONNX Runtime release the project is built and tested against.
pub const ORT_VERSION: &str = "1.31.1";

/// What to run when the library cannot be found.
pub const FETCH_HINT: &str = "run ./scripts/fetch-onnxruntime.sh from the quorate checkout, \
or set ORT_DYLIB_PATH to a libonnxruntime.so (version 1.31 or newer)";

/// Where the library is looked for, in order (README, "ONNX Runtime").
fn candidates() -> Vec<PathBuf> {
    let lib = format!("libonnxruntime.so.{ORT_VERSION}");
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        out.push(PathBuf::from(p));
    }
    // The checkout the binary was built from, then next to the binary (target/<profile>/).
    out.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../third_party/onnxruntime")
            .join(&lib),
    );
    if let Ok(exe) = std::env::current_exe() {
        for up in exe.ancestors().skip(1).take(4) {
            out.push(up.join("third_party/onnxruntime").join(&lib));
        }
    }
    out.push(PathBuf::from("third_party/onnxruntime").join(&lib));
    out
}

/// The library inside an installed `onnxruntime` Python package, asked of python3 only
/// when nothing else was found.
fn python_candidates() -> Vec<PathBuf> {
    let Some(dir) = python_onnxruntime_capi() else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut libs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so.1."))
        })
        .collect();
    libs.sort();
    libs
}

fn python_onnxruntime_capi() -> Option<PathBuf> {
    let out = std::process::Command::new("python3")
        .args(["-c", "import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), 'capi'))"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The process-wide ORT environment (ort allows exactly one per process).
pub fn environment() -> anyhow::Result<&'static Environment> {
    static ENV: OnceLock<Result<Environment, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut tried = candidates();
        if !tried.iter().any(|p| p.is_file()) {
            tried.extend(python_candidates());
        }
        let path = tried.iter().find(|p| p.is_file()).ok_or_else(|| {
            let list: Vec<String> = tried.iter().map(|p| format!("  {}", p.display())).collect();
            format!(
                "ONNX Runtime library not found; looked in:\n{}\nTo fix: {FETCH_HINT}",
                list.join("\n")
            )
        })?;
        let builder = ort::init_from(path).map_err(|e| {
            format!(
                "cannot load ONNX Runtime from {}: {e}\nTo fix: {FETCH_HINT}",
                path.display()
            )
        })?;
        builder
            .with_name("quorate")
            .build()
            .map_err(|e| format!("cannot start ONNX Runtime: {e}"))
    })
    .as_ref()
    .map_err(|e| anyhow!("{e}"))
}

/// `onnxruntime X.Y.Z`, read from the loaded library's build info.
pub fn runtime_version() -> String {
    let info = ort::info();
    let version = info
        .split(|c: char| c == ',' || c.is_whitespace())
        .find_map(|part| part.strip_prefix("git-branch=rel-"))
        .unwrap_or(ORT_VERSION);
    format!("onnxruntime {version}")
}

/// A declared input or output of a model.
#[derive(Clone, Debug)]
pub struct IoSpec {
    /// Tensor name.
    pub name: String,
    /// Element type, if quorate supports it.
    pub dtype: Option<DType>,
    /// Dimensions; `None` for a symbolic or unknown one.
    pub shape: Vec<Option<u64>>,
}

impl std::fmt::Display for IoSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dims: Vec<String> = self
            .shape
            .iter()
            .map(|d| d.map_or_else(|| "?".to_string(), |d| d.to_string()))
            .collect();
        let dtype = self.dtype.map_or("unsupported", DType::name);
        write!(f, "{} {dtype}[{}]", self.name, dims.join(", "))
    }
}

pub(crate) fn to_dtype(t: TensorElementType) -> Option<DType> {
    Some(match t {
        TensorElementType::Float32 => DType::F32,
        TensorElementType::Float64 => DType::F64,
        TensorElementType::Int8 => DType::I8,
        TensorElementType::Int16 => DType::I16,
        TensorElementType::Int32 => DType::I32,
        TensorElementType::Int64 => DType::I64,
        TensorElementType::Uint8 => DType::U8,
        TensorElementType::Bool => DType::Bool,
        _ => return None,
    })
}

fn io_spec(name: &str, ty: &ValueType) -> IoSpec {
    match ty {
        ValueType::Tensor { ty, shape, .. } => IoSpec {
            name: name.to_string(),
            dtype: to_dtype(*ty),
            shape: shape.iter().map(|&d| u64::try_from(d).ok()).collect(),
        },
        _ => IoSpec {
            name: name.to_string(),
            dtype: None,
            shape: Vec::new(),
        },
    }
}

/// A model loaded into an ORT session, with its declared interface and digest.
pub struct LoadedModel {
    session: Mutex<Session>,
    /// SHA-256 of the model file (§3.4).
    pub digest: [u8; 32],
    /// Declared inputs, in order.
    pub inputs: Vec<IoSpec>,
    /// Declared outputs, in order.
    pub outputs: Vec<IoSpec>,
    /// The execution provider sessions of this model run on, as receipts record it (field 8,
    /// §12.2), e.g. `CPUExecutionProvider` or `OpenVINOExecutionProvider:CPU:bf16`.
    pub provider: String,
    /// The runtime and its version, as receipts record it (field 9, §12.2.1), e.g.
    /// `onnxruntime 1.31.1; openvino-ep 1.8.1`.
    pub runtime: String,
    /// The outputs' names, shared by every output tensor a run returns (no copy per run).
    output_names: Vec<Arc<str>>,
}

/// Why a provider did not load a model (§12.2).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The provider cannot be used on this machine at all (not built in, plugin not found,
    /// device absent).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The provider is here but refused this model: it cannot compile it, or (with CPU
    /// fallback disabled, §12.2.1) cannot run all of it.
    #[error("cannot compile this model: {0}")]
    CannotCompile(String),
    /// ONNX Runtime itself could not start.
    #[error("{0}")]
    Runtime(String),
}

/// The `load_config` option of the OpenVINO plugin (§12.2.1): the precision hint, always
/// explicit, and for the CPU device the number of inference threads.
pub fn openvino_load_config(device: &str, precision: Precision, threads: usize) -> String {
    let mut cfg = serde_json::Map::new();
    cfg.insert(
        "INFERENCE_PRECISION_HINT".into(),
        serde_json::Value::String(precision.name().into()),
    );
    if device == "CPU" {
        cfg.insert(
            "INFERENCE_NUM_THREADS".into(),
            serde_json::Value::String(threads.max(1).to_string()),
        );
    }
    let mut top = serde_json::Map::new();
    top.insert(device.to_string(), serde_json::Value::Object(cfg));
    serde_json::Value::Object(top).to_string()
}

fn session_on(
    env: &'static Environment,
    bytes: &[u8],
    intra_threads: usize,
    provider: &Provider,
) -> Result<Session, ProviderError> {
    let runtime = |e: ort::Error| ProviderError::Runtime(e.to_string());
    let builder = Session::builder(env)
        .map_err(runtime)?
        .with_intra_threads(intra_threads)
        .map_err(|e| runtime(e.into()))?;
    let mut builder = match provider {
        Provider::OpenVino { device, .. } => {
            let precision = provider.precision().unwrap_or(Precision::F32);
            let options = vec![(
                format!("{OPENVINO_EP_NAME}.load_config"),
                openvino_load_config(device, precision, intra_threads),
            )];
            let devices: Vec<_> = env
                .devices()
                .filter(|d| d.ep().is_ok_and(|n| n == OPENVINO_EP_NAME) && device_kind(d) == device)
                .collect();
            // §12.2.1: no silent partial run on the CPU provider; a model the plugin cannot
            // run entirely is refused here and the next provider is tried.
            builder
                .with_config_entry("session.disable_cpu_ep_fallback", "1")
                .map_err(|e| runtime(e.into()))?
                .with_devices(devices, Some(&options))
                .map_err(|e| ProviderError::Unavailable(e.to_string()))?
        }
        Provider::Cpu => {
            // ort gives every new session an automatic device-selection policy; once a plugin
            // is registered it would hand a "cpu" session to the plugin's CPU device, and the
            // receipt would name a provider that did not run (§12.2). Pin the CPU provider's
            // own device instead.
            let cpu: Vec<_> = env
                .devices()
                .filter(|d| d.ep().is_ok_and(|n| n == CPU_EP_NAME))
                .collect();
            if cpu.is_empty() {
                return Err(ProviderError::Unavailable(
                    "ONNX Runtime lists no device of its CPU provider".into(),
                ));
            }
            builder
                .with_auto_device(AutoDevicePolicy::PreferCPU)
                .map_err(|e| runtime(e.into()))?
                .with_devices(cpu, None)
                .map_err(|e| ProviderError::Unavailable(e.to_string()))?
        }
        other => {
            let dispatch = other.dispatch().ok_or_else(|| {
                ProviderError::Unavailable(format!("{} has no dispatch", other.label()))
            })?;
            builder
                .with_auto_device(AutoDevicePolicy::PreferCPU)
                .map_err(|e| runtime(e.into()))?
                .with_execution_providers([dispatch])
                .map_err(|e| ProviderError::Unavailable(e.to_string()))?
        }
    };
    builder
        .commit_from_memory(bytes)
        .map_err(|e| ProviderError::CannotCompile(e.to_string()))
}

impl LoadedModel {
    /// Loads a model from its bytes on the CPU provider.
    pub fn from_bytes(bytes: &[u8], intra_threads: usize) -> anyhow::Result<Self> {
        Ok(Self::with_providers(bytes, intra_threads, &[Provider::Cpu])?.0)
    }

    /// Loads a model on exactly one provider, with no fallback (§12.2).
    pub fn on_provider(
        bytes: &[u8],
        intra_threads: usize,
        provider: &Provider,
    ) -> Result<Self, ProviderError> {
        let env = environment().map_err(|e| ProviderError::Runtime(e.to_string()))?;
        provider
            .availability()
            .map_err(ProviderError::Unavailable)?;
        let session = session_on(env, bytes, intra_threads, provider)?;
        let plugin = match provider {
            Provider::OpenVino { .. } => {
                Some(openvino_plugin().map_err(ProviderError::Unavailable)?)
            }
            _ => None,
        };
        let inputs = session
            .inputs()
            .iter()
            .map(|o| io_spec(o.name(), o.dtype()))
            .collect();
        let outputs = session
            .outputs()
            .iter()
            .map(|o| io_spec(o.name(), o.dtype()))
            .collect::<Vec<_>>();
        Ok(Self {
            session: Mutex::new(session),
            digest: quorate_crypto::tensor_digest::sha256(bytes),
            inputs,
            output_names: outputs.iter().map(|o| Arc::from(o.name.as_str())).collect(),
            outputs,
            provider: provider.receipt_name(),
            runtime: runtime_with_plugin(plugin),
        })
    }

    /// Loads a model on the first provider of `preferences` that works (§12.2), falling back
    /// to the CPU. Returns the model and one line per provider that was passed over, saying
    /// why (`openvino:CPU:f32: cannot compile this model: …`).
    pub fn with_providers(
        bytes: &[u8],
        intra_threads: usize,
        preferences: &[Provider],
    ) -> anyhow::Result<(Self, Vec<String>)> {
        environment()?;
        let mut passed_over = Vec::new();
        let mut chain: Vec<Provider> = preferences
            .iter()
            .filter(|p| **p != Provider::Cpu)
            .cloned()
            .collect();
        chain.push(Provider::Cpu);
        for provider in chain {
            match Self::on_provider(bytes, intra_threads, &provider) {
                Ok(model) => return Ok((model, passed_over)),
                Err(e) if provider != Provider::Cpu => {
                    passed_over.push(format!("{}: {e}", provider.label()));
                }
                Err(e) => bail!("ONNX Runtime refused the model: {e}"),
            }
        }
        bail!("no execution provider could load the model")
    }

    /// Loads a model file.
    pub fn from_file(path: &Path, intra_threads: usize) -> anyhow::Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read model {}", path.display()))?;
        Self::from_bytes(&bytes, intra_threads).with_context(|| format!("model {}", path.display()))
    }

    /// Checks `tensors` against the declared inputs: the same names, types and shapes.
    /// Returns them in declaration order.
    pub fn check_inputs(&self, mut tensors: Vec<Tensor>) -> Result<Vec<Tensor>, InputError> {
        let mut ordered = Vec::with_capacity(self.inputs.len());
        for spec in &self.inputs {
            let pos = tensors
                .iter()
                .position(|t| t.name() == spec.name)
                .ok_or_else(|| InputError::Missing {
                    name: spec.name.clone(),
                    expected: self.describe_inputs(),
                })?;
            let t = tensors.swap_remove(pos);
            let dtype = spec
                .dtype
                .ok_or_else(|| InputError::UnsupportedType(spec.to_string()))?;
            if t.dtype() != dtype {
                return Err(InputError::Type {
                    name: spec.name.clone(),
                    expected: dtype,
                    found: t.dtype(),
                });
            }
            let fits = t.shape().len() == spec.shape.len()
                && t.shape()
                    .iter()
                    .zip(&spec.shape)
                    .all(|(&d, s)| s.is_none_or(|s| s == d));
            if !fits {
                return Err(InputError::Shape {
                    expected: spec.to_string(),
                    found: t.shape().to_vec(),
                });
            }
            ordered.push(t);
        }
        if let Some(extra) = tensors.first() {
            return Err(InputError::Unexpected {
                name: extra.name().to_string(),
                expected: self.describe_inputs(),
            });
        }
        Ok(ordered)
    }

    /// `features float32[?, 30]` style summary of the inputs.
    pub fn describe_inputs(&self) -> String {
        self.inputs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Runs the model on inputs already checked by [`Self::check_inputs`].
    pub fn run<'t>(
        &self,
        inputs: impl IntoIterator<Item = &'t Tensor>,
    ) -> anyhow::Result<Vec<Tensor>> {
        self.lock()?.run(inputs)
    }

    /// Holds the model's session for many runs in a row (a batch, §5): one lock, not one
    /// per run.
    pub fn lock(&self) -> anyhow::Result<Runner<'_>> {
        let session = self
            .session
            .lock()
            .map_err(|_| anyhow!("model session poisoned by a panic"))?;
        Ok(Runner {
            model: self,
            session,
        })
    }
}

/// A model whose session is held by one caller; see [`LoadedModel::lock`].
pub struct Runner<'m> {
    model: &'m LoadedModel,
    session: MutexGuard<'m, Session>,
}

impl Runner<'_> {
    /// The held ONNX Runtime session itself: for baselines that call ONNX Runtime directly on
    /// the session a node serves with (the same providers, threads and options).
    pub fn session(&mut self) -> &mut Session {
        &mut self.session
    }

    /// Runs the model on inputs already checked by [`LoadedModel::check_inputs`]. The
    /// inputs are borrowed: ORT reads their bytes in place where it can.
    pub fn run<'t>(
        &mut self,
        inputs: impl IntoIterator<Item = &'t Tensor>,
    ) -> anyhow::Result<Vec<Tensor>> {
        self.run_wrapped(inputs, |t| t)
    }

    /// [`Self::run`], each output passed through `wrap` on its way into the returned list:
    /// a caller that keeps outputs wrapped (a batch's committed tensors) builds its list once.
    pub fn run_wrapped<'t, T>(
        &mut self,
        inputs: impl IntoIterator<Item = &'t Tensor>,
        mut wrap: impl FnMut(Tensor) -> T,
    ) -> anyhow::Result<Vec<T>> {
        let values: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = inputs
            .into_iter()
            .map(|t| Ok((Cow::Borrowed(t.name()), to_ort(t)?)))
            .collect::<anyhow::Result<_>>()?;
        let outputs = self
            .session
            .run(values)
            .map_err(|e| anyhow!("inference failed: {e}"))?;
        self.model
            .output_names
            .iter()
            .map(|name| {
                let v = outputs
                    .get(name)
                    .ok_or_else(|| anyhow!("runtime returned no output {name:?}"))?;
                from_ort(name, v).map(&mut wrap)
            })
            .collect()
    }
}

/// Input validation failures, each telling the user what the model expects.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// A declared input was not supplied.
    #[error("missing input {name:?}; the model takes: {expected}")]
    Missing {
        /// The missing name.
        name: String,
        /// All declared inputs.
        expected: String,
    },
    /// A supplied tensor matches no declared input.
    #[error("unexpected input {name:?}; the model takes: {expected}")]
    Unexpected {
        /// The extra name.
        name: String,
        /// All declared inputs.
        expected: String,
    },
    /// Wrong element type.
    #[error("input {name:?} must be {expected}, found {found}")]
    Type {
        /// Input name.
        name: String,
        /// Declared type.
        expected: DType,
        /// Supplied type.
        found: DType,
    },
    /// Wrong rank or a fixed dimension differs.
    #[error("input shape {found:?} does not fit {expected}")]
    Shape {
        /// Declared input.
        expected: String,
        /// Supplied shape.
        found: Vec<u64>,
    },
    /// The model declares an input type quorate does not handle.
    #[error("model input {0} has a type quorate does not support")]
    UnsupportedType(String),
}
