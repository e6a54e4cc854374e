//! Real DHCPv6 clients from Debian against `tandem serve` over a veth pair:
//! ISC dhclient (IA_NA, IA_PD, both, Renew, stateless Information-request) and dhcpcd
//! (IA_NA + IA_PD, with and without Rapid Commit). Each test checks that the lease the
//! client recorded lies in the configured pool with the configured lifetimes, and that the
//! address was configured on the client's interface.
//!
//! Run as root: `cargo test --test clients` (see docs/TESTING.md).

mod common;

use std::net::Ipv6Addr;
use std::time::Duration;

use common::config::{ServerConfig, DIRECT_PD_POOL, DIRECT_POOL, DNS_SERVER};
use common::dhclient::Dhclient;
use common::netns::{NetnsPair, CLIENT_IF};
use common::proc::{self, Background};
use common::server::{Server, Stopped};
use common::{require, Scratch};

fn assert_clean_exit(stopped: &Stopped) {
    assert!(
        stopped.status.is_some_and(|s| s.success()),
        "tandem did not exit cleanly on SIGTERM ({:?}); log:\n{}",
        stopped.status,
        stopped.log
    );
}

/// Runs `dhclient -6 <mode> -1` until it is bound, checks its lease, then releases.
fn dhclient(test: &str, mode: &[&str], want_address: bool, want_prefix: bool) {
    if !require::ready(test, &["dhclient", "unshare"]) {
        return;
    }
    let scratch = Scratch::new(test);
    let pair = NetnsPair::new(test);
    let cfg = ServerConfig::default();
    let server = Server::start(&pair, &scratch, &cfg);
    let client = Dhclient::new(&pair, &scratch, "dhclient", mode);
    let run = client.bind();
    let lease = client.leases();
    let configured = pair.client_dynamic_addrs();
    // Release and stop before asserting, so a failure leaves nothing running but what the
    // namespaces' Drop removes anyway.
    let released = client.release();
    let stopped = server.stop();

    assert!(
        run.success(),
        "dhclient -6 {mode:?} did not bind ({}):\n{}\n--- server log:\n{}",
        run.describe_status(),
        run.output,
        stopped.log
    );
    if want_address {
        assert!(
            !lease.addresses.is_empty(),
            "no iaaddr in the lease file: {lease:?}"
        );
        for addr in &lease.addresses {
            assert!(
                DIRECT_POOL.contains(*addr),
                "address {addr} outside the pool {DIRECT_POOL:?}"
            );
        }
        assert!(
            lease.addresses.iter().any(|a| configured.contains(a)),
            "dhclient-script did not configure {:?} on {CLIENT_IF} (have {configured:?})",
            lease.addresses
        );
    } else {
        assert!(
            lease.addresses.is_empty(),
            "IA_NA granted though only IA_PD was asked: {lease:?}"
        );
    }
    if want_prefix {
        assert!(
            !lease.prefixes.is_empty(),
            "no iaprefix in the lease file: {lease:?}"
        );
        for (prefix, len) in &lease.prefixes {
            assert!(
                DIRECT_PD_POOL.contains(*prefix, *len),
                "prefix {prefix}/{len} is not a /{} from {DIRECT_PD_POOL:?}",
                DIRECT_PD_POOL.delegated
            );
        }
    } else {
        assert!(
            lease.prefixes.is_empty(),
            "IA_PD granted though not asked: {lease:?}"
        );
    }
    // Lifetimes as configured (RFC 8415 §21.6/§21.22; the client sent no hints).
    assert!(
        lease.preferred.iter().all(|p| *p == cfg.preferred_lifetime),
        "{lease:?}"
    );
    assert!(
        lease.valid.iter().all(|v| *v == cfg.valid_lifetime),
        "{lease:?}"
    );
    released.expect_success("dhclient -r (Release)");
    assert_clean_exit(&stopped);
}

#[test]
fn dhclient_ia_na() {
    dhclient("dhclient_ia_na", &[], true, false);
}

#[test]
fn dhclient_ia_pd() {
    dhclient("dhclient_ia_pd", &["-P"], false, true);
}

#[test]
fn dhclient_ia_na_and_ia_pd() {
    dhclient("dhclient_ia_na_and_ia_pd", &["-N", "-P"], true, true);
}

