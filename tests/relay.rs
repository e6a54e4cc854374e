//! A chain of two relay agents in front of one client (scapy, tests/scripts/relay_chain.py):
//! Relay-forw(Relay-forw(Solicit)) and then the Request, with an Interface-ID at each layer
//! and a Remote-ID at the access relay. Checks the nested Relay-repl against RFC 8415
//! §18.3.10/§19.3 (one Relay-repl per Relay-forw, hop-count, link-address and peer-address
//! copied per layer, Interface-ID echoed per layer, sent back to the outer relay's port 547),
//! link selection by the innermost non-zero link-address (§13.1), and that a reservation
//! keyed by Remote-ID (RFC 4649) is chosen over dynamic allocation.

mod common;

use std::collections::BTreeSet;
use std::net::Ipv6Addr;
use std::time::Duration;

use serde_json::Value;

use common::config::{
    parse_prefix, ServerConfig, RELAYED_PD_POOL, RELAYED_POOL, RESERVED_ADDR, RESERVED_PREFIX,
    RESERVED_REMOTE_ID,
};
use common::netns::{NetnsPair, CLIENT_GUA, SERVER_GUA};
use common::server::Server;
use common::{require, scripts, Scratch};

const INNER_IFID: &str = "port-1/1/7";
const OUTER_IFID: &str = "agg-uplink-3";
/// The access relay's own address (peer-address of the outer layer).
const ACCESS_RELAY: &str = "2001:db8:2::1";

fn addrs(v: &Value) -> Vec<Ipv6Addr> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().parse().unwrap())
        .collect()
}

fn prefixes(v: &Value) -> Vec<(Ipv6Addr, u8)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| parse_prefix(p.as_str().unwrap()).unwrap())
        .collect()
}

/// RFC 8357 Relay Source Port options the relays sent: `(outer, inner)` downstream ports,
/// `None` for a layer without the option.
type RelayPorts = (Option<u64>, Option<u64>);

/// Checks one exchange's Relay-repl chain and returns the inner message.
fn check_relay_reply<'a>(
    exchange: &'a Value,
    client_ll: &str,
    want_type: u64,
    want_trid: u64,
    ports: RelayPorts,
) -> &'a Value {
    let label = exchange["label"].as_str().unwrap_or("?");
    assert!(
        !exchange["layers"].is_null(),
        "{label}: no answer from the server: {exchange}"
    );
    assert_eq!(
        exchange["src"],
        SERVER_GUA.to_string(),
        "{label}: reply source"
    );
    assert_eq!(exchange["sport"], 547, "{label}: reply source port");
    let layers = exchange["layers"].as_array().unwrap();
    assert_eq!(
        layers.len(),
        2,
        "{label}: one Relay-repl per Relay-forw: {exchange:#}"
    );
    let (outer, inner) = (&layers[0], &layers[1]);
    // RFC 8415 §19.3 / §18.3.10: each Relay-repl copies hop-count, link-address and
    // peer-address from its Relay-forw, and the Interface-ID option.
    assert_eq!(outer["type"], 13, "{label}: outer is Relay-repl");
    assert_eq!(outer["hopcount"], 1, "{label}: outer hop-count");
    assert_eq!(outer["linkaddr"], "::", "{label}: outer link-address");
    assert_eq!(
        outer["peeraddr"], ACCESS_RELAY,
        "{label}: outer peer-address"
    );
    assert_eq!(
        outer["interface_id"], OUTER_IFID,
        "{label}: outer Interface-ID echoed"
    );
    assert_eq!(inner["type"], 13, "{label}: inner is Relay-repl");
    assert_eq!(inner["hopcount"], 0, "{label}: inner hop-count");
    assert_eq!(
        inner["linkaddr"], ACCESS_RELAY,
        "{label}: inner link-address"
    );
    assert_eq!(inner["peeraddr"], client_ll, "{label}: inner peer-address");
    assert_eq!(
        inner["interface_id"], INNER_IFID,
        "{label}: inner Interface-ID echoed"
    );
    // No ERO was sent (RFC 4994), so Remote-ID is not echoed: a Relay-repl carries only
    // Interface-ID, the Relay Message, and the Relay Source Port option where the relay sent
    // one (RFC 8357 §5.2: the server MUST copy it).
    for (layer, port) in [(outer, ports.0), (inner, ports.1)] {
        let codes: BTreeSet<u64> = layer["options"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap())
            .collect();
        let mut want = BTreeSet::from([9, 18]);
        if port.is_some() {
            want.insert(135);
        }
        assert_eq!(codes, want, "{label}: Relay-repl options {layer}");
        assert_eq!(
            layer["relay_port"].as_u64(),
            port,
            "{label}: Relay Source Port copied: {layer}"
        );
    }
    let msg = &exchange["inner"];
    assert_eq!(msg["type"], want_type, "{label}: inner message type: {msg}");
    assert_eq!(msg["trid"], want_trid, "{label}: transaction-id copied");
    assert!(
        msg["status"].is_null() || msg["status"] == 0,
        "{label}: status {msg}"
    );
    assert!(
        msg["ia_status"].as_array().unwrap().iter().all(|s| s == 0),
        "{label}: IA status {msg}"
    );
    // ORO asked for DNS servers (23) and the domain list (24); both are configured.
    let options: Vec<u64> = msg["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .collect();
    for code in [1, 2, 3, 23, 24, 25] {
        assert!(
            options.contains(&code),
            "{label}: option {code} missing from {options:?}"
        );
    }
    msg
}

