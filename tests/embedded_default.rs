//! `tandem serve` without a configuration file (constructor mode, issue 2 item 7): it
//! serves the /64 of each global address on each up, non-loopback interface, plus IA_PD
//! /56s from a stable ULA /48, and keeps its server DUID in the data directory across
//! restarts. Checked with a real dhclient.

mod common;

use common::dhclient::Dhclient;
use common::netns::NetnsPair;
use common::server::Server;
use common::{require, Scratch};

#[test]
fn embedded_default_serves_the_interface_prefix_and_keeps_its_duid() {
    const TEST: &str = "embedded_default";
    if !require::ready(TEST, &["dhclient", "unshare"]) {
        return;
    }
    let scratch = Scratch::new(TEST);
    let pair = NetnsPair::new(TEST);

    let mut server_ids = Vec::new();
    let mut ula_48s = Vec::new();
    for round in 1..=2 {
        // No --config and no ./tandem.toml in the working directory (the scratch dir).
        let server = Server::start_args(&pair, &scratch, &["--shards", "2"]);
        let client = Dhclient::new(&pair, &scratch, &format!("dhclient-{round}"), &["-N", "-P"]);
        let run = client.bind();
        let lease = client.leases();
        client.release();
        let stopped = server.stop();
        assert!(
            run.success(),
            "round {round}: dhclient did not bind ({}):\n{}\n--- server log:\n{}",
            run.describe_status(),
            run.output,
            stopped.log
        );
        assert!(
            stopped.status.is_some_and(|s| s.success()),
            "exit {:?}",
            stopped.status
        );
        // The server interface has 2001:db8:1::1/64: addresses come from that /64.
        let addr = *lease
            .addresses
            .first()
            .unwrap_or_else(|| panic!("no address: {lease:?}"));
        assert_eq!(
            u128::from(addr) >> 64,
            0x2001_0db8_0001_0000,
            "round {round}: {addr} is not in the interface's 2001:db8:1::/64"
        );
        // Prefixes: /56s from a ULA /48 (fd00::/8, RFC 4193).
        let (prefix, len) = *lease
            .prefixes
            .first()
            .unwrap_or_else(|| panic!("no prefix: {lease:?}"));
        assert_eq!(len, 56, "round {round}: delegated length");
        assert_eq!(
            prefix.octets()[0],
            0xfd,
            "round {round}: {prefix}/56 is not a ULA"
        );
        ula_48s.push(u128::from(prefix) >> 80);
        server_ids.push(
            lease
                .server_ids
                .first()
                .cloned()
                .expect("server-id in the lease"),
        );
    }
    // RFC 8415 §11: the server DUID is stable; it was generated once in the data dir.
    assert_eq!(
        server_ids[0], server_ids[1],
        "server DUID changed across a restart"
    );
}
