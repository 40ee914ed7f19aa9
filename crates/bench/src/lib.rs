//! The throughput harness: `switchyard-bench --scenario NAME`.
//!
//! One run measures, on the same lcore and with the identical generator pcap
//! (`net_pcap ... infinite_rx=1`) and sink (`net_null ... no-rx=1`): dpdk-testpmd
//! in io and macswap modes, then switchyard. Every ratio comes from one run, so
//! machine speed and noise cancel out as far as they can. The `upgrade`
//! scenario (upgrade.rs) measures loss and output gaps instead, and the `board`
//! scenario (board.rs) the bulletin board's propagation latency, without EAL.

mod board;
mod churn;
mod plot;
mod scenario;
mod testpmd;
mod upgrade;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use switchyard::config::Config;
use switchyard::dataplane::Dataplane;
use switchyard::unit::UnitCommand;
pub use scenario::Scenario;

/// The lcore that forwards, for testpmd and switchyard alike; lcore 0 is the main lcore.
const FORWARDING_LCORE: u32 = 1;
/// Mbufs in the pool, the same for testpmd and switchyard.
const MBUFS: u32 = 8191;
/// EAL memory (no hugepages), the same for testpmd and switchyard.
const MEMORY_MB: u32 = 1024;
/// Time to reach steady state before samples count.
const WARMUP: Duration = Duration::from_secs(1);

pub struct BenchOptions {
    pub scenario: Scenario,
    pub seconds: u32,
    pub testpmd: PathBuf,
    pub json: Option<PathBuf>,
    /// Table updates per second applied during a second measuring period (0: none).
    pub churn: u32,
    /// `upgrade` scenario: upgrades to run back to back.
    pub upgrades: u32,
    /// `upgrade` scenario: the directory with basic-v1.so and basic-v2.so
    /// (`None`: `units/` next to the executable's directory, where `make units` puts them).
    pub units: Option<PathBuf>,
    /// `upgrade` scenario: where the throughput plot (SVG) goes.
    pub plot: PathBuf,
    /// `board` scenario: record updates to make, one after another.
    pub updates: u32,
    /// `board` scenario: watchers following the board.
    pub watchers: u32,
}

/// One measured forwarder.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    pub name: String,
    pub mpps: f64,
    /// Median of per-second samples; `samples` has them all.
    pub samples_mpps: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub scenario: &'static str,
    pub description: &'static str,
    pub seconds: u32,
    pub testpmd: Vec<Measurement>,
    pub switchyard: Measurement,
    pub cycles_per_packet: f64,
    /// switchyard / testpmd per mode, e.g. ("macswap", 0.91).
    pub ratios: Vec<(String, f64)>,
    pub reference_mode: &'static str,
    pub target_ratio: f64,
    /// The same run measured again while the table changed `churn` times a second.
    pub under_churn: Option<ChurnMeasurement>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChurnMeasurement {
    pub updates_per_second: u32,
    pub updates_applied: u64,
    pub switchyard: Measurement,
    /// Throughput under churn / without, in the same run.
    pub relative: f64,
}

