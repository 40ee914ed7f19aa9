//! `switchyard-bench --scenario upgrade`: the l2-switch data plane
//! forwards at full rate while the switching unit is upgraded N times back to
//! back through the orchestrator, alternating basic-v2.so and basic-v1.so.
//!
//! It reports what "hitless" means in numbers: packets lost (from the final
//! counters), the longest pause in the worker's output during an upgrade
//! against the longest without one (in a 1 s baseline, and in an idle window
//! as long as each upgrade right after it, so that noise from the host or
//! other processes on the worker's core shows up on both sides), each step's
//! duration, and the throughput before, during and after the upgrades,
//! sampled every millisecond and plotted.
//!
//! The generator (net_pcap infinite_rx) only makes packets when it is polled,
//! so a pause in forwarding costs rate here, never packets. A NIC at line rate
//! keeps sending: a pause longer than its rx ring lasts (1024 descriptors at
//! 20 Mpps: about 50 us) loses packets. That is why the output gap is the
//! figure to judge, next to the loss count.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::plot::{axis_max, Anchor, Frame, Svg};
use super::{median, start_dataplane, write_json, BenchOptions, Scenario, FORWARDING_LCORE, WARMUP};
use switchyard::dataplane::{Dataplane, Monitor, Summary};
use switchyard::model::ConfigSnapshot;
use switchyard::upgrade::{open_unit_library, unix_us, ConfigGate, Outcome, Resumed, UnitFile, UpgradeRecord, Upgrader, STEP_NAMES};

/// The largest pause in output an upgrade may cause (the target, in microseconds).
const GAP_TARGET_US: f64 = 100.0;
/// Forwarding without upgrades, for the gap and the rate to compare with.
const BASELINE: Duration = Duration::from_secs(1);
/// How often the sampler reads the sink's tx counter.
const SAMPLE_PERIOD: Duration = Duration::from_millis(1);
/// After an upgrade returns, the worker gets this long to finish the
/// run-loop iteration that ends the last gap before the gap is read.
const SETTLE: Duration = Duration::from_millis(1);
/// Forwarding after the last upgrade, on the last unit loaded: the rate to
/// compare with (a loaded unit forwards through the unit ABI, the embedded one
/// the baseline ran on does not).
const TAIL: Duration = Duration::from_millis(500);
/// The libraries the upgrades alternate between, in order: the data plane
/// starts on the embedded unit, so the first upgrade is embedded -> v2.
const LIBRARIES: [&str; 2] = ["basic-v2.so", "basic-v1.so"];

/// The bench's config gate. Nothing sends config requests to the bench's data
/// plane, so pause and resume have nothing to hold back or apply; the
/// committed configuration is the one the scenario started the data plane with.
struct BenchGate {
    config: ConfigSnapshot,
}

impl ConfigGate for BenchGate {
    fn pause(&self) {}
    fn committed(&self) -> Result<ConfigSnapshot, String> {
        Ok(self.config.clone())
    }
    fn resume(&self) -> Resumed {
        Resumed::default()
    }
}

/// The sink's rate over the sampling period ending at `t_ms` (since the baseline began).
#[derive(Debug, Clone, Copy, Serialize)]
pub(super) struct Sample {
    pub t_ms: f64,
    pub mpps: f64,
}

/// One upgrade as the bench saw it.
#[derive(Debug, Clone, Serialize)]
pub(super) struct UpgradeRun {
    /// 1-based.
    pub number: u32,
    pub library: String,
    /// The longest pause in output from just before the upgrade to just after it.
    pub gap_us: f64,
    /// The longest pause in a window as long, right after it, without an upgrade.
    pub idle_gap_us: f64,
    /// Since the baseline began.
    pub start_ms: f64,
    pub end_ms: f64,
    /// Each step's start since the baseline began, in the record's order.
    pub step_starts_ms: Vec<f64>,
    pub record: UpgradeRecord,
}

