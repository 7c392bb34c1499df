//! Execution providers (§12.2): an ordered preference list with fallback. Every provider that
//! cannot be used is reported with its reason; the one that ran goes into each receipt.

use ort::ep::{self, ExecutionProvider};

/// A provider named in a node's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Provider {
    /// Qualcomm QNN (Hexagon NPU).
    Qnn,
    /// Apple CoreML (Neural Engine).
    CoreMl,
    /// Android NNAPI.
    Nnapi,
    /// Intel OpenVINO on a device: NPU, GPU or CPU.
    OpenVino(String),
    /// Huawei CANN (Ascend NPU).
    Cann,
    /// AMD Vitis AI (Ryzen AI NPU).
    Vitis,
    /// XNNPACK (optimised CPU kernels).
    Xnnpack,
    /// The default CPU provider: always available, the last fallback.
    Cpu,
}

impl Provider {
    /// Every provider, in the default preference order.
    pub fn all() -> Vec<Provider> {
        vec![
            Provider::Qnn,
            Provider::CoreMl,
            Provider::Nnapi,
            Provider::OpenVino("NPU".into()),
            Provider::OpenVino("GPU".into()),
            Provider::Cann,
            Provider::Vitis,
            Provider::Xnnpack,
            Provider::OpenVino("CPU".into()),
            Provider::Cpu,
        ]
    }

    /// Parses a configuration name: `qnn`, `coreml`, `nnapi`, `openvino[:NPU|GPU|CPU]`, `cann`,
    /// `vitis`, `xnnpack`, `cpu`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let lower = s.to_ascii_lowercase();
        let (name, device) = lower
            .split_once(':')
            .map_or((lower.as_str(), None), |(n, d)| (n, Some(d)));
        Ok(match (name, device) {
            ("qnn", None) => Provider::Qnn,
            ("coreml", None) => Provider::CoreMl,
            ("nnapi", None) => Provider::Nnapi,
            ("openvino", d) => Provider::OpenVino(d.unwrap_or("npu").to_ascii_uppercase()),
            ("cann", None) => Provider::Cann,
            ("vitis", None) => Provider::Vitis,
            ("xnnpack", None) => Provider::Xnnpack,
            ("cpu", None) => Provider::Cpu,
            _ => {
                return Err(format!(
                    "unknown execution provider {s:?}; known: qnn, coreml, nnapi, openvino[:NPU|GPU|CPU], cann, vitis, xnnpack, cpu"
                ));
            }
        })
    }

    /// The configuration name.
    pub fn label(&self) -> String {
        match self {
            Provider::Qnn => "qnn".into(),
            Provider::CoreMl => "coreml".into(),
            Provider::Nnapi => "nnapi".into(),
            Provider::OpenVino(d) => format!("openvino:{d}"),
            Provider::Cann => "cann".into(),
            Provider::Vitis => "vitis".into(),
            Provider::Xnnpack => "xnnpack".into(),
            Provider::Cpu => "cpu".into(),
        }
    }

    /// ONNX Runtime's name for it, as recorded in receipts.
    pub fn ort_name(&self) -> &'static str {
        match self {
            Provider::Qnn => ep::QNN::NAME,
            Provider::CoreMl => ep::CoreML::NAME,
            Provider::Nnapi => ep::NNAPI::NAME,
            Provider::OpenVino(_) => ep::OpenVINO::NAME,
            Provider::Cann => ep::CANN::NAME,
            Provider::Vitis => ep::Vitis::NAME,
            Provider::Xnnpack => ep::XNNPACK::NAME,
            Provider::Cpu => ep::CPU::NAME,
        }
    }

    /// Whether the loaded ONNX Runtime library was built with this provider; the reason if not.
    pub fn availability(&self) -> Result<(), String> {
        let available = match self {
            Provider::Qnn => ep::QNN::is_available(),
            Provider::CoreMl => ep::CoreML::is_available(),
            Provider::Nnapi => ep::NNAPI::is_available(),
            Provider::OpenVino(_) => ep::OpenVINO::is_available(),
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

    /// The dispatch to register on a session; registration failure is an error, not a
    /// silent fallback, so the node knows which provider really runs.
    pub fn dispatch(&self) -> ep::ExecutionProviderDispatch {
        let d = match self {
            Provider::Qnn => ep::QNN::default().build(),
            Provider::CoreMl => ep::CoreML::default().build(),
            Provider::Nnapi => ep::NNAPI::default().build(),
            Provider::OpenVino(device) => ep::OpenVINO::default().with_device_type(device).build(),
            Provider::Cann => ep::CANN::default().build(),
            Provider::Vitis => ep::Vitis::default().build(),
            Provider::Xnnpack => ep::XNNPACK::default().build(),
            Provider::Cpu => ep::CPU::default().build(),
        };
        d.error_on_failure()
    }
}
