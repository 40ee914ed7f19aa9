//! The bulletin board as a process: `switchyard board serve` on 127.0.0.1:0,
//! driven by `BoardClient`, raw HTTP (for status codes and bad input) and the
//! `switchyard board` CLI; killed with SIGKILL and restarted on its database.
mod common;

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::{json, Value};
use switchyard::board::{
    Accepted, EventKind, QueuedUpdate, RecordKey, Update, VmState, WatchReply, WATCH_TIMEOUT_MS_MAX,
};
use switchyard::wire::MacAddr;
use switchyard::control::client::Client;
use switchyard::svc::auth::Token;
use switchyard::svc::ClientAuth;

use common::board::BoardProcess;
use common::small_disk::SmallDisk;
use common::{stderr_lines, switchyard};

fn key(n: u8) -> RecordKey {
    RecordKey::new(100, MacAddr([2, 0, 0, 0, 0, n]))
}

fn on_host(host: u8, from: &str) -> Update {
    Update {
        ip: Some(Ipv4Addr::new(10, 0, 0, 5)),
        vtep: Ipv4Addr::new(192, 0, 2, host),
        state: VmState::Running,
        from: from.into(),
    }
}

/// A raw request: (status, JSON body).
async fn send(board: &BoardProcess, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let reply = board.raw().send_json(method, path, body.as_ref()).await.unwrap();
    (reply.status, reply.json().unwrap_or(Value::Null))
}

const RECORD_1: &str = "/v1/board/records/100/02:00:00:00:00:01";

