//! Malformed and misdirected packets against a running server (tests/scripts/bad_input.py):
//! truncated messages, option lengths past the end (top level and nested), relay nesting
//! beyond 32 layers, a missing CLIENTID, options where RFC 8415 §16 says the message must be
//! discarded, server-to-client messages sent to the server, and Solicit/Request by unicast.
//! The server must drop them (answering only where §18.4 asks for UseMulticast), keep
//! serving (valid Solicits before and after are answered), exit cleanly, and count the drops.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use common::config::ServerConfig;
use common::netns::{NetnsPair, CLIENT_GUA, CLIENT_IF, CLIENT_LL, SERVER_GUA};
use common::server::Server;
use common::{require, scripts, Scratch};

const ADVERTISE: u64 = 2;
const REPLY: u64 = 7;
/// RFC 8415 §21.13 status code UseMulticast.
const USE_MULTICAST: u64 = 5;

/// Cases the server must drop without any answer.
const DROPPED: &[&str] = &[
    "truncated_header",
    "empty_payload",
    "option_length_past_end",
    "nested_length_past_end",
    "trailing_half_option",
    "solicit_missing_clientid",
    "solicit_with_serverid",
    "info_request_with_ia",
    "request_missing_serverid",
    "request_other_serverid",
    "reply_sent_to_server",
    "relay_repl_sent_to_server",
    "unknown_message_type",
    "relay_truncated",
    "relay_without_relay_msg",
    "relay_nesting_33",
];

/// RFC 8415 §18.4: the answer to a client message received by unicast without the Server
/// Unicast option: status UseMulticast, SERVERID, the CLIENTID, and no other options.
fn assert_use_multicast(case: &str, reply: &Value, want_type: u64) {
    assert_eq!(reply["type"], want_type, "{case}: {reply}");
    assert_eq!(
        reply["status"], USE_MULTICAST,
        "{case}: status UseMulticast: {reply}"
    );
    let options: BTreeSet<u64> = reply["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .collect();
    assert!(
        options.contains(&2) && options.contains(&13),
        "{case}: SERVERID + STATUS_CODE: {reply}"
    );
    assert!(
        options.is_subset(&BTreeSet::from([1, 2, 13])),
        "{case}: no other options: {reply}"
    );
}

#[test]
fn malformed_and_misdirected_packets_are_dropped_and_counted() {
    const TEST: &str = "malformed_and_misdirected_packets";
    if !require::ready(TEST, &["scapy"]) {
        return;
    }
    let scratch = Scratch::new(TEST);
    let pair = NetnsPair::new(TEST);
    let mut server = Server::start(&pair, &scratch, &ServerConfig::default());
    let result = scripts::run_json(
        &pair.client,
        &scratch,
        "bad_input.py",
        &[
            "--iface",
            CLIENT_IF,
            "--server",
            &SERVER_GUA.to_string(),
            "--client-ll",
            &CLIENT_LL.to_string(),
            "--client-gua",
            &CLIENT_GUA.to_string(),
        ],
        Duration::from_secs(60),
    );
    let alive = server.alive();
    let stopped = server.stop();
    let context = format!("{result:#}\n--- server log:\n{}", stopped.log);
    assert!(alive, "tandem died during the bad-input run: {context}");

    let reply = |case: &str| -> &Value {
        let entry = &result[case];
        assert!(
            !entry.is_null(),
            "case {case} missing from the script's output"
        );
        &entry["reply"]
    };
    for control in ["valid_solicit_before", "valid_solicit_after"] {
        assert_eq!(
            reply(control)["type"],
            ADVERTISE,
            "{control} must be answered: {context}"
        );
    }
    let mut answered = Vec::new();
    for case in DROPPED {
        if !reply(case).is_null() {
            answered.push(format!("{case}: {}", reply(case)));
        }
    }
    assert!(
        answered.is_empty(),
        "answered instead of dropped:\n{}\n{context}",
        answered.join("\n")
    );

    // Solicit is never accepted by unicast (§18.3.1); dropping it or answering UseMulticast
    // (§18.4) are both conforming, anything else is not.
    let solicit = reply("solicit_to_unicast");
    if !solicit.is_null() {
        assert_use_multicast("solicit_to_unicast", solicit, ADVERTISE);
    }
    let request = reply("request_to_unicast");
    assert!(
        !request.is_null(),
        "request_to_unicast: §18.4 asks for a UseMulticast Reply: {context}"
    );
    assert_use_multicast("request_to_unicast", request, REPLY);

    // 32 relay layers are within the supported depth: answered through 32 Relay-repls.
    let deep = reply("relay_nesting_32");
    assert_eq!(deep["layers"], 32, "relay_nesting_32: {deep}\n{context}");
    assert_eq!(deep["type"], ADVERTISE, "relay_nesting_32: {deep}");

    assert!(
        stopped.status.is_some_and(|s| s.success()),
        "tandem did not exit cleanly after the bad input ({:?}): {context}",
        stopped.status
    );
    let dropped = stopped.dropped_total().unwrap_or_else(|| {
        panic!(
            "no drop counters in the server's exit log:\n{}",
            stopped.log
        )
    });
    for line in stopped
        .log
        .lines()
        .filter(|l| l.contains("engine counters"))
    {
        eprintln!("{line}");
    }
    assert!(
        dropped >= DROPPED.len() as u64,
        "drop counters moved by {dropped}, fewer than the {} bad packets sent:\n{}",
        DROPPED.len(),
        stopped.log
    );
    // The deepest relay chain is dropped for its depth, not as some generic error.
    assert!(
        stopped.log.contains("dropped_relay_too_deep="),
        "no relay_too_deep drop counted:\n{}",
        stopped.log
    );
}
