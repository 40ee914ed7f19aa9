//! Layer 3 for the storage server's error matrix (docs/storage-protocol.md "Statuses", "What the server refuses",
//! "Why one user cannot read another's data"): request datagrams crafted with `switchyard::wire::block`, sent
//! from a client namespace to the block-I/O stage of a running switch (`net_af_packet` uplink). Each reply's MAC
//! is checked under its user's key and its status against the doc; each refusal must get no reply and count
//! under its drop reason, and nothing else may be dropped. Root only; the namespace, the switch and its socket
//! are removed even when a check fails.
mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::netns::{unique_name, veth, Netns};
use common::switch::RunningSwitch;
use common::storage::{server_config, vbd_command, CLIENT_IP, SERVER_IP};
use common::{ctl, ctl_json, Running, SocketPath};
use switchyard::wire::block::{BlockPacket, BlockRepr, Flags, ImageInfo, Op, Status, UserKey, HEADER_LEN};
use switchyard::wire::ethernet::{self, EthernetRepr};
use switchyard::wire::ipv4::{self, Ipv4Repr};
use switchyard::wire::udp::UdpRepr;
use switchyard::wire::MacAddr;

const ALICE_IP: &str = CLIENT_IP;
const BOB_IP: &str = "10.77.0.3";
/// An address on the client's interface that no user is assigned.
const STRANGER_IP: &str = "10.77.0.4";
const IMAGE_SIZE: u64 = 1 << 20;

/// How long a datagram that must not be answered is given to be answered anyway.
const NO_REPLY_WAIT_MS: u32 = 300;
/// How long the first reply to a datagram that must be answered may take.
const REPLY_WAIT_MS: u32 = 3000;

/// Sends datagrams to the service from the given source addresses, one after the other; after each, waits up to
/// its wait for a first reply, then 50 ms for more (a READ's fragments). Prints one line per datagram: the reply
/// datagrams in hex, or "none". Arguments: SOURCE,WAIT_MS,HEX.
const SENDER: &str = r#"
import select, socket, sys, time
sockets = {}
for arg in sys.argv[1:]:
    source, wait_ms, data = arg.split(",")
    s = sockets.get(source)
    if s is None:
        s = sockets[source] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((source, 0))
    s.sendto(bytes.fromhex(data), SERVICE)
    replies, deadline = [], time.monotonic() + int(wait_ms) / 1000
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([s], [], [], left)[0]:
            break
        replies.append(s.recv(65535).hex())
        deadline = time.monotonic() + 0.05
    print(" ".join(replies) or "none", flush=True)
"#;

/// A storage user as the test knows it.
struct User {
    name: &'static str,
    id: u32,
    key: UserKey,
    ip: &'static str,
    secret: String,
    /// Request ids: increasing, as a client numbers them.
    next_id: u64,
}

impl User {
    fn create(socket: &Path, name: &'static str, ip: &'static str, first_id: u64) -> User {
        let user = ctl_json(socket, &["storage", "user", "create", name, "--ip", ip, "--quota", "1G"]);
        let secret = user["secret"].as_str().expect("the create reply shows the secret").to_string();
        let bytes: [u8; 32] = hex::decode(&secret).unwrap().try_into().expect("a 32-byte secret");
        let id = u32::try_from(user["id"].as_u64().unwrap()).unwrap();
        User { name, id, key: UserKey::new(bytes), ip, secret, next_id: first_id }
    }

    fn take_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// A request header of this user with a fresh id.
    fn request(&mut self, image: u32, op: Op, offset: u64, length: u32) -> BlockRepr {
        let id = self.take_id();
        header(self.id, image, id, op, offset, length)
    }
}

fn header(user: u32, image: u32, request_id: u64, op: Op, offset: u64, length: u32) -> BlockRepr {
    BlockRepr {
        op,
        flags: Flags::NONE,
        user_id: user,
        image_id: image,
        request_id,
        offset,
        length,
        fragment_offset: 0,
        payload_len: 0,
        status: Status::Ok,
    }
}

/// The datagram of `header` and `payload`, MAC'd under `key` (whose user the header need not claim).
fn signed(header: &BlockRepr, payload: &[u8], key: &UserKey) -> Vec<u8> {
    let mut bytes = vec![0; HEADER_LEN + payload.len()];
    header.emit(&mut bytes).unwrap_or_else(|e| panic!("{header:?}: {e}"));
    bytes[HEADER_LEN..].copy_from_slice(payload);
    BlockPacket::new_unchecked(&mut bytes[..]).fill_mac(key);
    bytes
}

