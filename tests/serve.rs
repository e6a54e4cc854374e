//! The `tandem serve` process itself: shards and multicast, the server DUID kept in the data
//! directory, graceful stop, and start-up errors. Real binary, real sockets, in network
//! namespaces (tests/common).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use common::config::ServerConfig;
use common::netns::{NetnsPair, CLIENT_IF, SERVER_LL};
use common::proc;
use common::server::Server;
use common::{require, scripts, Scratch};

/// The fields of the last `shard counters` line each shard logged.
fn shard_counters(log: &str) -> BTreeMap<u64, BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for line in log.lines().filter(|l| l.contains("shard counters")) {
        let fields: BTreeMap<String, u64> = line
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
            .collect();
        if let Some(&shard) = fields.get("shard") {
            out.insert(shard, fields);
        }
    }
    out
}

fn solicit(pair: &NetnsPair, scratch: &Scratch, count: usize, seed: u8) -> Value {
    scripts::run_json(
        &pair.client,
        scratch,
        "multicast_solicits.py",
        &[
            "--interface",
            CLIENT_IF,
            "--count",
            &count.to_string(),
            "--seed",
            &seed.to_string(),
        ],
        Duration::from_secs(30),
    )
}

#[test]
fn multicast_solicits_are_answered_once_by_the_owner_shard() {
    const TEST: &str = "serve-mcast";
    if !require::ready(TEST, &[]) {
        return;
    }
    let scratch = Scratch::new(TEST);
    let pair = NetnsPair::new(TEST);
    let cfg = ServerConfig {
        shards: 2,
        ..ServerConfig::default()
    };
    let server = Server::start(&pair, &scratch, &cfg);
    let result = solicit(&pair, &scratch, 64, 1);
    let stopped = server.stop();
    let context = format!("{result:#}\n--- server log:\n{}", stopped.log);

    let answers = result["answers"].as_array().unwrap();
    let mut per_xid: BTreeMap<&str, usize> = BTreeMap::new();
    for a in answers {
        *per_xid.entry(a["xid"].as_str().unwrap()).or_default() += 1;
        assert_eq!(a["type"], 2, "an Advertise: {context}");
        assert_eq!(
            a["src"].as_str().unwrap(),
            SERVER_LL.to_string(),
            "answered from the server's link-local address: {context}"
        );
    }
    assert_eq!(per_xid.len(), 64, "every Solicit answered: {context}");
    assert!(
        per_xid.values().all(|&n| n == 1),
        "no Solicit answered twice (multicast reaches one socket): {per_xid:?}\n{context}"
    );

    // Only shard 0's socket joined ff02::1:2: it received all of them and handed the other
    // shard's clients over; shard 1's socket saw no multicast at all.
    let counters = shard_counters(&stopped.log);
    let (s0, s1) = (&counters[&0], &counters[&1]);
    assert_eq!(s0["received"], 64, "{context}");
    assert_eq!(s1["received"], 0, "{context}");
    assert_eq!(s1["io_rx_foreign_multicast"], 0, "{context}");
    assert!(
        s0["handed_off"] > 0,
        "some clients hash to shard 1: {context}"
    );
    assert_eq!(s0["handed_off"], s1["handoff_received"], "{context}");
    assert_eq!(s0["answered"] + s1["answered"], 64, "{context}");
    assert!(
        stopped.status.is_some_and(|s| s.success()),
        "graceful stop on SIGTERM: {:?}",
        stopped.status
    );
}

#[test]
fn server_duid_is_generated_once_and_kept_in_the_data_dir() {
    const TEST: &str = "serve-duid";
    if !require::ready(TEST, &[]) {
        return;
    }
    let scratch = Scratch::new(TEST);
    let pair = NetnsPair::new(TEST);
    let cfg = ServerConfig {
        shards: 1,
        ..ServerConfig::default()
    };
    let server_ids = |seed: u8| -> Vec<String> {
        let server = Server::start(&pair, &scratch, &cfg);
        let result = solicit(&pair, &scratch, 4, seed);
        let stopped = server.stop();
        let ids: Vec<String> = result["answers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["server_id"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(ids.len(), 4, "answers: {result}\n{}", stopped.log);
        ids
    };
    let first = server_ids(1);
    let stored = std::fs::read_to_string(scratch.join("tandem-data").join("server-duid"))
        .expect("server-duid in the data directory");
    assert!(
        first.iter().all(|id| id == stored.trim()),
        "{first:?} vs {stored}"
    );
    // Restart with the same data directory: same identity (RFC 8415 §11).
    let second = server_ids(2);
    assert_eq!(first[0], second[0], "the DUID changed across a restart");
}

#[test]
fn start_up_errors_are_clear_and_fatal() {
    const TEST: &str = "serve-errors";
    if !require::ready(TEST, &[]) {
        return;
    }
    let scratch = Scratch::new(TEST);
    let pair = NetnsPair::new(TEST);
    let bin = common::tandem_bin();
    let data = scratch.join("data");
    let data = data.to_str().unwrap();
    let log = scratch.join("errors.log");

    let run = proc::run(
        Some(&pair.server),
        &[bin, "serve", "--data-dir", data, "--interface", "nosuch0"],
        Duration::from_secs(20),
        &log,
    );
    assert_eq!(run.code(), Some(1), "{}", run.output);
    assert!(
        run.output.contains("`nosuch0`") && run.output.contains("does not exist"),
        "{}",
        run.output
    );

    let run = proc::run(
        Some(&pair.server),
        &[bin, "serve", "--data-dir", "/proc/tandem-not-writable"],
        Duration::from_secs(20),
        &log,
    );
    assert_eq!(run.code(), Some(1), "{}", run.output);
    assert!(
        run.output.contains("/proc/tandem-not-writable"),
        "{}",
        run.output
    );

    // Port 547 already taken by another server: the shard's bind fails and says so.
    let holder = proc::Background::spawn(
        Some(&pair.server),
        &[
            "/usr/bin/python3",
            "-c",
            "import socket,time\ns=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\n\
             s.bind(('::',547))\ntime.sleep(30)",
        ],
        &scratch.join("holder.log"),
    );
    // Wait until the holder has bound the port (python starts slowly on a loaded machine).
    let ns = pair.server.clone();
    assert!(
        proc::wait_until(Duration::from_secs(15), || {
            !proc::check_output(Some(&ns), &["ss", "-H", "-uln", "sport = :547"])
                .trim()
                .is_empty()
        }),
        "the port holder did not bind [::]:547"
    );
    let run = proc::run(
        Some(&pair.server),
        &[bin, "serve", "--data-dir", data],
        Duration::from_secs(20),
        &log,
    );
    drop(holder);
    assert_eq!(run.code(), Some(1), "{}", run.output);
    assert!(
        run.output.contains("[::]:547") && run.output.contains("in use"),
        "{}",
        run.output
    );
}
