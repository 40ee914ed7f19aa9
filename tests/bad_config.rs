//! A bad config ends with one clear line naming the key or value, exit code 2,
//! no panic and no backtrace. Errors found before DPDK starts are the only
//! line on stderr; for devargs that DPDK itself refuses, EAL's own lines come
//! first and ours is the last. What the host lacks for a port (a privilege, a
//! free socket path) is one line too, with exit code 1.
mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

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

/// One VM port; a config that gets past validation opens its own config database.
fn port(devargs: &str, more: &str) -> String {
    static CONFIGS: AtomicU32 = AtomicU32::new(0);
    let database = format!("{}/bad-config-{}.redb", env!("CARGO_TARGET_TMPDIR"), CONFIGS.fetch_add(1, Ordering::Relaxed));
    // A new database each run: one an earlier run left behind is not what these tests are about.
    let _ = std::fs::remove_file(&database);
    port_with_database(devargs, more, &database)
}

fn port_with_database(devargs: &str, more: &str, database: &str) -> String {
    format!("{HEAD}[control]\ndatabase = \"{database}\"\n[[port]]\nname = \"a\"\ndevargs = \"{devargs}\"\nrole = \"vm\"\n{more}")
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
            "switchyard: config error: {path}: line 11: unknown field `rx_queus`, expected one of `name`, `devargs`, \
             `role`, `rx_queues`, `rx_descriptors`, `tx_descriptors`, `forward_to`, `peer_mac`, `address`, `gateway`, \
             `next_hop_mac`, `mtu`, `vni`"
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
}

#[test]
fn vhost_port_without_a_socket_path() {
    let (lines, path) = refused("vhost_port_without_a_socket_path", &port("net_vhost0,queues=1", ""));
    assert_eq!(
        lines,
        [format!(
            "switchyard: config error: {path}: port[0].devargs: net_vhost needs iface=<path of the vhost-user \
             socket>, e.g. net_vhost0,iface=/run/switchyard/vm0.sock"
        )]
    );
}

#[test]
fn vhost_socket_in_a_missing_directory() {
    let (lines, path) =
        refused("vhost_socket_in_a_missing_directory", &port("net_vhost0,iface=/nonexistent/vm0.sock", ""));
    assert_eq!(
        lines,
        [format!(
            "switchyard: config error: {path}: port[0].devargs: directory \"/nonexistent\" for vhost-user socket \
             \"/nonexistent/vm0.sock\" does not exist (create it first)"
        )]
    );
}