/// A request `emit` refuses to write (the server must refuse it too): a valid one, changed, then MAC'd again, so
/// that only the change is wrong.
fn patched(header: &BlockRepr, key: &UserKey, change: impl FnOnce(&mut BlockPacket<&mut [u8]>)) -> Vec<u8> {
    let mut bytes = signed(header, &[], key);
    let mut packet = BlockPacket::new_unchecked(&mut bytes[..]);
    change(&mut packet);
    packet.fill_mac(key);
    bytes
}

/// A WRITE of `data` (at most one fragment) as one datagram.
fn write_datagram(user: &mut User, image: u32, offset: u64, data: &[u8]) -> (BlockRepr, Vec<u8>) {
    let length = u32::try_from(data.len()).unwrap();
    let write = BlockRepr { payload_len: length as u16, ..user.request(image, Op::Write, offset, length) };
    (write, signed(&write, data, &user.key))
}

/// One datagram to send and how long to wait for its replies.
struct Send {
    from: &'static str,
    datagram: Vec<u8>,
    wait_ms: u32,
}

impl Send {
    fn answered(from: &'static str, datagram: Vec<u8>) -> Send {
        Send { from, datagram, wait_ms: REPLY_WAIT_MS }
    }

    fn unanswered(from: &'static str, datagram: Vec<u8>) -> Send {
        Send { from, datagram, wait_ms: NO_REPLY_WAIT_MS }
    }
}

/// Sends `sends` from inside `client`, in order; the reply datagrams each one got.
fn exchange(client: &Netns, sends: &[Send]) -> Vec<Vec<Vec<u8>>> {
    let script = SENDER.replace("SERVICE", &format!("(\"{SERVER_IP}\", {})", switchyard::wire::block::UDP_PORT));
    let args: Vec<String> = sends.iter().map(|s| format!("{},{},{}", s.from, s.wait_ms, hex::encode(&s.datagram))).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = client.python(&script, &args).wait_at_most(Duration::from_secs(30)).expect("the sender ends within 30 s");
    assert!(out.status.success(), "the sender failed: {}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Vec<Vec<u8>>> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| if line == "none" { Vec::new() } else { line.split(' ').map(|h| hex::decode(h).unwrap()).collect() })
        .collect();
    assert_eq!(lines.len(), sends.len(), "one line per datagram sent");
    lines
}

/// A reply datagram after its MAC was checked under `key`: its header and payload.
fn parse_reply(bytes: &[u8], key: &UserKey, case: &str) -> (BlockRepr, Vec<u8>) {
    let packet = BlockPacket::new_checked(bytes).unwrap_or_else(|e| panic!("{case}: a reply that does not frame: {e}"));
    packet.verify_mac(key).unwrap_or_else(|e| panic!("{case}: the reply's MAC under the user's key: {e}"));
    let reply = BlockRepr::parse_reply(&packet).unwrap_or_else(|e| panic!("{case}: the reply does not parse: {e}"));
    (reply, packet.payload().to_vec())
}

/// Checks that `replies` is one datagram, without payload, answering `request` with `status`, MAC'd under `key`;
/// its header.
fn expect_status(replies: &[Vec<u8>], request: &BlockRepr, key: &UserKey, status: Status, case: &str) -> BlockRepr {
    assert_eq!(replies.len(), 1, "{case}: one reply datagram, got {}", replies.len());
    assert_eq!(replies[0].len(), HEADER_LEN, "{case}: a status reply is 64 bytes, no data");
    let (reply, _) = parse_reply(&replies[0], key, case);
    assert_eq!(reply.status, status, "{case}: the status");
    assert_eq!(
        (reply.user_id, reply.image_id, reply.request_id),
        (request.user_id, request.image_id, request.request_id),
        "{case}: the reply echoes user, image and request id"
    );
    reply
}

/// Reassembles a READ's reply fragments (each MAC'd under `key`, each answering `read` with OK): the data.
fn read_data(replies: &[Vec<u8>], read: &BlockRepr, key: &UserKey, case: &str) -> Vec<u8> {
    assert!(!replies.is_empty(), "{case}: the READ was not answered");
    let mut data = vec![0; read.length as usize];
    let mut granted = 0;
    for bytes in replies {
        let (reply, payload) = parse_reply(bytes, key, case);
        assert_eq!(reply.status, Status::Ok, "{case}: the READ's status");
        let answers = (reply.op, reply.request_id, reply.offset, reply.length);
        assert_eq!(answers, (Op::Read, read.request_id, read.offset, read.length), "{case}: the fragment answers the READ");
        data[reply.fragment_offset as usize..][..payload.len()].copy_from_slice(&payload);
        granted += payload.len();
    }
    assert_eq!(granted, read.length as usize, "{case}: the fragments cover the READ once");
    data
}

/// The switch's drop counters, and what this test expects them to have grown by since the start.
struct DropLedger<'a> {
    socket: &'a Path,
    base: BTreeMap<String, u64>,
    expected: BTreeMap<String, u64>,
}

