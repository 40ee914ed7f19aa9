use super::*;
use crate::model::{AddressMigration, AddressMigrationSource, Network, PortNetwork, RemoteEndpoint, VmEndpoint};
use crate::svc::{AuthFiles, HttpLimits};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A temporary file, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> TempFile {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("switchyard-config-{}-{n}-{name}", std::process::id()));
        std::fs::write(&path, b"not really a pcap").expect("write temp file");
        TempFile(path)
    }
    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp dir")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn err(text: &str) -> String {
    match Config::parse(text, "x.toml") {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(e) => e.to_string(),
    }
}

fn ok(text: &str) -> Config {
    Config::parse(text, "x.toml").unwrap_or_else(|e| panic!("{e}"))
}

const NULL_PORT: &str = "[[port]]\nname = \"p0\"\ndevargs = \"net_null0\"\nrole = \"vm\"\n";

/// Two net_null ports; `extra` is appended to the first port's table.
fn two_ports(extra: &str) -> String {
    format!(
        "[[port]]\nname = \"vm0\"\ndevargs = \"net_null0\"\nrole = \"vm\"\n{extra}\n\
         [[port]]\nname = \"uplink0\"\ndevargs = \"net_null1\"\nrole = \"uplink\"\n"
    )
}

#[test]
fn full_example_parses_exactly() {
    let pcap = TempFile::new("in.pcap");
    let text = format!(
        r#"
[eal]
lcores = "0-3"
hugepages = true
memory_mb = 1024
file_prefix = "sy"
extra_args = ["--log-level", "pmd.net.pcap:debug"]

[mempool]
mbufs = 16383
cache = 128
data_room = 4224

[dataplane]
workers = [1, 3]
idle_sleep_us = 50
idle_polls_before_sleep = 10
tx_drain_us = 200

[[port]]
name = "vm0"
devargs = "net_pcap0,rx_pcap={pcap},tx_pcap=out.pcap"
role = "vm"
rx_queues = 1
rx_descriptors = 512
tx_descriptors = 2048
forward_to = "uplink0"
peer_mac = "02:0A:00:00:00:01"
vni = 100

[[port]]
name = "uplink0"
devargs = "01:00.1,rxq_pkt_pad_en=1"
role = "uplink"
rx_queues = 4
forward_to = 0

[control]
socket = "/tmp/sy.sock"
listen = "127.0.0.1:8080"
token_file = "/etc/switchyard/api.token"
database = "db/config.redb"

[[network]]
vni = 200
name = "red"

[[network]]
vni = 100
name = "blue"
flood_vteps = ["192.0.2.2", "192.0.2.3"]

[[endpoint]]
vni = 100
mac = "02:00:00:00:01:01"
ip = "10.1.0.1"
port = "vm0"

[[remote]]
vni = 200
mac = "02:00:00:00:02:01"
vtep = "192.0.2.2"

[[address_migration]]
vni = 100
primary_ip = "10.1.0.5"
post_migration_ip = "10.2.0.5"
port = "vm0"
"#,
        pcap = pcap.path()
    );
    let expected = Config {
        eal: EalConfig {
            lcores: "0-3".into(),
            hugepages: true,
            memory_mb: 1024,
            file_prefix: Some("sy".into()),
            extra_args: vec!["--log-level".into(), "pmd.net.pcap:debug".into()],
        },
        mempool: MempoolConfig { mbufs: 16383, cache: 128, data_room: 4224 },
        dataplane: DataplaneConfig {
            workers: vec![1, 3],
            idle_sleep_us: 50,
            idle_polls_before_sleep: 10,
            tx_drain_us: 200,
        },
        ports: vec![
            PortConfig {
                name: "vm0".into(),
                devargs: format!("net_pcap0,rx_pcap={},tx_pcap=out.pcap", pcap.path()),
                role: PortRole::Vm,
                rx_queues: 1,
                rx_descriptors: 512,
                tx_descriptors: 2048,
                forward_to: Some(1),
                peer_mac: MacAddr([2, 0x0a, 0, 0, 0, 1]),
                vtep: None,
            },
            PortConfig {
                name: "uplink0".into(),
                devargs: "0000:01:00.1,rxq_pkt_pad_en=1".into(),
                role: PortRole::Uplink,
                rx_queues: 4,
                rx_descriptors: 1024,
                tx_descriptors: 1024,
                forward_to: Some(0),
                peer_mac: MacAddr([2, 0, 0, 0, 0, 1]),
                vtep: None,
            },
        ],
        control: ControlConfig {
            socket: "/tmp/sy.sock".into(),
            listen: Some("127.0.0.1:8080".parse().unwrap()),
            auth: AuthFiles { token_file: Some("/etc/switchyard/api.token".into()), ..Default::default() },
            database: "db/config.redb".into(),
            ..ControlConfig::defaults(None)
        },
        migration: MigrationConfig::default(),
        tunnels: TunnelsConfig::default(),
        board: None,
        gateway: None,
        storage: None,
        upgrade: UpgradeConfig::default(),
        bootstrap: ConfigSnapshot {
            generation: 0,
            networks: vec![
                Network {
                    vni: 100,
                    name: "blue".into(),
                    flood_vteps: vec![Ipv4Addr::new(192, 0, 2, 2), Ipv4Addr::new(192, 0, 2, 3)],
                },
                Network { vni: 200, name: "red".into(), flood_vteps: vec![] },
            ],
            endpoints: vec![VmEndpoint {
                vni: 100,
                mac: MacAddr([2, 0, 0, 0, 1, 1]),
                ip: Some(Ipv4Addr::new(10, 1, 0, 1)),
                port: "vm0".into(),
            }],
            remotes: vec![RemoteEndpoint {
                vni: 200,
                mac: MacAddr([2, 0, 0, 0, 2, 1]),
                ip: None,
                vtep: Ipv4Addr::new(192, 0, 2, 2),
                source: Default::default(),
            }],
            ports: vec![PortNetwork { port: "vm0".into(), vni: 100 }],
            address_migrations: vec![AddressMigration {
                vni: 100,
                primary_ip: Ipv4Addr::new(10, 1, 0, 5),
                post_migration_ip: Some(Ipv4Addr::new(10, 2, 0, 5)),
                port: "vm0".into(),
                source: AddressMigrationSource::Notification,
            }],
            storage: Default::default(),
        },
    };
    let config = ok(&text);
    assert_eq!(config, expected);
    assert_eq!(config.bootstrap_snapshot(), expected.bootstrap);
    assert_eq!(config.main_lcore(), 0);
    assert_eq!(config.ports[0].finite_pcap_inputs(), Some(vec![pcap.0.clone()]));
    assert_eq!(config.ports[1].device_name(), "0000:01:00.1");
    assert!(config.ports[1].is_pci() && !config.ports[0].is_pci());
    assert_eq!(config.ports[1].driver(), "pci");
    assert_eq!(config.ports[0].driver(), "net_pcap");
    assert_eq!(config.ports[0].role.to_string(), "vm");
    assert_eq!(config.ports[1].role.to_string(), "uplink");
}

#[test]
fn defaults_apply() {
    let config = ok(&format!("{NULL_PORT}[[port]]\nname = \"p1\"\ndevargs = \"net_null1\"\nrole = \"uplink\"\n"));
    assert_eq!(config.eal.lcores, "0-1");
    assert!(!config.eal.hugepages);
    assert_eq!(config.eal.memory_mb, 512);
    assert_eq!(config.eal.file_prefix, None);
    assert!(config.eal.extra_args.is_empty());
    assert_eq!(config.eal, EalConfig::default());
    assert_eq!(config.mempool.mbufs, 8191);
    assert_eq!(config.mempool.cache, 256);
    assert_eq!(config.mempool.data_room, 2176);
    assert_eq!(config.mempool, MempoolConfig::default());
    assert_eq!(config.dataplane.workers, [1]);
    assert_eq!(config.dataplane.idle_sleep_us, 0);
    assert_eq!(config.dataplane.idle_polls_before_sleep, 100);
    assert_eq!(config.dataplane.tx_drain_us, 100);
    assert_eq!(config.dataplane, DataplaneConfig::default());
    let p = &config.ports[1];
    assert_eq!((p.rx_queues, p.rx_descriptors, p.tx_descriptors, p.forward_to), (1, 1024, 1024, None));
    assert_eq!(config.ports[0].peer_mac.to_string(), "02:00:00:00:00:00");
    assert_eq!(p.peer_mac.to_string(), "02:00:00:00:00:01");
    assert_eq!(config.main_lcore(), 0);
}

