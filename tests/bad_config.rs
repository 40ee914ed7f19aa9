//! A bad config ends with one clear line naming the key or value, exit code 2,
//! no panic and no backtrace. Errors found before DPDK starts are the only
//! line on stderr; for devargs that DPDK itself refuses, EAL's own lines come
//! first and ours is the last.
mod common;

use common::*;

const HEAD: &str = "[eal]\nlcores = \"0-1\"\n[dataplane]\nworkers = [1]\n";

/// Runs `toml` from a file named `name`.toml in the scratch dir; returns stderr lines.
fn refused(test: &str, toml: &str) -> (Vec<String>, String) {
    let dir = scratch(test);
    let out = run_config(&dir, "bad", toml, &[]);
    let path = dir.join("bad.toml").display().to_string();
    assert_eq!(out.status.code(), Some(2), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let lines = stderr_lines(&out);
    assert!(lines.iter().all(|l| !l.contains("panicked") && !l.contains("backtrace")), "{lines:?}");
    assert!(out.stdout.is_empty(), "nothing is printed on stdout");
    (lines, path)
}

fn port(devargs: &str, more: &str) -> String {
    format!("{HEAD}[[port]]\nname = \"a\"\ndevargs = \"{devargs}\"\nrole = \"vm\"\n{more}")
}

#[test]
fn missing_file() {
    let out = switchyard().args(["run", "--config", "/nonexistent/switchyard.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr_lines(&out),
        ["switchyard: config error: /nonexistent/switchyard.toml: cannot read: No such file or directory (os error 2)"]
    );
}

#[test]
fn unknown_key() {
    let (lines, path) = refused("unknown_key", &port("net_null0", "rx_queus = 2\n"));
    assert_eq!(
        lines,
        [format!(
            "switchyard: config error: {path}: line 9: unknown field `rx_queus`, expected one of `name`, `devargs`, \
             `role`, `rx_queues`, `rx_descriptors`, `tx_descriptors`, `forward_to`, `peer_mac`, `vni`"
        )]
    );
}

#[test]
fn port_index_out_of_range() {
    let (lines, path) = refused("port_index_out_of_range", &port("net_null0", "forward_to = 5\n"));
    assert_eq!(
        lines,
        [format!("switchyard: config error: {path}: port[0].forward_to: port index 5 is out of range (1 port configured)")]
    );
}

#[test]
fn unknown_role() {
    let toml = format!("{HEAD}[[port]]\nname = \"a\"\ndevargs = \"net_null0\"\nrole = \"host\"\n");
    let (lines, path) = refused("unknown_role", &toml);
    assert_eq!(lines, [format!("switchyard: config error: {path}: line 8: unknown variant `host`, expected `vm` or `uplink`")]);
}

#[test]
fn missing_rx_pcap_file() {
    let (lines, path) = refused("missing_rx_pcap_file", &port("net_pcap0,rx_pcap=/nonexistent/in.pcap", ""));
    assert_eq!(
        lines,
        [format!("switchyard: config error: {path}: port[0].devargs: rx_pcap file \"/nonexistent/in.pcap\" not found")]
    );
}

#[test]
fn devargs_naming_no_driver() {
    let (lines, path) = refused("devargs_naming_no_driver", &port("net_nosuch0", ""));
    assert_eq!(
        lines.last().unwrap(),
        &format!(
            "switchyard: config error: {path}: port[0].devargs: \"net_nosuch0\": DPDK knows no device or driver named \"net_nosuch0\""
        )
    );
}

#[test]
fn devargs_the_driver_refuses() {
    let (lines, path) = refused("devargs_the_driver_refuses", &port("net_null0,bogus=1", ""));
    assert_eq!(
        lines.last().unwrap(),
        &format!(
            "switchyard: config error: {path}: port[0].devargs: \"net_null0,bogus=1\": the net_null driver refused \
             these devargs (Operation not permitted; see the EAL message above)"
        )
    );
}

#[test]
fn bad_command_line_is_exit_code_2() {
    let out = switchyard().args(["run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = switchyard().args(["bench", "--scenario", "nope", "--seconds", "1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr_lines(&out), ["switchyard: unknown bench scenario \"nope\" (known: forward)"]);
}