impl<'a> DropLedger<'a> {
    fn new(socket: &'a Path) -> Self {
        DropLedger { socket, base: drops(socket), expected: BTreeMap::new() }
    }

    /// Expects `reason` to grow by one more, then checks every counter (`case` names the check).
    fn expect_one(&mut self, reason: &str, case: &str) {
        *self.expected.entry(reason.to_string()).or_default() += 1;
        self.check(case);
    }

    /// Waits (at most 2 s) until every drop counter grew by what was expected (others by nothing); fails otherwise.
    fn check(&self, case: &str) {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let now = drops(self.socket);
            let grown: BTreeMap<String, u64> = now
                .iter()
                .map(|(reason, n)| (reason.clone(), n - self.base.get(reason).copied().unwrap_or(0)))
                .filter(|(_, n)| *n != 0)
                .collect();
            if grown == self.expected {
                return;
            }
            assert!(Instant::now() < deadline, "{case}: drops grew by {grown:?}, expected {:?}", self.expected);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn drops(socket: &Path) -> BTreeMap<String, u64> {
    let stats = ctl_json(socket, &["stats"]);
    let drops = stats["drops"].as_object().unwrap_or_else(|| panic!("stats without drops: {stats}"));
    drops.iter().map(|(reason, n)| (reason.clone(), n.as_u64().unwrap_or(0))).collect()
}

/// The images of the test: alice's disk and read-only golden image, bob's disk.
struct Images {
    disk: u32,
    golden: u32,
    bobs: u32,
    disk_file: String,
}

fn create_image(socket: &Path, name: &str, owner: &str) -> serde_json::Value {
    ctl_json(socket, &["storage", "image", "create", name, "--owner", owner, "--size", &IMAGE_SIZE.to_string()])
}

fn image_id(image: &serde_json::Value) -> u32 {
    u32::try_from(image["id"].as_u64().unwrap()).unwrap()
}

#[test]
fn the_storage_error_matrix_through_the_block_io_stage() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let client = Netns::new(&unique_name("syr"));
    // No IPv6 on either end: its router and neighbour solicitations would be drops of their own.
    client.sysctl("net.ipv6.conf.default.disable_ipv6=1");
    client.sysctl("net.ipv6.conf.all.disable_ipv6=1");
    let uplink = unique_name("syru");
    veth(&client, &uplink, "eth0", &format!("{ALICE_IP}/24"), "1500");
    common::netns::run(&["sysctl", "-q", "-w", &format!("net.ipv6.conf.{uplink}.disable_ipv6=1")]);
    for address in [BOB_IP, STRANGER_IP] {
        client.ip(&["addr", "add", &format!("{address}/24"), "dev", "eth0"]);
    }
    let socket = SocketPath::new("refuse");
    let server = RunningSwitch::start_running(dir.path(), &server_config(dir.path(), &socket, &uplink));

    let mut alice = User::create(&socket, "alice", ALICE_IP, 1_000_000);
    let mut bob = User::create(&socket, "bob", BOB_IP, 5_000_000);
    let disk = create_image(&socket, "disk", "alice");
    let golden = image_id(&create_image(&socket, "golden", "alice"));
    ctl_json(&socket, &["storage", "image", "set-read-only", "golden", "on"]);
    let bobs = image_id(&create_image(&socket, "bobdisk", "bob"));
    let images = Images { disk: image_id(&disk), golden, bobs, disk_file: disk["file"].as_str().unwrap().into() };

    let mut ledger = DropLedger::new(&socket);
    images_are_served(&client, &mut alice, &mut bob, &images);
    ledger.check("INFO of every image");
    error_statuses(&client, &mut alice, &images);
    ledger.check("the error statuses (an error reply is no drop)");
    refusals_without_reply(&client, &mut alice, &images, &mut ledger);
    users_cannot_reach_each_other(&client, (&mut alice, &mut bob), &images, &mut ledger);
    replies_go_to_the_mac_arp_resolved(&client, &uplink, &mut alice, &images, &mut ledger);
    writes_execute_once(&client, &mut alice, &images);
    ledger.check("duplicated and replayed WRITEs");
    old_ids_are_stale(&client, &mut alice, &images);
    ledger.check("request ids below the window");
    vbd_cannot_export_another_users_image(&client, dir.path(), &bob, images.disk);
    std::thread::sleep(Duration::from_millis(300));
    ledger.check("the end (nothing dropped late)");
    metrics_carry_the_storage_counters(&socket);

    let exit = server.stop();
    assert_eq!(exit.stats["unaccounted"], 0, "{}", exit.stats);
    eprintln!("storage refusals: {:.1} s", started.elapsed().as_secs_f64());
}

/// The Prometheus page has the counters `ctl stats` shows (the traffic has stopped, so they hold still).
fn metrics_carry_the_storage_counters(socket: &Path) {
    let storage = ctl_json(socket, &["stats"])["storage"].clone();
    assert!(storage["error_replies"].as_u64().unwrap() > 0, "the error matrix was answered: {storage}");
    let out = ctl(socket, &["metrics"]);
    let metrics = String::from_utf8_lossy(&out.stdout);
    for (sample, field) in [
        ("switchyard_storage_requests_total", "requests"),
        ("switchyard_storage_answered_from_window_total", "answered_from_window"),
        ("switchyard_storage_error_replies_total", "error_replies"),
        ("switchyard_storage_bytes_total{direction=\"read\"}", "bytes_read"),
        ("switchyard_storage_bytes_total{direction=\"written\"}", "bytes_written"),
    ] {
        let line = format!("{sample} {}", storage[field]);
        assert!(metrics.lines().any(|l| l == line), "no line {line:?} in the metrics:\n{metrics}");
    }
}

/// INFO of each image answers its size and mode (also lets ARP settle and the catalog reach the worker).
fn images_are_served(client: &Netns, alice: &mut User, bob: &mut User, images: &Images) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = alice.request(images.disk, Op::Info, 0, 16);
        let replies = exchange(client, &[Send { from: ALICE_IP, datagram: signed(&info, &[], &alice.key), wait_ms: 500 }]);
        if !replies[0].is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "no INFO reply from the block-I/O stage within 10 s");
    }
    for (user, image, read_only) in [(alice, images.golden, true), (bob, images.bobs, false)] {
        let info = user.request(image, Op::Info, 0, 16);
        let replies = exchange(client, &[Send::answered(user.ip, signed(&info, &[], &user.key))]);
        let case = format!("INFO of {}'s image {image}", user.name);
        assert_eq!(replies[0].len(), 1, "{case}: one reply");
        let (reply, payload) = parse_reply(&replies[0][0], &user.key, &case);
        assert_eq!((reply.status, reply.request_id), (Status::Ok, info.request_id), "{case}");
        let info = ImageInfo::parse(&payload).unwrap();
        assert_eq!((info.size, info.is_read_only()), (IMAGE_SIZE, read_only), "{case}");
    }
}

