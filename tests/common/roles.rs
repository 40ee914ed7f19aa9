//! The inter-cloud control plane's roles as processes (`coordinator serve`,
//! `controller serve`, `agent switch|gateway`), each killed when dropped, its
//! log in `<dir>/<name>.log`.
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::{switchyard, Running};

pub(crate) struct Role {
    pub name: String,
    _running: Running,
    /// Where it serves (empty for an agent).
    pub url: String,
    /// The bearer token all roles of a test share (`token_file(dir)`).
    pub token_file: PathBuf,
}

/// The token file the roles started in `dir` share: the first server makes it.
pub(crate) fn token_file(dir: &Path) -> PathBuf {
    dir.join("roles.token")
}

impl Role {
    /// Starts `switchyard args... --token-file <token_file(dir)>` and waits for
    /// its first line: `<role> listening on URL`, or an agent's `... running for ...`.
    pub(crate) fn start(dir: &Path, name: &str, args: &[&str]) -> Role {
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        let token_file = token_file(dir);
        let mut child = switchyard()
            .env("RUST_LOG", "info")
            .args(args)
            .arg("--token-file")
            .arg(&token_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let running = Running(Some(child));
        let url = match line.trim().split_once(" listening on ") {
            Some((_, url)) => url.to_string(),
            None if line.contains(" running for ") => String::new(),
            None => panic!("{name} did not start: {line:?}: {}", std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap()),
        };
        Role { name: name.to_string(), _running: running, url, token_file }
    }

    /// A client of its API, with the token.
    pub(crate) fn client(&self) -> switchyard::control::client::Client {
        let auth = switchyard::svc::ClientAuth { token: Some(switchyard::svc::auth::Token::read(&self.token_file).unwrap()), tls: None };
        switchyard::control::client::Client::url(&self.url, auth).unwrap()
    }
}

pub(crate) fn coordinator(dir: &Path) -> Role {
    let database = dir.join("coordinator.redb");
    Role::start(dir, "coordinator", &["coordinator", "serve", "--listen", "127.0.0.1:0", "--database", database.to_str().unwrap()])
}

/// Cloud `cloud`'s controller; `gateway`: its gateway's VTEP.
pub(crate) fn controller(dir: &Path, cloud: &str, gateway: &str, coordinator: &Role) -> Role {
    let database = dir.join(format!("controller-{cloud}.redb"));
    let args = ["controller", "serve", "--listen", "127.0.0.1:0", "--database", database.to_str().unwrap()];
    let more = ["--cloud", cloud, "--gateway-vtep", gateway, "--coordinator", &coordinator.url];
    Role::start(dir, &format!("controller-{cloud}"), &[&args[..], &more[..]].concat())
}

/// The switch agent beside compute node `node` (control socket `socket`, VTEP `vtep`).
pub(crate) fn switch_agent(dir: &Path, node: &str, socket: &Path, vtep: &str, controller: &Role) -> Role {
    let state = dir.join(format!("{node}-agent.json"));
    let args = ["agent", "switch", "--switch-socket", socket.to_str().unwrap(), "--controller", &controller.url];
    let more = ["--vtep", vtep, "--state", state.to_str().unwrap()];
    Role::start(dir, &format!("{node}-agent"), &[&args[..], &more[..]].concat())
}

/// The gateway agent beside gateway `node` of cloud `cloud`.
pub(crate) fn gateway_agent(dir: &Path, node: &str, socket: &Path, coordinator: &Role, cloud: &str) -> Role {
    let state = dir.join(format!("{node}-agent.json"));
    let args = ["agent", "gateway", "--switch-socket", socket.to_str().unwrap(), "--coordinator", &coordinator.url];
    let more = ["--cloud", cloud, "--state", state.to_str().unwrap()];
    Role::start(dir, &format!("{node}-agent"), &[&args[..], &more[..]].concat())
}
