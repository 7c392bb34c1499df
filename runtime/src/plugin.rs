//! Plugin execution providers (§12.2.1): the OpenVINO plugin library, found on disk, registered
//! once on the process's ORT environment, and the devices it offers.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::device::Device;
use ort::memory::DeviceType;

use crate::environment;

/// ONNX Runtime's name of its CPU execution provider.
pub const CPU_EP_NAME: &str = "CPUExecutionProvider";
/// ONNX Runtime's name of the OpenVINO execution provider.
pub const OPENVINO_EP_NAME: &str = "OpenVINOExecutionProvider";
/// The plugin release the project is built and tested against (PyPI `onnxruntime-ep-openvino`).
pub const OPENVINO_EP_VERSION: &str = "1.8.1";
/// The plugin library's file name.
pub const OPENVINO_EP_LIBRARY: &str = "libonnxruntime_providers_openvino_plugin.so";
/// The environment variable naming the plugin library (or the folder holding it).
pub const OPENVINO_EP_ENV: &str = "QUORATE_OPENVINO_EP";
/// What to run when the plugin cannot be found.
pub const OPENVINO_FETCH_HINT: &str = "run ./scripts/fetch-openvino-ep.sh from the quorate \
checkout, or set QUORATE_OPENVINO_EP to libonnxruntime_providers_openvino_plugin.so";

/// A registered plugin library.
#[derive(Clone, Debug)]
pub struct PluginLibrary {
    /// Where it was loaded from.
    pub path: PathBuf,
    /// Its release, from the versioned file name beside it (`….so.1.8.1`), if present.
    pub version: Option<String>,
}

/// Where the plugin is looked for, in order: `QUORATE_OPENVINO_EP`, the checkout the binary was
/// built from, next to the binary, the working directory.
fn candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os(OPENVINO_EP_ENV) {
        let p = PathBuf::from(p);
        out.push(if p.is_dir() {
            p.join(OPENVINO_EP_LIBRARY)
        } else {
            p
        });
    }
    let rel = Path::new("third_party/openvino-ep").join(OPENVINO_EP_LIBRARY);
    out.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(&rel));
    if let Ok(exe) = std::env::current_exe() {
        for up in exe.ancestors().skip(1).take(4) {
            out.push(up.join(&rel));
        }
    }
    out.push(rel);
    out
}

/// The release named by a `libonnxruntime_providers_openvino_plugin.so.X.Y.Z` beside `lib`.
fn version_beside(lib: &Path) -> Option<String> {
    let dir = lib.parent()?;
    let prefix = format!("{OPENVINO_EP_LIBRARY}.");
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter_map(|n| n.strip_prefix(&prefix).map(str::to_string))
        .filter(|v| v.split('.').count() == 3 && v.split('.').all(|p| p.parse::<u32>().is_ok()))
        .max()
}

/// The OpenVINO plugin, registered on the environment the first time it is asked for (§12.2.1).
/// The error says where it was looked for and how to fetch it, or why registration failed.
pub fn openvino_plugin() -> Result<&'static PluginLibrary, String> {
    static PLUGIN: OnceLock<Result<PluginLibrary, String>> = OnceLock::new();
    PLUGIN
        .get_or_init(|| {
            let env = environment().map_err(|e| e.to_string())?;
            let tried = candidates();
            let path = tried.iter().find(|p| p.is_file()).ok_or_else(|| {
                let list: Vec<String> =
                    tried.iter().map(|p| format!("  {}", p.display())).collect();
                format!(
                    "OpenVINO plugin library not found; looked in:\n{}\nTo fix: {OPENVINO_FETCH_HINT}",
                    list.join("\n")
                )
            })?;
            env.register_ep_library(OPENVINO_EP_NAME, path)
                .map_err(|e| {
                    format!(
                        "cannot register the OpenVINO plugin {}: {e}",
                        path.display()
                    )
                })?;
            Ok(PluginLibrary {
                path: path.clone(),
                version: version_beside(path),
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// `CPU`, `GPU`, `NPU` or `FPGA`: the hardware type of a device, as OpenVINO names devices.
pub fn device_kind(device: &Device<'_>) -> &'static str {
    match device.hardware_device().ty() {
        DeviceType::CPU => "CPU",
        DeviceType::GPU => "GPU",
        DeviceType::NPU => "NPU",
        DeviceType::FPGA => "FPGA",
    }
}

/// One device an execution provider offers, for listings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The execution provider's name.
    pub ep: String,
    /// `CPU`, `GPU`, `NPU`.
    pub kind: String,
    /// Hardware vendor.
    pub vendor: String,
    /// Hardware device id.
    pub id: u32,
}

/// Every device the environment offers, with the plugin registered if it can be.
pub fn devices() -> anyhow::Result<Vec<DeviceInfo>> {
    let env = environment()?;
    let _ = openvino_plugin();
    Ok(env
        .devices()
        .map(|d| DeviceInfo {
            ep: d.ep().unwrap_or("?").to_string(),
            kind: device_kind(&d).to_string(),
            vendor: d.hardware_device().vendor().unwrap_or("?").to_string(),
            id: d.hardware_device().id(),
        })
        .collect())
}

/// Checks that the OpenVINO plugin offers `device` (`CPU`, `GPU`, `NPU`); the reason if not.
pub fn openvino_device(device: &str) -> Result<(), String> {
    openvino_plugin()?;
    let env = environment().map_err(|e| e.to_string())?;
    let offered: Vec<&'static str> = env
        .devices()
        .filter(|d| d.ep().is_ok_and(|n| n == OPENVINO_EP_NAME))
        .map(|d| device_kind(&d))
        .collect();
    if offered.contains(&device) {
        Ok(())
    } else {
        Err(format!(
            "the OpenVINO plugin offers no {device} device on this machine (it offers: {})",
            if offered.is_empty() {
                "none".to_string()
            } else {
                offered.join(", ")
            }
        ))
    }
}

/// `onnxruntime 1.31.1`, plus the plugin's release when a plugin provider runs the model:
/// `onnxruntime 1.31.1; openvino-ep 1.8.1` (receipt field 9, §12.2.1).
pub fn runtime_with_plugin(plugin: Option<&PluginLibrary>) -> String {
    let base = crate::runtime_version();
    match plugin {
        None => base,
        Some(p) => format!(
            "{base}; openvino-ep {}",
            p.version.as_deref().unwrap_or("unknown")
        ),
    }
}