/// Item 2's statuses: each request is answered with one 64-byte datagram under alice's key.
fn error_statuses(client: &Netns, alice: &mut User, images: &Images) {
    let end = IMAGE_SIZE;
    let key = alice.key.clone();
    let mut cases: Vec<(&str, BlockRepr, Vec<u8>, Status)> = Vec::new();
    let mut plain = |case, request: BlockRepr, status| cases.push((case, request, signed(&request, &[], &key), status));
    plain("READ across the end", alice.request(images.disk, Op::Read, end - 512, 1024), Status::Invalid);
    plain("READ at the end", alice.request(images.disk, Op::Read, end, 512), Status::Invalid);
    plain("TRIM across the end", alice.request(images.disk, Op::Trim, end - 512, 1024), Status::Invalid);
    plain("WRITE_ZEROES across the end", alice.request(images.disk, Op::WriteZeroes, end - 512, 1024), Status::NoSpace);
    plain("TRIM of a read-only image", alice.request(images.golden, Op::Trim, 0, 512), Status::NotPermitted);
    plain("WRITE_ZEROES of a read-only image", alice.request(images.golden, Op::WriteZeroes, 0, 512), Status::NotPermitted);
    plain("READ of an unknown image id", alice.request(images.bobs + 1000, Op::Read, 0, 512), Status::AccessDenied);
    let (write, bytes) = write_datagram(alice, images.disk, end - 512, &[0x5a; 1024]);
    cases.push(("a one-fragment WRITE across the end", write, bytes, Status::NoSpace));
    let (write, bytes) = write_datagram(alice, images.golden, 0, &[0x5a; 512]);
    cases.push(("WRITE to a read-only image", write, bytes, Status::NotPermitted));
    let read = alice.request(images.disk, Op::Read, 0, 4096);
    let long = BlockRepr { length: 64 * 1024 + 512, ..read };
    cases.push(("READ over 64 KiB", long, patched(&read, &alice.key, |p| p.set_length(long.length)), Status::Overflow));
    let read = alice.request(images.disk, Op::Read, 0, 4096);
    let fua = patched(&read, &alice.key, |p| p.set_flag_bits(Flags::FUA.bits()));
    cases.push(("FUA on a READ", read, fua, Status::Invalid));
    let read = alice.request(images.disk, Op::Read, 0, 4096);
    cases.push(("an unknown op (9)", read, patched(&read, &alice.key, |p| p.set_op_code(9)), Status::NotSupported));
    let read = alice.request(images.disk, Op::Read, 0, 4096);
    let flag = patched(&read, &alice.key, |p| p.set_flag_bits(0x0100));
    cases.push(("an unknown flag bit", read, flag, Status::NotSupported));

    let sends: Vec<Send> = cases.iter().map(|(_, _, bytes, _)| Send::answered(ALICE_IP, bytes.clone())).collect();
    let replies = exchange(client, &sends);
    for ((case, request, _, status), replies) in cases.iter().zip(&replies) {
        let reply = expect_status(replies, request, &alice.key, *status, case);
        assert_eq!((reply.offset, reply.length), (request.offset, request.length), "{case}: the range is echoed");
        // An op the server does not know cannot be echoed as an `Op`.
        if !case.starts_with("an unknown op") {
            assert_eq!(reply.op, request.op, "{case}: the op is echoed");
        }
    }
}

