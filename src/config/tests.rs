use super::*;

const GOOD: &str = r#"
[server]
preference = 10
rapid_commit = false
duid = "00:01:00:01:2a:2b:2c:2d:00:11:22:33:44:55"

[options]
dns_servers = ["2001:db8::53", "2001:db8::54"]
domain_list = ["isp.example", "example.net."]
info_refresh_time = 3600
sol_max_rt = 7200

[[subnet]]
prefix = "2001:db8:1::/64"
interfaces = ["eth1"]
relay_addresses = ["2001:db8:ffff::1"]
interface_ids = ["ge-0/0/1.100", "0x0a0b"]
preferred_lifetime = 1000
valid_lifetime = 2000
rapid_commit = true
pool = [{ start = "2001:db8:1::1000", end = "2001:db8:1::ffff" }]
pd_pool = [{ prefix = "2001:db8:100::/40", delegated_length = 56 }]

[[subnet]]
prefix = "2001:db8:2::/64"
pool = [{ start = "2001:db8:2::100", end = "2001:db8:2::1ff" },
        { start = "2001:db8:2::1000", end = "2001:db8:2::1fff" }]

[[reservation]]
remote_id = "0x0102030405"
enterprise = 3561
addresses = ["2001:db8:1::1001"]
prefixes = ["2001:db8:100:100::/56"]

[[reservation]]
duid = "0003000100112233aabb"
addresses = ["2001:db8:2::150"]
"#;

fn err(text: &str) -> ConfigError {
    Config::from_str(text, "t.toml").expect_err("must be rejected")
}

#[test]
fn parses_a_full_config() {
    let c = Config::from_str(GOOD, "t.toml").unwrap();
    assert_eq!(c.server.preference, 10);
    assert_eq!(c.server.duid.unwrap().as_bytes().len(), 14);
    assert_eq!(c.options.dns_servers.len(), 2);
    assert_eq!(
        c.options.domain_list,
        b"\x03isp\x07example\x00\x07example\x03net\x00".to_vec()
    );
    assert_eq!(c.options.info_refresh_time, 3600);
    assert_eq!(c.subnets.len(), 2);
    let s = &c.subnets[0];
    assert!(s.rapid_commit);
    assert!(!c.subnets[1].rapid_commit);
    assert_eq!(
        s.interface_ids,
        vec![b"ge-0/0/1.100".to_vec(), vec![0x0a, 0x0b]]
    );
    assert_eq!(s.pd_pools[0].count(), 65536);
    assert_eq!(c.reservations.len(), 2);
    assert_eq!(
        c.reservations[0].key,
        ReservationKey::RemoteId {
            enterprise: 3561,
            id: vec![1, 2, 3, 4, 5]
        }
    );
    assert_eq!(c.subnets[1].valid_lifetime, DEFAULT_VALID_LIFETIME);
}

#[test]
fn unknown_key_names_line_and_field() {
    let e = err("[server]\npreference = 1\nprefrence = 2\n");
    assert_eq!(e.line, 3, "{e}");
    assert_eq!(e.field, "prefrence");
    assert!(e.to_string().starts_with("t.toml:3:"), "{e}");
}

#[test]
fn syntax_error_has_position() {
    let e = err("[server\n");
    assert_eq!(e.line, 1, "{e}");
}

#[test]
fn pool_outside_subnet() {
    let e = err(
        "[[subnet]]\nprefix = \"2001:db8:1::/64\"\n[[subnet.pool]]\nstart = \"2001:db8:2::1\"\nend = \"2001:db8:2::9\"\n",
    );
    assert_eq!((e.line, e.field.as_str()), (4, "subnet[0].pool[0]"), "{e}");
    assert!(e.message.contains("not inside"), "{e}");
}