#[tokio::test]
async fn one_update_reaches_three_waiting_watchers() {
    let dir = tempfile::tempdir().unwrap();
    let board = BoardProcess::start(&dir.path().join("board.redb"));
    let since = board.client().records().await.unwrap().revision;
    assert_eq!(since, 0);
    let watchers: Vec<_> = (0..3)
        .map(|_| {
            let client = board.client();
            tokio::spawn(async move { client.watch(since, Duration::from_secs(20)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(watchers.iter().all(|w| !w.is_finished()), "a watch returned with nothing to report");

    let accepted = board.client().put(key(1), &on_host(2, "host-a")).await.unwrap();
    let Accepted::Applied(made) = accepted else { panic!("not applied: {accepted:?}") };
    assert_eq!(made.revision, 1);
    for watcher in watchers {
        let reply = tokio::time::timeout(Duration::from_secs(5), watcher).await.unwrap().unwrap().unwrap();
        let WatchReply::Events { revision, events } = reply else { panic!("a reset: {reply:?}") };
        assert_eq!(revision, 1);
        assert_eq!(events.as_slice(), std::slice::from_ref(&made));
        assert_eq!(events[0].record.vtep, Ipv4Addr::new(192, 0, 2, 2));
    }
    // Nothing new: a short watch ends empty, at the same revision.
    let quiet = board.client().watch(1, Duration::from_millis(100)).await.unwrap();
    assert_eq!(quiet, WatchReply::Events { revision: 1, events: Vec::new() });
}

#[tokio::test]
async fn updates_to_a_locked_record_are_queued_with_202_and_applied_in_order_at_unlock() {
    let dir = tempfile::tempdir().unwrap();
    let board = BoardProcess::start(&dir.path().join("board.redb"));
    let put =
        |vtep: &str, state: &str, from: &str| json!({"ip": "10.0.0.5", "vtep": vtep, "state": state, "from": from});

    let (status, body) = send(&board, Method::PUT, RECORD_1, Some(put("192.0.2.1", "running", "host-a"))).await;
    assert_eq!(
        (status, &body["revision"], &body["applied"]["updated_by"]),
        (200, &json!(1), &json!("host-a")),
        "{body}"
    );

    let lock = format!("{RECORD_1}/lock");
    let (status, body) = send(&board, Method::POST, &lock, Some(json!({"holder": "host-b", "lease_ms": 30000}))).await;
    assert_eq!((status, &body["holder"]), (200, &json!("host-b")), "{body}");

    let (status, body) = send(&board, Method::PUT, RECORD_1, Some(put("192.0.2.1", "paused", "host-a"))).await;
    assert_eq!((status, body), (202, json!({"queued": 1, "holder": "host-b"})));
    let (status, body) = send(&board, Method::PUT, RECORD_1, Some(put("192.0.2.2", "running", "host-b"))).await;
    assert_eq!((status, body), (202, json!({"queued": 2, "holder": "host-b"})));

    // Another host can neither lock nor unlock it; the 409 names the holder.
    let (status, body) = send(&board, Method::POST, &lock, Some(json!({"holder": "host-c"}))).await;
    assert_eq!((status, &body["holder"], &body["field"]), (409, &json!("host-b"), &json!("holder")), "{body}");
    assert!(body["expires_at_us"].as_u64().unwrap() > 0);
    assert!(body["error"].as_str().unwrap().contains("is locked by host-b until"), "{body}");
    let (status, _) = send(&board, Method::DELETE, &format!("{lock}?holder=host-c"), None).await;
    assert_eq!(status, 409);

    let snapshot = board.client().records().await.unwrap();
    assert_eq!(snapshot.revision, 1);
    assert_eq!(snapshot.records[0].vtep, Ipv4Addr::new(192, 0, 2, 1), "nothing applied while locked");
    assert_eq!(snapshot.locks[0].lock.queued.len(), 2);

    let (status, body) = send(&board, Method::DELETE, &format!("{lock}?holder=host-b"), None).await;
    assert_eq!((status, &body["revision"]), (200, &json!(3)), "{body}");
    let applied: Vec<_> = body["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["revision"].clone(), e["record"]["state"].clone(), e["record"]["vtep"].clone()))
        .collect();
    assert_eq!(
        applied,
        [(json!(2), json!("paused"), json!("192.0.2.1")), (json!(3), json!("running"), json!("192.0.2.2"))]
    );
    let (status, _) = send(&board, Method::DELETE, &format!("{lock}?holder=host-b"), None).await;
    assert_eq!(status, 404, "not locked any more");

    let snapshot = board.client().records().await.unwrap();
    assert_eq!((snapshot.revision, snapshot.locks.len()), (3, 0));
    assert_eq!((snapshot.records[0].vtep, snapshot.records[0].revision), (Ipv4Addr::new(192, 0, 2, 2), 3));

    let (status, body) = send(&board, Method::DELETE, &format!("{RECORD_1}?from=host-b"), None).await;
    assert_eq!(
        (status, &body["revision"], &body["deleted"]["updated_by"]),
        (200, &json!(4), &json!("host-b")),
        "{body}"
    );
    let (status, _) = send(&board, Method::DELETE, &format!("{RECORD_1}?from=host-b"), None).await;
    assert_eq!(status, 404, "no such record and not locked");
}

#[tokio::test]
async fn a_board_killed_while_a_lock_holds_queued_updates_applies_them_at_unlock_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("board.redb");
    let board = BoardProcess::start(&database);
    let client = board.client();
    client.put(key(1), &on_host(1, "host-a")).await.unwrap();
    client.lock(key(1), "host-b", Duration::from_secs(60)).await.unwrap();
    let first = client.put(key(1), &Update { state: VmState::Paused, ..on_host(1, "host-a") }).await.unwrap();
    let second = client.put(key(1), &on_host(2, "host-b")).await.unwrap();
    assert_eq!(second, Accepted::Queued { position: 2, holder: "host-b".into() }, "{first:?}");
    board.kill9();

    let board = BoardProcess::start(&database);
    let client = board.client();
    let snapshot = client.records().await.unwrap();
    assert_eq!(snapshot.revision, 1);
    assert_eq!(snapshot.locks.len(), 1);
    assert_eq!(snapshot.locks[0].lock.holder, "host-b");
    assert_eq!(snapshot.locks[0].lock.queued[1], QueuedUpdate::Put(on_host(2, "host-b")));
    // A watcher that had revision 1 before the crash just waits for revision 2.
    let watcher = {
        let client = board.client();
        tokio::spawn(async move { client.watch(1, Duration::from_secs(20)).await })
    };

    let unlocked = client.unlock(key(1), "host-b").await.unwrap();
    let order: Vec<_> = unlocked.applied.iter().map(|e| (e.revision, e.kind, e.record.state)).collect();
    assert_eq!(order, [(2, EventKind::Put, VmState::Paused), (3, EventKind::Put, VmState::Running)]);
    assert_eq!(unlocked.revision, 3);
    let WatchReply::Events { events, .. } = watcher.await.unwrap().unwrap() else { panic!("a reset") };
    assert_eq!(events.first().map(|e| e.revision), Some(2));
    let record = client.records().await.unwrap().records.remove(0);
    assert_eq!((record.vtep, record.revision), (Ipv4Addr::new(192, 0, 2, 2), 3));
}

#[tokio::test]
async fn a_lease_that_ran_out_while_the_board_was_down_is_released_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("board.redb");
    let board = BoardProcess::start(&database);
    let client = board.client();
    client.lock(key(1), "host-b", Duration::from_millis(500)).await.unwrap();
    let queued = client.put(key(1), &on_host(2, "host-b")).await.unwrap();
    board.kill9();
    assert_eq!(queued, Accepted::Queued { position: 1, holder: "host-b".into() }, "queued before the lease ran out");
    tokio::time::sleep(Duration::from_millis(600)).await;

    let board = BoardProcess::start(&database);
    // The first request already sees it released: the release runs before serving.
    let snapshot = board.client().records().await.unwrap();
    assert_eq!(snapshot.locks, []);
    assert_eq!((snapshot.revision, snapshot.records[0].vtep), (1, Ipv4Addr::new(192, 0, 2, 2)));
}

#[tokio::test]
async fn a_lease_that_runs_out_while_serving_publishes_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let board = BoardProcess::start(&dir.path().join("board.redb"));
    let client = board.client();
    client.lock(key(1), "host-b", Duration::from_millis(300)).await.unwrap();
    let queued = client.put(key(1), &on_host(2, "host-b")).await.unwrap();
    assert_eq!(queued, Accepted::Queued { position: 1, holder: "host-b".into() }, "queued before the lease ran out");
    let started = Instant::now();
    let reply = client.watch(0, Duration::from_secs(10)).await.unwrap();
    let WatchReply::Events { events, .. } = reply else { panic!("a reset: {reply:?}") };
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].record.vtep, Ipv4Addr::new(192, 0, 2, 2));
    assert!(started.elapsed() < Duration::from_secs(5), "the sweeper released it late: {:?}", started.elapsed());
    let output = board.terminate();
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(log.matches("expired").count(), 1, "logged once: {log}");
}

#[tokio::test]
async fn bad_requests_get_400_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let board = BoardProcess::start(&dir.path().join("board.redb"));
    let good = json!({"vtep": "192.0.2.1", "from": "host-a"});
    let cases: Vec<(Method, String, Option<Value>, &str, &str)> = vec![
        (
            Method::PUT,
            "/v1/board/records/100/02:00:00:00:00:zz".into(),
            Some(good.clone()),
            "mac",
            "MAC \"02:00:00:00:00:zz\": expected a MAC address",
        ),
        (
            Method::PUT,
            "/v1/board/records/100/ff:ff:ff:ff:ff:ff".into(),
            Some(good.clone()),
            "mac",
            "is the broadcast address",
        ),
        (
            Method::PUT,
            "/v1/board/records/0/02:00:00:00:00:01".into(),
            Some(good.clone()),
            "vni",
            "VNI 0 is out of range 1..=16777215",
        ),
        (
            Method::PUT,
            "/v1/board/records/16777216/02:00:00:00:00:01".into(),
            Some(good.clone()),
            "vni",
            "VNI 16777216 is out of range",
        ),
        (
            Method::PUT,
            "/v1/board/records/x/02:00:00:00:00:01".into(),
            Some(good.clone()),
            "vni",
            "VNI \"x\" is not a number",
        ),
        (
            Method::PUT,
            RECORD_1.into(),
            Some(json!({"vtep": "192.0.2.1", "from": "host-a", "colour": "red"})),
            "colour",
            "unknown field `colour`",
        ),
        (Method::PUT, RECORD_1.into(), Some(json!({"from": "host-a"})), "vtep", "missing field `vtep`"),
        (
            Method::PUT,
            RECORD_1.into(),
            Some(json!({"vtep": "192.0.2.300", "from": "host-a"})),
            "vtep",
            "vtep: invalid IPv4 address syntax",
        ),
        (
            Method::PUT,
            RECORD_1.into(),
            Some(json!({"vtep": "224.0.0.1", "from": "host-a"})),
            "vtep",
            "vtep 224.0.0.1 is a multicast address",
        ),
        (
            Method::PUT,
            RECORD_1.into(),
            Some(json!({"vtep": "192.0.2.1", "from": "host-a", "state": "migrating"})),
            "state",
            "unknown variant `migrating`",
        ),
        (
            Method::PUT,
            RECORD_1.into(),
            Some(json!({"vtep": "192.0.2.1", "from": ""})),
            "from",
            "from \"\" is not a valid name",
        ),
        (
            Method::PUT,
            RECORD_1.into(),
            Some(json!(["192.0.2.1"])),
            "body",
            "the body must be a JSON object, not an array",
        ),
        (
            Method::POST,
            format!("{RECORD_1}/lock"),
            Some(json!({"holder": "host-b", "lease_ms": 0})),
            "lease_ms",
            "lease_ms 0 is out of range 1..=600000",
        ),
        (
            Method::POST,
            format!("{RECORD_1}/lock"),
            Some(json!({"holder": "host-b", "lease": 5})),
            "lease",
            "unknown field `lease`",
        ),
        (Method::DELETE, format!("{RECORD_1}/lock"), None, "holder", "query parameter holder is missing"),
        (Method::DELETE, format!("{RECORD_1}?from=host-a&force=1"), None, "force", "unknown query parameter \"force\""),
        (Method::GET, "/v1/board/watch?since=-1".into(), None, "since", "since \"-1\" is not a number"),
        (
            Method::GET,
            format!("/v1/board/watch?timeout_ms={}", WATCH_TIMEOUT_MS_MAX + 1),
            None,
            "timeout_ms",
            "timeout_ms 60001 is out of range 0..=60000",
        ),
    ];
    for (method, path, body, field, message) in cases {
        let (status, reply) = send(&board, method.clone(), &path, body).await;
        assert_eq!((status, reply["field"].as_str()), (400, Some(field)), "{method} {path}: {reply}");
        assert!(reply["error"].as_str().unwrap().contains(message), "{method} {path}: {reply}");
    }

    let raw = board.raw();
    let reply = raw.send(Method::PUT, RECORD_1, Some("application/json"), r#"{"vtep": "192.0.2.1","#).await.unwrap();
    let body = reply.json().unwrap();
    assert_eq!((reply.status, &body["field"]), (400, &json!("body")), "{body}");
    assert!(body["error"].as_str().unwrap().starts_with("the body is not valid JSON"), "{body}");
    let reply = raw.send(Method::PUT, RECORD_1, Some("text/plain"), r#"{}"#).await.unwrap();
    assert_eq!((reply.status, &reply.json().unwrap()["field"]), (415, &json!("Content-Type")));
    let reply = raw.send(Method::PATCH, RECORD_1, None, "").await.unwrap();
    assert_eq!(reply.status, 405);
    assert!(reply.text().contains("it accepts"), "{}", reply.text());
    let (status, body) = send(&board, Method::GET, "/v1/board/nothing", None).await;
    assert_eq!((status, body["error"].as_str().unwrap()), (404, "there is no route GET /v1/board/nothing"));
    // Nothing above changed the board.
    assert_eq!(board.client().records().await.unwrap().revision, 0);
}

#[test]
fn the_board_serves_only_authenticated_clients_and_says_so_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("board.redb");
    let serve = |args: &[&str]| {
        switchyard().args(["board", "serve", "--database"]).arg(&database).args(args).output().unwrap()
    };
    // No authentication, a token on a non-loopback address, half of TLS: command-line errors, exit 2.
    for (args, says) in [
        (&["--listen", "127.0.0.1:7117"][..], "switchyard: board: --listen: 127.0.0.1:7117 on TCP needs authentication: set --token-file (loopback addresses only), or --tls-cert, --tls-key and --tls-ca (mutual TLS)"),
        (&["--listen", "0.0.0.0:7117", "--token-file", "/t"][..], "switchyard: board: --listen: 0.0.0.0:7117 is not a loopback address: a bearer token is accepted only on 127.0.0.1 or ::1; other addresses need TLS (--tls-cert, --tls-key and --tls-ca)"),
        (&["--listen", "0.0.0.0:7117", "--tls-cert", "/c"][..], "switchyard: board: --listen: TLS needs --tls-cert, --tls-key and --tls-ca; --tls-key and --tls-ca missing"),
        (&["--listen", "localhost", "--token-file", "/t"][..], "switchyard: board: --listen \"localhost\" is not an address and port such as 127.0.0.1:7400"),
    ] {
        let out = serve(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(stderr_lines(&out), [says], "{args:?}");
    }
    assert!(!database.exists(), "nothing created for a refused listener");
    // A token file others can read is refused, naming the file and the fix.
    let token = dir.path().join("open.token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = serve(&["--listen", "127.0.0.1:0", "--token-file", token.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr_lines(&out),
        [format!("switchyard: board: token file {}: mode 0644 lets other users read or change it; chmod 600 it", token.display())]
    );
}

#[tokio::test]
async fn the_board_refuses_requests_without_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let board = BoardProcess::start(&dir.path().join("board.redb"));
    let mode = std::fs::metadata(&board.token_file).unwrap().permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600, "the board made its token file private");
    let anonymous = Client::url(&board.url, ClientAuth::default()).unwrap();
    let forged = ClientAuth { token: Some(Token::read(&write_token(dir.path(), "f".repeat(64))).unwrap()), tls: None };
    for client in [anonymous, Client::url(&board.url, forged).unwrap()] {
        let reply = client.send_json(Method::PUT, "/v1/board/records/100/02:00:00:00:00:01", Some(&json!({}))).await.unwrap();
        assert_eq!(reply.status, 401, "{}", reply.text());
        assert!(reply.json().unwrap()["error"].as_str().unwrap().contains("bearer token"), "{}", reply.text());
    }
    assert_eq!(board.client().records().await.unwrap().revision, 0, "nothing changed");
}