/// With T1 = 2 s the bound dhclient renews within seconds: the Renew (RFC 8415 §18.3.4)
/// must extend the same address and prefix, not hand out new ones.
#[test]
fn dhclient_renews_the_same_lease() {
    const TEST: &str = "dhclient_renews_the_same_lease";
    if !require::ready(TEST, &["dhclient", "unshare"]) {
        return;
    }
    let scratch = Scratch::new(TEST);
    let pair = NetnsPair::new(TEST);
    let cfg = ServerConfig {
        t1: Some(2),
        t2: Some(3),
        ..ServerConfig::default()
    };
    let server = Server::start(&pair, &scratch, &cfg);
    let client = Dhclient::new(&pair, &scratch, "dhclient", &["-N", "-P"]);
    let run = client.bind();
    let renewed = proc::wait_until(Duration::from_secs(20), || {
        client.events().contains("reason=RENEW6")
    });
    let events = client.events();
    let lease = client.leases();
    client.release();
    let stopped = server.stop();
    run.expect_success("dhclient -6 -N -P");
    assert!(
        renewed,
        "no RENEW6 within 20 s of T1 = 2 s; events:\n{events}\n--- server log:\n{}",
        stopped.log
    );
    // Every lease6 stanza (bind, renewals, release) names the same address and prefix.
    assert!(
        !lease.addresses.is_empty() && !lease.prefixes.is_empty(),
        "{lease:?}"
    );
    assert!(
        lease.addresses.iter().all(|a| *a == lease.addresses[0]),
        "address changed on Renew: {lease:?}"
    );
    assert!(
        lease.prefixes.iter().all(|p| *p == lease.prefixes[0]),
        "prefix changed on Renew: {lease:?}"
    );
    assert!(
        stopped.log.contains("answered_renew="),
        "the server's counters show no answered Renew:\n{}",
        stopped.log
    );
    assert_clean_exit(&stopped);
}

/// `dhclient -6 -S`: stateless configuration through Information-request (RFC 8415
/// §18.3.6); the Reply carries the configured DNS servers and domain search list.
#[test]
fn dhclient_stateless_information_request() {
    const TEST: &str = "dhclient_stateless_information_request";
    if !require::ready(TEST, &["dhclient", "unshare"]) {
        return;
    }
    let scratch = Scratch::new(TEST);
    let pair = NetnsPair::new(TEST);
    let server = Server::start(&pair, &scratch, &ServerConfig::default());
    let client = Dhclient::new(&pair, &scratch, "dhclient", &["-S"]);
    let run = client.bind();
    client.stop();
    let stopped = server.stop();
    run.expect_success("dhclient -6 -S");
    let events = client.events();
    assert!(
        events.contains(&format!("new_dhcp6_name_servers={DNS_SERVER}")),
        "no DNS servers in the Information-request Reply; events:\n{events}\n--- server log:\n{}",
        stopped.log
    );
    assert!(
        events.contains("new_dhcp6_domain_search=access.example.net"),
        "no domain search list; events:\n{events}"
    );
    assert!(
        pair.client_dynamic_addrs().is_empty(),
        "stateless mode configured an address"
    );
    assert_clean_exit(&stopped);
}

