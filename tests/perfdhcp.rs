//! ISC perfdhcp (Debian kea-admin) against `tandem serve`: 10,000 simulated clients doing
//! Solicit-Advertise-Request-Reply at a moderate rate, direct and relayed (`-A 1`), for
//! IA_NA and IA_NA + IA_PD. perfdhcp must see zero drops, zero rejected leases and zero
//! malformed packets; a capture of the server's replies shows every address and prefix lies
//! in the configured pools and no address or prefix went to two clients.
//!
//! The rate is moderate on purpose (debug build, 2 shared cores): this checks correctness
//! under load, not speed; throughput is measured by the benchmarks in bench/.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::Ipv6Addr;
use std::time::Duration;

use common::capture::{self, Capture, SERVER_REPLIES};
use common::config::{ServerConfig, DIRECT_PD_POOL, DIRECT_POOL};
use common::netns::{NetnsPair, CLIENT_IF, SERVER_GUA};
use common::proc;
use common::server::Server;
use common::{heavy_lock, require, Scratch};

const CLIENTS: u32 = 10_000;
const RATE: u32 = 500;

/// The figures perfdhcp prints per exchange ("Statistics for: SOLICIT-ADVERTISE").
#[derive(Debug, Default, Clone, Copy)]
struct Exchange {
    sent: u64,
    received: u64,
    drops: u64,
    rejected: u64,
    non_unique: u64,
}

fn parse_perfdhcp(output: &str) -> (u64, HashMap<String, Exchange>) {
    let mut malformed = u64::MAX;
    let mut stats: HashMap<String, Exchange> = HashMap::new();
    let mut current: Option<String> = None;
    for line in output.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("***Statistics for: ") {
            current = Some(name.trim_end_matches('*').trim().to_string());
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let Some(value) = value.split_whitespace().next().and_then(|v| v.parse().ok()) else {
            continue;
        };
        if key == "Malformed packets" {
            malformed = value;
            continue;
        }
        let Some(name) = &current else { continue };
        let entry = stats.entry(name.clone()).or_default();
        match key {
            "sent packets" => entry.sent = value,
            "received packets" => entry.received = value,
            "drops" => entry.drops = value,
            "rejected leases" => entry.rejected = value,
            "non unique addresses" => entry.non_unique = value,
            _ => {}
        }
    }
    (malformed, stats)
}

