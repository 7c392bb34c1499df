//! The `quorate` command: attested inference, verification, and the mesh.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

use clap::{Parser, Subcommand};
use quorate_cli::{bench_poisoning, bench_secagg, commands};

/// quorate: attested, cross-verified, privacy-preserving inference.
///
/// Every result quorate returns carries a signed receipt (COSE_Sign1, Ed25519) that commits
/// to the model, the inputs and the outputs, so an auditor can check it offline from the
/// receipt and the node's public key alone.
#[derive(Parser)]
#[command(
    name = "quorate",
    version,
    propagate_version = true,
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the main job end to end with the bundled models, and verify every receipt.
    Demo(commands::demo::DemoArgs),
    /// Create an Ed25519 identity key pair.
    Keygen(commands::keygen::KeygenArgs),
    /// Run a model locally and sign a receipt for the result.
    Run(commands::run::RunArgs),
    /// Serve models to the mesh over QUIC.
    Node(commands::node::NodeArgs),
    /// Run one attested inference on a mesh node and check its receipt.
    Infer(commands::infer::InferArgs),
    /// A private ensemble: members' models aggregated with SecAgg, nothing per member revealed.
    Ensemble(commands::ensemble::EnsembleArgs),
    /// Verify receipts offline against trusted public keys.
    Verify(commands::verify::VerifyArgs),
    /// Ask nodes for their transparency logs' heads and proofs, and monitor them.
    #[command(subcommand)]
    Log(commands::log::LogCommand),
    /// Build, sign and inspect the signed roster (the mesh's allowlist).
    #[command(subcommand)]
    Roster(commands::roster::RosterCommand),
    /// Measure honest drift across execution providers, precisions and threads, and propose
    /// comparison policies.
    Calibrate(commands::calibrate::CalibrateArgs),
    /// Write a generated ONNX model (a small BERT-style transformer) for calibration and tests.
    GenModel(commands::gen_model::GenModelArgs),
    /// Cut an ONNX model into pipeline stages at named tensors.
    Split(commands::split::SplitArgs),
    /// Run a split model stage by stage across mesh nodes, with a verified receipt chain.
    Pipeline(commands::pipeline::PipelineArgs),
    /// Encrypted inference with TFHE: key generation and encrypted ensembles.
    #[cfg(feature = "fhe")]
    #[command(subcommand)]
    Fhe(commands::fhe::FheCommand),
    /// Measure performance against raw-primitive baselines.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Secure aggregation: client and server time against the AES-CTR + X25519 bound.
    Secagg(bench_secagg::BenchSecaggArgs),
    /// Verified jobs (§14.8): detection rate per misbehaviour and false positives.
    Poisoning(bench_poisoning::BenchPoisoningArgs),
    /// Verified jobs on a mixed mesh (CPU, OpenVINO f32 and bf16) serving a real
    /// transformer under its calibrated policy (§14.10): honest jobs and poisoning at
    /// multiples of the honest envelope.
    Hetero(quorate_cli::bench_hetero::BenchHeteroArgs),
    /// A live mesh under valid and hostile traffic for minutes: every valid job answered,
    /// every receipt logged, hostile traffic refused, memory and descriptors bounded.
    Soak(quorate_cli::bench_soak::BenchSoakArgs),
    /// The hot path against its parts: latency, throughput, local batches, audits and
    /// ensembles, each a ratio to a baseline measured in the same run.
    Mesh(quorate_cli::bench_mesh::BenchMeshArgs),
    /// Encrypted dot product: naive scalar multiplications against pre-shifted planes.
    #[cfg(feature = "fhe")]
    Fhe(quorate_cli::bench_fhe::BenchFheArgs),
    /// The QUIC server `bench mesh` starts for its round-trip baseline (serves until stdin
    /// closes).
    #[command(hide = true)]
    Echo(quorate_cli::bench_mesh::echo::BenchEchoArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => commands::demo::run(&args),
        Command::Keygen(args) => commands::keygen::run(&args),
        Command::Run(args) => commands::run::run(&args),
        Command::Node(args) => commands::node::run(&args),
        Command::Infer(args) => commands::infer::run(&args),
        Command::Ensemble(args) => commands::ensemble::run(&args),
        Command::Verify(args) => commands::verify::run(&args),
        Command::Roster(cmd) => commands::roster::run(&cmd),
        Command::Log(cmd) => commands::log::run(&cmd),
        Command::Calibrate(args) => commands::calibrate::run(&args),
        Command::GenModel(args) => commands::gen_model::run(&args),
        Command::Split(args) => commands::split::run(&args),
        Command::Pipeline(args) => commands::pipeline::run(&args),
        Command::Bench(BenchCommand::Secagg(args)) => bench_secagg::run(&args),
        Command::Bench(BenchCommand::Poisoning(args)) => bench_poisoning::run(&args),
        Command::Bench(BenchCommand::Hetero(args)) => quorate_cli::bench_hetero::run(&args),
        Command::Bench(BenchCommand::Soak(args)) => quorate_cli::bench_soak::run(&args),
        Command::Bench(BenchCommand::Mesh(args)) => quorate_cli::bench_mesh::run(&args),
        Command::Bench(BenchCommand::Echo(args)) => quorate_cli::bench_mesh::echo::run(&args),
        #[cfg(feature = "fhe")]
        Command::Fhe(cmd) => commands::fhe::run(&cmd),
        #[cfg(feature = "fhe")]
        Command::Bench(BenchCommand::Fhe(args)) => quorate_cli::bench_fhe::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