pub fn run(options: &BenchOptions) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("switchyard-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let result = match options.scenario {
        Scenario::Upgrade => upgrade::run(options, &dir),
        Scenario::Board => board::run(options, &dir),
        _ => measure_all(options, &dir).and_then(|report| write_json(options.json.as_deref(), &report)),
    };
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Writes `report` to `path`, if one was asked for.
fn write_json(path: Option<&Path>, report: &impl Serialize) -> Result<(), String> {
    if let Some(path) = path {
        let json = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
        std::fs::write(path, json + "\n").map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Writes the generator into `dir`, measures testpmd and switchyard, prints the report.
fn measure_all(options: &BenchOptions, dir: &Path) -> Result<BenchReport, String> {
    let scenario = options.scenario;
    let generator = dir.join(format!("{}.pcap", scenario.name()));
    scenario.write_generator(&generator).map_err(|e| format!("cannot write {}: {e}", generator.display()))?;
    println!(
        "bench {}: {}; {} s per run after {} s warm-up, forwarding on lcore {FORWARDING_LCORE}",
        scenario.name(),
        scenario.description(),
        options.seconds,
        WARMUP.as_secs()
    );

    let mut testpmd = Vec::new();
    for mode in scenario.testpmd_modes() {
        let m = testpmd::measure(&options.testpmd, mode, &generator, options.seconds)?;
        println!("  testpmd {mode:<10} {:>8.2} Mpps", m.mpps);
        testpmd.push(m);
    }
    let (switchyard, tsc_hz, under_churn) = measure_switchyard(&scenario, &generator, options.seconds, options.churn)?;
    let cycles_per_packet = tsc_hz as f64 / (switchyard.mpps * 1e6);
    println!("  switchyard {:>15.2} Mpps  {cycles_per_packet:.1} cycles/packet", switchyard.mpps);
    if let Some(churned) = &under_churn {
        println!(
            "  switchyard, {} table updates/s {:>6.2} Mpps  ({:.1}% of the rate without; {} updates applied)",
            churned.updates_per_second,
            churned.switchyard.mpps,
            churned.relative * 100.0,
            churned.updates_applied
        );
    }
    let ratios: Vec<(String, f64)> =
        testpmd.iter().map(|t| (t.name.clone(), switchyard.mpps / t.mpps)).collect();
    for (mode, ratio) in &ratios {
        let target = if mode == scenario.reference_mode() {
            let met = if *ratio >= scenario.target_ratio() { "met" } else { "NOT met" };
            format!("  (target >= {:.2}: {met})", scenario.target_ratio())
        } else {
            String::new()
        };
        println!("  ratio switchyard/testpmd-{mode:<8} {ratio:.2}{target}");
    }
    Ok(BenchReport {
        scenario: scenario.name(),
        description: scenario.description(),
        seconds: options.seconds,
        testpmd,
        switchyard,
        cycles_per_packet,
        ratios,
        reference_mode: scenario.reference_mode(),
        target_ratio: scenario.target_ratio(),
        under_churn,
    })
}

fn measure_switchyard(
    scenario: &Scenario,
    generator: &Path,
    seconds: u32,
    churn: u32,
) -> Result<(Measurement, u64, Option<ChurnMeasurement>), String> {
    let mut dataplane = start_dataplane(*scenario, generator)?;
    std::thread::sleep(WARMUP);
    let output = scenario.output_port();
    let sink = dataplane.port_id(output).ok_or(format!("the bench config has no port {output:?}"))?.index();
    let sample = |dataplane: &Dataplane| {
        let mut samples = Vec::new();
        let mut last = dataplane.totals().ports[sink].tx_packets;
        let mut at = Instant::now();
        for _ in 0..seconds {
            std::thread::sleep(Duration::from_secs(1));
            let (now_packets, now) = (dataplane.totals().ports[sink].tx_packets, Instant::now());
            samples.push((now_packets - last) as f64 / now.duration_since(at).as_secs_f64() / 1e6);
            (last, at) = (now_packets, now);
        }
        Measurement { name: "switchyard".into(), mpps: median(&samples), samples_mpps: samples }
    };
    let measurement = sample(&dataplane);
    let mut under_churn = None;
    if let (true, Some(overlay)) = (churn > 0, dataplane.overlay()) {
        let stop = AtomicBool::new(false);
        let base = scenario.overlay_config();
        let (churned, applied) = std::thread::scope(|scope| {
            let updater = scope.spawn(|| churn::run(overlay, &base, churn, &stop));
            std::thread::sleep(WARMUP);
            let m = sample(&dataplane);
            stop.store(true, Ordering::Relaxed);
            (m, updater.join().unwrap_or(0))
        });
        let relative = churned.mpps / measurement.mpps;
        under_churn = Some(ChurnMeasurement { updates_per_second: churn, updates_applied: applied, switchyard: churned, relative });
        if let Err(e) = overlay.apply(&UnitCommand::Replace(base)) {
            log::error!("bench: cannot restore the configuration after churn: {e}");
        }
    }
    let tsc_hz = dataplane.tsc_hz();
    let summary = dataplane.stop();
    drop(dataplane);
    if summary.unaccounted != 0 {
        return Err(format!("switchyard lost {} packets without counting them", summary.unaccounted));
    }
    Ok((measurement, tsc_hz, under_churn))
}

/// Starts switchyard on `scenario`'s ports, forwarding on FORWARDING_LCORE.
fn start_dataplane(scenario: Scenario, generator: &Path) -> Result<Dataplane, String> {
    let toml = format!(
        r#"
[eal]
lcores = "0-{FORWARDING_LCORE}"
memory_mb = {MEMORY_MB}
file_prefix = "switchyard-bench-{pid}"
[mempool]
mbufs = {MBUFS}
[dataplane]
workers = [{FORWARDING_LCORE}]
{ports}"#,
        pid = std::process::id(),
        ports = scenario.ports_toml(generator),
    );
    let config = Config::parse(&toml, "bench").map_err(|e| e.to_string())?;
    let dataplane = Dataplane::start(&config, "bench", scenario.forwarding()).map_err(|e| e.to_string())?;
    dataplane.open_rx();
    Ok(dataplane)
}

pub(crate) fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}
