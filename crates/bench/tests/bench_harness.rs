//! The benchmark harness runs testpmd and switchyard on the same generator in
//! one invocation and reports rates and ratios. Rates are not asserted (speed is
//! judged from the harness output, not by tests); the report's shape and
//! consistency are.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::json;

/// `switchyard-bench` with quiet logs.
fn bench() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard-bench"));
    cmd.env("RUST_LOG", "warn");
    cmd
}

/// A fresh, empty directory for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn stderr_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr).lines().map(str::to_owned).collect()
}

/// A unit library `make units` built (target/units).
fn unit_library(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/units").join(format!("{name}.so"));
    assert!(path.exists(), "{} is missing: run `make units` first", path.display());
    path
}

#[test]
fn an_unknown_scenario_is_exit_code_2_naming_the_known_ones() {
    let out = bench().args(["--scenario", "nope", "--seconds", "1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr_lines(&out),
        ["switchyard-bench: unknown bench scenario \"nope\" (known: forward, l2-switch, vxlan-encap, vxlan-decap, upgrade, board, migration-rewrite, gateway)"]
    );
}

#[test]
fn forward_scenario_reports_rates_and_ratios_from_one_run() {
    let dir = scratch("forward_scenario_reports_rates_and_ratios_from_one_run");
    let report = dir.join("bench.json");
    let out = bench()
        .args(["--scenario", "forward", "--seconds", "2", "--json", report.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let report = json(&report);
    let modes: Vec<&str> = report["testpmd"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(modes, ["io", "macswap"]);
    let switchyard_mpps = report["switchyard"]["mpps"].as_f64().unwrap();
    assert!(switchyard_mpps > 0.0);
    assert_eq!(report["switchyard"]["samples_mpps"].as_array().unwrap().len(), 2, "one sample per second");
    for (measurement, (mode, ratio)) in report["testpmd"].as_array().unwrap().iter().zip(
        report["ratios"].as_array().unwrap().iter().map(|r| (r[0].as_str().unwrap(), r[1].as_f64().unwrap())),
    ) {
        let testpmd_mpps = measurement["mpps"].as_f64().unwrap();
        assert!(testpmd_mpps > 0.0, "testpmd {mode} forwarded nothing");
        assert!((ratio - switchyard_mpps / testpmd_mpps).abs() < 1e-9);
    }
    assert!(report["cycles_per_packet"].as_f64().unwrap() > 0.0);
    assert!(stdout.contains("ratio switchyard/testpmd-macswap"), "{stdout}");
}

#[test]
fn missing_testpmd_is_a_clear_error() {
    let out = bench()
        .args(["--scenario", "forward", "--seconds", "1", "--testpmd", "/nonexistent/dpdk-testpmd"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let last = stderr_lines(&out).pop().unwrap();
    assert_eq!(
        last,
        "switchyard-bench: cannot start /nonexistent/dpdk-testpmd: No such file or directory (os error 2) (install package dpdk-dev)"
    );
}

#[test]
fn upgrade_scenario_loses_nothing_and_reports_every_step() {
    let dir = scratch("upgrade_scenario_loses_nothing_and_reports_every_step");
    let units = unit_library("basic-v1").parent().unwrap().to_owned();
    unit_library("basic-v2");
    let report = dir.join("upgrade.json");
    let plot = dir.join("plots/upgrade.svg");
    let out = bench()
        .args(["--scenario", "upgrade", "--upgrades", "3"])
        .arg("--units")
        .arg(&units)
        .arg("--json")
        .arg(&report)
        .arg("--plot")
        .arg(&plot)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("  packets lost: 0  "), "{stdout}");
    assert!(stdout.contains("largest output gap during an upgrade"), "{stdout}");
    assert!(stdout.contains(&format!("  plot: {}", plot.display())), "{stdout}");

    let report = json(&report);
    assert_eq!(report["packets"]["lost"], 0);
    assert_eq!(report["packets"]["unaccounted"], 0);
    assert!(report["packets"]["sink_tx"].as_u64().unwrap() > 0, "traffic flowed");
    let upgrades = report["upgrades"].as_array().unwrap();
    assert_eq!(upgrades.len(), 3);
    // The data plane starts on the embedded unit; upgrades alternate v2, v1, v2.
    let versions: Vec<&str> = upgrades.iter().map(|u| u["record"]["to"]["version"].as_str().unwrap()).collect();
    assert_eq!(versions, ["2.0.0", "1.0.0", "2.0.0"]);
    for upgrade in upgrades {
        assert_eq!(upgrade["record"]["outcome"], "upgraded");
        let steps: Vec<u64> =
            upgrade["record"]["steps"].as_array().unwrap().iter().map(|s| s["step"].as_u64().unwrap()).collect();
        assert_eq!(steps, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(upgrade["gap_us"].as_f64().unwrap() >= 0.0);
        assert!(upgrade["idle_gap_us"].as_f64().unwrap() >= 0.0, "each upgrade has its idle window");
    }
    assert_eq!(report["steps"].as_array().unwrap().len(), 8);
    // Traffic flowed in the baseline. Not its median: on a loaded machine the worker's core can be taken for
    // longer than half of the 1-ms samples, which then read 0 while the rest carry the packets.
    let baseline = (report["baseline_ms"][0].as_f64().unwrap(), report["baseline_ms"][1].as_f64().unwrap());
    let samples = report["samples"].as_array().unwrap();
    assert!(
        samples.iter().any(|s| (baseline.0..=baseline.1).contains(&s["t_ms"].as_f64().unwrap()) && s["mpps"].as_f64().unwrap() > 0.0),
        "no packet out of the sink in the baseline {baseline:?}"
    );

    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
    assert!(svg.contains("<polyline"));
    assert!(svg.trim_end().ends_with("</svg>"));
}

#[test]
fn the_board_bench_reports_propagation_to_every_watcher() {
    let dir = scratch("the_board_bench_reports_propagation_to_every_watcher");
    let report = dir.join("board.json");
    let out = bench()
        .args(["--scenario", "board", "--updates", "20", "--watchers", "2", "--json"])
        .arg(&report)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.lines().any(|l| l.starts_with("board propagation to 2 watchers over 20 updates: p50 ")), "{stdout}");
    let report = json(&report);
    assert_eq!((&report["updates"], &report["watchers"]), (&json!(20), &json!(2)));
    let p = &report["propagation_us"];
    let (p50, p99, max) = (p["p50"].as_f64().unwrap(), p["p99"].as_f64().unwrap(), p["max"].as_f64().unwrap());
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{report}");
    assert!(report["updates_per_second"].as_f64().unwrap() > 0.0);
}