/// Key=value pairs of the last `reason=<reason>` block in the dhcpcd hook's event log.
fn dhcpcd_event(log: &str, reason: &str) -> Option<Vec<(String, String)>> {
    let marker = format!("reason={reason} ");
    let block = log
        .split("=== ")
        .filter(|b| b.starts_with(&marker))
        .last()?;
    Some(
        block
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn dhcpcd(test: &str, rapid_commit: bool) {
    if !require::ready(test, &["dhcpcd", "unshare", "mount"]) {
        return;
    }
    let scratch = Scratch::new(test);
    let pair = NetnsPair::new(test);
    let cfg = ServerConfig {
        rapid_commit,
        ..ServerConfig::default()
    };
    let server = Server::start(&pair, &scratch, &cfg);

    let hook = scratch.script("dhcpcd-hook.sh");
    let conf = scratch.join("dhcpcd.conf");
    let mut conf_text = std::fs::read_to_string(common::scripts_dir().join("dhcpcd.conf")).unwrap();
    if rapid_commit {
        conf_text.push_str("option rapid_commit\n");
    }
    std::fs::write(&conf, conf_text).unwrap();
    let db = scratch.join("dhcpcd-db");
    std::fs::create_dir_all(&db).unwrap();
    let events = scratch.join("dhcpcd-events.log");
    // A private mount namespace: dhcpcd's DUID/lease files go to the scratch dir and its
    // /run is a private tmpfs, so nothing on the host is touched (resolv.conf hooks are off
    // in dhcpcd.conf and the hook script only logs).
    let shell = format!(
        "mount --bind {db} /var/lib/dhcpcd && mount -t tmpfs -o mode=0755 tmpfs /run && \
         exec {dhcpcd} -B -6 -f {conf} -c {hook} -j {log} {CLIENT_IF}",
        db = db.display(),
        dhcpcd = require::program("dhcpcd"),
        conf = conf.display(),
        hook = hook.display(),
        log = scratch.join("dhcpcd.log").display(),
    );
    let mut client = Background::spawn(
        Some(&pair.client),
        &["unshare", "-m", "sh", "-c", &shell],
        &scratch.join("dhcpcd.out"),
    );
    let read_events = || std::fs::read_to_string(&events).unwrap_or_default();
    let bound = proc::wait_until(Duration::from_secs(40), || {
        dhcpcd_event(&read_events(), "BOUND6").is_some()
    });
    let configured = pair.client_dynamic_addrs();
    client.stop(Duration::from_secs(10)); // SIGTERM: dhcpcd sends Release ("release" in conf)
    let stopped = server.stop();
    assert!(
        bound,
        "dhcpcd never reached BOUND6; dhcpcd output:\n{}\n--- server log:\n{}",
        client.output(),
        stopped.log
    );

    let env = dhcpcd_event(&read_events(), "BOUND6").unwrap();
    let get = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let addr: Ipv6Addr = get("new_dhcp6_ia_na1_ia_addr1")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no IA_NA address in BOUND6: {env:?}"));
    assert!(
        DIRECT_POOL.contains(addr),
        "address {addr} outside {DIRECT_POOL:?}"
    );
    assert!(
        configured.contains(&addr),
        "dhcpcd did not configure {addr} (have {configured:?})"
    );
    let prefix: Ipv6Addr = get("new_dhcp6_ia_pd1_prefix1")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no IA_PD prefix in BOUND6: {env:?}"));
    let len: u8 = get("new_dhcp6_ia_pd1_prefix1_length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        DIRECT_PD_POOL.contains(prefix, len),
        "prefix {prefix}/{len} not from {DIRECT_PD_POOL:?}"
    );
    assert_eq!(
        get("new_dhcp6_ia_na1_ia_addr1_pltime"),
        Some(&*cfg.preferred_lifetime.to_string())
    );
    assert_eq!(
        get("new_dhcp6_ia_na1_ia_addr1_vltime"),
        Some(&*cfg.valid_lifetime.to_string())
    );
    // dhcpcd sends Release on SIGTERM and logs RELEASE6.
    assert!(
        dhcpcd_event(&read_events(), "RELEASE6").is_some(),
        "dhcpcd did not release: {}",
        read_events()
    );
    if rapid_commit {
        // RFC 8415 §18.3.1: Solicit with Rapid Commit answered by a Reply at once; no
        // Advertise/Request round.
        assert!(
            !stopped.log.contains("answered_request="),
            "a Request was needed though Rapid Commit is on:\n{}",
            stopped.log
        );
    } else {
        assert!(
            stopped.log.contains("answered_request="),
            "no Request answered:\n{}",
            stopped.log
        );
    }
    assert!(
        stopped.log.contains("answered_release="),
        "no Release answered:\n{}",
        stopped.log
    );
    assert_clean_exit(&stopped);
}

#[test]
fn dhcpcd_ia_na_and_ia_pd() {
    dhcpcd("dhcpcd_ia_na_and_ia_pd", false);
}

#[test]
fn dhcpcd_rapid_commit() {
    dhcpcd("dhcpcd_rapid_commit", true);
}
