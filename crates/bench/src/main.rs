//! `switchyard-bench`: the throughput harness (docs/benchmarks.md). Measures
//! forwarding against dpdk-testpmd (io, macswap) in the same run, or (scenario
//! upgrade) loss and output gaps while the switching unit is upgraded, or
//! (scenario board) how fast the bulletin board reaches its watchers.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use switchyard_bench::{BenchOptions, Scenario};

#[derive(Parser)]
#[command(name = "switchyard-bench", version, about = "Measure Switchyard against dpdk-testpmd in the same run")]
struct Cli {
    /// One of: forward, l2-switch, vxlan-encap, vxlan-decap, migration-rewrite, gateway, upgrade, board.
    #[arg(long)]
    scenario: String,
    /// Measuring time per run.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=3600))]
    seconds: u32,
    #[arg(long, value_name = "PATH", default_value = "dpdk-testpmd")]
    testpmd: PathBuf,
    /// Also write the report as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Measure again while the switching table changes this many times a second.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    churn: u32,
    /// Scenario upgrade: upgrades to run back to back, alternating basic-v2.so and basic-v1.so.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    upgrades: u32,
    /// Scenario upgrade: the directory holding basic-v1.so and basic-v2.so
    /// [default: <the executable's directory>/../units, where `make units` puts them].
    #[arg(long, value_name = "DIR")]
    units: Option<PathBuf>,
    /// Scenario upgrade: where to write the throughput plot (SVG).
    #[arg(long, value_name = "PATH", default_value = "out/upgrade.svg")]
    plot: PathBuf,
    /// Scenario board: record updates to make, one after another.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    updates: u32,
    /// Scenario board: watchers following the board, each with its own client.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=256))]
    watchers: u32,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let cli = Cli::parse();
    let scenario = match Scenario::named(&cli.scenario) {
        Ok(scenario) => scenario,
        Err(message) => {
            eprintln!("switchyard-bench: {message}");
            return ExitCode::from(2);
        }
    };
    let options = BenchOptions {
        scenario,
        seconds: cli.seconds,
        testpmd: cli.testpmd,
        json: cli.json,
        churn: cli.churn,
        upgrades: cli.upgrades,
        units: cli.units,
        plot: cli.plot,
        updates: cli.updates,
        watchers: cli.watchers,
    };
    match switchyard_bench::run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("switchyard-bench: {message}");
            ExitCode::FAILURE
        }
}
}