/// Another process (another switchyard, OVS) serves the socket: refused before
/// DPDK starts. A socket nobody serves any more is removed and taken over.
#[test]
fn vhost_socket_served_by_another_process() {
    let dir = scratch("vhost_socket_served_by_another_process");
    let socket = std::env::temp_dir().join(format!("sy-busy-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&socket);
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let out = run_config(&dir, "busy", &port(&format!("net_vhost0,iface={}", socket.display()), ""), &[]);
    drop(listener);
    let _ = std::fs::remove_file(&socket);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr_lines(&out),
        [format!(
            "switchyard: port[0] \"a\": vhost-user socket \"{}\" is served by another process; pick another path \
             or stop that process",
            socket.display()
        )]
    );
}

#[test]
fn tap_port_on_an_interface_that_is_not_a_tap() {
    let (lines, path) = refused("tap_port_on_an_interface_that_is_not_a_tap", &port("net_tap0,iface=lo", ""));
    assert_eq!(
        lines,
        [format!(
            "switchyard: config error: {path}: port[0].devargs: net_tap iface \"lo\" is an existing interface that \
             is not a TAP device"
        )]
    );
}

/// Creating a TAP interface needs CAP_NET_ADMIN: without it the run stops
/// before DPDK starts, with one line saying so (exit code 1: the config is fine,
/// the process lacks a privilege). As root the test drops to user nobody.
#[test]
fn tap_port_without_root() {
    let dir = scratch("tap_port_without_root");
    let config = dir.join("tap.toml");
    // User nobody may write only in /tmp, and a database wants a directory only
    // its owner can write: one of nobody's own there.
    let private = PathBuf::from(format!("/tmp/sy-noroot-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    if nix::unistd::geteuid().is_root() {
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
        nix::unistd::chown(&private, Some(nobody.uid), Some(nobody.gid)).unwrap();
    }
    let database = format!("{}/config.redb", private.display());
    std::fs::write(&config, port_with_database("net_tap0,iface=sy-noroot0", "", &database)).unwrap();
    let bin = env!("CARGO_BIN_EXE_switchyard");
    let mut cmd = if nix::unistd::geteuid().is_root() {
        let mut cmd = std::process::Command::new("setpriv");
        cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all", bin]);
        cmd
    } else {
        std::process::Command::new(bin)
    };
    let out = cmd.current_dir("/").env("RUST_LOG", "warn").arg("run").arg("--config").arg(&config).output().unwrap();
    let _ = std::fs::remove_dir_all(&private);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        stderr_lines(&out),
        ["switchyard: port[0] \"a\": net_tap cannot create TAP interface \"sy-noroot0\": that needs CAP_NET_ADMIN \
          (run switchyard as root)"]
    );
}

#[test]
fn gateway_problems_are_one_line() {
    let (lines, path) = refused("gateway_without_a_vtep", &port("net_null0", "[gateway]\n"));
    assert_eq!(
        lines,
        [format!(
            "switchyard: config error: {path}: gateway: needs an uplink port with `address`: the VTEP the other cloud's tunnels end at"
        )]
    );
    let uplink = "[[port]]\nname = \"up\"\ndevargs = \"net_null1\"\nrole = \"uplink\"\naddress = \"192.0.2.1/24\"\n\
                  [[network]]\nvni = 100\nname = \"blue\"\n[gateway]\n";
    let map = "[[gateway.vni_map]]\nremote_vni = 200\nlocal_vni = 100\n";
    let (lines, path) = refused("gateway_duplicate_mapping", &port("net_null0", &format!("{uplink}{map}{map}")));
    assert_eq!(
        lines,
        [format!("switchyard: config error: {path}: gateway.vni_map[1].remote_vni: VNI 200 is already mapped by gateway.vni_map[0]")]
    );
    let (lines, path) = refused("gateway_unknown_local_network", &port("net_null0", &format!("{uplink}{}", map.replace("100", "300"))));
    assert_eq!(lines, [format!("switchyard: config error: {path}: gateway.vni_map[0].local_vni: no [[network]] has VNI 300")]);
}

/// The uplink's own VTEP address as a remote endpoint's VTEP or in a flood list.
#[test]
fn the_local_vtep_as_a_remote_vtep() {
    let uplink = "[[port]]\nname = \"up\"\ndevargs = \"net_null1\"\nrole = \"uplink\"\naddress = \"192.0.2.1/24\"\n";
    let remote = "[[network]]\nvni = 100\nname = \"blue\"\n[[remote]]\nvni = 100\nmac = \"02:00:00:00:00:01\"\nvtep = \"192.0.2.1\"\n";
    let (lines, path) = refused("local_vtep_remote", &format!("{}{uplink}{remote}", port("net_null0", "")));
    assert_eq!(
        lines,
        [format!("switchyard: config error: {path}: remote[0].vtep: 192.0.2.1 is this switch's own VTEP address, not a remote VTEP")]
    );
    let flood = "[[network]]\nvni = 100\nname = \"blue\"\nflood_vteps = [\"192.0.2.1\"]\n";
    let (lines, path) = refused("local_vtep_flood", &format!("{}{uplink}{flood}", port("net_null0", "")));
    assert_eq!(
        lines,
        [format!(
            "switchyard: config error: {path}: network[0].flood_vteps[0]: 192.0.2.1 is this switch's own VTEP address, not a remote VTEP"
        )]
    );
}

/// A VM endpoint on a port bound to another network (tenant isolation).
#[test]
fn an_endpoint_outside_its_ports_network() {
    let records = "[[network]]\nvni = 100\nname = \"blue\"\n[[network]]\nvni = 7\nname = \"seven\"\n\
                   [[endpoint]]\nvni = 7\nmac = \"02:00:00:00:00:07\"\nport = \"a\"\n";
    let (lines, path) = refused("endpoint_other_network", &format!("{}{records}", port("net_null0", "vni = 100\n")));
    assert_eq!(
        lines,
        [format!(
            "switchyard: config error: {path}: endpoint[0].port: port a is in network 100, not 7; a port's VM endpoints are all in its network"
        )]
    );
}