#[test]
fn overlapping_pools_and_subnets() {
    let e = err(
        "[[subnet]]\nprefix = \"2001:db8:1::/64\"\npool = [{start = \"2001:db8:1::1\", end = \"2001:db8:1::9\"}, {start = \"2001:db8:1::5\", end = \"2001:db8:1::19\"}]\n",
    );
    assert!(e.message.contains("overlaps"), "{e}");
    assert_eq!(e.line, 3);
    let e =
        err("[[subnet]]\nprefix = \"2001:db8:1::/64\"\n[[subnet]]\nprefix = \"2001:db8::/32\"\n");
    assert_eq!((e.line, e.field.as_str()), (4, "subnet[1].prefix"), "{e}");
    let e = err(
        "[[subnet]]\nprefix = \"2001:db8:1::/64\"\npd_pool = [{prefix = \"2001:db8:100::/40\", delegated_length = 56}]\n[[subnet]]\nprefix = \"2001:db8:2::/64\"\npd_pool = [{prefix = \"2001:db8:100:8000::/48\", delegated_length = 60}]\n",
    );
    assert_eq!(e.line, 6, "{e}");
}

#[test]
fn lifetimes_and_timers() {
    let e = err(
        "[[subnet]]\nprefix = \"2001:db8:1::/64\"\npreferred_lifetime = 100\nvalid_lifetime = 50\n",
    );
    assert_eq!(
        (e.line, e.field.as_str()),
        (3, "subnet[0].preferred_lifetime"),
        "{e}"
    );
    let e = err("[[subnet]]\nprefix = \"2001:db8:1::/64\"\nt1 = 900\nt2 = 800\n");
    assert_eq!((e.line, e.field.as_str()), (3, "subnet[0].t1"), "{e}");
    let e = err("[options]\ninfo_refresh_time = 10\n");
    assert_eq!(e.line, 2);
}

#[test]
fn bad_duid_and_prefix() {
    let e = err("[server]\nduid = \"00:01:zz\"\n");
    assert_eq!((e.line, e.field.as_str()), (2, "server.duid"), "{e}");
    let e = err("[server]\nduid = \"0001\"\n");
    assert!(e.message.contains("at least one more"), "{e}");
    let e = err("[[subnet]]\nprefix = \"2001:db8:1::1/64\"\n");
    assert!(e.message.contains("host bits"), "{e}");
    let e = err("[[subnet]]\nprefix = \"2001:db8:1::/64\"\npd_pool = [{prefix = \"2001:db8::/32\", delegated_length = 64}]\n");
    assert!(e.message.contains("2^32"), "{e}");
}

#[test]
fn reservation_errors() {
    let base = "[[subnet]]\nprefix = \"2001:db8:1::/64\"\npool = [{start = \"2001:db8:1::100\", end = \"2001:db8:1::1ff\"}]\n";
    let e = err(&format!(
        "{base}[[reservation]]\nduid = \"000300010011\"\naddresses = [\"2001:db8:1::5\"]\n"
    ));
    assert_eq!(
        (e.line, e.field.as_str()),
        (6, "reservation[0].addresses[0]"),
        "{e}"
    );
    assert!(e.message.contains("outside every pool"));
    let e = err(&format!(
        "{base}[[reservation]]\nduid = \"000300010011\"\naddresses = [\"2001:db8:1::105\"]\n[[reservation]]\nduid = \"00:03:00:01:00:11\"\naddresses = [\"2001:db8:1::106\"]\n"
    ));
    assert!(e.message.contains("duplicates"), "{e}");
    assert_eq!(e.line, 8);
    let e = err(&format!(
        "{base}[[reservation]]\nsubscriber_id = \"a\"\naddresses = [\"2001:db8:1::105\"]\n[[reservation]]\nsubscriber_id = \"b\"\naddresses = [\"2001:db8:1::105\"]\n"
    ));
    assert!(e.message.contains("already reserved"), "{e}");
    let e = err(&format!(
        "{base}[[reservation]]\nremote_id = \"abc\"\naddresses = [\"2001:db8:1::105\"]\n"
    ));
    assert_eq!(e.field, "reservation[0].enterprise");
    let e = err(&format!(
        "{base}[[reservation]]\naddresses = [\"2001:db8:1::105\"]\n"
    ));
    assert!(e.message.contains("needs one identifier"), "{e}");
    let e = err(&format!(
        "{base}[[reservation]]\nduid = \"000300010011\"\nsubscriber_id = \"x\"\naddresses = [\"2001:db8:1::105\"]\n"
    ));
    assert!(e.message.contains("more than one"), "{e}");
}