fn perfdhcp(test: &str, extra: &[&str], target: &str, want_prefixes: bool) {
    if !require::ready(test, &["perfdhcp", "dumpcap", "tshark"]) {
        return;
    }
    let _heavy = heavy_lock();
    let scratch = Scratch::new(test);
    let pair = NetnsPair::new(test);
    let server = Server::start(&pair, &scratch, &ServerConfig::default());
    let capture = Capture::start(
        &pair.client,
        CLIENT_IF,
        SERVER_REPLIES,
        &scratch.join("replies.pcapng"),
        &scratch.join("dumpcap.log"),
    );

    let (rate, clients) = (RATE.to_string(), CLIENTS.to_string());
    let perfdhcp = require::program("perfdhcp");
    // nice -10: on a loaded machine a descheduled perfdhcp overflows its own socket buffer
    // and reports the server's replies as drops; the load generator must not be the
    // bottleneck of a test about the server.
    let mut argv = vec![
        "nice",
        "-n",
        "-10",
        perfdhcp.as_str(),
        "-6",
        "-l",
        CLIENT_IF,
        "-r",
        &rate,
        "-R",
        &clients,
        "-n",
        &clients,
        // wait 2 s after the last request for in-flight replies; a reply later than 2 s
        // counts as a drop (perfdhcp's -d drop time)
        "-W",
        "2000000",
        "-d",
        "2",
    ];
    argv.extend_from_slice(extra);
    argv.push(target);
    let bound = Duration::from_secs(u64::from(CLIENTS / RATE) + 60);
    let run = proc::run(
        Some(&pair.client),
        &argv,
        bound,
        &scratch.join("perfdhcp.log"),
    );
    let pcap = capture.stop();
    let stopped = server.stop();

    let (malformed, stats) = parse_perfdhcp(&run.output);
    let tshark_log = scratch.join("tshark.log");
    assert!(
        run.success(),
        "perfdhcp {argv:?} failed ({}):\n{}\n--- on the wire at the client: {} Advertise, {} \
         Reply\n--- server log tail:\n{}",
        run.describe_status(),
        run.output,
        capture::count(&pcap, "dhcpv6.msgtype == 2", &tshark_log),
        capture::count(&pcap, "dhcpv6.msgtype == 7", &tshark_log),
        tail(&stopped.log, 40)
    );
    assert_eq!(
        malformed, 0,
        "perfdhcp saw malformed packets:\n{}",
        run.output
    );
    for exchange in ["SOLICIT-ADVERTISE", "REQUEST-REPLY"] {
        let s = stats
            .get(exchange)
            .unwrap_or_else(|| panic!("no {exchange} statistics in:\n{}", run.output));
        // perfdhcp may start a few transactions past -n while its last batch is paced out.
        assert!(
            s.sent >= u64::from(CLIENTS),
            "{exchange}: {s:?}\n{}",
            run.output
        );
        assert_eq!(s.received, s.sent, "{exchange}: {s:?}\n{}", run.output);
        assert_eq!(s.drops, 0, "{exchange} drops: {s:?}\n{}", run.output);
        assert_eq!(s.rejected, 0, "{exchange} rejected leases: {s:?}");
        assert_eq!(s.non_unique, 0, "{exchange} non-unique addresses: {s:?}");
    }

    // Every Reply's leases: in the pool, and never one resource for two clients.
    let rows = capture::fields(
        &pcap,
        "dhcpv6.msgtype == 7",
        &[
            "dhcpv6.duid.bytes",
            "dhcpv6.iaaddr.ip",
            "dhcpv6.iaprefix.pref_addr",
            "dhcpv6.iaprefix.pref_len",
        ],
        &tshark_log,
    );
    let replies = stats["REQUEST-REPLY"].received as usize;
    assert_eq!(
        rows.len(),
        replies,
        "captured Replies vs the Replies perfdhcp received"
    );
    // The server's DUID is the one DUID present in every Reply; the other is the client's.
    let mut duid_frames: HashMap<&str, usize> = HashMap::new();
    for row in &rows {
        for duid in row[0].iter().collect::<HashSet<_>>() {
            *duid_frames.entry(duid).or_default() += 1;
        }
    }
    let server_duids: Vec<&str> = duid_frames
        .iter()
        .filter(|(_, n)| **n == rows.len())
        .map(|(d, _)| *d)
        .collect();
    assert_eq!(
        server_duids.len(),
        1,
        "one SERVERID across all Replies: {server_duids:?}"
    );
    let mut address_owner: HashMap<Ipv6Addr, &str> = HashMap::new();
    let mut prefix_owner: HashMap<(Ipv6Addr, u8), &str> = HashMap::new();
    let mut clients_seen = HashSet::new();
    for row in &rows {
        let client = row[0]
            .iter()
            .find(|d| *d != server_duids[0])
            .expect("CLIENTID in Reply");
        clients_seen.insert(client.as_str());
        assert!(
            !row[1].is_empty(),
            "Reply without an IA_NA address for {client}"
        );
        for a in &row[1] {
            let addr: Ipv6Addr = a.parse().unwrap();
            assert!(DIRECT_POOL.contains(addr), "{addr} outside {DIRECT_POOL:?}");
            let owner = address_owner.entry(addr).or_insert(client);
            assert_eq!(*owner, client.as_str(), "{addr} leased to two clients");
        }
        assert_eq!(row[2].len(), row[3].len());
        if want_prefixes {
            assert!(
                !row[2].is_empty(),
                "Reply without an IA_PD prefix for {client}"
            );
        }
        for (p, l) in row[2].iter().zip(&row[3]) {
            let (prefix, len): (Ipv6Addr, u8) = (p.parse().unwrap(), l.parse().unwrap());
            assert!(
                DIRECT_PD_POOL.contains(prefix, len),
                "{prefix}/{len} outside {DIRECT_PD_POOL:?}"
            );
            let owner = prefix_owner.entry((prefix, len)).or_insert(client);
            assert_eq!(
                *owner,
                client.as_str(),
                "{prefix}/{len} delegated to two clients"
            );
        }
    }
    eprintln!(
        "{test}: {} Replies, {} distinct clients, {} addresses, {} prefixes",
        rows.len(),
        clients_seen.len(),
        address_owner.len(),
        prefix_owner.len()
    );
    assert!(
        stopped.status.is_some_and(|s| s.success()),
        "tandem did not exit cleanly on SIGTERM; log tail:\n{}",
        tail(&stopped.log, 40)
    );
    // The server's own view: nothing dropped, and no packet lost between shards.
    assert_eq!(
        stopped.dropped_total(),
        Some(0),
        "the server dropped packets of a well-formed load:\n{}",
        tail(&stopped.log, 20)
    );
    assert!(
        !stopped
            .log
            .lines()
            .any(|l| l.contains("shard counters") && !l.contains("handoff_dropped=0")),
        "hand-offs between shards were dropped:\n{}",
        tail(&stopped.log, 20)
    );
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[test]
fn perfdhcp_sarr_10k_clients() {
    perfdhcp("perfdhcp_sarr_10k_clients", &[], "all", false);
}

#[test]
fn perfdhcp_address_and_prefix_10k_clients() {
    perfdhcp(
        "perfdhcp_address_and_prefix_10k_clients",
        &["-e", "address-and-prefix"],
        "all",
        true,
    );
}

/// perfdhcp as one relay agent (`-A 1`): Relay-forw to the server's unicast address,
/// link-address = the relay's own 2001:db8:1::2, so the direct subnet's pools apply.
#[test]
fn perfdhcp_relayed_10k_clients() {
    let server = SERVER_GUA.to_string();
    perfdhcp("perfdhcp_relayed_10k_clients", &["-A", "1"], &server, false);
}
