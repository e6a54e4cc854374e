//! UDP GRO/GSO on the io_uring backend (src/io/uring.rs) with relayed traffic from the bench
//! rig (`tandem-bench run --gso`: every relay's Relay-forw messages leave in segmented sends,
//! so the server's socket receives coalesced trains).
//!
//! 1. Offloads working end to end (veth checksum offload on both sides): the server splits
//!    the trains, answers every client, and its replies leave as segmented sends; every
//!    completed exchange left exactly one stored lease and none was dropped.
//!
//! (The fallback when the kernel refuses a segmented send is a unit test in src/io/uring.rs:
//! kernel 6.11 and later segment in software when the device cannot checksum, so EIO cannot
//! be provoked on this kernel from here.)
//!
//! Needs root (network namespaces) and the `tandem-bench` binary, which `cargo test
//! --workspace` builds.

mod common;

use std::time::Duration;

use common::config::ServerConfig;
use common::netns::{NetnsPair, CLIENT_IF, SERVER_GUA, SERVER_IF};
use common::proc::{check_output, run};
use common::server::Server;
use common::{bench_bin, require, Scratch};

/// The last value of `field=N` the server logged for each shard, summed.
fn counter(log: &str, field: &str) -> u64 {
    let mut per_shard = std::collections::BTreeMap::new();
    for line in log.lines().filter(|l| l.contains("shard counters")) {
        let mut shard = None;
        let mut value = None;
        for (k, v) in line.split_whitespace().filter_map(|w| w.split_once('=')) {
            let v = v.trim_matches(|c: char| !c.is_ascii_digit());
            if k == "shard" {
                shard = v.parse::<u64>().ok();
            } else if k == field {
                value = v.parse::<u64>().ok();
            }
        }
        if let (Some(s), Some(v)) = (shard, value) {
            per_shard.insert(s, v);
        }
    }
    assert!(
        !per_shard.is_empty(),
        "no `{field}` in the server's counters; log:\n{log}"
    );
    per_shard.values().sum()
}

struct Outcome {
    report: serde_json::Value,
    log: String,
    leases: u64,
}

/// Serves the rig's relayed SARR load (2 shards, fsync durability) in `pair` and returns the
/// rig's report, the server's log and how many leases the data directory holds afterwards.
fn serve_rig(pair: &NetnsPair, scratch: &Scratch, seed: &str) -> Outcome {
    let server = Server::start(pair, scratch, &ServerConfig::default());
    let json = scratch.join("rig.json");
    let target = format!("[{SERVER_GUA}]:547");
    // 64 relays on one socket ([::]:547 → server:547), closed loop with 256 outstanding:
    // full 64-segment trains, far more subscribers than the run can reach so every
    // completed exchange is a distinct client.
    let argv = [
        bench_bin().to_str().unwrap().to_string(),
        "run".into(),
        "--target".into(),
        target,
        "--relays".into(),
        "64".into(),
        "--scenario".into(),
        "sarr".into(),
        "--subscribers".into(),
        "1000000".into(),
        "--rate".into(),
        "max".into(),
        "--window".into(),
        "256".into(),
        "--duration".into(),
        "2".into(),
        "--seed".into(),
        seed.into(),
        "--gso".into(),
        "--quiet".into(),
        "--json".into(),
        json.to_str().unwrap().into(),
    ];
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    run(
        Some(&pair.client),
        &argv,
        Duration::from_secs(90),
        &scratch.join("rig.log"),
    )
    .expect_success("tandem-bench run --gso");
    let data_dir = server.data_dir.clone();
    let stopped = server.stop();
    let count = check_output(
        None,
        &[
            env!("CARGO_BIN_EXE_tandem"),
            "leases",
            "--data-dir",
            data_dir.to_str().unwrap(),
            "count",
        ],
    );
    let leases = count
        .chars()
        .filter(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("`tandem leases count` printed {count:?}"));
    Outcome {
        report: serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap(),
        log: stopped.log,
        leases,
    }
}

/// Every exchange the rig started was answered, nothing malformed or unexpected came back,
/// and each completed exchange left one stored lease.
fn assert_every_client_answered(o: &Outcome) {
    let r = &o.report;
    let c = &r["counters"];
    let completed = r["completed"].as_u64().unwrap();
    assert!(
        completed >= 500,
        "too few exchanges to mean anything: {r:#}"
    );
    assert!(
        completed < 1_000_000,
        "every exchange a distinct client: {r:#}"
    );
    for field in [
        "drops",
        "unfinished",
        "malformed",
        "unexpected",
        "not_ours",
        "other_status",
        "no_addrs_avail",
        "empty_replies",
    ] {
        assert_eq!(c[field], 0, "{field}: {r:#}\nserver log:\n{}", o.log);
    }
    assert_eq!(
        o.leases, completed,
        "one stored lease per completed exchange"
    );
    assert_eq!(counter(&o.log, "io_rx_truncated"), 0, "{}", o.log);
    assert_eq!(counter(&o.log, "io_rx_errors"), 0, "{}", o.log);
    // Every datagram the backends handed over was answered (2 per exchange, plus any that
    // were in flight when the rig stopped counting).
    assert!(counter(&o.log, "io_rx") >= 2 * completed, "{}", o.log);
}

fn tx_offload(ns: &str, ifname: &str, on: bool) {
    check_output(
        Some(ns),
        &["ethtool", "-K", ifname, "tx", if on { "on" } else { "off" }],
    );
}

#[test]
fn coalesced_relay_traffic_is_split_answered_and_replies_are_segmented() {
    if !require::ready("udp_offload", &[]) {
        return;
    }
    let _heavy = common::heavy_lock();
    let scratch = Scratch::new("udp-offload-gso");
    let pair = NetnsPair::new("udp-gso");
    // The harness turns checksum offload off for raw captures; GSO needs it on.
    tx_offload(&pair.server, SERVER_IF, true);
    tx_offload(&pair.client, CLIENT_IF, true);
    let o = serve_rig(&pair, &scratch, "81");
    assert_every_client_answered(&o);
    let trains = counter(&o.log, "io_rx_gro_buffers");
    let segmented = counter(&o.log, "io_tx_gso_sends");
    assert!(trains > 0, "no coalesced receive; log:\n{}", o.log);
    assert!(segmented > 0, "no segmented send; log:\n{}", o.log);
    assert_eq!(counter(&o.log, "io_tx_gso_fallbacks"), 0, "{}", o.log);
    eprintln!(
        "udp_offload: {} exchanges, {trains} GRO trains, {segmented} GSO sends",
        o.report["completed"]
    );
}
