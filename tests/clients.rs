//! Real DHCPv6 clients from Debian against `tandem serve` over a veth pair:
//! ISC dhclient (IA_NA, IA_PD, both) and dhcpcd (IA_NA + IA_PD). Each test checks that the
//! lease the client recorded lies in the configured pool and has the configured lifetimes,
//! and that the address was configured on the client's interface.
//!
//! Run as root: `cargo test --test clients` (see docs/TESTING.md).

mod common;

use std::net::Ipv6Addr;
use std::path::Path;
use std::time::Duration;

use common::config::{parse_prefix, ServerConfig, DIRECT_PD_POOL, DIRECT_POOL};
use common::netns::{NetnsPair, CLIENT_IF};
use common::proc::{self, Background};
use common::server::Server;
use common::{require, Scratch};

/// What a dhclient lease file says it was given.
#[derive(Debug, Default)]
struct DhclientLease {
    addresses: Vec<Ipv6Addr>,
    prefixes: Vec<(Ipv6Addr, u8)>,
    preferred: Vec<u32>,
    valid: Vec<u32>,
}

/// Reads the `iaaddr`/`iaprefix` stanzas of a dhclient -6 lease file, e.g.
/// `iaaddr 2001:db8:1::1000 { starts ..; preferred-life 3000; max-life 4000; }`.
fn read_dhclient_leases(path: &Path) -> DhclientLease {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lease = DhclientLease::default();
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
            _ => {}
        }
    }
    lease
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

    let script = scratch.script("dhclient-script");
    let lease_file = scratch.join("dhclient6.leases");
    let pid_file = scratch.join("dhclient6.pid");
    let dhclient = require::program("dhclient");
    let common_args = [
        "-sf",
        script.to_str().unwrap(),
        "-lf",
        lease_file.to_str().unwrap(),
        "-pf",
        pid_file.to_str().unwrap(),
    ];
    // unshare -m: dhclient's own files stay private; -sf keeps it off /etc/resolv.conf.
    let mut argv = vec!["unshare", "-m", dhclient.as_str(), "-6"];
    argv.extend_from_slice(mode);
    argv.extend_from_slice(&["-1", "-v"]);
    argv.extend_from_slice(&common_args);
    argv.push(CLIENT_IF);
    // -1: one attempt; the foreground process returns once bound (the daemon it leaves
    // behind keeps the lease and is stopped by the release below).
    let run = proc::run(
        Some(&pair.client),
        &argv,
        Duration::from_secs(40),
        &scratch.join("dhclient.log"),
    );
    let lease = read_dhclient_leases(&lease_file);
    let configured = pair.client_dynamic_addrs();

    // Release (RFC 8415 §18.2.7) and stop the daemon before asserting, so a failed
    // assertion leaves nothing behind but the namespaces Drop removes anyway.
    let mut release = vec!["unshare", "-m", dhclient.as_str(), "-6"];
    release.extend_from_slice(mode);
    release.push("-r");
    release.extend_from_slice(&common_args);
    release.push(CLIENT_IF);
    let released = proc::run(
        Some(&pair.client),
        &release,
        Duration::from_secs(20),
        &scratch.join("dhclient-release.log"),
    );
    if let Some(pid) = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|p| p.trim().parse().ok())
    {
        proc::signal(pid, "TERM");
    }
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
    // Lifetimes as configured (RFC 8415 §21.6/§21.22; no client hints were sent).
    assert!(
        lease.preferred.iter().all(|p| *p == cfg.preferred_lifetime),
        "{lease:?}"
    );
    assert!(
        lease.valid.iter().all(|v| *v == cfg.valid_lifetime),
        "{lease:?}"
    );
    released.expect_success("dhclient -r (Release)");
    assert!(
        stopped.status.is_some_and(|s| s.success()),
        "tandem did not exit cleanly on SIGTERM ({:?}); log:\n{}",
        stopped.status,
        stopped.log
    );
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

#[test]
fn dhcpcd_ia_na_and_ia_pd() {
    const TEST: &str = "dhcpcd_ia_na_and_ia_pd";
    if !require::ready(TEST, &["dhcpcd", "unshare", "mount"]) {
        return;
    }
    let scratch = Scratch::new(TEST);
    let pair = NetnsPair::new(TEST);
    let cfg = ServerConfig::default();
    let server = Server::start(&pair, &scratch, &cfg);

    let hook = scratch.script("dhcpcd-hook.sh");
    let conf = scratch.join("dhcpcd.conf");
    std::fs::copy(common::scripts_dir().join("dhcpcd.conf"), &conf).unwrap();
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
    // dhcpcd sends Release on SIGTERM; the hook logs RELEASE6 once the server replied.
    assert!(
        dhcpcd_event(&read_events(), "RELEASE6").is_some() || read_events().contains("STOPPED"),
        "dhcpcd did not stop cleanly: {}",
        read_events()
    );
    assert!(
        stopped.status.is_some_and(|s| s.success()),
        "tandem did not exit cleanly on SIGTERM; log:\n{}",
        stopped.log
    );
}