#[test]
fn embedded_default_serves_global_and_stable_ula() {
    let ifs = vec![
        LocalInterface {
            name: "lo".into(),
            ifindex: 1,
            addrs: vec![Ipv6Addr::LOCALHOST],
            up: true,
            loopback: true,
        },
        LocalInterface {
            name: "eth0".into(),
            ifindex: 2,
            addrs: vec!["fe80::1".parse().unwrap(), "2001:db8:5::1".parse().unwrap()],
            up: true,
            loopback: false,
        },
        LocalInterface {
            name: "eth1".into(),
            ifindex: 3,
            addrs: vec!["fe80::2".parse().unwrap()],
            up: true,
            loopback: false,
        },
        LocalInterface {
            name: "eth2".into(),
            ifindex: 4,
            addrs: vec![],
            up: false,
            loopback: false,
        },
    ];
    let c = Config::embedded_default(&ifs, b"seed");
    assert_eq!(c.subnets.len(), 2);
    assert_eq!(c.subnets[0].prefix, "2001:db8:5::/64".parse().unwrap());
    assert_eq!(c.subnets[0].ifindexes, vec![2]);
    assert!(c.subnets[0]
        .exclude
        .contains(&"2001:db8:5::1".parse().unwrap()));
    let ula = c.subnets[1].prefix;
    assert_eq!(ula.len, 64);
    assert_eq!(ula.addr.segments()[0] >> 8, 0xfd);
    assert_eq!(c.subnets[1].pd_pools[0].delegated_length, 56);
    assert_eq!(c.subnets[1].pd_pools[0].prefix.len, 48);
    // Stable across calls, different for another seed.
    assert_eq!(Config::embedded_default(&ifs, b"seed"), c);
    assert_ne!(
        Config::embedded_default(&ifs, b"other").subnets[1].prefix,
        ula
    );
    // Pools are inside their subnets.
    for s in &c.subnets {
        assert!(s
            .pools
            .iter()
            .all(|p| s.prefix.contains(p.start) && s.prefix.contains(p.end)));
    }
}

#[test]
fn bind_interfaces_by_name_or_address() {
    let mut c = Config::from_str(GOOD, "t.toml").unwrap();
    let ifs = vec![
        LocalInterface {
            name: "eth1".into(),
            ifindex: 7,
            addrs: vec![],
            up: true,
            loopback: false,
        },
        LocalInterface {
            name: "eth9".into(),
            ifindex: 9,
            addrs: vec!["2001:db8:2::1".parse().unwrap()],
            up: true,
            loopback: false,
        },
    ];
    c.bind_interfaces(&ifs);
    assert_eq!(c.subnets[0].ifindexes, vec![7]);
    assert_eq!(c.subnets[1].ifindexes, vec![9]);
    assert!(c.unknown_interfaces(&ifs).is_empty());
}

#[test]
fn pd_pool_index_math() {
    let p = PdPool {
        prefix: "2001:db8:100::/40".parse().unwrap(),
        delegated_length: 56,
    };
    assert_eq!(p.nth(0), "2001:db8:100::".parse::<Ipv6Addr>().unwrap());
    assert_eq!(p.nth(1), "2001:db8:100:100::".parse::<Ipv6Addr>().unwrap());
    assert_eq!(p.index_of(p.nth(12345), 56), Some(12345));
    assert_eq!(p.index_of(p.nth(5), 48), None);
    assert_eq!(p.index_of("2001:db8:100:101::".parse().unwrap(), 56), None);
}
