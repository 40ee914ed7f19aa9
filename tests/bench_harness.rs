//! The benchmark harness runs testpmd and switchyard on the same generator in
//! one invocation and reports rates and ratios. Rates are not asserted (speed is
//! judged from the harness output, not by tests); the report's shape and
//! consistency are.
mod common;

use common::*;

#[test]
fn forward_scenario_reports_rates_and_ratios_from_one_run() {
    let dir = scratch("forward_scenario_reports_rates_and_ratios_from_one_run");
    let report = dir.join("bench.json");
    let out = switchyard()
        .args(["bench", "--scenario", "forward", "--seconds", "2", "--json", report.to_str().unwrap()])
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
    let out = switchyard()
        .args(["bench", "--scenario", "forward", "--seconds", "1", "--testpmd", "/nonexistent/dpdk-testpmd"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let last = stderr_lines(&out).pop().unwrap();
    assert_eq!(
        last,
        "switchyard: cannot start /nonexistent/dpdk-testpmd: No such file or directory (os error 2) (install package dpdk-dev)"
    );
}
