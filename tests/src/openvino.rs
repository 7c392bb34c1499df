//! Whether the OpenVINO plugin execution provider (§12.2.1) can run anything on this machine.
//! The plugin loads everywhere, but it offers its CPU device only for some processors: on the
//! AMD EPYC machines of this project's CI it offers no device at all, where on Intel ones it
//! offers its CPU. The tests that run the plugin ask here first, and on such a machine test
//! what a user meets there instead: a clear refusal naming the missing device.

use crate::{quorate, text};

/// `None` when the plugin offers its CPU device here, so a test runs it for real. On a
/// processor of another vendor than Intel whose CPU the plugin does not offer, why it cannot
/// run, as `quorate node --list-providers` says it. Panics (the test fails) when the plugin
/// cannot be loaded at all, or offers no CPU device on an Intel processor: those are faults,
/// not this machine's limits.
pub fn cpu_missing() -> Option<String> {
    let o = quorate(["node", "--list-providers"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    cpu_missing_in(&out)
}

/// [`cpu_missing`] read from `out`, the output of `quorate node --list-providers` that a test
/// has already run.
pub fn cpu_missing_in(out: &str) -> Option<String> {
    assert!(
        out.contains("OpenVINO plugin: "),
        "the OpenVINO plugin did not load: run ./scripts/fetch-openvino-ep.sh (./scripts/test does)\n{out}"
    );
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("openvino:CPU "))
        .unwrap_or_else(|| panic!("no openvino:CPU line:\n{out}"));
    let why = line.trim_start().trim_start_matches("openvino:CPU").trim();
    if why.starts_with("available") {
        return None;
    }
    // The processor as ONNX Runtime reports it, in the devices list: `CPUExecutionProvider
    // <vendor> CPU (id N)`.
    let vendor = out
        .lines()
        .find_map(|l| {
            l.trim_start()
                .strip_prefix("CPUExecutionProvider")
                .map(str::trim)
        })
        .unwrap_or_else(|| panic!("no CPU device listed:\n{out}"));
    assert!(
        why.starts_with("unavailable: the OpenVINO plugin offers no CPU device"),
        "openvino:CPU is unavailable for another reason than a missing device:\n{out}"
    );
    assert!(
        !vendor.to_ascii_lowercase().contains("intel"),
        "the OpenVINO plugin offers no CPU device on an Intel processor ({vendor}):\n{out}"
    );
    let reason = format!("openvino:CPU {why} ({vendor})");
    eprintln!("the OpenVINO plugin cannot run here, so this test checks its refusal: {reason}");
    Some(reason)
}
