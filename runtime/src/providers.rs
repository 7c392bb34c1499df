//! Execution providers (§12.2): an ordered preference list with fallback. Every provider that
//! cannot be used is reported with its reason; the one that ran goes into each receipt.
//!
//! OpenVINO runs as a *plugin* execution provider (§12.2.1): a separate library registered on
//! the one ORT environment, whose devices a session is created with. It supersedes the
//! OpenVINO EP built into some ONNX Runtime builds, which the PyPI `onnxruntime` library
//! quorate loads does not have.

use ort::ep::{self, ExecutionProvider};

use crate::plugin;

/// The inference precision asked of a plugin provider (§12.2.1). Always set explicitly: the
/// OpenVINO CPU plugin otherwise picks bf16 on CPUs that have it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Precision {
    /// IEEE float32 throughout: the closest to the CPU provider.
    F32,
    /// bfloat16 where the device supports it (Intel AMX, AVX-512 BF16).
    Bf16,
    /// IEEE float16.
    F16,
}

impl Precision {
    /// Every precision, widest first.
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::Bf16, Precision::F16];

    /// The configuration and receipt name: `f32`, `bf16`, `f16`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }

    /// Parses `f32`, `bf16` or `f16` (any case).
    pub fn parse(s: &str) -> Option<Self> {
        Precision::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A provider named in a node's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Provider {
    /// Qualcomm QNN (Hexagon NPU).
    Qnn,
    /// Apple CoreML (Neural Engine).
    CoreMl,
    /// Android NNAPI.
    Nnapi,
    /// Intel OpenVINO through its plugin library (§12.2.1), on a device (`CPU`, `GPU`, `NPU`)
    /// at a precision. `None` is the configuration `openvino:DEVICE`, which runs at f32: the
    /// precision is still set explicitly, never left to the plugin.
    OpenVino {
        /// OpenVINO device name, upper case.
        device: String,
        /// The precision written in the configuration, if any.
        precision: Option<Precision>,
    },
    /// Huawei CANN (Ascend NPU).
    Cann,
    /// AMD Vitis AI (Ryzen AI NPU).
    Vitis,
    /// XNNPACK (optimised CPU kernels).
    Xnnpack,
    /// The default CPU provider: always available, the last fallback.
    Cpu,
}

/// The OpenVINO devices a configuration may name.
const OPENVINO_DEVICES: [&str; 3] = ["CPU", "GPU", "NPU"];

impl Provider {
    /// Every provider, in the default preference order.
    pub fn all() -> Vec<Provider> {
        let ov = |d: &str| Provider::OpenVino {
            device: d.into(),
            precision: None,
        };
        vec![
            Provider::Qnn,
            Provider::CoreMl,
            Provider::Nnapi,
            ov("NPU"),
            ov("GPU"),
            Provider::Cann,
            Provider::Vitis,
            Provider::Xnnpack,
            ov("CPU"),
            Provider::Cpu,
        ]
    }