/// Datagrams that are not a user's authenticated request from its address: no reply, each counted by name.
fn refusals_without_reply(client: &Netns, alice: &mut User, images: &Images, ledger: &mut DropLedger) {
    let read = alice.request(images.disk, Op::Read, 0, 512);
    let good = signed(&read, &[], &alice.key);
    let unknown_user = signed(&BlockRepr { user_id: 999_999, ..read }, &[], &alice.key);
    let mut bad_mac = good.clone();
    bad_mac[HEADER_LEN - 1] ^= 0x01;
    let mut changed_field = good.clone();
    changed_field[30] ^= 0x01; // the offset: the MAC no longer matches
    let (_, write) = write_datagram(alice, images.disk, 0, &[7; 512]);
    let mut trailing = good.clone();
    trailing.extend_from_slice(&[0; 8]);
    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    let cases: [(&str, &str, Vec<u8>, &str); 8] = [
        ("an unknown user id", ALICE_IP, unknown_user, "storage_unknown_user"),
        ("a bad MAC", ALICE_IP, bad_mac, "storage_bad_mac"),
        ("a field changed after signing", ALICE_IP, changed_field, "storage_bad_mac"),
        ("alice's datagram from an address no user has", STRANGER_IP, good.clone(), "storage_wrong_source"),
        ("a datagram of 40 bytes", ALICE_IP, good[..40].to_vec(), "storage_malformed"),
        ("a WRITE without the payload it claims", ALICE_IP, write[..HEADER_LEN].to_vec(), "storage_malformed"),
        ("bytes after the payload", ALICE_IP, trailing, "storage_malformed"),
        ("a bad magic", ALICE_IP, bad_magic, "storage_malformed"),
    ];
    for (case, from, datagram, reason) in cases {
        let replies = exchange(client, &[Send::unanswered(from, datagram)]);
        assert!(replies[0].is_empty(), "{case}: answered with {} datagram(s), must get none", replies[0].len());
        ledger.expect_one(reason, case);
    }
}

/// Another user's image is EACCES; another user's id without their key, or their datagram from another address,
/// gets nothing.
fn users_cannot_reach_each_other(
    client: &Netns,
    (alice, bob): (&mut User, &mut User),
    images: &Images,
    ledger: &mut DropLedger,
) {
    let data: Vec<u8> = (0..4096u32).map(|i| (i * 13 + 1) as u8).collect();
    let offset = 64 * 1024;
    let bobs_write = write_fragments(bob, images.bobs, offset, &data);
    let replies = exchange(client, &bobs_write.1);
    expect_status(replies.last().unwrap(), &bobs_write.0, &bob.key, Status::Ok, "bob writes his disk");

    let steal = alice.request(images.bobs, Op::Read, offset, 4096);
    let replies = exchange(client, &[Send::answered(ALICE_IP, signed(&steal, &[], &alice.key))]);
    expect_status(&replies[0], &steal, &alice.key, Status::AccessDenied, "alice reads bob's image");
    let overwrite = write_datagram(alice, images.bobs, offset, &[0xee; 512]);
    let replies = exchange(client, &[Send::answered(ALICE_IP, overwrite.1)]);
    expect_status(&replies[0], &overwrite.0, &alice.key, Status::AccessDenied, "alice writes bob's image");
    ledger.check("another user's image");

    // Bob claims alice's user id for her disk: he signs with his own key.
    let forged = header(alice.id, images.disk, alice.take_id(), Op::Read, 0, 4096);
    let replies = exchange(client, &[Send::unanswered(BOB_IP, signed(&forged, &[], &bob.key))]);
    assert!(replies[0].is_empty(), "bob forging alice's user id: must get no reply");
    ledger.expect_one("storage_bad_mac", "bob forging alice's user id");
    let forged = header(bob.id, images.disk, bob.take_id(), Op::Read, 0, 4096);
    let replies = exchange(client, &[Send::answered(BOB_IP, signed(&forged, &[], &bob.key))]);
    expect_status(&replies[0], &forged, &bob.key, Status::AccessDenied, "bob asks for alice's image id as himself");

    // Alice's READ, answered to her, then captured and replayed from bob's address and from a stranger's.
    let read = alice.request(images.disk, Op::Read, 0, 4096);
    let bytes = signed(&read, &[], &alice.key);
    let replies = exchange(client, &[Send::answered(ALICE_IP, bytes.clone())]);
    read_data(&replies[0], &read, &alice.key, "alice's READ before the replay");
    for (from, case) in [(BOB_IP, "alice's READ replayed from bob's address"), (STRANGER_IP, "the same from a stranger")] {
        let replies = exchange(client, &[Send::unanswered(from, bytes.clone())]);
        assert!(replies[0].is_empty(), "{case}: must get no reply");
        ledger.expect_one("storage_wrong_source", case);
    }

    // Bob's data is still his, and readable by him only.
    let read = bob.request(images.bobs, Op::Read, offset, 4096);
    let replies = exchange(client, &[Send::answered(BOB_IP, signed(&read, &[], &bob.key))]);
    assert_eq!(read_data(&replies[0], &read, &bob.key, "bob reads his disk"), data, "bob's data, untouched");
    for reply in &replies[0] {
        let under_alices_key = BlockPacket::new_unchecked(&reply[..]).verify_mac(&alice.key).is_ok();
        assert!(!under_alices_key, "bob's replies are not MAC'd under alice's key");
    }
}

