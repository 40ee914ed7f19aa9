//! `[migration]`: how much a worker buffers for a migrating VM (docs/migration.md), and
//! `[board]`: the bulletin board this host follows and reports its VMs to.
use serde::Serialize;
use toml::Spanned;

use super::control::file;
use super::raw::{RawBoard, RawMigration};
use crate::svc::AuthFiles;
use crate::svc::connect::ServiceUrl;
use super::Problems;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MigrationConfig {
    /// Packets one worker holds for one VM at most (taken from the mempool).
    pub buffer_packets: usize,
    /// Bytes one worker holds for one VM at most.
    pub buffer_bytes: usize,
    /// How long a finished migration stays in the table: its VM's frames that
    /// still reach the host it left are relayed on meanwhile, and repeated
    /// events are recognised.
    pub linger_ms: u64,
}

impl Default for MigrationConfig {
    fn default() -> Self {
        MigrationConfig {
            buffer_packets: 2048,
            buffer_bytes: 4 << 20,
            linger_ms: 10_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BoardConfig {
    /// `http://127.0.0.1:PORT` of `switchyard board serve`.
    pub url: String,
    /// This host's name in lock holders and record updates; the VTEP address by default.
    pub host: Option<String>,
    /// Lease of the record locks this host takes as a migration destination.
    pub lease_ms: u64,
    /// How this host authenticates to the board: a token for `http://`, TLS for `https://`.
    pub auth: AuthFiles,
}

pub(super) fn validate_migration(
    p: &mut Problems,
    raw: Option<Spanned<RawMigration>>,
    mbufs: Option<u32>,
) -> MigrationConfig {
    let raw = raw.map(Spanned::into_inner).unwrap_or_default();
    let defaults = MigrationConfig::default();
    // Half the pool at most: the rest keeps receiving while a VM's packets are held.
    let max_packets = mbufs
        .map_or(i64::from(u32::MAX), |m| i64::from(m / 2))
        .max(1);
    let hint = " (at most half of mempool.mbufs: held packets stay in the pool)";
    // Absent, the default, but never more than half the pool.
    let default_packets = defaults.buffer_packets.min(max_packets as usize);
    let buffer_packets = p.int(
        &raw.buffer_packets,
        "migration.buffer_packets",
        default_packets,
        1..=max_packets,
        hint,
    );
    let buffer_bytes = p.int(
        &raw.buffer_bytes,
        "migration.buffer_bytes",
        defaults.buffer_bytes,
        64..=1 << 32,
        "",
    );
    let linger_ms = p.int(
        &raw.linger_ms,
        "migration.linger_ms",
        defaults.linger_ms,
        0..=3_600_000,
        "",
    );
    MigrationConfig {
        buffer_packets: buffer_packets.unwrap_or(default_packets),
        buffer_bytes: buffer_bytes.unwrap_or(defaults.buffer_bytes),
        linger_ms: linger_ms.unwrap_or(defaults.linger_ms),
    }
}

pub(super) fn validate_board(
    p: &mut Problems,
    raw: Option<Spanned<RawBoard>>,
) -> Option<BoardConfig> {
    let table_pos = raw.as_ref()?.span().start;
    let raw = raw?.into_inner();
    let url = match &raw.url {
        None => {
            p.at(
                table_pos,
                "board.url",
                "is missing: give the board's address, such as \"http://127.0.0.1:7400\"",
            );
            String::new()
        }
        Some(url) if ServiceUrl::parse(url.get_ref()).is_none() => {
            p.at(
                url.span().start,
                "board.url",
                format!(
                    "{:?} is not a URL of the form http://127.0.0.1:PORT or https://HOST:PORT",
                    url.get_ref()
                ),
            );
            String::new()
        }
        Some(url) => url.get_ref().clone(),
    };
    if let Some(host) = &raw.host {
        let name = host.get_ref();
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            p.at(
                host.span().start,
                "board.host",
                format!("{name:?} must be 1 to 64 characters of A-Z a-z 0-9 . _ -"),
            );
        }
    }
    let lease_ms = p
        .int(
            &raw.lease_ms,
            "board.lease_ms",
            30_000u64,
            100..=3_600_000,
            "",
        )
        .unwrap_or(30_000);
    let auth = AuthFiles {
        token_file: file(p, &raw.token_file, "board.token_file"),
        tls_ca: file(p, &raw.tls_ca, "board.tls_ca"),
        tls_cert: file(p, &raw.tls_cert, "board.tls_cert"),
        tls_key: file(p, &raw.tls_key, "board.tls_key"),
    };
    // The board authenticates every request: the files are read now, so a
    // missing or unreadable one stops the start before anything runs.
    let (tls, tls_files) = (url.starts_with("https://"), auth.tls_ca.is_some() || auth.tls_cert.is_some());
    let problem = match auth.client() {
        Err(problem) => Some(problem),
        Ok(_) if tls && !tls_files => Some("an https:// board needs board.tls_ca, board.tls_cert and board.tls_key".into()),
        Ok(_) if !tls && auth.token_file.is_none() && !url.is_empty() => {
            Some("an http:// board needs board.token_file (the board's bearer token)".into())
        }
        Ok(_) => None,
    };
    if let Some(problem) = problem {
        p.at(table_pos, "board", problem);
    }
    Some(BoardConfig {
        url,
        host: raw.host.map(Spanned::into_inner),
        lease_ms,
        auth,
    })
}