#[test]
fn main_lcore_is_the_lowest() {
    let config = ok(&format!("[eal]\nlcores = \"5,2-3\"\n[dataplane]\nworkers = [3, 5]\n{NULL_PORT}"));
    assert_eq!(config.main_lcore(), 2);
    assert_eq!(config.dataplane.workers, [3, 5]);
}

#[test]
fn load_reports_unreadable_files() {
    assert_eq!(
        Config::load(Path::new("conf/does-not-exist.toml")).unwrap_err().to_string(),
        "config error: conf/does-not-exist.toml: cannot read: No such file or directory (os error 2)"
    );
    let file = TempFile::new("ok.toml");
    std::fs::write(&file.0, NULL_PORT).expect("write");
    assert_eq!(Config::load(&file.0).expect("loads").ports.len(), 1);
}

#[test]
fn toml_errors_name_the_line() {
    assert_eq!(err("[eal\n"), "config error: x.toml: line 1: invalid table header expected `.`, `]`");
    assert_eq!(err("\n\nlcores = = 1\n"), "config error: x.toml: line 3: invalid string expected `\"`, `'`");
    assert_eq!(
        err("[eal]\nlcores = \"0-1\"\nmemory_mb = \"512\"\n"),
        "config error: x.toml: line 3: invalid type: string \"512\", expected i64"
    );
    assert_eq!(
        err("[eal]\nhugepages = 1\n"),
        "config error: x.toml: line 2: invalid type: integer `1`, expected a boolean"
    );
    assert_eq!(
        err("[bogus]\nx = 1\n"),
        "config error: x.toml: line 1: unknown field `bogus`, expected one of `eal`, `mempool`, `dataplane`, `port`, `control`, `network`, `endpoint`, `remote`, `address_migration`, `migration`, `tunnels`, `board`, `gateway`, `storage`, `upgrade`"
    );
    assert_eq!(
        err("[eal]\nlcore = \"0-1\"\n"),
        "config error: x.toml: line 2: unknown field `lcore`, expected one of `lcores`, `hugepages`, `memory_mb`, \
         `file_prefix`, `extra_args`"
    );
    let unknown_port_key = err(&format!("\n{NULL_PORT}rx_queus = 2\n"));
    assert!(
        unknown_port_key.starts_with(
            "config error: x.toml: line 6: unknown field `rx_queus`, expected one of `name`, `devargs`, `role`, `rx_queues`,"
        ),
        "{unknown_port_key}"
    );
    assert_eq!(
        err("[[port]]\nname = \"a\"\ndevargs = \"net_null0\"\n"),
        "config error: x.toml: line 1: missing field `role`"
    );
    assert_eq!(
        err("[[port]]\nname = \"a\"\ndevargs = \"net_null0\"\nrole = \"host\"\n"),
        "config error: x.toml: line 4: unknown variant `host`, expected `vm` or `uplink`"
    );
    assert_eq!(
        err(&two_ports("forward_to = true")),
        "config error: x.toml: line 5: invalid type: boolean `true`, expected a port name (string) or a port index (integer)"
    );
    assert_eq!(
        err(&two_ports("peer_mac = \"02:00:00:00:00\"")),
        "config error: x.toml: line 5: peer_mac \"02:00:00:00:00\" is not valid: expected a MAC address of six hex octets \
         such as 02:00:00:00:00:01"
    );
    assert_eq!(err("[port]\nname = \"a\"\n"), "config error: x.toml: line 1: invalid type: map, expected a sequence");
    assert_eq!(
        err("[dataplane]\nworkers = 1\n"),
        "config error: x.toml: line 2: invalid type: integer `1`, expected a sequence"
    );
    assert_eq!(
        err("[eal]\nmemory_mb = 99999999999999999999\n"),
        "config error: x.toml: line 2: number too large to fit in target type"
    );
}

#[test]
fn eal_errors() {
    let e = |eal: &str| err(&format!("[eal]\n{eal}\n{NULL_PORT}"));
    assert_eq!(e("lcores = \"\""), "config error: x.toml: eal.lcores: empty");
    assert_eq!(
        e("lcores = \"0-a\""),
        "config error: x.toml: eal.lcores: \"0-a\" is not an lcore list such as \"0-3\", \"0,2,4\" or \"1-2,5\""
    );
    assert_eq!(
        e("lcores = \"(0,1)@2\""),
        "config error: x.toml: eal.lcores: \"(0,1)@2\" uses the lcore group syntax \"(a,b)@c\", which is not supported \
         here; list lcore ids such as \"0-3\" or \"0,2,4\""
    );
    assert_eq!(e("lcores = \"2-1\""), "config error: x.toml: eal.lcores: \"2-1\": the range \"2-1\" runs backwards");
    assert_eq!(e("lcores = \"0-1,1\""), "config error: x.toml: eal.lcores: \"0-1,1\": lcore 1 is listed twice");
    assert_eq!(
        e("lcores = \"0,200\""),
        "config error: x.toml: eal.lcores: lcore 200 is out of range 0..=127 (RTE_MAX_LCORE is 128)"
    );
    assert_eq!(e("memory_mb = 16"), "config error: x.toml: eal.memory_mb: 16 is out of range 64..=1048576");
    assert_eq!(
        e("file_prefix = \"../x\""),
        "config error: x.toml: eal.file_prefix: \"../x\" must be 1 to 64 characters of A-Z a-z 0-9 _ - . and not start \
         with '.'"
    );
    assert_eq!(
        e("extra_args = [\"-v\", \"a\\u0000b\"]"),
        "config error: x.toml: eal.extra_args[1]: \"a\\0b\" contains a NUL character"
    );
}

#[test]
fn mempool_errors() {
    let e = |mempool: &str| err(&format!("[mempool]\n{mempool}\n{NULL_PORT}"));
    assert_eq!(e("mbufs = 100"), "config error: x.toml: mempool.mbufs: 100 is out of range 1023..=16777215");
    assert_eq!(
        e("cache = 600"),
        "config error: x.toml: mempool.cache: 600 is out of range 0..=512 (RTE_MEMPOOL_CACHE_MAX_SIZE)"
    );
    assert_eq!(
        e("cache = -1"),
        "config error: x.toml: mempool.cache: -1 is out of range 0..=512 (RTE_MEMPOOL_CACHE_MAX_SIZE)"
    );
    assert_eq!(
        e("data_room = 128"),
        "config error: x.toml: mempool.data_room: 128 is out of range 192..=65535 (128 bytes of headroom plus at least \
         64 bytes of frame)"
    );
    assert_eq!(
        e("mbufs = 1000000"),
        "config error: x.toml: mempool.mbufs: 1000000 mbufs of 2176 bytes need at least 2259 MB, more than \
         eal.memory_mb = 512"
    );
    assert_eq!(
        err(&format!("[mempool]\nmbufs = 2047\n{NULL_PORT}rx_queues = 2\n")),
        "config error: x.toml: mempool.mbufs: 2047 is too few: the receive rings and lcore caches hold up to 2560 mbufs \
         (2048 for rx_queues x rx_descriptors over all ports + 2 lcores x cache 256)"
    );
    assert_eq!(
        ok(&format!("[mempool]\nmbufs = 1023\ncache = 0\n{NULL_PORT}rx_descriptors = 512\n")).mempool.mbufs,
        1023
    );
}

#[test]
fn dataplane_errors() {
    let e = |eal: &str, dataplane: &str| err(&format!("[eal]\n{eal}\n[dataplane]\n{dataplane}\n{NULL_PORT}"));
    assert_eq!(
        e("lcores = \"0-1\"", "workers = [3]"),
        "config error: x.toml: dataplane.workers: lcore 3 is not in eal.lcores \"0-1\""
    );
    assert_eq!(
        e("lcores = \"0-1\"", "workers = [1, 0]"),
        "config error: x.toml: dataplane.workers: lcore 0 is the main lcore, which runs the control plane"
    );
    assert_eq!(
        e("lcores = \"0-1\"", "workers = []"),
        "config error: x.toml: dataplane.workers: empty: at least one worker lcore is required"
    );
    assert_eq!(
        e("lcores = \"0-3\"", "workers = [1, 2, 1]"),
        "config error: x.toml: dataplane.workers: lcore 1 is listed twice"
    );
    assert_eq!(
        e("lcores = \"0-3\"", "workers = [-1]"),
        "config error: x.toml: dataplane.workers: -1 is not an lcore id"
    );
    assert_eq!(
        e("lcores = \"0-3\"", "idle_sleep_us = 2000000"),
        "config error: x.toml: dataplane.idle_sleep_us: 2000000 is out of range 0..=1000000"
    );
    assert_eq!(
        e("lcores = \"0-3\"", "idle_polls_before_sleep = 0"),
        "config error: x.toml: dataplane.idle_polls_before_sleep: 0 is out of range 1..=4294967295"
    );
    assert_eq!(
        e("lcores = \"0-3\"", "tx_drain_us = 0"),
        "config error: x.toml: dataplane.tx_drain_us: 0 is out of range 1..=100000"
    );
    // The default workers = [1] checked against a one-lcore list.
    assert_eq!(
        err(&format!("[eal]\nlcores = \"0\"\n{NULL_PORT}")),
        "config error: x.toml: dataplane.workers: lcore 1 is not in eal.lcores \"0\""
    );
}

