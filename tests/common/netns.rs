//! Two network namespaces joined by a veth pair: the server side and the client side.
//!
//! ```text
//!   [netns tdm-<test>-<pid>-s]  srv0 ══ veth ══ cli0  [netns tdm-<test>-<pid>-c]
//!     fe80::1, 2001:db8:1::1/64                   fe80::2, 2001:db8:1::2/64
//!     route 2001:db8:2::/64 via 2001:db8:1::2 (the "remote" link behind the relay)
//! ```
//!
//! The veth pair is created inside the server namespace with its peer moved straight into
//! the client namespace, so the root namespace never sees (or clashes on) these names.
//! Duplicate address detection is turned off before any interface exists: a server cannot
//! bind a tentative link-local address, and clients would wait seconds for DAD.

use super::proc::{check_output, command, pid_alive};
use std::net::Ipv6Addr;
use std::process::Stdio;
use std::time::Duration;

pub const SERVER_IF: &str = "srv0";
pub const CLIENT_IF: &str = "cli0";
pub const SERVER_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
pub const CLIENT_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);
pub const SERVER_GUA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
pub const CLIENT_GUA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
/// The link behind the simulated relay agent (relay link-address 2001:db8:2::1).
pub const RELAYED_LINK_ADDR: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1);

const PREFIX: &str = "tdm-";

pub struct NetnsPair {
    pub server: String,
    pub client: String,
}

impl NetnsPair {
    /// Creates the pair for `test` (names `tdm-<test>-<pid>-s` / `-c`) after removing any
    /// leftovers of an earlier run of the same test whose process is gone.
    pub fn new(test: &str) -> NetnsPair {
        let tag: String = test
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let base = format!("{PREFIX}{tag}-");
        cleanup_leftovers(&base);
        let pid = std::process::id();
        let pair = NetnsPair {
            server: format!("{base}{pid}-s"),
            client: format!("{base}{pid}-c"),
        };
        // From here on Drop removes whatever part of the topology exists.
        pair.build();
        pair
    }