/// Sends raw Ethernet frames from the client's eth0, one after the other, each followed by 300 ms of listening
/// on eth0; prints one line per frame: the destination MACs of the frames the server (SERVER_MAC) sent from
/// the storage port meanwhile, or "none". Arguments: the frames in hex.
const RAW_SENDER: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind(("eth0", 0))
s.settimeout(0.05)
# The port the frames come from: the replies find a socket (no ICMP port unreachable back to the server).
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("", 40999))
server = bytes.fromhex(SERVER_MAC)
for frame in sys.argv[1:]:
    s.send(bytes.fromhex(frame))
    seen, deadline = [], time.monotonic() + 0.3
    while time.monotonic() < deadline:
        try:
            data, address = s.recvfrom(65535)
        except socket.timeout:
            continue
        ip = data[14:]
        if address[2] == socket.PACKET_OUTGOING or data[6:12] != server or data[12:14] != b"\x08\x00" or len(ip) < 28:
            continue
        udp = ip[(ip[0] & 15) * 4:]
        if ip[9] == 17 and udp[0:2] == (10810).to_bytes(2, "big"):
            seen.append(data[0:6].hex(":"))
    print(" ".join(seen) or "none", flush=True)
"#;

/// An Ethernet frame from alice's address to the service carrying `datagram`, with the MACs given (UDP checksum
/// 0, "none": the datagram has its own MAC).
fn raw_frame(src: MacAddr, dst: MacAddr, datagram: &[u8]) -> Vec<u8> {
    let mut frame = vec![0; 14 + 20 + 8 + datagram.len()];
    EthernetRepr { dst, src, ethertype: ethernet::ethertype::IPV4, vlan: None }.emit(&mut frame).unwrap();
    let ip = Ipv4Repr {
        src_addr: ALICE_IP.parse().unwrap(),
        dst_addr: SERVER_IP.parse().unwrap(),
        protocol: ipv4::protocol::UDP,
        payload_len: 8 + datagram.len(),
        ttl: 64,
        dscp_ecn: 0,
        ident: 1,
        dont_frag: true,
    };
    ip.emit(&mut frame[14..]).unwrap();
    UdpRepr { src_port: 40999, dst_port: switchyard::wire::block::UDP_PORT, payload_len: datagram.len() }.emit(&mut frame[34..]).unwrap();
    frame[42..].copy_from_slice(datagram);
    frame
}

fn mac_of(netns: Option<&Netns>, iface: &str) -> MacAddr {
    let path = format!("/sys/class/net/{iface}/address");
    let text = match netns {
        Some(netns) => String::from_utf8(netns.exec(&["cat", &path]).output().unwrap().stdout).unwrap(),
        None => std::fs::read_to_string(&path).unwrap(),
    };
    text.trim().parse().unwrap_or_else(|e| panic!("{path}: {text:?}: {e}"))
}

