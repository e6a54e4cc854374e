//! Wireshark's verdict on everything the server sends: the server's replies to dhclient,
//! dhcpcd-free relay chains (scapy), perfdhcp (direct, relayed, IA_NA + IA_PD) and the bad
//! input script are captured on the server's interface, and tshark must find none of the
//! server's frames malformed or carrying an expert-info warning or error.
//!
//! A positive control keeps the check honest: the truncated packets the bad-input script
//! sends ARE flagged by the same filter, so a tshark that flags nothing fails the test.

mod common;

use std::time::Duration;

use common::capture::{self, Capture};
use common::config::ServerConfig;
use common::netns::{NetnsPair, CLIENT_GUA, CLIENT_IF, CLIENT_LL, SERVER_GUA, SERVER_IF};
use common::proc;
use common::server::Server;
use common::{heavy_lock, require, scripts, Scratch};

const SUSPICIOUS: &str = "(_ws.malformed || _ws.expert.severity >= warning)";
const FROM_SERVER: &str =
    "udp.srcport == 547 && (ipv6.src == fe80::1 || ipv6.src == 2001:db8:1::1)";
const FROM_CLIENT_SIDE: &str = "(ipv6.src == fe80::2 || ipv6.src == 2001:db8:1::2)";

#[test]
fn wireshark_finds_no_malformed_reply() {
    const TEST: &str = "wireshark_finds_no_malformed_reply";
    if !require::ready(
        TEST,
        &[
            "dumpcap", "tshark", "perfdhcp", "dhclient", "scapy", "unshare",
        ],
    ) {
        return;
    }
    let _heavy = heavy_lock();
    let scratch = Scratch::new(TEST);
    let pair = NetnsPair::new(TEST);
    let server = Server::start(&pair, &scratch, &ServerConfig::default());
    let capture = Capture::start(
        &pair.server,
        SERVER_IF,
        "udp port 546 or udp port 547",
        &scratch.join("all.pcapng"),
        &scratch.join("dumpcap.log"),
    );

    // dhclient: IA_NA + IA_PD, bind then release.
    let script = scratch.script("dhclient-script");
    let dhclient = require::program("dhclient");
    let files = |mode: &str| {
        vec![
            "unshare".to_string(),
            "-m".into(),
            dhclient.clone(),
            "-6".into(),
            "-N".into(),
            "-P".into(),
            mode.into(),
            "-sf".into(),
            script.to_str().unwrap().into(),
            "-lf".into(),
            scratch.join("dhclient6.leases").to_str().unwrap().into(),
            "-pf".into(),
            scratch.join("dhclient6.pid").to_str().unwrap().into(),
            CLIENT_IF.into(),
        ]
    };
    for (mode, log) in [("-1", "dhclient.log"), ("-r", "dhclient-release.log")] {
        let argv = files(mode);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        proc::run(
            Some(&pair.client),
            &argv,
            Duration::from_secs(40),
            &scratch.join(log),
        )
        .expect_success(&format!("dhclient -6 -N -P {mode}"));
    }
    // Two relay layers with Interface-ID and Remote-ID.
    scripts::run_json(
        &pair.client,
        &scratch,
        "relay_chain.py",
        &[
            "--server",
            &SERVER_GUA.to_string(),
            "--relay",
            &CLIENT_GUA.to_string(),
        ],
        Duration::from_secs(30),
    );
    // perfdhcp: a few hundred exchanges direct with IA_NA + IA_PD, and relayed.
    let perfdhcp = require::program("perfdhcp");
    let server_gua = SERVER_GUA.to_string();
    for (tag, extra, target) in [
        ("direct", vec!["-e", "address-and-prefix"], "all"),
        ("relayed", vec!["-A", "1"], server_gua.as_str()),
    ] {
        let mut argv = vec![
            perfdhcp.as_str(),
            "-6",
            "-l",
            CLIENT_IF,
            "-r",
            "200",
            "-R",
            "300",
            "-n",
            "300",
            "-W",
            "1000000",
        ];
        argv.extend(extra);
        argv.push(target);
        proc::run(
            Some(&pair.client),
            &argv,
            Duration::from_secs(60),
            &scratch.join(&format!("perfdhcp-{tag}.log")),
        )
        .expect_success(&format!("perfdhcp {tag}"));
    }
    // Bad input last: the server's answers to it (UseMulticast, deep relays) count too.
    scripts::run_json(
        &pair.client,
        &scratch,
        "bad_input.py",
        &[
            "--iface",
            CLIENT_IF,
            "--server",
            &server_gua,
            "--client-ll",
            &CLIENT_LL.to_string(),
            "--client-gua",
            &CLIENT_GUA.to_string(),
        ],
        Duration::from_secs(60),
    );
    let pcap = capture.stop();
    let stopped = server.stop();
    assert!(
        stopped.status.is_some_and(|s| s.success()),
        "tandem exit {:?}",
        stopped.status
    );

    let log = scratch.join("tshark.log");
    let from_server = capture::count(&pcap, FROM_SERVER, &log);
    // Two exchanges of 2 replies for dhclient + release, 2 for the relay chain, 2 x 300 x 2
    // for perfdhcp: at least 1,200 frames from the server.
    assert!(
        from_server >= 1_200,
        "only {from_server} frames from the server captured"
    );
    let control = capture::count(&pcap, &format!("{SUSPICIOUS} && {FROM_CLIENT_SIDE}"), &log);
    assert!(
        control > 0,
        "positive control: tshark flagged none of the truncated packets sent"
    );
    let bad = capture::fields(
        &pcap,
        &format!("{SUSPICIOUS} && {FROM_SERVER}"),
        &["frame.number", "dhcpv6.msgtype", "_ws.expert.message"],
        &log,
    );
    assert!(
        bad.is_empty(),
        "Wireshark flags {} of the server's {from_server} frames (capture kept in {}):\n{:#?}",
        bad.len(),
        pcap.display(),
        &bad[..bad.len().min(20)]
    );
}
