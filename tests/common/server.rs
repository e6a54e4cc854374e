//! `tandem serve` running in the server namespace with a config file and a data directory
//! of its own in the test's scratch dir. Dropping a [`Server`] stops it.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use super::config::ServerConfig;
use super::netns::{NetnsPair, SERVER_IF};
use super::proc::{check_output, command, wait_until, Background};
use super::Scratch;

pub struct Server {
    process: Background,
    pub data_dir: PathBuf,
    ns: String,
}

/// What the server left behind when it was stopped.
pub struct Stopped {
    /// `None` when it ignored SIGTERM and had to be killed.
    pub status: Option<ExitStatus>,
    /// Everything it logged (stdout and stderr), including the counters logged on exit.
    pub log: String,
}

impl Server {
    /// Writes `cfg` as the config file and starts `tandem serve` with `cfg.shards` shards in
    /// `pair.server`; returns once the server listens on UDP 547 and has joined
    /// All_DHCP_Relay_Agents_and_Servers (ff02::1:2) on the veth, so the first client
    /// packet is not lost.
    pub fn start(pair: &NetnsPair, scratch: &Scratch, cfg: &ServerConfig) -> Server {
        let config = scratch.join("tandem.toml");
        std::fs::write(&config, cfg.toml()).expect("writing server config");
        let shards = cfg.shards.to_string();
        Server::start_args(
            pair,
            scratch,
            &["--config", config.to_str().unwrap(), "--shards", &shards],
        )
    }

    /// Starts `tandem serve <args> --data-dir <scratch>/tandem-data` in `pair.server` with
    /// the scratch dir as working directory (so no stray ./tandem.toml is picked up), and
    /// waits until it serves. Starting again in the same scratch dir reuses the data dir
    /// (a restart); each start logs to its own `tandem-<n>.log`.
    pub fn start_args(pair: &NetnsPair, scratch: &Scratch, args: &[&str]) -> Server {
        let data_dir = scratch.join("tandem-data");
        let log = (1..)
            .map(|n| scratch.join(&format!("tandem-{n}.log")))
            .find(|p| !p.exists())
            .expect("a free log name");
        let mut argv = vec![super::tandem_bin(), "serve"];
        argv.extend_from_slice(args);
        argv.extend_from_slice(&["--data-dir", data_dir.to_str().unwrap()]);
        let mut cmd = command(Some(&pair.server), &argv);
        cmd.current_dir(scratch.path());
        // info: startup, periodic and exit counters; the hot path logs nothing at info.
        cmd.env(
            "RUST_LOG",
            std::env::var("TANDEM_ITEST_LOG").unwrap_or_else(|_| "info".to_string()),
        );
        let process = Background::spawn_cmd(cmd, "tandem serve", &log);
        let mut server = Server {
            process,
            data_dir,
            ns: pair.server.clone(),
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let ns = self.ns.clone();
        let mut exited = None;
        let ready = wait_until(Duration::from_secs(20), || {
            if let Some(status) = self.process.exited() {
                exited = Some(status);
                return true;
            }
            let bound = !check_output(Some(&ns), &["ss", "-H", "-uln", "sport = :547"])
                .trim()
                .is_empty();
            let joined = check_output(
                None,
                &["ip", "-n", &ns, "-6", "maddr", "show", "dev", SERVER_IF],
            )
            .contains("ff02::1:2");
            bound && joined
        });
        if let Some(status) = exited {
            panic!(
                "tandem serve exited during startup ({status}); log:\n{}",
                self.process.output()
            );
        }
        assert!(
            ready,
            "tandem serve did not listen on [::]:547 with ff02::1:2 joined on {SERVER_IF} \
             within 20 s; log:\n{}",
            self.process.output()
        );
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// True while the process runs (it must survive every bad input).
    pub fn alive(&mut self) -> bool {
        self.process.exited().is_none()
    }

    pub fn log(&self) -> String {
        self.process.output()
    }

    /// SIGTERM (graceful stop: flush, log counters), then collect the log.
    pub fn stop(mut self) -> Stopped {
        let status = self.process.stop(Duration::from_secs(10));
        Stopped {
            status,
            log: self.process.output(),
        }
    }
}

impl Stopped {
    /// Total packets the shards counted as dropped, from the last counters line each shard
    /// logged (the server logs per-shard counters periodically and on exit, as tracing
    /// fields: `shard=0 ... dropped=N`; per-reason fields `dropped_<reason>=N` are summed
    /// when there is no total).
    pub fn dropped_total(&self) -> Option<u64> {
        let mut last_per_shard: std::collections::BTreeMap<String, u64> = Default::default();
        for line in self.log.lines() {
            let fields: Vec<(&str, &str)> = line
                .split_whitespace()
                .filter_map(|w| w.split_once('='))
                .collect();
            let shard = fields
                .iter()
                .find(|(k, _)| *k == "shard")
                .map(|(_, v)| v.to_string())
                .unwrap_or_default();
            let number = |v: &str| {
                v.trim_matches(|c: char| !c.is_ascii_digit())
                    .parse::<u64>()
                    .ok()
            };
            let total = fields
                .iter()
                .find(|(k, _)| *k == "dropped")
                .and_then(|(_, v)| number(v));
            let by_reason: Option<u64> = fields
                .iter()
                .filter(|(k, _)| k.starts_with("dropped_") || k.starts_with("drop_"))
                .map(|(_, v)| number(v))
                .sum();
            let has_reasons = fields
                .iter()
                .any(|(k, _)| k.starts_with("dropped_") || k.starts_with("drop_"));
            if let Some(n) = total.or(if has_reasons { by_reason } else { None }) {
                last_per_shard.insert(shard, n);
            }
        }
        (!last_per_shard.is_empty()).then(|| last_per_shard.values().sum())
    }
}