fn write_token(dir: &std::path::Path, token: String) -> std::path::PathBuf {
    let path = dir.join("forged.token");
    std::fs::write(&path, token).unwrap();
    path
}

#[test]
fn the_cli_changes_and_shows_the_board_and_says_what_went_wrong_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let board = BoardProcess::start(&dir.path().join("board.redb"));
    let cli = |args: &[&str]| {
        let token = ["--token-file", board.token_file.to_str().unwrap()];
        switchyard().arg("board").args(args).args(["--url", &board.url]).args(token).output().unwrap()
    };
    let record = ["--vni", "100", "--mac", "02:00:00:00:00:01"];
    let ok = |out: Output| {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let text =
        ok(cli(&[&["put"], &record[..], &["--vtep", "192.0.2.1", "--ip", "10.0.0.5", "--from", "host-a"]].concat()));
    assert_eq!(
        text.trim(),
        "revision 1 put 02:00:00:00:00:01 in VNI 100 on vtep 192.0.2.1 ip 10.0.0.5 running (by host-a)"
    );
    let text = ok(cli(&[&["lock"], &record[..], &["--holder", "host-b", "--lease-ms", "30000"]].concat()));
    assert!(text.starts_with("locked 02:00:00:00:00:01 in VNI 100 for host-b until "), "{text}");
    let text =
        ok(cli(&[&["put"], &record[..], &["--vtep", "192.0.2.2", "--state", "paused", "--from", "host-b"]].concat()));
    assert_eq!(
        text.trim(),
        "queued: 02:00:00:00:00:01 in VNI 100 is locked by host-b; this update is number 1 in its queue"
    );
    let snapshot: Value = serde_json::from_str(&ok(cli(&["records", "--json"]))).unwrap();
    assert_eq!((&snapshot["revision"], &snapshot["locks"][0]["holder"]), (&json!(1), &json!("host-b")));
    let table = ok(cli(&["records"]));
    assert!(table.contains("02:00:00:00:00:01  10.0.0.5") && table.contains("host-b"), "{table}");

    let refused = cli(&[&["lock"], &record[..], &["--holder", "host-c"]].concat());
    assert_eq!(refused.status.code(), Some(1));
    let lines = stderr_lines(&refused);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("is locked by host-b until") && lines[0].contains("(field: holder)"), "{lines:?}");

    let text = ok(cli(&[&["unlock"], &record[..], &["--holder", "host-b"]].concat()));
    assert!(text.contains("1 queued updates applied, board at revision 2"), "{text}");
    assert!(
        text.contains("revision 2 put 02:00:00:00:00:01 in VNI 100 on vtep 192.0.2.2 paused (by host-b)"),
        "{text}"
    );
    let text = ok(cli(&[&["delete"], &record[..], &["--from", "host-b", "--json"]].concat()));
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["revision"], json!(3));

    for (args, expected) in [
        (
            vec!["put", "--vni", "100", "--mac", "zz", "--vtep", "192.0.2.1", "--from", "a"],
            "switchyard: --mac \"zz\": expected a MAC address of six hex octets such as 02:00:00:00:00:01",
        ),
        (
            vec!["put", "--vni", "0", "--mac", "02:00:00:00:00:01", "--vtep", "192.0.2.1", "--from", "a"],
            "switchyard: VNI 0 is out of range 1..=16777215",
        ),
        (
            vec![
                "put",
                "--vni",
                "1",
                "--mac",
                "02:00:00:00:00:01",
                "--vtep",
                "192.0.2.1",
                "--from",
                "a",
                "--state",
                "gone",
            ],
            "switchyard: --state \"gone\" is not a VM state (running, paused or stopped)",
        ),
    ] {
        let out = cli(&args);
        assert_eq!((out.status.code(), stderr_lines(&out)), (Some(1), vec![expected.to_string()]), "{args:?}");
    }
    let out = switchyard().args(["board", "records", "--url", "http://127.0.0.1:1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let lines = stderr_lines(&out);
    assert!(
        lines.len() == 1 && lines[0].starts_with("switchyard: board http://127.0.0.1:1: cannot connect:"),
        "{lines:?}"
    );
    let out = switchyard().args(["board", "records", "--url", "127.0.0.1:1"]).output().unwrap();
    assert_eq!(
        stderr_lines(&out),
        ["switchyard: \"127.0.0.1:1\" is not a board URL of the form http://127.0.0.1:PORT or https://HOST:PORT"]
    );
}

#[test]
fn cli_watch_prints_each_event_as_a_json_line() {
    let dir = tempfile::tempdir().unwrap();
    let board = BoardProcess::start(&dir.path().join("board.redb"));
    let mut watch = switchyard()
        .args(["board", "watch", "--url", &board.url, "--token-file", board.token_file.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    // The watch starts at the board's revision when it asked; give it time to ask.
    std::thread::sleep(Duration::from_millis(300));
    let put = |host: &str| {
        let out = switchyard()
            .args([
                "board",
                "put",
                "--url",
                &board.url,
                "--token-file",
                board.token_file.to_str().unwrap(),
                "--vni",
                "7",
                "--mac",
                "02:00:00:00:00:07",
                "--vtep",
                host,
                "--from",
                "h",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    put("192.0.2.1");
    put("192.0.2.2");
    for (revision, vtep) in [(1, "192.0.2.1"), (2, "192.0.2.2")] {
        let event: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert_eq!(
            (&event["revision"], &event["kind"], &event["record"]["vtep"]),
            (&json!(revision), &json!("put"), &json!(vtep))
        );
    }
    let _ = watch.kill();
    let _ = watch.wait();
}

#[tokio::test]
async fn sigterm_stops_the_board_at_once_even_with_a_watch_open() {
    let dir = tempfile::tempdir().unwrap();
    let board = BoardProcess::start(&dir.path().join("board.redb"));
    let watcher = {
        let client = board.client();
        tokio::spawn(async move { client.watch(0, Duration::from_secs(60)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let out = board.terminate();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    let reply = watcher.await.unwrap().unwrap();
    assert_eq!(reply, WatchReply::Events { revision: 0, events: Vec::new() }, "the watch was answered, not cut");
}

/// Unmounts the tmpfs when dropped.
/// A full disk: the board answers 500 for a change it cannot commit, and once
/// space is freed the next change succeeds without a restart (redb refuses
/// every write after one failed write until the file is opened again; the
/// board's store does that itself).
#[tokio::test]
async fn a_full_disk_that_frees_up_needs_no_restart() {
    let Some(disk) = SmallDisk::mount("4m") else { return };
    let board = BoardProcess::start(&disk.path().join("board.redb"));
    let client = board.client();
    disk.fill();
    let key = |n: u16| RecordKey::new(100, MacAddr([2, 0, 0, 0, (n >> 8) as u8, n as u8]));
    let from = "x".repeat(64);
    let mut accepted = 0;
    let full = loop {
        match client.put(key(accepted + 1), &on_host(1, &from)).await {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 20_000, "the disk never filled up");
    };
    assert_eq!(full.status(), Some(500), "{full}");
    assert!(full.to_string().contains("No space left on device"), "{full}");

    disk.free();
    client.put(key(accepted + 1), &on_host(1, &from)).await.unwrap_or_else(|e| panic!("space again, yet: {e}"));
    let snapshot = client.records().await.unwrap();
    assert_eq!(snapshot.records.len(), usize::from(accepted) + 1);
    drop(board);
}
