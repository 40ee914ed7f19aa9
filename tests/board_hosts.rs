//! Hosts and the bulletin board, as processes: three switches (vRouter, null
//! ports, VTEPs 192.0.2.1-3) with `[board]`, and `switchyard board serve`.
//! A VM attached on one host is registered and every other host follows it
//! into a `board` remote entry; detached, it goes everywhere. Then 1000 record
//! updates, each timed until all three hosts' tables show it (the propagation
//! time: run with `--release --nocapture` for the real one).
mod common;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hyper::Method;
use switchyard::board::{RecordKey, Update, VmState};
use switchyard::control::client::Client;
use switchyard::wire::MacAddr;

use common::board::BoardProcess;
use common::switch::{control_socket, RunningSwitch};
use common::*;

const X: &str = "02:00:00:0a:00:01";

/// Host `n` (1-3): a VM port and an uplink on null devices, VTEP 192.0.2.n.
fn host_config(dir: &std::path::Path, n: u8, board: &str) -> String {
    format!(
        "{ONE_WORKER}[control]\nsocket = \"/tmp/sy{}-board-{n}.sock\"\ndatabase = \"{}/host{n}.redb\"\n\
         [[port]]\nname = \"vm0\"\ndevargs = \"net_null{}0,no-rx=1\"\nrole = \"vm\"\nvni = 100\n\
         [[port]]\nname = \"uplink\"\ndevargs = \"net_null{}1,no-rx=1\"\nrole = \"uplink\"\naddress = \"192.0.2.{n}/24\"\n\
         [[network]]\nvni = 100\nname = \"blue\"\n[board]\n{board}host = \"host-{n}\"\n",
        std::process::id(),
        dir.display(),
        n,
        n
    )
}

/// The remote entry of `mac` in network 100 on a host: (vtep, source), if any.
async fn remote(host: &Client, mac: &str) -> Option<(String, String)> {
    let reply = host.send_json(Method::GET, &format!("/v1/remotes/100/{mac}"), None).await.unwrap();
    if reply.status == 404 {
        return None;
    }
    let entry = reply.json().unwrap();
    Some((entry["vtep"].as_str().unwrap().to_string(), entry["source"].as_str().unwrap_or("operator").to_string()))
}

/// Waits until every host's entry of `mac` is `want`; panics after 5 s.
async fn until_all(hosts: &[&Client], mac: &str, want: Option<(&str, &str)>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    for host in hosts {
        loop {
            let got = remote(host, mac).await;
            if got.as_ref().map(|(v, s)| (v.as_str(), s.as_str())) == want {
                break;
            }
            assert!(Instant::now() < deadline, "{mac}: {got:?}, want {want:?}");
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
    }
}

#[tokio::test]
async fn hosts_register_their_vms_and_follow_the_board_within_milliseconds() {
    let dir = scratch("hosts_register_their_vms_and_follow_the_board_within_milliseconds");
    let board = BoardProcess::start(&dir.join("board.redb"));
    let configs: Vec<String> = (1..=3).map(|n| host_config(&dir, n, &board.switch_keys())).collect();
    let sockets: Vec<PathBuf> = configs.iter().map(|c| control_socket(c)).collect();
    let mut switches = Vec::new();
    for (n, config) in configs.iter().enumerate() {
        let sub = dir.join(format!("host{}", n + 1));
        std::fs::create_dir_all(&sub).unwrap();
        let mut switch = RunningSwitch::start(&sub, config);
        switch.wait_until_running();
        switches.push(switch);
    }
    let hosts: Vec<Client> = sockets.iter().map(Client::unix).collect();
    let (a, b, c) = (&hosts[0], &hosts[1], &hosts[2]);

    // A VM attached on host 1 is registered there and followed by the others.
    let out = ctl(&sockets[0], &["endpoint", "add", "--vni", "100", "--mac", X, "--ip", "10.0.0.1", "--port", "vm0"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    until_all(&[b, c], X, Some(("192.0.2.1", "board"))).await;
    assert_eq!(remote(a, X).await, None, "the VM is attached there");
    let records = board.client().records().await.unwrap();
    let record = records.records.iter().find(|r| r.mac.to_string() == X).expect("registered");
    assert_eq!((record.vtep, record.updated_by.as_str(), record.ip), (Ipv4Addr::new(192, 0, 2, 1), "host-1", Some(Ipv4Addr::new(10, 0, 0, 1))));
    // The operator's entries are not the board's to change.
    let out = ctl(&sockets[2], &["remote", "add", "--vni", "100", "--mac", "02:00:00:0a:00:02", "--vtep", "192.0.2.9"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Detached: gone from the board and from every host.
    let out = ctl(&sockets[0], &["endpoint", "delete", "100", X]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    until_all(&[a, b, c], X, None).await;

    // 1000 updates of one record, moving between two VTEPs no host owns; each
    // timed from the put until every host's table shows it.
    let client = board.client();
    let key = RecordKey::new(100, MacAddr([2, 0, 0, 0, 0, 0x2a]));
    let (y, operator) = ("02:00:00:00:00:2a", "02:00:00:0a:00:02");
    let mut latencies = Vec::new();
    for i in 0..1000u32 {
        let vtep = Ipv4Addr::new(198, 51, 100, 1 + (i % 2) as u8);
        let update = Update { ip: None, vtep, state: VmState::Running, from: "bench".into() };
        let vtep = vtep.to_string();
        let started = Instant::now();
        client.put(key, &update).await.unwrap();
        until_all(&[a, b, c], y, Some((&vtep, "board"))).await;
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)].as_secs_f64() * 1e3;
    println!(
        "board propagation to 3 hosts' remote tables over 1000 updates: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        at(0.5),
        at(0.99),
        at(1.0)
    );
    assert!(at(0.99) < 500.0, "the hosts follow the board within milliseconds, not seconds");
    assert_eq!(remote(c, operator).await, Some(("192.0.2.9".into(), "operator".into())));
    for switch in switches {
        let exit = switch.stop();
        assert!(exit.status.success(), "{}", exit.log);
        let trouble = exit.log.lines().any(|l| l.contains("board:") && (l.contains("WARN") || l.contains("ERROR")));
        assert!(!trouble, "no board trouble logged: {}", exit.log);
    }
}
