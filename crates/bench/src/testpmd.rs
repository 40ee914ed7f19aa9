//! Runs dpdk-testpmd on the bench's generator and sink and reads its rate.
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{median, Measurement, FORWARDING_LCORE, MBUFS, MEMORY_MB, WARMUP};

/// Forwards with testpmd in `mode` for warm-up + `seconds` and returns the
/// median of its per-second Tx-pps on the sink (port 1).
pub(super) fn measure(testpmd: &Path, mode: &str, generator: &Path, seconds: u32) -> Result<Measurement, String> {
    let mut child = Command::new(testpmd)
        .args(["-l", &format!("0,{FORWARDING_LCORE}"), "--no-huge", "-m", &MEMORY_MB.to_string(), "--no-pci"])
        .args(["--no-shconf", "--file-prefix", &format!("switchyard-bench-testpmd-{}", std::process::id())])
        .arg("--vdev")
        .arg(format!("net_pcap0,rx_pcap={},infinite_rx=1", generator.display()))
        .args(["--vdev", "net_null0,no-rx=1", "--"])
        .args([&format!("--forward-mode={mode}"), "--nb-cores=1", "--burst=32", "--stats-period=1"])
        .args([&format!("--total-num-mbufs={MBUFS}"), "--no-mlockall"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e} (install package dpdk-dev)", testpmd.display()))?;
    let stdout = child.stdout.take().ok_or("testpmd has no stdout")?;
    let (lines_tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });

    let deadline = Instant::now() + WARMUP + Duration::from_secs(u64::from(seconds)) + Duration::from_millis(500);
    let mut parser = StatsParser::default();
    while Instant::now() < deadline {
        match lines.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => parser.feed(&line),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let pid = Pid::from_raw(i32::try_from(child.id()).map_err(|e| e.to_string())?);
    let _ = kill(pid, Signal::SIGINT);
    let status = child.wait().map_err(|e| e.to_string())?;
    let _ = reader.join();
    // Samples: the first one spans start-up, the rest are whole seconds at steady state.
    let samples: Vec<f64> = parser.sink_tx_pps.iter().skip(1).map(|&pps| pps as f64 / 1e6).collect();
    if samples.is_empty() {
        return Err(format!("testpmd ({mode}) printed no rate ({status}); run it by hand to see why"));
    }
    Ok(Measurement { name: mode.to_string(), mpps: median(&samples), samples_mpps: samples })
}

/// Picks the sink's `Tx-pps` out of testpmd's periodic "NIC statistics" blocks.
#[derive(Default)]
struct StatsParser {
    current_port: Option<u32>,
    sink_tx_pps: Vec<u64>,
}

impl StatsParser {
    const SINK_PORT: u32 = 1;

    fn feed(&mut self, line: &str) {
        if let Some(rest) = line.split("NIC statistics for port").nth(1) {
            self.current_port = rest.split_whitespace().next().and_then(|n| n.parse().ok());
        } else if let Some(rest) = line.split("Tx-pps:").nth(1) {
            if self.current_port == Some(Self::SINK_PORT) {
                if let Some(pps) = rest.split_whitespace().next().and_then(|n| n.parse().ok()) {
                    self.sink_tx_pps.push(pps);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sink_tx_pps_only() {
        let text = "\
  ######################## NIC statistics for port 0  ########################
  Rx-pps:     31000000          Rx-bps:  0
  Tx-pps:            0          Tx-bps:            0
  ######################## NIC statistics for port 1  ########################
  Rx-pps:            0          Rx-bps:            0
  Tx-pps:     30999872          Tx-bps:  14879938560
  ######################## NIC statistics for port 1  ########################
  Tx-pps:     31000128          Tx-bps:  14879938560";
        let mut parser = StatsParser::default();
        text.lines().for_each(|l| parser.feed(l));
        assert_eq!(parser.sink_tx_pps, vec![30_999_872, 31_000_128]);
    }

    #[test]
    fn median_of_samples() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }
}
