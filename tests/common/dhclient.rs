//! ISC dhclient -6 driven in the client namespace: bind once (`-1`), read what it recorded,
//! release. Its hook script (tests/scripts/dhclient-script, copied into the scratch dir)
//! configures addresses in the namespace and logs every event next to itself; it never
//! touches the host's /etc/resolv.conf, and `unshare -m` keeps dhclient's files private.

use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::config::parse_prefix;
use super::netns::{NetnsPair, CLIENT_IF};
use super::proc::{self, Run};
use super::{require, Scratch};

/// What a dhclient lease file says it was given (all lease6 stanzas, in order).
#[derive(Debug, Default)]
pub struct Leases {
    pub addresses: Vec<Ipv6Addr>,
    pub prefixes: Vec<(Ipv6Addr, u8)>,
    pub preferred: Vec<u32>,
    pub valid: Vec<u32>,
    /// `option dhcp6.server-id` values, as dhclient prints them (hex bytes with colons).
    pub server_ids: Vec<String>,
}

/// Parses `iaaddr 2001:db8:1::1000 { ... preferred-life 3000; max-life 4000; }`,
/// `iaprefix 2001:db8:8000::/56 {`, and `option dhcp6.server-id 0:1:...;`.
pub fn read_leases(path: &Path) -> Leases {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lease = Leases::default();
    let mut words = text
        .split(|c: char| c.is_whitespace() || c == ';')
        .filter(|w| !w.is_empty());
    while let Some(word) = words.next() {
        match word {
            "iaaddr" => lease
                .addresses
                .extend(words.next().and_then(|w| w.parse::<Ipv6Addr>().ok())),
            "iaprefix" => lease.prefixes.extend(words.next().and_then(parse_prefix)),
            "preferred-life" => lease
                .preferred
                .extend(words.next().and_then(|w| w.parse::<u32>().ok())),
            "max-life" => lease
                .valid
                .extend(words.next().and_then(|w| w.parse::<u32>().ok())),
            "dhcp6.server-id" => lease.server_ids.extend(words.next().map(str::to_string)),
            _ => {}
        }
    }
    lease
}

/// One dhclient instance (its own lease, pid and event files, named after `tag`).
pub struct Dhclient<'a> {
    pair: &'a NetnsPair,
    program: String,
    script: PathBuf,
    pub lease_file: PathBuf,
    pid_file: PathBuf,
    log: PathBuf,
    mode: Vec<String>,
}

impl<'a> Dhclient<'a> {
    /// `mode`: `[]` IA_NA, `["-P"]` IA_PD, `["-N", "-P"]` both, `["-S"]` stateless.
    pub fn new(pair: &'a NetnsPair, scratch: &Scratch, tag: &str, mode: &[&str]) -> Dhclient<'a> {
        let script = scratch.join("dhclient-script");
        if !script.exists() {
            scratch.script("dhclient-script");
        }
        Dhclient {
            pair,
            program: require::program("dhclient"),
            script,
            lease_file: scratch.join(&format!("{tag}.leases")),
            pid_file: scratch.join(&format!("{tag}.pid")),
            log: scratch.join(&format!("{tag}.log")),
            mode: mode.iter().map(|m| m.to_string()).collect(),
        }
    }

    fn argv(&self, action: &[&str]) -> Vec<String> {
        let mut argv: Vec<String> = vec![
            "unshare".into(),
            "-m".into(),
            self.program.clone(),
            "-6".into(),
        ];
        argv.extend(self.mode.iter().cloned());
        argv.extend(action.iter().map(|a| a.to_string()));
        for (flag, path) in [
            ("-sf", &self.script),
            ("-lf", &self.lease_file),
            ("-pf", &self.pid_file),
        ] {
            argv.push(flag.into());
            argv.push(path.to_string_lossy().into_owned());
        }
        argv.push(CLIENT_IF.into());
        argv
    }

    fn run(&self, action: &[&str], timeout: Duration) -> Run {
        let argv = self.argv(action);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        proc::run(Some(&self.pair.client), &argv, timeout, &self.log)
    }

    /// `dhclient -1`: one attempt; returns when bound (the daemon it leaves keeps the lease,
    /// renews it, and is stopped by [`Dhclient::release`] or [`Dhclient::stop`]).
    pub fn bind(&self) -> Run {
        self.run(&["-1", "-v"], Duration::from_secs(40))
    }

    /// `dhclient -r`: sends Release (RFC 8415 §18.2.7) and stops the daemon.
    pub fn release(&self) -> Run {
        let run = self.run(&["-r"], Duration::from_secs(20));
        self.stop();
        run
    }

    /// Stops the daemon by the pid it recorded, without a Release.
    pub fn stop(&self) {
        if let Some(pid) = std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|p| p.trim().parse().ok())
        {
            proc::signal(pid, "TERM");
            proc::wait_until(Duration::from_secs(5), || !proc::pid_alive(pid));
        }
    }

    pub fn leases(&self) -> Leases {
        read_leases(&self.lease_file)
    }

    /// The hook script's event log: `=== reason=BOUND6 iface=cli0` then `new_*=` lines.
    pub fn events(&self) -> String {
        std::fs::read_to_string(self.script.with_file_name("dhclient-events.log"))
            .unwrap_or_default()
    }
}