    fn build(&self) {
        for ns in [&self.server, &self.client] {
            check_output(None, &["ip", "netns", "add", ns]);
            for scope in ["all", "default"] {
                for (key, value) in [
                    ("accept_dad", "0"),
                    ("dad_transmits", "0"),
                    ("accept_ra", "0"),
                    ("router_solicitations", "0"),
                ] {
                    sysctl(ns, &format!("net.ipv6.conf.{scope}.{key}"), value);
                }
            }
            check_output(None, &["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        check_output(
            None,
            &[
                "ip",
                "-n",
                &self.server,
                "link",
                "add",
                SERVER_IF,
                "type",
                "veth",
                "peer",
                "name",
                CLIENT_IF,
                "netns",
                &self.client,
            ],
        );
        for (ns, ifname, ll, gua) in [
            (&self.server, SERVER_IF, SERVER_LL, SERVER_GUA),
            (&self.client, CLIENT_IF, CLIENT_LL, CLIENT_GUA),
        ] {
            // addr_gen_mode=1 (none): no EUI-64 link-local; we set a fixed one without DAD.
            sysctl(ns, &format!("net.ipv6.conf.{ifname}.addr_gen_mode"), "1");
            sysctl(ns, &format!("net.ipv6.conf.{ifname}.accept_dad"), "0");
            sysctl(ns, &format!("net.ipv6.conf.{ifname}.accept_ra"), "0");
            for addr in [format!("{ll}/64"), format!("{gua}/64")] {
                check_output(
                    None,
                    &["ip", "-n", ns, "addr", "add", &addr, "dev", ifname, "nodad"],
                );
            }
            // Raw captures (tshark, scapy) must see valid UDP checksums, not offload stubs.
            check_output(Some(ns), &["ethtool", "-K", ifname, "tx", "off"]);
            check_output(None, &["ip", "-n", ns, "link", "set", ifname, "up"]);
        }
        check_output(
            None,
            &[
                "ip",
                "-n",
                &self.server,
                "-6",
                "route",
                "add",
                "2001:db8:2::/64",
                "via",
                &CLIENT_GUA.to_string(),
                "dev",
                SERVER_IF,
            ],
        );
        // veth carrier comes up asynchronously; wait for both ends to report LOWER_UP so
        // the first multicast Solicit is not lost (no ping: iputils is not a dependency).
        let up = super::proc::wait_until(Duration::from_secs(10), || {
            [(&self.server, SERVER_IF), (&self.client, CLIENT_IF)]
                .iter()
                .all(|(ns, ifname)| {
                    command(None, &["ip", "-n", ns, "-o", "link", "show", "dev", ifname])
                        .output()
                        .is_ok_and(|o| {
                            let text = String::from_utf8_lossy(&o.stdout);
                            text.contains("LOWER_UP") && text.contains("state UP")
                        })
                })
        });
        assert!(
            up,
            "veth link {} <-> {} never came up",
            self.server, self.client
        );
        // Carrier is not enough for multicast: addrconf installs the interface's
        // `multicast ff00::/8` route (local table) only once linkwatch reports the link
        // operationally up, up to a second later under load. Until then a client sending to
        // ff02::1:2 gets ENETUNREACH (seen in tests/xdp_dataplane.rs), so wait for the route.
        let routed = super::proc::wait_until(Duration::from_secs(10), || {
            [(&self.server, SERVER_IF), (&self.client, CLIENT_IF)]
                .iter()
                .all(|(ns, ifname)| {
                    command(
                        None,
                        &[
                            "ip", "-n", ns, "-6", "route", "show", "table", "local", "dev", ifname,
                        ],
                    )
                    .output()
                    .is_ok_and(|o| {
                        String::from_utf8_lossy(&o.stdout)
                            .lines()
                            .any(|l| l.starts_with("multicast ff00::/8"))
                    })
                })
        });
        assert!(
            routed,
            "no ff00::/8 multicast route on {} / {} after the link came up",
            self.server, self.client
        );
    }

    /// Global addresses on the client interface other than the static CLIENT_GUA, i.e. the
    /// ones a DHCPv6 client configured.
    pub fn client_dynamic_addrs(&self) -> Vec<Ipv6Addr> {
        let out = check_output(
            None,
            &[
                "ip",
                "-n",
                &self.client,
                "-6",
                "-o",
                "addr",
                "show",
                "dev",
                CLIENT_IF,
                "scope",
                "global",
            ],
        );
        out.lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                words.find(|w| *w == "inet6")?;
                let addr: Ipv6Addr = words.next()?.split('/').next()?.parse().ok()?;
                (addr != CLIENT_GUA).then_some(addr)
            })
            .collect()
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        for ns in [&self.client, &self.server] {
            remove_netns(ns);
        }
    }
}

fn sysctl(ns: &str, key: &str, value: &str) {
    check_output(Some(ns), &["sysctl", "-qw", &format!("{key}={value}")]);
}

/// Stops every process still running inside `ns` (all were started by this harness: nothing
/// else runs in a `tdm-` namespace), then deletes it; deleting the namespace destroys the
/// veth end inside it.
fn remove_netns(ns: &str) {
    let listed = command(None, &["ip", "netns", "list"]).output();
    let exists = listed
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.split_whitespace().next() == Some(ns))
        })
        .unwrap_or(false);
    if !exists {
        return;
    }
    for sig in ["TERM", "KILL"] {
        let pids = command(None, &["ip", "netns", "pids", ns])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let pids: Vec<u32> = pids
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if pids.is_empty() {
            break;
        }
        for pid in &pids {
            super::proc::signal(*pid, sig);
        }
        super::proc::wait_until(Duration::from_secs(2), || {
            !pids.iter().any(|p| pid_alive(*p))
        });
    }
    let _ = command(None, &["ip", "netns", "del", ns])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Removes namespaces named `<base><pid>-s|-c` whose creating test process no longer exists
/// (an earlier run that was killed before its Drop ran).
fn cleanup_leftovers(base: &str) {
    let Ok(out) = command(None, &["ip", "netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(base) else {
            continue;
        };
        let owner = rest
            .strip_suffix("-s")
            .or_else(|| rest.strip_suffix("-c"))
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = owner {
            if !pid_alive(pid) {
                eprintln!("removing leftover namespace {name}");
                remove_netns(name);
            }
        }
    }
}
