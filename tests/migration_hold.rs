//! Layer 3, one host: the buffer-or-forward stage on real mbufs. VM X and a
//! sender are namespaces on TAP ports of one switch. X's migration is started
//! and paused: the sender's pings to X are held by the switch, not lost; the
//! migration is aborted: the held pings are delivered to X, in order, and every
//! one is answered. Root only; namespaces are removed when the test ends.
mod common;

use std::process::Stdio;
use std::time::Duration;

use common::switch::{control_socket, vrouter_switch, RunningSwitch};
use common::tap::TapVm;
use common::*;

const X_MAC: &str = "02:00:00:0a:00:01";
const HOST_VTEP: &str = "192.0.2.1";

#[test]
fn pings_to_a_paused_vm_are_held_and_delivered_after_an_abort() {
    let x = TapVm::new("mx", X_MAC, "10.10.0.1/24");
    let sender = TapVm::new("ms", "02:00:00:0a:00:02", "10.10.0.2/24");
    let dir = scratch("pings_to_a_paused_vm_are_held_and_delivered_after_an_abort");
    // An uplink with a VTEP address makes this switch a migration source.
    let uplink = format!("[[port]]\nname = \"uplink\"\ndevargs = \"net_null0,no-rx=1\"\nrole = \"uplink\"\naddress = \"{HOST_VTEP}/24\"\n");
    let config = vrouter_switch(&dir, &[&x.switch_port("x", 0), &sender.switch_port("s", 1)]) + &uplink;
    let socket = &control_socket(&config);
    let mut switch = RunningSwitch::start(&dir, &config);
    switch.wait_until_running();
    x.quiet();
    sender.quiet();
    x.attach();
    sender.attach();
    let ok = |args: &[&str]| {
        let out = ctl(socket, args);
        assert!(out.status.success(), "ctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    ok(&["endpoint", "add", "--vni", "100", "--mac", X_MAC, "--ip", "10.10.0.1", "--port", "x"]);
    let ping = sender.netns.ping("10.10.0.1", 5);
    assert!(ping.contains("5 received"), "{ping}");

    let vm = ["--vni", "100", "--mac", X_MAC];
    ok(&[&["migration", "event", "start", "--source", HOST_VTEP, "--destination", "192.0.2.2"][..], &vm].concat());
    ok(&[&["migration", "event", "paused"][..], &vm].concat());
    // 40 pings over one second, each waiting up to 5 s for its answer.
    let pinging = sender
        .netns
        .exec(&["ping", "-c", "40", "-i", "0.025", "-W", "5", "10.10.0.1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let stats = ctl_json(socket, &["stats"]);
    assert_eq!(stats["migration"]["holding"], 40, "every ping is held while X is paused: {}", stats["migration"]);
    ok(&[&["migration", "event", "aborted"][..], &vm].concat());
    let report = String::from_utf8_lossy(&pinging.wait_with_output().unwrap().stdout).into_owned();
    assert!(report.contains("40 packets transmitted, 40 received, 0% packet loss"), "{report}");
    // The first ping waited out the whole pause.
    let max_rtt: f64 = report.lines().find(|l| l.starts_with("rtt")).and_then(|l| l.split('/').nth(5)).unwrap().parse().unwrap();
    assert!(max_rtt > 1000.0, "held pings come back late: {report}");

    let exit = switch.stop();
    let migration = &exit.stats["migration"];
    assert_eq!(migration["held"], 40);
    assert_eq!(migration["released"], 40);
    assert_eq!(migration["holding"], 0);
    assert_eq!(migration["peak_packets"], 40);
    assert_eq!(exit.stats["unaccounted"], 0);
    assert_eq!(exit.stats["drops"]["migration_buffer_full"], 0);
}
