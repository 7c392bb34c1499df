//! `quorate bench secagg` (§9): placeholder until the secure-aggregation core lands.

/// Arguments of `quorate bench secagg`.
#[derive(clap::Args)]
pub struct BenchSecaggArgs {
    /// Number of clients.
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
}

/// Runs the benchmark.
pub fn run(_args: &BenchSecaggArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("secure aggregation is not built yet")
}