fn relay_chain(test: &str, mac: &str, remote_id: &str, reserved: bool) {
    relay_chain_with(test, mac, remote_id, reserved, &[], (None, None));
}

fn relay_chain_with(
    test: &str,
    mac: &str,
    remote_id: &str,
    reserved: bool,
    extra: &[&str],
    ports: RelayPorts,
) {
    if !require::ready(test, &["scapy"]) {
        return;
    }
    let scratch = Scratch::new(test);
    let pair = NetnsPair::new(test);
    let server = Server::start(&pair, &scratch, &ServerConfig::default());
    let (server_gua, client_gua) = (SERVER_GUA.to_string(), CLIENT_GUA.to_string());
    let mut args = vec![
        "--server",
        &server_gua,
        "--relay",
        &client_gua,
        "--link",
        ACCESS_RELAY,
        "--mac",
        mac,
        "--remote-id",
        remote_id,
        "--inner-ifid",
        INNER_IFID,
        "--outer-ifid",
        OUTER_IFID,
    ];
    args.extend_from_slice(extra);
    let result = scripts::run_json(
        &pair.client,
        &scratch,
        "relay_chain.py",
        &args,
        Duration::from_secs(30),
    );
    let stopped = server.stop();
    let exchanges = result["exchanges"].as_array().unwrap();
    let context = format!("{result:#}\n--- server log:\n{}", stopped.log);
    assert_eq!(
        exchanges.len(),
        2,
        "Solicit and Request both answered: {context}"
    );
    let client_ll = format!(
        "fe80::{}",
        mac.replace(':', "")[8..].trim_start_matches('0')
    );
    let adv = check_relay_reply(&exchanges[0], &client_ll, 2, 0x1a2b3c, ports);
    let reply = check_relay_reply(&exchanges[1], &client_ll, 7, 0x1a2b3d, ports);
    assert_eq!(
        adv["server_id"], reply["server_id"],
        "same SERVERID in Advertise and Reply"
    );

    for msg in [adv, reply] {
        let (na, pd) = (addrs(&msg["ia_na"]), prefixes(&msg["ia_pd"]));
        assert_eq!(na.len(), 1, "one address: {msg}");
        assert_eq!(pd.len(), 1, "one prefix: {msg}");
        if reserved {
            assert_eq!(
                na[0], RESERVED_ADDR,
                "Remote-ID reservation's address: {msg}"
            );
            assert_eq!(
                pd[0],
                (RESERVED_PREFIX, 56),
                "Remote-ID reservation's prefix: {msg}"
            );
        } else {
            assert!(
                RELAYED_POOL.contains(na[0]),
                "{} outside {RELAYED_POOL:?}",
                na[0]
            );
            assert_ne!(
                na[0], RESERVED_ADDR,
                "reserved address handed to another client"
            );
            assert!(
                RELAYED_PD_POOL.contains(pd[0].0, pd[0].1),
                "{pd:?} outside {RELAYED_PD_POOL:?}"
            );
            assert_ne!(
                pd[0].0, RESERVED_PREFIX,
                "reserved prefix delegated to another client"
            );
        }
    }
    // The Reply commits what the Advertise offered (§18.3.2).
    assert_eq!(adv["ia_na"], reply["ia_na"]);
    assert_eq!(adv["ia_pd"], reply["ia_pd"]);
    assert!(
        stopped.status.is_some_and(|s| s.success()),
        "tandem exit: {:?}",
        stopped.status
    );
}

#[test]
fn two_relays_reservation_by_remote_id() {
    let remote_id = std::str::from_utf8(RESERVED_REMOTE_ID).unwrap();
    relay_chain(
        "two_relays_reservation_by_remote_id",
        "02:00:00:00:aa:01",
        remote_id,
        true,
    );
}

#[test]
fn two_relays_dynamic_from_relayed_link_pool() {
    relay_chain(
        "two_relays_dynamic_from_relayed_link_pool",
        "02:00:00:00:aa:02",
        "cpe-0002",
        false,
    );
}

/// RFC 8357: both relays use non-547 source ports. The outer one (talking to the server from
/// port 10547) records the inner one's port 1000 in its Relay Source Port option, the inner
/// one marks its own with 0. The server must send the Relay-repl to port 10547 (the script
/// listens only there) and copy both options into the matching Relay-repl layers.
#[test]
fn two_relays_with_relay_source_ports() {
    relay_chain_with(
        "two_relays_with_relay_source_ports",
        "02:00:00:00:aa:03",
        "cpe-0003",
        false,
        &["--source-port", "10547", "--downstream-port", "1000"],
        (Some(1000), Some(0)),
    );
}