/// Packets in against packets out, from the final counters.
#[derive(Debug, Clone, Serialize)]
pub(super) struct PacketAccount {
    pub generator_rx: u64,
    pub sink_tx: u64,
    /// generator_rx - sink_tx: every packet not forwarded, whatever the reason.
    pub lost: i128,
    /// Drop reasons that counted anything.
    pub drops: BTreeMap<&'static str, u64>,
    /// Neither sent, dropped nor absorbed (0 unless the accounting is broken).
    pub unaccounted: i128,
    /// The generator could not get an mbuf (no packet was made; not a loss).
    pub generator_rx_nombuf: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct GapReport {
    pub target_us: f64,
    /// During the baseline, without an upgrade.
    pub without_upgrade_us: f64,
    /// In the idle window after each upgrade (as long as the upgrade; no upgrade running).
    pub idle_windows_max_us: f64,
    pub idle_windows_median_us: f64,
    /// The largest over all upgrades, and which upgrade it was (1-based).
    pub during_upgrade_max_us: f64,
    pub during_upgrade_max_at: u32,
    pub during_upgrade_median_us: f64,
    pub met: bool,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct DurationStats {
    pub step: u8,
    pub name: String,
    pub mean_us: f64,
    pub max_us: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct Throughput {
    pub sample_period_ms: f64,
    /// Median of the samples in the baseline.
    pub before_mpps: f64,
    /// Median of the samples whose period overlaps an upgrade.
    pub during_mpps: f64,
    pub lowest_during_mpps: f64,
    /// Median of the samples after the last upgrade, on the unit it loaded.
    pub after_mpps: f64,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct UpgradeReport {
    pub scenario: &'static str,
    pub description: &'static str,
    pub libraries: Vec<String>,
    pub packets: PacketAccount,
    pub gap: GapReport,
    /// Per upgrade step 1..=8, over all upgrades.
    pub steps: Vec<DurationStats>,
    /// Whole upgrades (step 0 in this entry).
    pub total: DurationStats,
    pub throughput: Throughput,
    pub baseline_ms: (f64, f64),
    pub plot: String,
    pub upgrades: Vec<UpgradeRun>,
    pub samples: Vec<Sample>,
    pub summary: Summary,
}

/// What the data plane did while the bench watched it.
struct Measured {
    baseline_ms: (f64, f64),
    baseline_gap_cycles: u64,
    runs: Vec<UpgradeRun>,
    samples: Vec<Sample>,
}

pub(super) fn run(options: &BenchOptions, dir: &Path) -> Result<(), String> {
    let units = match &options.units {
        Some(dir) => dir.clone(),
        None => default_units_dir()?,
    };
    let libraries: Vec<PathBuf> = LIBRARIES.iter().map(|name| units.join(name)).collect();
    if let Some(missing) = libraries.iter().find(|l| !l.is_file()) {
        return Err(format!("{} is missing: run `make units`, or pass --units DIR", missing.display()));
    }
    // Loaded under the same rules as the upgrade API's (root's files in a directory only root writes).
    let unit_files = LIBRARIES
        .iter()
        .map(|name| open_unit_library(&units, name).map_err(|e| format!("{e} (the bench loads units as the switch does)")))
        .collect::<Result<Vec<_>, _>>()?;
    let scenario = Scenario::Upgrade;
    let generator = dir.join(format!("{}.pcap", scenario.name()));
    scenario.write_generator(&generator).map_err(|e| format!("cannot write {}: {e}", generator.display()))?;
    println!(
        "bench {}: {}; {} upgrades alternating {} and {} from {}, after {} s warm-up and a {} s baseline, forwarding on lcore {FORWARDING_LCORE} (no testpmd run: this scenario judges loss and output gaps, not a rate ratio)",
        scenario.name(),
        scenario.description(),
        options.upgrades,
        LIBRARIES[0],
        LIBRARIES[1],
        units.display(),
        WARMUP.as_secs(),
        BASELINE.as_secs(),
    );

    let mut dataplane = start_dataplane(scenario, &generator)?;
    std::thread::sleep(WARMUP);
    let measured = measure(&dataplane, options.upgrades, &unit_files);
    let tsc_hz = dataplane.tsc_hz();
    let summary = dataplane.stop();
    drop(dataplane);
    let measured = measured?;

    let report = report(scenario, &libraries, measured, summary, tsc_hz, &options.plot)?;
    print(&report);
    if let Some(parent) = options.plot.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    std::fs::write(&options.plot, plot(&report)).map_err(|e| format!("cannot write {}: {e}", options.plot.display()))?;
    println!("  plot: {}", options.plot.display());
    write_json(options.json.as_deref(), &report)?;
    let packets = &report.packets;
    if packets.lost != 0 || packets.unaccounted != 0 {
        return Err(format!("{} packets lost during the upgrades ({})", packets.lost, loss_reasons(packets)));
    }
    Ok(())
}

/// `make units` puts the libraries in target/units, next to target/release.
fn default_units_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the running executable: {e}"))?;
    let target = exe.parent().and_then(Path::parent).ok_or("the executable has no parent directory")?;
    Ok(target.join("units"))
}

/// The baseline, then the upgrades, with the sampler running throughout.
fn measure(dataplane: &Dataplane, upgrades: u32, libraries: &[UnitFile]) -> Result<Measured, String> {
    let host = dataplane.overlay().ok_or("the upgrade scenario needs the vRouter")?.clone();
    let sink = dataplane.port_id("sink").ok_or("the bench config has no sink port")?.index();
    let upgrader = Upgrader::new(host);
    let gate = BenchGate { config: Scenario::Upgrade.overlay_config() };
    let tsc_hz = dataplane.tsc_hz();
    let monitor = dataplane.monitor();
    let stop = AtomicBool::new(false);
    // Step records carry wall-clock starts; both clocks are read together once.
    let (origin, origin_unix_us) = (Instant::now(), unix_us(SystemTime::now()));
    let since_origin = || origin.elapsed().as_secs_f64() * 1e3;
    std::thread::scope(|scope| {
        let sampler = scope.spawn(|| sample_rate(&monitor, sink, origin, &stop));

        dataplane.open_gap_window();
        let baseline_start = since_origin();
        std::thread::sleep(BASELINE);
        let baseline_gap_cycles = dataplane.longest_output_gap();
        let baseline_ms = (baseline_start, since_origin());

        let mut runs = Vec::with_capacity(upgrades as usize);
        let mut failure = None;
        for number in 1..=upgrades {
            let library = &libraries[(number as usize - 1) % libraries.len()];
            dataplane.open_gap_window();
            let start_ms = since_origin();
            let record = match upgrader.upgrade(library, &gate) {
                Ok(record) => record,
                Err(refused) => {
                    failure = Some(format!("upgrade {number} to {}: refused: {refused}", library.path().display()));
                    break;
                }
            };
            let end_ms = since_origin();
            std::thread::sleep(SETTLE);
            let gap_us = cycles_to_us(dataplane.longest_output_gap(), tsc_hz);
            // The same time again without an upgrade: whatever else pauses the
            // worker (the host, other processes on its core) shows up here too.
            dataplane.open_gap_window();
            std::thread::sleep(Duration::from_secs_f64((end_ms - start_ms) / 1e3) + SETTLE);
            let idle_gap_us = cycles_to_us(dataplane.longest_output_gap(), tsc_hz);
            if record.outcome != Outcome::Upgraded {
                failure = Some(format!(
                    "upgrade {number} to {} ended {:?}: {}",
                    library.path().display(),
                    record.outcome,
                    record.error.as_deref().unwrap_or("no error recorded")
                ));
                break;
            }
            let step_starts_ms =
                record.steps.iter().map(|s| (s.started_unix_us as f64 - origin_unix_us as f64) / 1e3).collect();
            runs.push(UpgradeRun {
                number,
                library: library.path().display().to_string(),
                gap_us,
                idle_gap_us,
                start_ms,
                end_ms,
                step_starts_ms,
                record,
            });
        }
        std::thread::sleep(TAIL);
        stop.store(true, Ordering::Relaxed);
        let samples = sampler.join().map_err(|_| "the sampler thread panicked".to_string())?;
        match failure {
            Some(failure) => Err(failure),
            None => Ok(Measured { baseline_ms, baseline_gap_cycles, runs, samples }),
        }
    })
}

/// Reads the sink's tx counter every SAMPLE_PERIOD until `stop`. Each sample
/// is the rate over the time since the previous one, however late it came.
fn sample_rate(monitor: &Monitor, sink: usize, origin: Instant, stop: &AtomicBool) -> Vec<Sample> {
    // Timed at the middle of the read: a thread preempted during it would
    // otherwise show a dip and a spike that the data plane never had.
    let read = || {
        let before = origin.elapsed();
        let packets = monitor.totals().ports.get(sink).map_or(0, |p| p.tx_packets);
        (packets, before + (origin.elapsed() - before) / 2)
    };
    let mut samples = Vec::new();
    let (mut last_packets, mut last_at) = read();
    let mut next = Instant::now() + SAMPLE_PERIOD;
    while !stop.load(Ordering::Relaxed) {
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let (packets, at) = read();
        let seconds = (at - last_at).as_secs_f64();
        if seconds > 0.0 {
            samples.push(Sample { t_ms: at.as_secs_f64() * 1e3, mpps: (packets - last_packets) as f64 / seconds / 1e6 });
        }
        (last_packets, last_at) = (packets, at);
        // Late (the core was busy): carry on from now rather than catch up in a burst.
        next = (next + SAMPLE_PERIOD).max(Instant::now());
    }
    samples
}

fn cycles_to_us(cycles: u64, tsc_hz: u64) -> f64 {
    cycles as f64 * 1e6 / tsc_hz.max(1) as f64
}

fn report(
    scenario: Scenario,
    libraries: &[PathBuf],
    measured: Measured,
    summary: Summary,
    tsc_hz: u64,
    plot: &Path,
) -> Result<UpgradeReport, String> {
    let Measured { baseline_ms, baseline_gap_cycles, runs, samples } = measured;
    let port = |name: &str| summary.ports.iter().find(|p| p.name == name).ok_or(format!("no {name} port in the summary"));
    let (generator, sink) = (port("generator")?, port("sink")?);
    let packets = PacketAccount {
        generator_rx: generator.counters.rx_packets,
        sink_tx: sink.counters.tx_packets,
        lost: i128::from(generator.counters.rx_packets) - i128::from(sink.counters.tx_packets),
        drops: summary.drops.iter().filter(|(_, &n)| n > 0).map(|(&r, &n)| (r, n)).collect(),
        unaccounted: summary.unaccounted,
        generator_rx_nombuf: generator.nic.rx_nombuf,
    };

    let gaps: Vec<f64> = runs.iter().map(|r| r.gap_us).collect();
    let idle_gaps: Vec<f64> = runs.iter().map(|r| r.idle_gap_us).collect();
    let worst = runs.iter().max_by(|a, b| a.gap_us.total_cmp(&b.gap_us));
    let during_upgrade_max_us = worst.map_or(0.0, |r| r.gap_us);
    let gap = GapReport {
        target_us: GAP_TARGET_US,
        without_upgrade_us: cycles_to_us(baseline_gap_cycles, tsc_hz),
        idle_windows_max_us: idle_gaps.iter().copied().fold(0.0, f64::max),
        idle_windows_median_us: median(&idle_gaps),
        during_upgrade_max_us,
        during_upgrade_max_at: worst.map_or(0, |r| r.number),
        during_upgrade_median_us: median(&gaps),
        met: during_upgrade_max_us <= GAP_TARGET_US,
    };

    let stats = |step: u8, name: &str, durations: &[u64]| DurationStats {
        step,
        name: name.to_owned(),
        mean_us: durations.iter().sum::<u64>() as f64 / durations.len().max(1) as f64,
        max_us: durations.iter().copied().max().unwrap_or(0),
    };
    let steps = (1..=STEP_NAMES.len() as u8)
        .map(|step| {
            let durations: Vec<u64> = runs
                .iter()
                .flat_map(|r| r.record.steps.iter().filter(|s| s.step == step).map(|s| s.duration_us))
                .collect();
            stats(step, STEP_NAMES[usize::from(step) - 1], &durations)
        })
        .collect();
    let totals: Vec<u64> = runs.iter().map(|r| r.record.duration_us).collect();
    let total = stats(0, "whole upgrade", &totals);

    // A sample covers (previous t, t]; it is "during" if that overlaps an upgrade.
    let (mut before, mut during, mut after) = (Vec::new(), Vec::new(), Vec::new());
    let last_end_ms = runs.last().map_or(f64::INFINITY, |r| r.end_ms);
    let mut previous = 0.0;
    for sample in &samples {
        let (from, to) = (previous, sample.t_ms);
        previous = to;
        if from >= baseline_ms.0 && to <= baseline_ms.1 {
            before.push(sample.mpps);
        } else if runs.iter().any(|r| from < r.end_ms && to > r.start_ms) {
            during.push(sample.mpps);
        } else if from >= last_end_ms {
            after.push(sample.mpps);
        }
    }
    let throughput = Throughput {
        sample_period_ms: SAMPLE_PERIOD.as_secs_f64() * 1e3,
        before_mpps: median(&before),
        during_mpps: median(&during),
        lowest_during_mpps: during.iter().copied().reduce(f64::min).unwrap_or(0.0),
        after_mpps: median(&after),
    };
    Ok(UpgradeReport {
        scenario: scenario.name(),
        description: scenario.description(),
        libraries: libraries.iter().map(|l| l.display().to_string()).collect(),
        packets,
        gap,
        steps,
        total,
        throughput,
        baseline_ms,
        plot: plot.display().to_string(),
        upgrades: runs,
        samples,
        summary,
    })
}

fn loss_reasons(packets: &PacketAccount) -> String {
    let mut reasons: Vec<String> = packets.drops.iter().map(|(reason, n)| format!("{reason} {n}")).collect();
    if packets.unaccounted != 0 {
        reasons.push(format!("unaccounted {}", packets.unaccounted));
    }
    if reasons.is_empty() {
        "no drop reason counted them".into()
    } else {
        reasons.join(", ")
    }
}

fn print(report: &UpgradeReport) {
    let packets = &report.packets;
    println!(
        "  upgrades: {} (the first from {}, the last to {}), every one ended upgraded",
        report.upgrades.len(),
        report.upgrades.first().map_or("-".into(), |r| r.record.from.id.clone() + " " + &r.record.from.version),
        report.upgrades.last().and_then(|r| r.record.to.as_ref()).map_or("-".into(), |to| to.id.clone() + " " + &to.version),
    );
    println!(
        "  packets lost: {}  (generator rx {} - sink tx {}; {}; unaccounted {})",
        packets.lost,
        packets.generator_rx,
        packets.sink_tx,
        if packets.drops.is_empty() { "no drops".to_owned() } else { format!("drops: {}", loss_reasons(packets)) },
        packets.unaccounted
    );
    let gap = &report.gap;
    println!(
        "  largest output gap without an upgrade {:>9.1} us  ({} s baseline; in the {} idle windows as long as each upgrade, right after it: max {:.1} us, median {:.1} us)",
        gap.without_upgrade_us,
        BASELINE.as_secs(),
        report.upgrades.len(),
        gap.idle_windows_max_us,
        gap.idle_windows_median_us
    );
    println!(
        "  largest output gap during an upgrade  {:>9.1} us  (upgrade {}; median over upgrades {:.1} us; target <= {:.0} us: {})",
        gap.during_upgrade_max_us,
        gap.during_upgrade_max_at,
        gap.during_upgrade_median_us,
        gap.target_us,
        if gap.met { "met" } else { "NOT met" }
    );
    for step in report.steps.iter().chain([&report.total]) {
        let label = if step.step == 0 { "upgrade total".to_owned() } else { format!("upgrade step {}", step.step) };
        println!("  {label:<15} mean {:>9.1} us  max {:>7} us  {}", step.mean_us, step.max_us, step.name);
    }
    let throughput = &report.throughput;
    println!("  throughput before upgrades {:>8.2} Mpps  (median of 1-ms samples in the baseline)", throughput.before_mpps);
    println!(
        "  throughput during upgrades {:>8.2} Mpps  (median of 1-ms samples overlapping an upgrade; lowest {:.2})",
        throughput.during_mpps, throughput.lowest_during_mpps
    );
    let last = report.upgrades.last().and_then(|r| r.record.to.as_ref());
    println!(
        "  throughput after upgrades  {:>8.2} Mpps  (median of 1-ms samples over {} ms on {})",
        throughput.after_mpps,
        TAIL.as_millis(),
        last.map_or("-".into(), |to| format!("{} {}", to.id, to.version))
    );
}

/// Throughput over time with each upgrade shaded and its two switches marked.
fn plot(report: &UpgradeReport) -> String {
    const WIDTH: f64 = 1200.0;
    const HEIGHT: f64 = 520.0;
    const STEP3: &str = "#d62728";
    const STEP6: &str = "#1f77b4";
    const UPGRADE: &str = "#ff9f1c";
    let end_s = report.samples.last().map_or(1.0, |s| s.t_ms / 1e3);
    let peak = report.samples.iter().map(|s| s.mpps).fold(0.0, f64::max);
    let frame = Frame { left: 80.0, top: 70.0, width: 850.0, height: 370.0, x: (0.0, end_s), y: (0.0, axis_max(peak * 1.05, 6)) };
    let mut svg = Svg::new(WIDTH, HEIGHT);
    svg.text(
        (frame.left, 28.0),
        &format!("switchyard-bench upgrade: throughput while the switching unit is upgraded {} times", report.upgrades.len()),
        16.0,
        Anchor::Start,
        0.0,
    );
    svg.text(
        (frame.left, 50.0),
        &format!(
            "packets lost {}; largest output gap {:.1} us during an upgrade, {:.1} us without (target <= {:.0} us); rate sampled every {} ms",
            report.packets.lost,
            report.gap.during_upgrade_max_us,
            report.gap.without_upgrade_us,
            report.gap.target_us,
            report.throughput.sample_period_ms
        ),
        12.0,
        Anchor::Start,
        0.0,
    );
    frame.draw_axes(&mut svg, "time since the baseline began (s)", "sink throughput (Mpps)");
    let (baseline_from, baseline_to) = (frame.px(report.baseline_ms.0 / 1e3), frame.px(report.baseline_ms.1 / 1e3));
    svg.rect(baseline_from, frame.top, baseline_to - baseline_from, frame.height, "#2ca02c", 0.06);
    svg.text(((baseline_from + baseline_to) / 2.0, frame.top + 16.0), "baseline: no upgrade", 12.0, Anchor::Middle, 0.0);
    if let Some(last) = report.upgrades.last() {
        let after = frame.px(last.end_ms / 1e3);
        svg.text(((after + frame.left + frame.width) / 2.0, frame.top + 16.0), "after the upgrades", 12.0, Anchor::Middle, 0.0);
    }
    for run in &report.upgrades {
        let (from, to) = (frame.px(run.start_ms / 1e3), frame.px(run.end_ms / 1e3));
        svg.rect(from, frame.top, (to - from).max(0.5), frame.height, UPGRADE, 0.25);
        for (step, &start_ms) in run.record.steps.iter().zip(&run.step_starts_ms) {
            let colour = match step.step {
                3 => STEP3,
                6 => STEP6,
                _ => continue,
            };
            let x = frame.px(start_ms / 1e3);
            svg.line((x, frame.top), (x, frame.bottom()), colour, 0.6);
        }
    }
    svg.polyline(report.samples.iter().map(|s| (frame.px(s.t_ms / 1e3), frame.py(s.mpps))), "black", 1.0);

    let legend_x = frame.left + frame.width + 20.0;
    let mut y = frame.top + 10.0;
    let mut entry = |svg: &mut Svg, draw: &dyn Fn(&mut Svg, f64), text: &str| {
        draw(svg, y);
        svg.text((legend_x + 30.0, y + 4.0), text, 12.0, Anchor::Start, 0.0);
        y += 24.0;
    };
    entry(&mut svg, &|svg, y| svg.line((legend_x, y), (legend_x + 22.0, y), "black", 1.5), "throughput (1-ms samples)");
    entry(&mut svg, &|svg, y| svg.rect(legend_x, y - 7.0, 22.0, 14.0, "#2ca02c", 0.12), "baseline (no upgrade)");
    entry(&mut svg, &|svg, y| svg.rect(legend_x, y - 7.0, 22.0, 14.0, UPGRADE, 0.25), "an upgrade (steps 1-8)");
    entry(&mut svg, &|svg, y| svg.line((legend_x + 11.0, y - 8.0), (legend_x + 11.0, y + 8.0), STEP3, 2.0), "step 3: to the intermediate unit");
    entry(&mut svg, &|svg, y| svg.line((legend_x + 11.0, y - 8.0), (legend_x + 11.0, y + 8.0), STEP6, 2.0), "step 6: to the new unit");
    svg.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_reasons_name_each_counted_drop() {
        let mut packets = PacketAccount {
            generator_rx: 10,
            sink_tx: 7,
            lost: 3,
            drops: BTreeMap::from([("no_forwarding_rule", 2)]),
            unaccounted: 1,
            generator_rx_nombuf: 0,
        };
        assert_eq!(loss_reasons(&packets), "no_forwarding_rule 2, unaccounted 1");
        packets.drops.clear();
        packets.unaccounted = 0;
        assert_eq!(loss_reasons(&packets), "no drop reason counted them");
    }

    #[test]
    fn cycles_convert_to_microseconds() {
        assert_eq!(cycles_to_us(2_000, 2_000_000_000), 1.0);
        assert_eq!(cycles_to_us(5, 0), 5e6, "a zero frequency does not divide by zero");
    }
}