/// Alice's READ, answered to her, then replayed from her IP by another host on the link (another source MAC)
/// and with a broadcast and a multicast source MAC: the server sends nothing to any of them (nor to alice:
/// a replay is not executed), each counted by name. Requests with a bad IPv4 header checksum, or to another
/// destination MAC, are not served either. Alice's own raw frame is answered, to her MAC: ARP resolved it.
fn replies_go_to_the_mac_arp_resolved(client: &Netns, uplink: &str, alice: &mut User, images: &Images, ledger: &mut DropLedger) {
    let (server_mac, alice_mac) = (mac_of(None, uplink), mac_of(Some(client), "eth0"));
    let read = alice.request(images.disk, Op::Read, 0, 4096);
    let bytes = signed(&read, &[], &alice.key);
    let replies = exchange(client, &[Send::answered(ALICE_IP, bytes.clone())]);
    read_data(&replies[0], &read, &alice.key, "alice's READ before the layer-2 replays");
    let info = |alice: &mut User| signed(&alice.request(images.disk, Op::Info, 0, 16), &[], &alice.key);
    let mut bad_checksum = raw_frame(alice_mac, server_mac, &info(alice));
    bad_checksum[24] ^= 0x40;
    let other = MacAddr([0x02, 0x66, 0, 0, 0, 0x66]);
    let cases = [
        ("alice's READ replayed from another source MAC", raw_frame(other, server_mac, &bytes), "storage_wrong_source_mac"),
        ("the same from the broadcast source MAC", raw_frame(MacAddr::BROADCAST, server_mac, &bytes), "invalid_source_mac"),
        ("the same from a multicast source MAC", raw_frame(MacAddr([1, 0, 0x5e, 0, 0, 1]), server_mac, &bytes), "invalid_source_mac"),
        ("an INFO with a bad IPv4 header checksum", bad_checksum, "storage_bad_ipv4_checksum"),
        ("an INFO to another host's MAC", raw_frame(alice_mac, other, &info(alice)), "storage_wrong_destination_mac"),
        ("an INFO to the broadcast MAC", raw_frame(alice_mac, MacAddr::BROADCAST, &info(alice)), "storage_wrong_destination_mac"),
        ("alice's own INFO, raw", raw_frame(alice_mac, server_mac, &info(alice)), ""),
    ];
    let script = RAW_SENDER.replace("SERVER_MAC", &format!("\"{}\"", hex::encode(server_mac.0)));
    let frames: Vec<String> = cases.iter().map(|(_, frame, _)| hex::encode(frame)).collect();
    let frames: Vec<&str> = frames.iter().map(String::as_str).collect();
    let out = client.python(&script, &frames).wait_at_most(Duration::from_secs(30)).expect("the raw sender ends within 30 s");
    assert!(out.status.success(), "the raw sender failed: {}", String::from_utf8_lossy(&out.stderr));
    let seen: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect();
    assert_eq!(seen.len(), cases.len(), "one line per frame: {seen:?}");
    for ((case, _, reason), seen) in cases.iter().zip(&seen) {
        if reason.is_empty() {
            assert_eq!(*seen, alice_mac.to_string(), "{case}: one reply, to alice's MAC");
        } else {
            assert_eq!(seen, "none", "{case}: the server sent frames to these MACs");
            *ledger.expected.entry(reason.to_string()).or_default() += 1;
        }
    }
    ledger.check("frames from other MACs, to other MACs, with a bad IPv4 checksum");
}

/// A WRITE of `data` in fragments of 1408: the header and the sends (only the last one is answered).
fn write_fragments(user: &mut User, image: u32, offset: u64, data: &[u8]) -> (BlockRepr, Vec<Send>) {
    let write = user.request(image, Op::Write, offset, u32::try_from(data.len()).unwrap());
    let chunks: Vec<&[u8]> = data.chunks(1408).collect();
    let sends = chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let fragment = BlockRepr { fragment_offset: (i * 1408) as u32, payload_len: chunk.len() as u16, ..write };
            let wait_ms = if i + 1 == chunks.len() { REPLY_WAIT_MS } else { 0 };
            Send { from: user.ip, datagram: signed(&fragment, chunk, &user.key), wait_ms }
        })
        .collect();
    (write, sends)
}