#[test]
fn port_errors() {
    assert_eq!(err(""), "config error: x.toml: port: at least one [[port]] is required");
    assert_eq!(err("port = []\n"), "config error: x.toml: port: at least one [[port]] is required");
    assert_eq!(
        err(&two_ports("forward_to = 5")),
        "config error: x.toml: port[0].forward_to: port index 5 is out of range (2 ports configured)"
    );
    assert_eq!(
        err(&two_ports("forward_to = -1")),
        "config error: x.toml: port[0].forward_to: -1 is not a port index (indices start at 0)"
    );
    assert_eq!(
        err(&two_ports("forward_to = \"uplnk\"")),
        "config error: x.toml: port[0].forward_to: no port named \"uplnk\""
    );
    assert_eq!(
        err(&two_ports("forward_to = \"vm0\"")),
        "config error: x.toml: port[0].forward_to: a port cannot forward to itself"
    );
    assert_eq!(
        err(&two_ports("forward_to = 0")),
        "config error: x.toml: port[0].forward_to: a port cannot forward to itself"
    );
    assert_eq!(
        err(&format!("{}[[port]]\nname = \"vm0\"\ndevargs = \"net_null2\"\nrole = \"vm\"\n", two_ports(""))),
        "config error: x.toml: port[2].name: duplicate port name \"vm0\""
    );
    assert_eq!(
        err("[[port]]\nname = \"vm 0\"\ndevargs = \"net_null0\"\nrole = \"vm\"\n"),
        "config error: x.toml: port[0].name: \"vm 0\" is not a valid port name: use 1 to 32 characters of A-Z a-z 0-9 _ -"
    );
    assert_eq!(
        err("[[port]]\nname = \"vm0\"\ndevargs = \"\"\nrole = \"vm\"\n"),
        "config error: x.toml: port[0].devargs: empty"
    );
    assert_eq!(
        err("[[port]]\nname = \"vm0\"\ndevargs = \"net_pcap0,rx_pcap\"\nrole = \"vm\"\n"),
        "config error: x.toml: port[0].devargs: \"net_pcap0,rx_pcap\" is not key=value"
    );
    assert_eq!(
        err("[[port]]\nname = \"vm0\"\ndevargs = \"net_pcap0,rx_pcap=/nonexistent/in.pcap\"\nrole = \"vm\"\n"),
        "config error: x.toml: port[0].devargs: rx_pcap file \"/nonexistent/in.pcap\" not found"
    );
    let dir = std::env::temp_dir();
    let dir = dir.to_str().expect("utf-8 temp dir");
    assert_eq!(
        err(&format!("[[port]]\nname = \"vm0\"\ndevargs = \"net_pcap0,rx_pcap={dir}\"\nrole = \"vm\"\n")),
        format!("config error: x.toml: port[0].devargs: rx_pcap file \"{dir}\" is a directory")
    );
    assert_eq!(
        err("[[port]]\nname = \"vm0\"\ndevargs = \"net_pcap0,rx_pcap=a.pcap,infinite_rx=yes\"\nrole = \"vm\"\n"),
        "config error: x.toml: port[0].devargs: infinite_rx must be 0 or 1, not \"yes\""
    );
    assert_eq!(
        err("[[port]]\nname = \"vm0\"\ndevargs = \"net_pcap0,rx_pacp=a.pcap\"\nrole = \"vm\"\n"),
        "config error: x.toml: port[0].devargs: unknown net_pcap key \"rx_pacp\" (expected one of rx_pcap, rx_iface, \
         rx_iface_in, tx_pcap, tx_iface, iface, phy_mac, infinite_rx)"
    );
    assert_eq!(
        err("[[port]]\nname = \"vm0\"\ndevargs = \"net_pcap,rx_pcap=a\"\nrole = \"vm\"\n"),
        "config error: x.toml: port[0].devargs: device \"net_pcap\" is neither a vdev name such as \"net_pcap0\" nor a \
         PCI address such as \"0000:01:00.0\""
    );
    assert_eq!(
        err("[[port]]\nname = \"vm0\"\ndevargs = \"0000:01:00\"\nrole = \"vm\"\n"),
        "config error: x.toml: port[0].devargs: device \"0000:01:00\" is neither a vdev name such as \"net_pcap0\" nor a \
         PCI address such as \"0000:01:00.0\""
    );
    assert_eq!(
        err("[[port]]\nname = \"a\"\ndevargs = \"net_pcap0\"\nrole = \"vm\"\n\
             [[port]]\nname = \"b\"\ndevargs = \"net_pcap0,tx_pcap=b.pcap\"\nrole = \"vm\"\n"),
        "config error: x.toml: port[1].devargs: device \"net_pcap0\" is already used by port[0]"
    );
    // A short PCI address is the same device as its long form.
    assert_eq!(
        err("[[port]]\nname = \"a\"\ndevargs = \"0000:01:00.0\"\nrole = \"vm\"\n\
             [[port]]\nname = \"b\"\ndevargs = \"01:00.0\"\nrole = \"vm\"\n"),
        "config error: x.toml: port[1].devargs: device \"0000:01:00.0\" is already used by port[0]"
    );
    assert_eq!(
        err(&two_ports("rx_descriptors = 1000")),
        "config error: x.toml: port[0].rx_descriptors: 1000 is not a power of two in 64..=32768"
    );
    assert_eq!(
        err(&two_ports("tx_descriptors = 65536")),
        "config error: x.toml: port[0].tx_descriptors: 65536 is not a power of two in 64..=32768"
    );
    assert_eq!(err(&two_ports("rx_queues = 0")), "config error: x.toml: port[0].rx_queues: 0 is out of range 1..=64");
    assert_eq!(
        err(&two_ports("rx_queues = 70000")),
        "config error: x.toml: port[0].rx_queues: 70000 is out of range 1..=64"
    );
    let pcap = TempFile::new("q.pcap");
    assert_eq!(
        err(&format!(
            "[[port]]\nname = \"vm0\"\ndevargs = \"net_pcap0,rx_pcap={}\"\nrole = \"vm\"\nrx_queues = 2\n",
            pcap.path()
        )),
        "config error: x.toml: port[0].rx_queues: 2 is more than the 1 receive queue(s) net_pcap creates from the \
         devargs (one per rx_pcap, rx_iface, rx_iface_in or iface)"
    );
    let ports = |n: usize| -> String {
        (0..n)
            .map(|i| {
                format!("[[port]]\nname = \"p{i}\"\ndevargs = \"net_null{i}\"\nrole = \"vm\"\nrx_descriptors = 64\n")
            })
            .collect()
    };
    let many = ports(33);
    assert_eq!(
        err(&many),
        "config error: x.toml: port: 33 ports configured; DPDK supports at most 32 (RTE_MAX_ETHPORTS)"
    );
    assert_eq!(ok(&ports(32)).ports.len(), 32);
}

#[test]
fn first_problem_in_file_order_wins() {
    // Ports before [eal]: the port's problem comes first in the file.
    let text = format!("{}[eal]\nmemory_mb = 1\n", two_ports("forward_to = 9"));
    assert_eq!(
        err(&text),
        "config error: x.toml: port[0].forward_to: port index 9 is out of range (2 ports configured)"
    );
    // Within a port, key order decides.
    assert_eq!(
        err(&two_ports("tx_descriptors = 3\nrx_queues = 0")),
        "config error: x.toml: port[0].tx_descriptors: 3 is not a power of two in 64..=32768"
    );
    // A defaulted key is located at its table: [dataplane] before [eal].
    assert_eq!(
        err(&format!("[dataplane]\ntx_drain_us = 5\n[eal]\nlcores = \"0\"\nmemory_mb = 1\n{NULL_PORT}")),
        "config error: x.toml: dataplane.workers: lcore 1 is not in eal.lcores \"0\""
    );
    // An unparsable lcore list stops the workers checks instead of cascading.
    assert_eq!(
        err(&format!("[dataplane]\nworkers = [7]\n[eal]\nlcores = \"x\"\n{NULL_PORT}")),
        "config error: x.toml: eal.lcores: \"x\" is not an lcore list such as \"0-3\", \"0,2,4\" or \"1-2,5\""
    );
    // An invalid port value does not trigger the mbufs cross-check.
    assert_eq!(
        err(&format!("[mempool]\nmbufs = 1023\n{NULL_PORT}rx_descriptors = 100000\n")),
        "config error: x.toml: port[0].rx_descriptors: 100000 is not a power of two in 64..=32768"
    );
}

