//! The bulletin board as a process: `switchyard board serve` on 127.0.0.1:0.
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};

use switchyard::board::BoardClient;
use switchyard::control::client::Client;
use switchyard::svc::auth::Token;
use switchyard::svc::ClientAuth;

use super::switchyard;

/// A `switchyard board serve` process; killed when dropped.
pub(crate) struct BoardProcess {
    child: Option<Child>,
    pub url: String,
    /// The board's bearer token (`<database>.token`, made by the board at its first start).
    pub token_file: PathBuf,
}

impl BoardProcess {
    /// Starts it and waits for its `board listening on URL` line.
    pub(crate) fn start(database: &Path) -> BoardProcess {
        let token_file = database.with_extension("token");
        let mut child = switchyard()
            .args(["board", "serve", "--listen", "127.0.0.1:0", "--database"])
            .arg(database)
            .arg("--token-file")
            .arg(&token_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let Some(url) = line.trim().strip_prefix("board listening on ") else {
            let out = child.wait_with_output().unwrap();
            panic!("the board did not start: {line:?} {}", String::from_utf8_lossy(&out.stderr));
        };
        BoardProcess { url: url.to_string(), child: Some(child), token_file }
    }

    /// The `[board]` keys a switch follows this board with.
    pub(crate) fn switch_keys(&self) -> String {
        format!("url = \"{}\"\ntoken_file = \"{}\"\n", self.url, self.token_file.display())
    }

    pub(crate) fn auth(&self) -> ClientAuth {
        ClientAuth { token: Some(Token::read(&self.token_file).unwrap()), tls: None }
    }

    pub(crate) fn client(&self) -> BoardClient {
        BoardClient::new(&self.url, self.auth()).unwrap()
    }

    pub(crate) fn raw(&self) -> Client {
        Client::url(&self.url, self.auth()).unwrap()
    }

    /// SIGKILL: no chance to clean up.
    pub(crate) fn kill9(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM, then its exit and stderr.
    pub(crate) fn terminate(mut self) -> Output {
        let child = self.child.take().unwrap();
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        child.wait_with_output().unwrap()
    }
}

impl Drop for BoardProcess {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
