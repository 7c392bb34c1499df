//! `quorate verify BUNDLE…`: offline check of evidence bundles (§14.7).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::verify_files::verify_bundles;
use quorate_verify::TrustStore;
use quorate_verify::bundle::{human_lines, json_report};

/// Checks the bundles and prints the result; exit 0 only if every bundle is valid and every
/// accusation in it is proven.
pub fn run(files: &[PathBuf], trust: &TrustStore, json: bool) -> anyhow::Result<ExitCode> {
    let reports = verify_bundles(files, trust);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json_report(&reports, trust))?
        );
    } else {
        for r in &reports {
            for line in human_lines(r, trust) {
                println!("{line}");
            }
        }
    }
    Ok(if reports.iter().all(|r| r.ok()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