    /// Parses a configuration name: `qnn`, `coreml`, `nnapi`,
    /// `openvino[:NPU|GPU|CPU[:f32|bf16|f16]]`, `cann`, `vitis`, `xnnpack`, `cpu`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let unknown = || {
            format!(
                "unknown execution provider {s:?}; known: qnn, coreml, nnapi, \
                 openvino[:NPU|GPU|CPU[:f32|bf16|f16]], cann, vitis, xnnpack, cpu"
            )
        };
        let lower = s.trim().to_ascii_lowercase();
        let mut parts = lower.split(':');
        let name = parts.next().unwrap_or_default();
        let rest: Vec<&str> = parts.collect();
        if name == "openvino" {
            if rest.len() > 2 {
                return Err(unknown());
            }
            let device = rest.first().copied().unwrap_or("npu").to_ascii_uppercase();
            if !OPENVINO_DEVICES.contains(&device.as_str()) {
                return Err(format!(
                    "unknown OpenVINO device {device:?} in {s:?}; use CPU, GPU or NPU"
                ));
            }
            let precision = match rest.get(1) {
                None => None,
                Some(p) => Some(Precision::parse(p).ok_or_else(|| {
                    format!("unknown precision {p:?} in {s:?}; use f32, bf16 or f16")
                })?),
            };
            return Ok(Provider::OpenVino { device, precision });
        }
        if !rest.is_empty() {
            return Err(unknown());
        }
        Ok(match name {
            "qnn" => Provider::Qnn,
            "coreml" => Provider::CoreMl,
            "nnapi" => Provider::Nnapi,
            "cann" => Provider::Cann,
            "vitis" => Provider::Vitis,
            "xnnpack" => Provider::Xnnpack,
            "cpu" => Provider::Cpu,
            _ => return Err(unknown()),
        })
    }

    /// The configuration name, as written (an OpenVINO precision only when one was given).
    pub fn label(&self) -> String {
        match self {
            Provider::Qnn => "qnn".into(),
            Provider::CoreMl => "coreml".into(),
            Provider::Nnapi => "nnapi".into(),
            Provider::OpenVino {
                device,
                precision: None,
            } => format!("openvino:{device}"),
            Provider::OpenVino {
                device,
                precision: Some(p),
            } => format!("openvino:{device}:{p}"),
            Provider::Cann => "cann".into(),
            Provider::Vitis => "vitis".into(),
            Provider::Xnnpack => "xnnpack".into(),
            Provider::Cpu => "cpu".into(),
        }
    }

    /// The precision a plugin provider runs at (§12.2.1): the configured one, else f32.
    pub fn precision(&self) -> Option<Precision> {
        match self {
            Provider::OpenVino { precision, .. } => Some(precision.unwrap_or(Precision::F32)),
            _ => None,
        }
    }

    /// ONNX Runtime's name for it.
    pub fn ort_name(&self) -> &'static str {
        match self {
            Provider::Qnn => ep::QNN::NAME,
            Provider::CoreMl => ep::CoreML::NAME,
            Provider::Nnapi => ep::NNAPI::NAME,
            Provider::OpenVino { .. } => plugin::OPENVINO_EP_NAME,
            Provider::Cann => ep::CANN::NAME,
            Provider::Vitis => ep::Vitis::NAME,
            Provider::Xnnpack => ep::XNNPACK::NAME,
            Provider::Cpu => ep::CPU::NAME,
        }
    }

    /// The provider as recorded in receipt field 8 (§4.2, §12.2): ONNX Runtime's name, and for
    /// a plugin provider its device and precision, e.g. `OpenVINOExecutionProvider:CPU:bf16`.
    pub fn receipt_name(&self) -> String {
        match self {
            Provider::OpenVino { device, .. } => format!(
                "{}:{device}:{}",
                plugin::OPENVINO_EP_NAME,
                self.precision().unwrap_or(Precision::F32)
            ),
            other => other.ort_name().to_string(),
        }
    }

    /// Whether this provider can be used here; the reason if not. For a built-in provider:
    /// whether the loaded ONNX Runtime library was built with it. For OpenVINO: whether the
    /// plugin library was found and registered and offers the device (§12.2.1).
    pub fn availability(&self) -> Result<(), String> {
        let available = match self {
            Provider::OpenVino { device, .. } => {
                return plugin::openvino_device(device).map(|_| ());
            }
            Provider::Qnn => ep::QNN::is_available(),
            Provider::CoreMl => ep::CoreML::is_available(),
            Provider::Nnapi => ep::NNAPI::is_available(),
            Provider::Cann => ep::CANN::is_available(),
            Provider::Vitis => ep::Vitis::is_available(),
            Provider::Xnnpack => ep::XNNPACK::is_available(),
            Provider::Cpu => Ok(true),
        };
        match available {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!(
                "{} is not built into the loaded ONNX Runtime library",
                self.ort_name()
            )),
            Err(e) => Err(format!("cannot query {}: {e}", self.ort_name())),
        }
    }

    /// The dispatch of a built-in provider to register on a session; registration failure is
    /// an error, not a silent fallback, so the node knows which provider really runs. `None`
    /// for a plugin provider, which a session gets through its devices instead (§12.2.1).
    pub fn dispatch(&self) -> Option<ep::ExecutionProviderDispatch> {
        let d = match self {
            Provider::Qnn => ep::QNN::default().build(),
            Provider::CoreMl => ep::CoreML::default().build(),
            Provider::Nnapi => ep::NNAPI::default().build(),
            Provider::OpenVino { .. } => return None,
            Provider::Cann => ep::CANN::default().build(),
            Provider::Vitis => ep::Vitis::default().build(),
            Provider::Xnnpack => ep::XNNPACK::default().build(),
            Provider::Cpu => ep::CPU::default().build(),
        };
        Some(d.error_on_failure())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_names_round_trip_and_precision_defaults_to_f32() {
        for s in [
            "cpu",
            "xnnpack",
            "openvino:NPU",
            "openvino:CPU:f32",
            "openvino:CPU:bf16",
            "openvino:GPU:f16",
        ] {
            assert_eq!(Provider::parse(s).unwrap().label(), s);
        }
        assert_eq!(Provider::parse("openvino").unwrap().label(), "openvino:NPU");
        let ov = Provider::parse("openvino:cpu").unwrap();
        assert_eq!(ov.precision(), Some(Precision::F32));
        assert_eq!(ov.receipt_name(), "OpenVINOExecutionProvider:CPU:f32");
        assert_eq!(
            Provider::parse("openvino:CPU:BF16").unwrap().receipt_name(),
            "OpenVINOExecutionProvider:CPU:bf16"
        );
        assert_eq!(Provider::Cpu.receipt_name(), "CPUExecutionProvider");
        for bad in [
            "openvino:TPU",
            "openvino:CPU:f8",
            "openvino:CPU:f32:x",
            "cpu:f32",
            "tpu",
        ] {
            assert!(Provider::parse(bad).is_err(), "{bad}");
        }
    }
}