#[test]
fn errors_are_one_line() {
    assert_eq!(
        Config::parse("[eal\n", "a\nb.toml").unwrap_err().to_string(),
        "config error: a b.toml: line 1: invalid table header expected `.`, `]`"
    );
    let e = err("[[port]]\nname = \"a\\nb\"\ndevargs = \"net_null0\"\nrole = \"vm\"\n");
    assert_eq!(
        e,
        "config error: x.toml: port[0].name: \"a\\nb\" is not a valid port name: use 1 to 32 characters of A-Z a-z 0-9 _ -"
    );
}

#[test]
fn never_panics_on_odd_input() {
    let inputs = [
        "\u{feff}",
        "port = [1]",
        "port = [[]]",
        "[[port]]\nname = \"é\"\ndevargs = \"é,é\"\nrole = \"vm\"\nforward_to = 9223372036854775807\n",
        "[[port]]\nname = \"a\"\ndevargs = \",\"\nrole = \"vm\"\n",
        "[[port]]\nname = \"a\"\ndevargs = \"net_null0,[=]\"\nrole = \"vm\"\n",
        "[eal]\nlcores = \"-\"\n",
        "[eal]\nlcores = \"0-18446744073709551616\"\n",
        "[dataplane]\nworkers = [9223372036854775807, -9223372036854775808]\n",
        "[mempool]\nmbufs = 16777215\ndata_room = 65535\n[eal]\nmemory_mb = 1048576\n",
        "[[port]]\n[[port]]\n",
        "x = 1\u{0}",
    ];
    for input in inputs {
        let _ = Config::parse(input, "x.toml").map(|c| c.eal_args("sy"));
    }
    // Deep nesting hits toml's recursion limit instead of the stack.
    let deep = format!("port = {}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(err(&deep).starts_with("config error: x.toml: line 1: "));
    let deep = format!("[[port]]\nname = \"a\"\ndevargs = \"net_null0,a={}\"\nrole = \"vm\"\n", "[".repeat(100_000));
    assert!(err(&deep).ends_with("has unbalanced brackets"));
}

#[test]
fn eal_args_for_pcap_ports() {
    let pcap = TempFile::new("eal.pcap");
    let text = format!(
        "[eal]\nlcores = \"2-3\"\nmemory_mb = 256\nfile_prefix = \"sy\"\n[dataplane]\nworkers = [3]\n\
         [[port]]\nname = \"vm0\"\ndevargs = \"net_pcap0,rx_pcap={}\"\nrole = \"vm\"\n\
         [[port]]\nname = \"up0\"\ndevargs = \"net_pcap1,tx_pcap=out.pcap\"\nrole = \"uplink\"\n",
        pcap.path()
    );
    let config = ok(&text);
    assert_eq!(
        config.eal_args("switchyard"),
        [
            "switchyard",
            "-l",
            "2-3",
            "--main-lcore",
            "2",
            "-m",
            "256",
            "--no-huge",
            "--no-shconf",
            "--file-prefix",
            "sy",
            "--no-pci",
            "--no-telemetry",
            "--log-level=*:warning"
        ]
    );
    let config = ok(NULL_PORT);
    let args = config.eal_args("sy");
    assert_eq!(args[9..11], ["--file-prefix".to_string(), format!("switchyard-{}", std::process::id())]);
}

#[test]
fn eal_args_for_pci_ports() {
    let text = "[eal]\nhugepages = true\nextra_args = [\"--log-level\", \"8\"]\n\
                [[port]]\nname = \"a\"\ndevargs = \"0000:01:00.0\"\nrole = \"uplink\"\n\
                [[port]]\nname = \"b\"\ndevargs = \"net_null0\"\nrole = \"vm\"\n\
                [[port]]\nname = \"c\"\ndevargs = \"02:00.1,rxq_pkt_pad_en=1\"\nrole = \"vm\"\n";
    let mut config = ok(text);
    config.eal.file_prefix = Some("p".into());
    assert_eq!(
        config.eal_args("/usr/bin/switchyard"),
        [
            "/usr/bin/switchyard",
            "-l",
            "0-1",
            "--main-lcore",
            "0",
            "-m",
            "512",
            "--in-memory",
            "--file-prefix",
            "p",
            "-a",
            "0000:01:00.0",
            "-a",
            "0000:02:00.1,rxq_pkt_pad_en=1",
            "--no-telemetry",
            "--log-level=*:warning",
            "--log-level",
            "8"
        ]
    );
}

fn port(devargs: &str) -> PortConfig {
    PortConfig {
        name: "p".into(),
        devargs: devargs.into(),
        role: PortRole::Vm,
        rx_queues: 1,
        rx_descriptors: 1024,
        tx_descriptors: 1024,
        forward_to: None,
        peer_mac: PortConfig::default_peer_mac(0),
        vtep: None,
    }
}

#[test]
fn finite_pcap_inputs() {
    let paths = |v: &[&str]| Some(v.iter().map(PathBuf::from).collect::<Vec<_>>());
    assert_eq!(port("net_pcap0,rx_pcap=in.pcap").finite_pcap_inputs(), paths(&["in.pcap"]));
    assert_eq!(
        port("net_pcap0,rx_pcap=in.pcap,tx_pcap=o.pcap,infinite_rx=0").finite_pcap_inputs(),
        paths(&["in.pcap"])
    );
    assert_eq!(port("net_pcap0,rx_pcap=in.pcap,infinite_rx=1").finite_pcap_inputs(), None);
    assert_eq!(port("net_pcap0,tx_pcap=out.pcap").finite_pcap_inputs(), None);
    assert_eq!(port("net_pcap0,rx_iface=eth0").finite_pcap_inputs(), None);
    assert_eq!(port("net_pcap0,rx_pcap=a.pcap,rx_iface_in=eth0").finite_pcap_inputs(), None);
    assert_eq!(port("net_pcap0,iface=eth0").finite_pcap_inputs(), None);
    assert_eq!(port("net_null0").finite_pcap_inputs(), None);
    assert_eq!(port("net_null0,rx_pcap=a.pcap").finite_pcap_inputs(), None);
    assert_eq!(port("net_pcap0,rx_pcap=a.pcap,rx_pcap=b.pcap").finite_pcap_inputs(), paths(&["a.pcap", "b.pcap"]));
    assert_eq!(port("eth_pcap0,rx_pcap=a.pcap").finite_pcap_inputs(), paths(&["a.pcap"]));
}

#[test]
fn never_receives() {
    for silent in ["net_pcap0,tx_pcap=out.pcap", "eth_pcap0,tx_iface=eth0", "net_null0,no-rx=1"] {
        assert!(port(silent).never_receives(), "{silent}");
    }
    for live in [
        "net_pcap0,rx_pcap=in.pcap",
        "eth_pcap0,iface=eth0",
        "net_pcap0,tx_pcap=o.pcap,rx_iface_in=eth0",
        "net_null0",
        "net_null0,no-rx=0",
        "net_tap0",
        "0000:01:00.0",
    ] {
        assert!(!port(live).never_receives(), "{live}");
    }
}

#[test]
fn devargs_accessors() {
    let p = port("net_pcap0,rx_pcap=a.pcap,tx_pcap=b.pcap,rx_pcap=c.pcap");
    assert_eq!(p.device_name(), "net_pcap0");
    assert_eq!(p.driver(), "net_pcap");
    assert!(!p.is_pci());
    let pairs: Vec<_> = p.devargs_pairs().collect();
    assert_eq!(pairs, [("rx_pcap", "a.pcap"), ("tx_pcap", "b.pcap"), ("rx_pcap", "c.pcap")]);
    let p = port("01:00.0,a=b");
    assert!(p.is_pci());
    assert_eq!((p.device_name(), p.driver()), ("01:00.0", "pci"));
    assert_eq!(p.devargs_pairs().collect::<Vec<_>>(), [("a", "b")]);
}

const UPLINK: &str = "[[port]]\nname = \"up\"\ndevargs = \"net_null1\"\nrole = \"uplink\"\n";

#[test]
fn vtep_keys_on_the_uplink() {
    let config = ok(&format!("{NULL_PORT}{UPLINK}address = \"192.0.2.1/24\"\ngateway = \"192.0.2.254\"\nmtu = 9000\n"));
    let vtep = config.ports[1].vtep.as_ref().unwrap();
    assert_eq!((vtep.address, vtep.prefix_len, vtep.gateway, vtep.mtu), ("192.0.2.1".parse().unwrap(), 24, Some("192.0.2.254".parse().unwrap()), 9000));
    assert_eq!(vtep.next_hop_mac, None);
    assert_eq!(ok(&format!("{NULL_PORT}{UPLINK}address = \"192.0.2.1/24\"\n")).ports[1].vtep.as_ref().unwrap().mtu, 1500);
    assert!(config.ports[0].vtep.is_none());
}

#[test]
fn vtep_errors() {
    let uplink = |extra: &str| err(&format!("{NULL_PORT}{UPLINK}{extra}"));
    assert_eq!(
        err(&format!("{NULL_PORT}address = \"192.0.2.1/24\"\n")),
        "config error: x.toml: port[0].address: only an uplink port carries the VTEP address"
    );
    assert_eq!(
        uplink("address = \"192.0.2.1\"\n"),
        "config error: x.toml: port[1].address: \"192.0.2.1\" is not an IPv4 address with prefix length such as \"192.0.2.1/24\""
    );
    assert_eq!(
        uplink("address = \"224.0.0.1/24\"\n"),
        "config error: x.toml: port[1].address: 224.0.0.1 cannot be a VTEP address (unspecified, multicast, broadcast or loopback)"
    );
    assert_eq!(
        uplink("address = \"192.0.2.1/24\"\ngateway = \"198.51.100.1\"\n"),
        "config error: x.toml: port[1].gateway: 198.51.100.1 is not another address on 192.0.2.1/24"
    );
    assert_eq!(uplink("gateway = \"192.0.2.254\"\n"), "config error: x.toml: port[1].gateway: needs `address` (the local VTEP address) on the same port");
    assert_eq!(
        uplink("address = \"192.0.2.1/24\"\nnext_hop_mac = \"01:00:5e:00:00:01\"\n"),
        "config error: x.toml: port[1].next_hop_mac: 01:00:5e:00:00:01 is not a unicast MAC address"
    );
    assert_eq!(uplink("address = \"192.0.2.1/24\"\nmtu = 40\n"), "config error: x.toml: port[1].mtu: 40 is out of range 68..=9216");
    let two = format!("{UPLINK}address = \"192.0.2.1/24\"\n[[port]]\nname = \"up2\"\ndevargs = \"net_null2\"\nrole = \"uplink\"\naddress = \"192.0.2.2/24\"\n");
    assert_eq!(
        err(&two),
        "config error: x.toml: port[1].address: port[0] already has the VTEP address; one uplink carries the overlay"
    );
}

#[test]
fn control_defaults_follow_the_file_prefix() {
    let config = ok(NULL_PORT);
    assert_eq!(config.control, ControlConfig::defaults(None));
    assert_eq!(config.control.socket, Path::new("/run/switchyard/switchyard.sock"));
    assert_eq!(config.control.database, Path::new("/var/lib/switchyard/switchyard.redb"));
    assert_eq!(config.control.listen, None);
    assert_eq!(config.bootstrap_snapshot(), ConfigSnapshot::default());
    let config = ok(&format!("[eal]\nfile_prefix = \"sy2\"\n{NULL_PORT}"));
    assert_eq!(config.control.socket, Path::new("/run/switchyard/sy2.sock"));
    assert_eq!(config.control.database, Path::new("/var/lib/switchyard/sy2.redb"));
    let config = ok(&format!("[control]\nlisten = \"[::1]:9000\"\ntoken_file = \"/t\"\n{NULL_PORT}"));
    assert_eq!(config.control.listen, Some("[::1]:9000".parse().unwrap()));
    assert_eq!(config.control.auth.token_file.as_deref(), Some(Path::new("/t")));
    assert_eq!(config.control.socket_group, None);
    assert_eq!(config.control.limits, HttpLimits::default());
}

#[test]
fn control_on_tcp_needs_authentication() {
    let e = |control: &str| err(&format!("[control]\n{control}\n{NULL_PORT}"));
    // No token and no TLS: refused, whatever the address.
    assert_eq!(
        e("listen = \"127.0.0.1:8080\""),
        "config error: x.toml: control.listen: 127.0.0.1:8080 on TCP needs authentication: set control.token_file \
         (loopback addresses only), or control.tls_cert, control.tls_key and control.tls_client_ca (mutual TLS)"
    );
    // A token is for loopback only.
    assert_eq!(
        e("listen = \"0.0.0.0:8080\"\ntoken_file = \"/t\""),
        "config error: x.toml: control.listen: 0.0.0.0:8080 is not a loopback address: a bearer token is accepted \
         only on 127.0.0.1 or ::1; other addresses need TLS (control.tls_cert, control.tls_key and control.tls_client_ca)"
    );
    assert_eq!(
        e("listen = \"192.0.2.1:80\"\ntls_cert = \"/c\"\ntls_key = \"/k\""),
        "config error: x.toml: control.listen: TLS needs control.tls_cert, control.tls_key and control.tls_client_ca; \
         control.tls_client_ca missing"
    );
    assert_eq!(
        e("listen = \"127.0.0.1:80\"\ntoken_file = \"/t\"\ntls_cert = \"/c\"\ntls_key = \"/k\"\ntls_client_ca = \"/a\""),
        "config error: x.toml: control.listen: give either control.token_file (loopback) or TLS (control.tls_cert, ...), not both"
    );
    assert_eq!(
        e("token_file = \"/t\""),
        "config error: x.toml: control.token_file: is set, but control.listen is not: it authenticates TCP clients only"
    );
    // TLS: any address.
    let config = ok(&format!(
        "[control]\nlisten = \"192.0.2.1:8443\"\ntls_cert = \"/c\"\ntls_key = \"/k\"\ntls_client_ca = \"/a\"\n{NULL_PORT}"
    ));
    assert_eq!(config.control.listen, Some("192.0.2.1:8443".parse().unwrap()));
    assert_eq!(config.control.auth.tls_ca.as_deref(), Some(Path::new("/a")));
    // The unix socket may be opened to one group that exists.
    let config = ok(&format!("[control]\nsocket_group = \"root\"\n{NULL_PORT}"));
    assert_eq!(config.control.socket_group, Some(SocketGroup { name: "root".into(), gid: 0 }));
    assert_eq!(
        e("socket_group = \"no-such-group-here\""),
        "config error: x.toml: control.socket_group: \"no-such-group-here\" is not a group on this host"
    );
    let config = ok(&format!("[control]\nmax_connections = 8\nheader_timeout_ms = 500\nbody_timeout_ms = 700\n{NULL_PORT}"));
    assert_eq!(
        config.control.limits,
        HttpLimits {
            max_connections: 8,
            header_timeout: std::time::Duration::from_millis(500),
            body_timeout: std::time::Duration::from_millis(700)
        }
    );
    assert_eq!(
        e("max_connections = 0"),
        "config error: x.toml: control.max_connections: 0 is out of range 1..=65536"
    );
}

#[test]
fn control_errors() {
    let e = |control: &str| err(&format!("[control]\n{control}\n{NULL_PORT}"));
    assert_eq!(
        e("listen = \"localhost:80\""),
        "config error: x.toml: control.listen: \"localhost:80\" is not an address and port such as \"127.0.0.1:8080\""
    );
    assert_eq!(
        e("listen = \"127.0.0.1\""),
        "config error: x.toml: control.listen: \"127.0.0.1\" is not an address and port such as \"127.0.0.1:8080\""
    );
    assert_eq!(e("socket = \"\""), "config error: x.toml: control.socket: is empty");
    let long = format!("/tmp/{}", "s".repeat(103));
    assert_eq!(
        e(&format!("socket = \"{long}\"")),
        format!("config error: x.toml: control.socket: \"{long}\" is 108 bytes; a unix socket path has at most 107")
    );
    assert_eq!(e("database = \"\""), "config error: x.toml: control.database: is empty");
    assert_eq!(e("sockett = \"/a\""), "config error: x.toml: line 2: unknown field `sockett`, expected one of `socket`, `socket_group`, `listen`, `token_file`, `tls_cert`, `tls_key`, `tls_client_ca`, `max_connections`, `header_timeout_ms`, `body_timeout_ms`, `database`");
}

/// vm0 (vm) and uplink0 (uplink), then `records`.
fn with_records(port_extra: &str, records: &str) -> String {
    format!("{}\n{records}", two_ports(port_extra))
}

const BLUE: &str = "[[network]]\nvni = 100\nname = \"blue\"\n";

#[test]
fn bootstrap_records_are_sorted_like_the_database() {
    let config = ok(&with_records(
        "vni = 100",
        &format!(
            "[[network]]\nvni = 7\nname = \"seven\"\n{BLUE}\
             [[endpoint]]\nvni = 100\nmac = \"02:00:00:00:00:0a\"\nport = \"vm0\"\n\
             [[endpoint]]\nvni = 100\nmac = \"02:00:00:00:00:09\"\nport = \"vm0\"\n\
             [[remote]]\nvni = 100\nmac = \"02:00:00:00:00:02\"\nip = \"10.0.0.2\"\nvtep = \"192.0.2.9\"\n"
        ),
    ));
    let seed = config.bootstrap_snapshot();
    assert_eq!(seed.networks.iter().map(|n| n.vni).collect::<Vec<_>>(), [7, 100]);
    assert_eq!(seed.endpoints.iter().map(|e| e.mac.0[5]).collect::<Vec<_>>(), [9, 10]);
    assert_eq!(seed.endpoints[0].ip, None);
    assert_eq!(seed.remotes[0].ip, Some(Ipv4Addr::new(10, 0, 0, 2)));
    assert_eq!(seed.ports, [PortNetwork { port: "vm0".into(), vni: 100 }]);
}

#[test]
fn bootstrap_errors() {
    let e = |port_extra: &str, records: &str| err(&with_records(port_extra, records));
    let prefix = "config error: x.toml: ";
    let cases: &[(&str, &str, &str)] = &[
        ("", "[[network]]\nvni = 0\nname = \"a\"\n", "network[0].vni: 0 is out of range 1..=16777215"),
        ("", "[[network]]\nvni = 16777216\nname = \"a\"\n", "network[0].vni: 16777216 is out of range 1..=16777215"),
        (
            "",
            "[[network]]\nvni = 1\nname = \"a b\"\n",
            "network[0].name: \"a b\" is not a valid network name: use 1 to 64 characters of A-Z a-z 0-9 . _ -",
        ),
        ("", &format!("{BLUE}[[network]]\nvni = 100\nname = \"red\"\n"), "network[1].vni: VNI 100 is already network[0]"),
        (
            "",
            &format!("{BLUE}[[network]]\nvni = 200\nname = \"blue\"\n"),
            "network[1].name: \"blue\" is already the name of network[0]",
        ),
        (
            "",
            "[[network]]\nvni = 1\nname = \"a\"\nflood_vteps = [\"192.0.2.1\", \"224.0.0.5\"]\n",
            "network[0].flood_vteps[1]: 224.0.0.5 is a multicast address, not a unicast IPv4 address",
        ),
        (
            "",
            "[[network]]\nvni = 1\nname = \"a\"\nflood_vteps = [\"192.0.2.1\", \"192.0.2.1\"]\n",
            "network[0].flood_vteps[1]: 192.0.2.1 is listed twice",
        ),
        (
            "",
            "[[network]]\nvni = 1\nname = \"a\"\nflood_vteps = [\"192.0.2\"]\n",
            "network[0].flood_vteps[0]: \"192.0.2\" is not an IPv4 address such as 192.0.2.1",
        ),
        (
            "",
            "[[endpoint]]\nvni = 5\nmac = \"02:00:00:00:00:01\"\nport = \"vm0\"\n",
            "endpoint[0].vni: no [[network]] has VNI 5",
        ),
        (
            "",
            &format!("{BLUE}[[endpoint]]\nvni = 100\nmac = \"01:00:00:00:00:01\"\nport = \"vm0\"\n"),
            "endpoint[0].mac: 01:00:00:00:00:01 is a multicast address, not a unicast MAC address",
        ),
        (
            "",
            &format!("{BLUE}[[endpoint]]\nvni = 100\nmac = \"02:00:00:00:01\"\nport = \"vm0\"\n"),
            "endpoint[0].mac: \"02:00:00:00:01\" is not valid: expected a MAC address of six hex octets such as 02:00:00:00:00:01",
        ),
        (
            "",
            &format!("{BLUE}[[endpoint]]\nvni = 100\nmac = \"02:00:00:00:00:01\"\nport = \"vm9\"\n"),
            "endpoint[0].port: no port named \"vm9\"",
        ),
        (
            "",
            &format!("{BLUE}[[endpoint]]\nvni = 100\nmac = \"02:00:00:00:00:01\"\nport = \"uplink0\"\n"),
            "endpoint[0].port: port \"uplink0\" has role uplink; VM endpoints attach to vm-role ports",
        ),
        (
            "",
            &format!("{BLUE}[[endpoint]]\nvni = 100\nmac = \"02:00:00:00:00:01\"\nip = \"0.0.0.0\"\nport = \"vm0\"\n"),
            "endpoint[0].ip: 0.0.0.0 is the unspecified address, not a unicast IPv4 address",
        ),
        (
            "",
            &format!(
                "{BLUE}[[endpoint]]\nvni = 100\nmac = \"02:00:00:00:00:01\"\nport = \"vm0\"\n\
                 [[remote]]\nvni = 100\nmac = \"02:00:00:00:00:01\"\nvtep = \"192.0.2.2\"\n"
            ),
            "remote[0].mac: MAC 02:00:00:00:00:01 in VNI 100 is already endpoint[0]",
        ),
        (
            "",
            &format!("{BLUE}[[remote]]\nvni = 100\nmac = \"02:00:00:00:00:01\"\nvtep = \"127.0.0.1\"\n"),
            "remote[0].vtep: 127.0.0.1 is a loopback address, not a unicast IPv4 address",
        ),
        (
            "",
            &format!("{BLUE}[[remote]]\nvni = 100\nmac = \"02:00:00:00:00:01\"\nvtep = \"255.255.255.255\"\n"),
            "remote[0].vtep: 255.255.255.255 is the broadcast address, not a unicast IPv4 address",
        ),
        (
            "",
            &format!("{BLUE}[[address_migration]]\nvni = 200\nprimary_ip = \"10.1.0.5\"\nport = \"vm0\"\n"),
            "address_migration[0].vni: no [[network]] has VNI 200",
        ),
        (
            "",
            &format!("{BLUE}[[address_migration]]\nvni = 100\nprimary_ip = \"10.1.0.5\"\nport = \"uplink0\"\n"),
            "address_migration[0].port: port \"uplink0\" has role uplink; address migrations are for vm-role ports",
        ),
        (
            "",
            &format!("{BLUE}[[address_migration]]\nvni = 100\nprimary_ip = \"10.1.0.5\"\npost_migration_ip = \"10.1.0.5\"\nport = \"vm0\"\n"),
            "address_migration[0].post_migration_ip: 10.1.0.5 is also the primary IP; a migration moves a VM to another address",
        ),
        (
            "",
            &format!("{BLUE}[[address_migration]]\nvni = 100\nprimary_ip = \"169.254.83.89\"\nport = \"vm0\"\n"),
            "address_migration[0].primary_ip: 169.254.83.89 is the address VMs send their migration reports to",
        ),
        (
            "",
            &format!(
                "{BLUE}[[address_migration]]\nvni = 100\nprimary_ip = \"10.1.0.5\"\npost_migration_ip = \"10.2.0.5\"\nport = \"vm0\"\n\
                 [[address_migration]]\nvni = 100\nprimary_ip = \"10.1.0.6\"\npost_migration_ip = \"10.2.0.5\"\nport = \"vm0\"\n"
            ),
            "address_migration[1].post_migration_ip: 10.2.0.5 is already the post-migration IP of the address migration of 10.1.0.5",
        ),
        (
            "vni = 200",
            &format!("{BLUE}[[network]]\nvni = 200\nname = \"red\"\n[[address_migration]]\nvni = 100\nprimary_ip = \"10.1.0.5\"\nport = \"vm0\"\n"),
            "address_migration[0].port: port vm0 is in network 200, not 100",
        ),
        (
            "vni = 100",
            &format!("{BLUE}[[network]]\nvni = 7\nname = \"seven\"\n[[endpoint]]\nvni = 7\nmac = \"02:00:00:00:00:07\"\nport = \"vm0\"\n"),
            "endpoint[0].port: port vm0 is in network 100, not 7; a port's VM endpoints are all in its network",
        ),
        (
            "",
            &format!(
                "{BLUE}[[network]]\nvni = 7\nname = \"seven\"\n\
                 [[endpoint]]\nvni = 100\nmac = \"02:00:00:00:00:01\"\nport = \"vm0\"\n\
                 [[endpoint]]\nvni = 7\nmac = \"02:00:00:00:00:07\"\nport = \"vm0\"\n"
            ),
            "endpoint[1].port: port vm0 is in network 100, not 7; a port's VM endpoints are all in its network",
        ),
        (
            "",
            "[[network]]\nvni = 1\nname = \"a\"\nflood_vteps = [\"240.0.0.9\"]\n",
            "network[0].flood_vteps[0]: 240.0.0.9 is a reserved (class E) address, not a unicast IPv4 address",
        ),
        ("vni = 5", BLUE, "port[0].vni: no [[network]] has VNI 5"),
        ("vni = 0", BLUE, "port[0].vni: 0 is out of range 1..=16777215"),
    ];
    for (port_extra, records, expected) in cases {
        assert_eq!(e(port_extra, records), format!("{prefix}{expected}"), "{records}");
    }
    // vni on an uplink port.
    let text = format!(
        "[[port]]\nname = \"vm0\"\ndevargs = \"net_null0\"\nrole = \"vm\"\n\
         [[port]]\nname = \"uplink0\"\ndevargs = \"net_null1\"\nrole = \"uplink\"\nvni = 100\n{BLUE}"
    );
    assert_eq!(err(&text), format!("{prefix}port[1].vni: only vm-role ports join a network; this port has role uplink"));
    // Missing keys and unknown keys are TOML-level errors with a line.
    assert_eq!(
        err(&with_records("", "[[network]]\nvni = 1\n")),
        format!("{prefix}line 11: missing field `name`")
    );
    assert_eq!(
        err(&with_records("", "[[remote]]\nvni = 1\nmac = \"02:00:00:00:00:01\"\nvtep = \"192.0.2.1\"\nport = \"vm0\"\n")),
        format!("{prefix}line 15: unknown field `port`, expected one of `vni`, `mac`, `ip`, `vtep`")
    );
}

#[test]
fn the_local_vtep_is_no_remote_vtep_in_the_bootstrap() {
    let with_vtep = |records: &str| format!("{NULL_PORT}{UPLINK}address = \"192.0.2.1/24\"\n{records}");
    assert_eq!(
        err(&with_vtep(&format!("{BLUE}flood_vteps = [\"192.0.2.2\", \"192.0.2.1\"]\n"))),
        "config error: x.toml: network[0].flood_vteps[1]: 192.0.2.1 is this switch's own VTEP address, not a remote VTEP"
    );
    assert_eq!(
        err(&with_vtep(&format!("{BLUE}[[remote]]\nvni = 100\nmac = \"02:00:00:00:00:01\"\nvtep = \"192.0.2.1\"\n"))),
        "config error: x.toml: remote[0].vtep: 192.0.2.1 is this switch's own VTEP address, not a remote VTEP"
    );
    ok(&with_vtep(&format!("{BLUE}flood_vteps = [\"192.0.2.2\"]\n[[remote]]\nvni = 100\nmac = \"02:00:00:00:00:01\"\nvtep = \"192.0.2.2\"\n")));
}

/// One port with `devargs` and `extra` keys.
fn one_port(devargs: &str, extra: &str) -> String {
    format!("[[port]]\nname = \"vm0\"\ndevargs = \"{devargs}\"\nrole = \"vm\"\n{extra}")
}

#[test]
fn vm_port_errors() {
    assert_eq!(
        err(&one_port("net_vhost0,queues=1", "")),
        "config error: x.toml: port[0].devargs: net_vhost needs iface=<path of the vhost-user socket>, \
         e.g. net_vhost0,iface=/run/switchyard/vm0.sock"
    );
    assert_eq!(
        err(&one_port("net_vhost0,iface=/nonexistent/vm0.sock", "")),
        "config error: x.toml: port[0].devargs: directory \"/nonexistent\" for vhost-user socket \
         \"/nonexistent/vm0.sock\" does not exist (create it first)"
    );
    assert_eq!(
        err(&one_port("net_vhost0,iface=vm0.sock,queues=1", "rx_queues = 2\n")),
        "config error: x.toml: port[0].rx_queues: 2 is more than the 1 queue pair(s) of the vhost-user port \
         (queues=1 in the devargs)"
    );
    assert_eq!(
        err(&one_port("net_tap0,iface=lo", "")),
        "config error: x.toml: port[0].devargs: net_tap iface \"lo\" is an existing interface that is not a TAP device"
    );
    let two = |a: &str, b: &str| {
        format!(
            "[[port]]\nname = \"a\"\ndevargs = \"{a}\"\nrole = \"vm\"\n\
             [[port]]\nname = \"b\"\ndevargs = \"{b}\"\nrole = \"vm\"\n"
        )
    };
    assert_eq!(
        err(&two("net_vhost0,iface=vm.sock", "net_vhost1,iface=vm.sock,client=1")),
        "config error: x.toml: port[1].devargs: vhost-user socket \"vm.sock\" is already used by port[0]"
    );
    assert_eq!(
        err(&two("net_tap0,iface=sy-vm0", "net_tap1,iface=sy-vm0")),
        "config error: x.toml: port[1].devargs: TAP interface \"sy-vm0\" is already used by port[0]"
    );
    let config = ok(&two("net_vhost0,iface=vm0.sock,queues=2", "net_tap0,iface=sy-vm0"));
    assert_eq!(
        config.ports[0].vhost_socket(),
        Some(vm_ports::VhostSocket { path: "vm0.sock".into(), client: false, queues: 2 })
    );
    assert_eq!((config.ports[1].vhost_socket(), config.ports[1].tap_iface()), (None, Some("sy-vm0")));
    assert!(config.ports[1].creates_kernel_interface() && !config.ports[0].creates_kernel_interface());
}

#[test]
fn example_configs_parse() {
    for entry in std::fs::read_dir("conf").expect("tests run in the package root") {
        let path = entry.expect("conf/ entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

#[test]
fn migration_and_board_sections() {
    let config = ok(&format!("[mempool]\nmbufs = 2047\n{NULL_PORT}"));
    assert_eq!(config.migration.buffer_packets, 1023, "the default never exceeds half the pool");
    assert_eq!(config.board, None);
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("board.token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").unwrap();
    let token = token.to_str().unwrap();
    let config = ok(&format!(
        "[migration]\nbuffer_packets = 100\nbuffer_bytes = 65536\nlinger_ms = 0\n\
         [board]\nurl = \"http://127.0.0.1:7400\"\nhost = \"host-a\"\ntoken_file = \"{token}\"\n{NULL_PORT}"
    ));
    assert_eq!(config.migration, MigrationConfig { buffer_packets: 100, buffer_bytes: 65536, linger_ms: 0 });
    assert_eq!(
        config.board,
        Some(BoardConfig {
            url: "http://127.0.0.1:7400".into(),
            host: Some("host-a".into()),
            lease_ms: 30_000,
            auth: AuthFiles { token_file: Some(token.into()), ..Default::default() }
        })
    );
    let e = |text: &str| err(&format!("{text}\n{NULL_PORT}"));
    // The board authenticates every request: a client without credentials is refused before the start.
    assert_eq!(
        e("[board]\nurl = \"http://127.0.0.1:7400\""),
        "config error: x.toml: board: an http:// board needs board.token_file (the board's bearer token)"
    );
    assert_eq!(
        e("[board]\nurl = \"https://192.0.2.9:7400\""),
        "config error: x.toml: board: an https:// board needs board.tls_ca, board.tls_cert and board.tls_key"
    );
    assert_eq!(
        e("[board]\nurl = \"http://127.0.0.1:7400\"\ntoken_file = \"/nonexistent/board.token\""),
        "config error: x.toml: board: token file /nonexistent/board.token: No such file or directory (os error 2)"
    );
    assert_eq!(
        e("[migration]\nbuffer_packets = 5000"),
        "config error: x.toml: migration.buffer_packets: 5000 is out of range 1..=4095 \
         (at most half of mempool.mbufs: held packets stay in the pool)"
    );
    assert_eq!(
        e("[migration]\nbuffer_bytes = 10"),
        "config error: x.toml: migration.buffer_bytes: 10 is out of range 64..=4294967296"
    );
    assert_eq!(
        e("[migration]\nhold = 1"),
        "config error: x.toml: line 2: unknown field `hold`, expected one of `buffer_packets`, `buffer_bytes`, `linger_ms`"
    );
    assert_eq!(
        e("[board]\nhost = \"a\""),
        "config error: x.toml: board.url: is missing: give the board's address, such as \"http://127.0.0.1:7400\""
    );
    assert_eq!(
        e("[board]\nurl = \"127.0.0.1:7400\""),
        "config error: x.toml: board.url: \"127.0.0.1:7400\" is not a URL of the form http://127.0.0.1:PORT or https://HOST:PORT"
    );
    assert_eq!(
        e(&format!("[board]\nurl = \"http://127.0.0.1:1\"\ntoken_file = \"{token}\"\nhost = \"a b\"")),
        "config error: x.toml: board.host: \"a b\" must be 1 to 64 characters of A-Z a-z 0-9 . _ -"
    );
    assert_eq!(
        e(&format!("[board]\nurl = \"http://127.0.0.1:1\"\ntoken_file = \"{token}\"\nlease_ms = 5")),
        "config error: x.toml: board.lease_ms: 5 is out of range 100..=3600000"
    );
}

#[test]
fn storage_section() {
    assert_eq!(ok(NULL_PORT).storage, None, "no [storage]: the storage API refuses");
    let config = ok(&format!("[storage]\nimages = \"img\"\n{NULL_PORT}"));
    assert_eq!(config.storage, Some(StorageConfig::new("img")));
    assert_eq!((StorageConfig::new("x").port, StorageConfig::new("x").attach_lease_ms), (10810, 15_000));
    let config = ok(&format!("[storage]\nimages = \"/srv/i\"\nport = 4000\nattach_lease_ms = 100\n{NULL_PORT}"));
    assert_eq!(
        config.storage,
        Some(StorageConfig { images: "/srv/i".into(), port: 4000, attach_lease_ms: 100, image_group: None, import_dir: None })
    );
    let config = ok(&format!("[storage]\nimages = \"i\"\nimage_group = \"root\"\nimport_dir = \"/srv/import\"\n{NULL_PORT}"));
    let storage = config.storage.unwrap();
    assert_eq!(storage.image_group, Some(crate::config::ImageGroup { name: "root".into(), gid: 0 }));
    assert_eq!(storage.import_dir, Some("/srv/import".into()));
    let e = |storage: &str| err(&format!("[storage]\n{storage}\n{NULL_PORT}"));
    assert_eq!(e("port = 1"), "config error: x.toml: storage.images: is missing: give the directory the image files live in");
    assert_eq!(e("images = \"\""), "config error: x.toml: storage.images: is empty");
    assert_eq!(e("images = \"i\"\nport = 0"), "config error: x.toml: storage.port: 0 is out of range 1..=65535");
    assert_eq!(e("images = \"i\"\nport = 70000"), "config error: x.toml: storage.port: 70000 is out of range 1..=65535");
    assert_eq!(
        e("images = \"i\"\nattach_lease_ms = 99"),
        "config error: x.toml: storage.attach_lease_ms: 99 is out of range 100..=3600000"
    );
    assert_eq!(
        e("images = \"i\"\nlease = 1"),
        "config error: x.toml: line 3: unknown field `lease`, expected one of `images`, `port`, `attach_lease_ms`, \
         `image_group`, `import_dir`"
    );
    assert_eq!(
        e("images = \"i\"\nimage_group = \"no-such-group-here\""),
        "config error: x.toml: storage.image_group: there is no group named \"no-such-group-here\" on this host"
    );
    assert_eq!(
        e("images = \"i\"\nimport_dir = \"import\""),
        "config error: x.toml: storage.import_dir: \"import\" is not an absolute path"
    );
}

#[test]
fn upgrade_section() {
    assert_eq!(ok(NULL_PORT).upgrade.library_dir, Path::new("/usr/lib/switchyard/units"), "the default unit directory");
    let config = ok(&format!("[upgrade]\nlibrary_dir = \"/opt/units\"\n{NULL_PORT}"));
    assert_eq!(config.upgrade, UpgradeConfig { library_dir: "/opt/units".into() });
    let e = |upgrade: &str| err(&format!("[upgrade]\n{upgrade}\n{NULL_PORT}"));
    assert_eq!(
        e("library_dir = \"units\""),
        "config error: x.toml: upgrade.library_dir: \"units\" is not an absolute path; give the directory unit libraries are loaded from"
    );
    assert_eq!(
        e("library_dir = \"/usr/lib/../tmp\""),
        "config error: x.toml: upgrade.library_dir: \"/usr/lib/../tmp\" contains `..`; give the directory's own path"
    );
    assert_eq!(e("dir = \"/x\""), "config error: x.toml: line 2: unknown field `dir`, expected `library_dir`");
}

#[test]
fn gateway_role_with_vni_mappings() {
    let vtep = format!("{NULL_PORT}{UPLINK}address = \"192.0.2.1/24\"\n{BLUE}");
    assert_eq!(ok(&vtep).gateway, None, "no [gateway], no role");
    assert_eq!(ok(&format!("{vtep}[gateway]\n")).gateway, Some(GatewayConfig::default()));
    let mapped = ok(&format!(
        "{vtep}[[network]]\nvni = 101\nname = \"green\"\n[gateway]\n\
         [[gateway.vni_map]]\nremote_vni = 200\nlocal_vni = 100\n[[gateway.vni_map]]\nremote_vni = 201\nlocal_vni = 100\n"
    ));
    let gateway = mapped.gateway.unwrap();
    assert_eq!(gateway.vni_map, [VniMapping { remote_vni: 200, local_vni: 100 }, VniMapping { remote_vni: 201, local_vni: 100 }]);
    assert_eq!((gateway.local_vni(200), gateway.local_vni(201), gateway.local_vni(101), gateway.local_vni(7)), (100, 100, 101, 7));
}

#[test]
fn gateway_errors() {
    let vtep = format!("{NULL_PORT}{UPLINK}address = \"192.0.2.1/24\"\n{BLUE}[gateway]\n");
    let map = |remote: i64, local: i64| format!("[[gateway.vni_map]]\nremote_vni = {remote}\nlocal_vni = {local}\n");
    assert_eq!(
        err(&format!("{NULL_PORT}{UPLINK}[gateway]\n")),
        "config error: x.toml: gateway: needs an uplink port with `address`: the VTEP the other cloud's tunnels end at"
    );
    assert_eq!(
        err(&format!("{vtep}{}{}", map(200, 100), map(200, 100))),
        "config error: x.toml: gateway.vni_map[1].remote_vni: VNI 200 is already mapped by gateway.vni_map[0]"
    );
    assert_eq!(err(&format!("{vtep}{}", map(200, 300))), "config error: x.toml: gateway.vni_map[0].local_vni: no [[network]] has VNI 300");
    assert_eq!(
        err(&format!("{vtep}{}", map(100, 100))),
        "config error: x.toml: gateway.vni_map[0].remote_vni: VNI 100 is the local network \"blue\"; map only VNIs not used here"
    );
    assert_eq!(err(&format!("{vtep}{}", map(0, 100))), "config error: x.toml: gateway.vni_map[0].remote_vni: 0 is out of range 1..=16777215");
    assert_eq!(
        err(&format!("{vtep}{}", map(200, 16_777_216))),
        "config error: x.toml: gateway.vni_map[0].local_vni: 16777216 is out of range 1..=16777215"
    );
    assert_eq!(
        err(&format!("{vtep}[[gateway.vni_map]]\nremote_vni = 200\n")),
        "config error: x.toml: line 14: missing field `local_vni`"
    );
}

#[test]
fn a_vtep_prefix_over_32_is_taken_as_32_not_a_panic() {
    // A VtepConfig from a unit's setup blob is not checked by the TOML reader (found by the unit_config fuzz target).
    let vtep = |prefix_len| VtepConfig { address: Ipv4Addr::new(192, 0, 2, 1), prefix_len, gateway: None, next_hop_mac: None, mtu: 1500 };
    for len in [32, 33, 39, 255] {
        assert!(vtep(len).is_on_link(Ipv4Addr::new(192, 0, 2, 1)));
        assert!(!vtep(len).is_on_link(Ipv4Addr::new(192, 0, 2, 2)), "/{len}");
    }
    assert!(vtep(0).is_on_link(Ipv4Addr::new(203, 0, 113, 9)));
}