/// A WRITE sent twice is answered twice and executed once: A (id n), A again, B (id n+1) to the same place, A
/// replayed: the image holds B.
fn writes_execute_once(client: &Netns, alice: &mut User, images: &Images) {
    let offset = 8192;
    let (a, a_bytes) = write_datagram(alice, images.disk, offset, &[0xaa; 512]);
    let (b, b_bytes) = write_datagram(alice, images.disk, offset, &[0xbb; 512]);
    let read = alice.request(images.disk, Op::Read, offset, 512);
    let sends = [
        Send::answered(ALICE_IP, a_bytes.clone()),
        Send::answered(ALICE_IP, a_bytes.clone()),
        Send::answered(ALICE_IP, b_bytes),
        Send::answered(ALICE_IP, a_bytes),
        Send::answered(ALICE_IP, signed(&read, &[], &alice.key)),
    ];
    let replies = exchange(client, &sends);
    expect_status(&replies[0], &a, &alice.key, Status::Ok, "WRITE A");
    expect_status(&replies[1], &a, &alice.key, Status::Ok, "WRITE A sent again (a retransmission)");
    expect_status(&replies[2], &b, &alice.key, Status::Ok, "WRITE B to the same place");
    expect_status(&replies[3], &a, &alice.key, Status::Ok, "WRITE A replayed after B (answered from the window)");
    let data = read_data(&replies[4], &read, &alice.key, "READ after the replay");
    assert_eq!(data, [0xbb; 512], "the replayed WRITE A was not executed again: the image holds B");
    assert_eq!(file_bytes(&images.disk_file, offset, 512), [0xbb; 512], "the image file holds B");

    // The positive control: 4 KiB in three fragments, read back in three.
    let data: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
    let (write, sends) = write_fragments(alice, images.disk, 128 * 1024, &data);
    let replies = exchange(client, &sends);
    assert!(replies[..2].iter().all(Vec::is_empty), "the first fragments of a WRITE are not answered");
    expect_status(&replies[2], &write, &alice.key, Status::Ok, "a WRITE of 4 KiB in three fragments");
    let read = alice.request(images.disk, Op::Read, 128 * 1024, 4096);
    let replies = exchange(client, &[Send::answered(ALICE_IP, signed(&read, &[], &alice.key))]);
    assert_eq!(replies[0].len(), 3, "a READ of 4 KiB comes in three fragments");
    assert_eq!(read_data(&replies[0], &read, &alice.key, "READ of the 4 KiB"), data, "the data written");
    assert_eq!(file_bytes(&images.disk_file, 128 * 1024, 4096), data, "the image file holds the 4 KiB");
}

/// An id 1024 below the highest taken is ESTALE (the highest in the offset field) and never executed.
fn old_ids_are_stale(client: &Netns, alice: &mut User, images: &Images) {
    let offset = 8192;
    let read = alice.request(images.disk, Op::Read, offset, 512);
    let highest = read.request_id;
    let old = header(alice.id, images.disk, highest - 1024, Op::Read, offset, 512);
    let old_write = BlockRepr { payload_len: 512, ..header(alice.id, images.disk, highest - 1024, Op::Write, offset, 512) };
    let sends = [
        Send::answered(ALICE_IP, signed(&read, &[], &alice.key)),
        Send::answered(ALICE_IP, signed(&old, &[], &alice.key)),
        Send::answered(ALICE_IP, signed(&old_write, &[0xcc; 512], &alice.key)),
    ];
    let replies = exchange(client, &sends);
    read_data(&replies[0], &read, &alice.key, "the READ that sets the highest id");
    let stale = [(&replies[1], &old, "a READ 1024 ids below"), (&replies[2], &old_write, "a WRITE 1024 ids below")];
    for (reply, request, case) in stale {
        let reply = expect_status(reply, request, &alice.key, Status::StaleRequestId, case);
        assert_eq!(reply.offset, highest, "{case}: the offset field holds the highest id taken");
    }
    assert_eq!(file_bytes(&images.disk_file, offset, 512), [0xbb; 512], "the stale WRITE was not executed");
}

fn file_bytes(path: &str, offset: u64, len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    std::fs::File::open(path).unwrap().read_exact_at(&mut bytes, offset).unwrap();
    bytes
}

/// `switchyard vbd` as bob, exporting alice's image: it must not start (exit 1, the export and EACCES named).
fn vbd_cannot_export_another_users_image(client: &Netns, dir: &Path, bob: &User, alices_image: u32) {
    // vbd's socket is bound to any address: a host route makes bob's address its source.
    client.ip(&["route", "add", &format!("{SERVER_IP}/32"), "dev", "eth0", "src", BOB_IP]);
    let exports = [format!("stolen={alices_image}")];
    let (mut command, _) = vbd_command(client, dir, "bob-vbd", u64::from(bob.id), &bob.secret, &exports);
    let vbd = Running(Some(command.spawn().unwrap()));
    let out = vbd.wait_at_most(Duration::from_secs(15)).expect("vbd with another user's image exits within 15 s");
    client.ip(&["route", "del", &format!("{SERVER_IP}/32")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "vbd exporting alice's image as bob: exit 1; stderr: {stderr}");
    let named = stderr.contains("\"stolen\"") && stderr.to_lowercase().contains("eacces");
    assert!(named, "vbd's message names the export and EACCES: {stderr}");
}
