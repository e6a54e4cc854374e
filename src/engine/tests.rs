//! Engine behaviour per message type, built and checked with the wire codec.

use super::*;
use crate::lease::memory::MemoryTable;
use crate::lease::CommitId;
use crate::wire::{parse_relayed, IaAddr, IaNa, IaPd, IaPrefix, Message, StatusView};
use proptest::prelude::*;

const CONFIG: &str = r#"
[server]
preference = 7

[options]
dns_servers = ["2001:db8::53"]
domain_list = ["isp.example"]
info_refresh_time = 7200
sol_max_rt = 600

[[subnet]]
prefix = "2001:db8:1::/64"
interfaces = ["eth1"]
preferred_lifetime = 1000
valid_lifetime = 2000
pool = [{ start = "2001:db8:1::1000", end = "2001:db8:1::1fff" }]
pd_pool = [{ prefix = "2001:db8:100::/48", delegated_length = 56 },
           { prefix = "2001:db8:200::/48", delegated_length = 60 }]

[[subnet]]
prefix = "2001:db8:2::/64"
interface_ids = ["olt-7/1"]
rapid_commit = true
temporary_addresses = true
preferred_lifetime = 3000
valid_lifetime = 4000
t1 = 1000
t2 = 2000
pool = [{ start = "2001:db8:2::100", end = "2001:db8:2::101" }]
pd_pool = [{ prefix = "2001:db8:300::/52", delegated_length = 56 }]

[[reservation]]
remote_id = "0xaabbccdd"
enterprise = 3561
addresses = ["2001:db8:1::1abc"]
prefixes = ["2001:db8:100:4200::/56"]
"#;

const IFINDEX: u32 = 2;
const XID: u32 = 0x00ab_cdef;
const T0: u64 = 1_800_000_000;

fn server_duid() -> Duid {
    Duid::new(&[0, 1, 0, 1, 1, 2, 3, 4, 0xde, 0xad, 0xbe, 0xef, 0, 1]).unwrap()
}

fn engine_with(text: &str, shard: ShardId) -> Engine {
    let mut cfg = Config::from_str(text, "test.toml").unwrap();
    cfg.bind_interfaces(&[crate::config::LocalInterface {
        name: "eth1".into(),
        ifindex: IFINDEX,
        addrs: vec![],
        up: true,
        loopback: false,
    }]);
    Engine::new(Arc::new(cfg), server_duid(), shard)
}

fn engine() -> Engine {
    engine_with(CONFIG, ShardId { index: 0, count: 1 })
}

fn duid(n: u8) -> Vec<u8> {
    vec![0, 3, 0, 1, 0x02, 0, 0, 0, 0, n]
}

fn at(secs: u64) -> Timestamp {
    Timestamp::from_secs(T0 + secs)
}

fn multicast() -> Received {
    Received {
        src: SocketAddrV6::new("fe80::1234".parse().unwrap(), 546, 0, IFINDEX),
        dst: wire::ALL_DHCP_RELAY_AGENTS_AND_SERVERS,
        ifindex: IFINDEX,
    }
}

fn from_relay(port: u16) -> Received {
    Received {
        src: SocketAddrV6::new("2001:db8:ffff::1".parse().unwrap(), port, 0, 0),
        dst: "2001:db8::547".parse().unwrap(),
        ifindex: 9,
    }
}

/// A client message: CLIENTID, optional SERVERID, then whatever `body` writes.
fn msg(
    t: MessageType,
    client: &[u8],
    server: Option<&[u8]>,
    body: impl FnOnce(&mut Writer<'_>),
) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = Writer::message(&mut buf, t, XID);
    w.client_id(client);
    if let Some(s) = server {
        w.server_id(s);
    }
    body(&mut w);
    w.finish().unwrap();
    buf
}

fn ia_na(w: &mut Writer<'_>, iaid: u32, addrs: &[&str]) {
    w.ia_na(iaid, 0, 0, |w| {
        for a in addrs {
            w.ia_addr(a.parse().unwrap(), 0, 0, |_| {});
        }
    });
}

fn ia_pd(w: &mut Writer<'_>, iaid: u32, prefixes: &[(&str, u8)]) {
    w.ia_pd(iaid, 0, 0, |w| {
        for (p, l) in prefixes {
            w.ia_prefix(0, 0, *l, p.parse().unwrap(), |_| {});
        }
    });
}

/// Wraps `inner` in one Relay-forw.
fn relay(inner: &[u8], hop: u8, link: &str, opts: impl FnOnce(&mut Writer<'_>)) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = Writer::relay(
        &mut buf,
        MessageType::RelayForw,
        hop,
        link.parse().unwrap(),
        "fe80::cafe".parse().unwrap(),
    );
    opts(&mut w);
    w.relay_msg(|w| {
        w.bytes(inner);
    });
    w.finish().unwrap();
    buf
}

type IaNaView = (u32, u32, Vec<(Ipv6Addr, u32, u32)>, Option<StatusCode>);
type IaPdView = (u32, u32, Vec<(Ipv6Addr, u8, u32)>, Option<StatusCode>);

struct Run {
    outcome: Outcome,
    bytes: Vec<u8>,
}

impl Run {
    /// Whether the driver must hold this reply until its leases are on stable storage.
    fn commits(&self) -> bool {
        matches!(self.outcome, Outcome::Reply { commits: true, .. })
    }
}

fn run(
    e: &mut Engine,
    t: &mut dyn LeaseTable,
    rx: &Received,
    payload: &[u8],
    now: Timestamp,
) -> Run {
    let mut out = Vec::new();
    let outcome = e.handle(rx, payload, now, t, &mut out);
    if let Outcome::Drop(_) = outcome {
        assert!(out.is_empty());
    }
    Run {
        outcome,
        bytes: out,
    }
}

impl Run {
    fn dropped(&self) -> Option<DropReason> {
        match self.outcome {
            Outcome::Drop(r) => Some(r),
            Outcome::Reply { .. } => None,
        }
    }

    /// The server message inside any Relay-repl layers.
    fn message(&self) -> Message<&[u8]> {
        assert!(self.dropped().is_none(), "dropped: {:?}", self.outcome);
        parse_relayed(&self.bytes).expect("reply parses").message()
    }

    fn option(&self, code: u16) -> Option<&[u8]> {
        self.message().into_options().get(code)
    }

    fn status(&self) -> Option<StatusCode> {
        self.option(wire::OPTION_STATUS_CODE)
            .map(|d| StatusView::new_checked(d).unwrap().status())
    }

    /// (T1, T2, addresses with lifetimes, status) of the IA_NA with `iaid`.
    fn ia_na(&self, iaid: u32) -> IaNaView {
        let body = self
            .message()
            .into_options()
            .get_all(wire::OPTION_IA_NA)
            .find(|d| IaNa::new_checked(d).unwrap().iaid() == iaid)
            .expect("IA_NA present");
        let ia = IaNa::new_checked(body).unwrap();
        let addrs = ia
            .addresses()
            .map(|a| {
                let a: IaAddr<'_> = a.unwrap();
                (a.address(), a.preferred_lifetime(), a.valid_lifetime())
            })
            .collect();
        let st = ia
            .options()
            .get(wire::OPTION_STATUS_CODE)
            .map(|d| StatusView::new_checked(d).unwrap().status());
        (ia.t1(), ia.t2(), addrs, st)
    }

    fn ia_pd(&self, iaid: u32) -> IaPdView {
        let body = self
            .message()
            .into_options()
            .get_all(wire::OPTION_IA_PD)
            .find(|d| IaPd::new_checked(d).unwrap().iaid() == iaid)
            .expect("IA_PD present");
        let ia = IaPd::new_checked(body).unwrap();
        let pfx = ia
            .prefixes()
            .map(|p| {
                let p: IaPrefix<'_> = p.unwrap();
                (p.prefix(), p.prefix_len(), p.valid_lifetime())
            })
            .collect();
        let st = ia
            .options()
            .get(wire::OPTION_STATUS_CODE)
            .map(|d| StatusView::new_checked(d).unwrap().status());
        (ia.t1(), ia.t2(), pfx, st)
    }
}

fn sid() -> Vec<u8> {
    server_duid().as_bytes().to_vec()
}

#[test]
fn solicit_gets_advertise_and_stores_nothing() {
    let mut e = engine();
    let mut t = MemoryTable::new();
    let p = msg(MessageType::Solicit, &duid(1), None, |w| {
        ia_na(w, 1, &[]);
        ia_pd(w, 2, &[]);
        w.oro(&[
            wire::OPTION_DNS_SERVERS,
            wire::OPTION_DOMAIN_LIST,
            wire::OPTION_SOL_MAX_RT,
        ]);
    });
    let r = run(&mut e, &mut t, &multicast(), &p, at(0));
    let m = r.message();
    assert_eq!(m.msg_type(), MessageType::Advertise);
    assert_eq!(m.transaction_id(), XID);
    assert_eq!(r.option(wire::OPTION_SERVERID), Some(&sid()[..]));
    assert_eq!(r.option(wire::OPTION_CLIENTID), Some(&duid(1)[..]));
    assert_eq!(r.option(wire::OPTION_PREFERENCE), Some(&[7u8][..]));
    assert!(r.option(wire::OPTION_DNS_SERVERS).is_some());
    assert!(r.option(wire::OPTION_DOMAIN_LIST).is_some());
    assert_eq!(
        r.option(wire::OPTION_SOL_MAX_RT),
        Some(&600u32.to_be_bytes()[..])
    );
    assert!(r.option(wire::OPTION_INFORMATION_REFRESH_TIME).is_none());
    let (t1, t2, addrs, st) = r.ia_na(1);
    assert_eq!((t1, t2, st), (500, 800, None), "0.5/0.8 of preferred 1000");
    assert_eq!(addrs.len(), 1);
    let cfg = e.config().clone();
    assert!(cfg.subnets[0].pools[0].contains(addrs[0].0));
    assert_eq!((addrs[0].1, addrs[0].2), (1000, 2000));
    let (pt1, pt2, pfx, _) = r.ia_pd(2);
    assert_eq!((pt1, pt2), (t1, t2), "one T1/T2 for every IA");
    assert_eq!(pfx.len(), 1);
    assert!(cfg.subnets[0].owns_prefix(pfx[0].0, pfx[0].1));
    assert!(t.is_empty(), "an Advertise stores nothing");
    assert_eq!(
        r.outcome,
        Outcome::Reply {
            dst: multicast().src,
            src: Ipv6Addr::UNSPECIFIED,
            commits: false,
        }
    );
    assert_eq!(e.counters().answered(MessageType::Solicit), 1);
}

#[test]
fn request_commits_renew_extends_rebind_extends() {
    let mut e = engine();
    let mut t = MemoryTable::new();
    let adv = run(
        &mut e,
        &mut t,
        &multicast(),
        &msg(MessageType::Solicit, &duid(1), None, |w| {
            ia_na(w, 1, &[]);
            ia_pd(w, 2, &[]);
        }),
        at(0),
    );
    let offered = adv.ia_na(1).2[0].0;
    let offered_pd = adv.ia_pd(2).2[0];
    let req = msg(MessageType::Request, &duid(1), Some(&sid()), |w| {
        ia_na(w, 1, &[&offered.to_string()]);
        ia_pd(w, 2, &[(&offered_pd.0.to_string(), offered_pd.1)]);
    });
    assert!(
        !adv.commits(),
        "an Advertise grants nothing (RFC 8415 §18.3.9)"
    );
    let r = run(&mut e, &mut t, &multicast(), &req, at(1));
    assert_eq!(r.message().msg_type(), MessageType::Reply);
    assert!(
        r.commits(),
        "a Reply to Request waits for stable storage (§18.3.2)"
    );
    assert_eq!(
        r.ia_na(1).2,
        vec![(offered, 1000, 2000)],
        "Request gets what was advertised"
    );
    assert_eq!(r.ia_pd(2).2[0].0, offered_pd.0);
    assert_eq!(t.len(), 2);
    let lease = t.by_resource(&Resource::address(offered)).unwrap();
    assert_eq!(
        (lease.state, lease.cltt, lease.expires_at),
        (BindingState::Active, T0 + 1, T0 + 2001)
    );

    let renew = msg(MessageType::Renew, &duid(1), Some(&sid()), |w| {
        ia_na(w, 1, &[&offered.to_string()]);
        ia_pd(w, 2, &[(&offered_pd.0.to_string(), offered_pd.1)]);
    });
    let r = run(&mut e, &mut t, &multicast(), &renew, at(600));
    assert_eq!(r.ia_na(1).2, vec![(offered, 1000, 2000)]);
    assert!(r.commits(), "a Renew's Reply reports the extended lease");
    assert_eq!(
        t.by_resource(&Resource::address(offered))
            .unwrap()
            .expires_at,
        T0 + 2600
    );

    let rebind = msg(MessageType::Rebind, &duid(1), None, |w| {
        ia_na(w, 1, &[&offered.to_string()])
    });
    let r = run(&mut e, &mut t, &multicast(), &rebind, at(900));
    assert_eq!(r.ia_na(1).2, vec![(offered, 1000, 2000)]);
    assert!(r.commits());
    assert_eq!(t.len(), 2);
}

#[test]
fn validation_drops() {
    let mut e = engine();
    let mut t = MemoryTable::new();
    let rx = multicast();
    let other = [0u8, 3, 0, 1, 9, 9, 9, 9, 9, 9];
    let cases: Vec<(Vec<u8>, DropReason)> = vec![
        (
            msg(MessageType::Request, &duid(1), Some(&other), |w| {
                ia_na(w, 1, &[])
            }),
            DropReason::WrongServerId,
        ),
        (
            msg(MessageType::Renew, &duid(1), None, |w| ia_na(w, 1, &[])),
            DropReason::MissingServerId,
        ),
        (
            msg(MessageType::Solicit, &duid(1), Some(&sid()), |w| {
                ia_na(w, 1, &[])
            }),
            DropReason::UnexpectedServerId,
        ),
        (
            {
                let mut b = Vec::new();
                let mut w = Writer::message(&mut b, MessageType::Solicit, 1);
                ia_na(&mut w, 1, &[]);
                w.finish().unwrap();
                b
            },
            DropReason::MissingClientId,
        ),
        (
            msg(MessageType::Advertise, &duid(1), Some(&sid()), |_| {}),
            DropReason::UnexpectedMessageType,
        ),
        (
            msg(MessageType::InformationRequest, &duid(1), None, |w| {
                ia_na(w, 1, &[])
            }),
            DropReason::IaInInformationRequest,
        ),
        (
            msg(MessageType::Solicit, &duid(1), None, |w| {
                w.interface_id(b"x");
            }),
            DropReason::MisplacedOption,
        ),
        (
            vec![1, 2, 3],
            DropReason::Malformed(wire::ErrorKind::Truncated),
        ),
        (
            vec![1, 0, 0, 0, 0, 1, 0, 9, 1],
            DropReason::Malformed(wire::ErrorKind::OptionOverrun),
        ),
        (
            msg(MessageType::Confirm, &duid(1), None, |_| {}),
            DropReason::NothingToSay,
        ),
    ];
    for (p, want) in cases {
        let r = run(&mut e, &mut t, &rx, &p, at(0));
        assert_eq!(r.dropped(), Some(want));
        assert!(e.counters().dropped(want) >= 1);
    }
    assert!(t.is_empty());
}

#[test]
fn unicast_rules() {
    let mut e = engine();
    let mut t = MemoryTable::new();
    let mut rx = multicast();
    rx.dst = "2001:db8:1::1".parse().unwrap();
    let sol = msg(MessageType::Solicit, &duid(1), None, |w| ia_na(w, 1, &[]));
    assert_eq!(
        run(&mut e, &mut t, &rx, &sol, at(0)).dropped(),
        Some(DropReason::UnicastNotAllowed)
    );
    let req = msg(MessageType::Request, &duid(1), Some(&sid()), |w| {
        ia_na(w, 1, &[])
    });
    let r = run(&mut e, &mut t, &rx, &req, at(0));
    assert_eq!(r.message().msg_type(), MessageType::Reply);
    assert_eq!(r.status(), Some(StatusCode::UseMulticast));
    // "and no other options" (RFC 8415 §18.4).
    let codes: Vec<u16> = r.message().into_options().map(|o| o.code).collect();
    assert_eq!(
        codes,
        vec![
            wire::OPTION_SERVERID,
            wire::OPTION_CLIENTID,
            wire::OPTION_STATUS_CODE
        ]
    );
    assert_eq!(
        r.outcome,
        Outcome::Reply {
            dst: rx.src,
            src: rx.dst,
            commits: false,
        }
    );
    assert!(t.is_empty());
    assert_eq!(e.counters().use_multicast, 1);
}

#[test]
fn relay_chain_is_mirrored_with_interface_id_and_relay_port() {
    let mut e = engine();
    let mut t = MemoryTable::new();
    let inner = msg(MessageType::Solicit, &duid(3), None, |w| {
        ia_na(w, 1, &[]);
        w.rapid_commit();
    });
    // An LDRA (RFC 6221: link-address ::, Interface-ID) inside a relay on subnet 2's link.
    let l1 = relay(&inner, 0, "::", |w| {
        w.interface_id(b"port-1");
        w.remote_id(9, b"r1");
        w.ero(&[wire::OPTION_REMOTE_ID]);
    });
    let l2 = relay(&l1, 1, "2001:db8:2::1", |w| {
        w.interface_id(b"uplink");
        w.raw(wire::OPTION_RELAY_PORT, &4547u16.to_be_bytes());
    });
    let rx = from_relay(4547);
    let r = run(&mut e, &mut t, &rx, &l2, at(0));
    assert_eq!(
        r.outcome,
        Outcome::Reply {
            dst: rx.src,
            src: rx.dst,
            commits: true,
        }
    );
    let chain = parse_relayed(&r.bytes).unwrap();
    assert_eq!(chain.depth(), 2);
    let outer = chain.layers()[0];
    assert_eq!(outer.msg_type(), MessageType::RelayRepl);
    assert_eq!(outer.hop_count(), 1);
    assert_eq!(
        outer.link_address(),
        "2001:db8:2::1".parse::<Ipv6Addr>().unwrap()
    );
    assert_eq!(outer.interface_id(), Some(&b"uplink"[..]));
    assert_eq!(outer.relay_port().unwrap().unwrap(), 4547);
    let inner_l = chain.layers()[1];
    assert_eq!(inner_l.interface_id(), Some(&b"port-1"[..]));
    assert_eq!(
        inner_l.remote_id().unwrap().unwrap(),
        (9, &b"r1"[..]),
        "ERO-requested option echoed"
    );
    // Subnet 2 allows Rapid Commit: a Reply with the option, and a stored lease.
    assert_eq!(r.message().msg_type(), MessageType::Reply);
    assert!(r.option(wire::OPTION_RAPID_COMMIT).is_some());
    let (t1, t2, addrs, _) = r.ia_na(1);
    assert_eq!((t1, t2), (1000, 2000), "configured T1/T2");
    assert!(e.config().subnets[1].pools[0].contains(addrs[0].0));
    assert_eq!(t.len(), 1);
}

#[test]
fn link_selection_by_interface_id_and_unknown_link() {
    let mut e = engine();
    let mut t = MemoryTable::new();
    let inner = msg(MessageType::Solicit, &duid(4), None, |w| ia_na(w, 1, &[]));
    let p = relay(&inner, 0, "::", |w| {
        w.interface_id(b"olt-7/1");
    });
    let r = run(&mut e, &mut t, &from_relay(547), &p, at(0));
    assert!(e.config().subnets[1].pools[0].contains(r.ia_na(1).2[0].0));
    let p = relay(&inner, 0, "2001:db8:99::1", |_| {});
    assert_eq!(
        run(&mut e, &mut t, &from_relay(547), &p, at(0)).dropped(),
        Some(DropReason::NoLink)
    );
    // A direct client on an interface no subnet is bound to.
    let mut rx = multicast();
    rx.ifindex = 77;
    assert_eq!(
        run(&mut e, &mut t, &rx, &inner, at(0)).dropped(),
        Some(DropReason::NoLink)
    );
}

#[test]
fn relay_nesting_limit() {
    let mut e = engine();
    let mut t = MemoryTable::new();
    let mut p = msg(MessageType::Solicit, &duid(5), None, |w| ia_na(w, 1, &[]));
    for i in 0..32 {
        p = relay(&p, i, "2001:db8:1::1", |_| {});
    }
    assert!(run(&mut e, &mut t, &from_relay(547), &p, at(0))
        .dropped()
        .is_none());
    p = relay(&p, 32, "2001:db8:1::1", |_| {});
    assert_eq!(
        run(&mut e, &mut t, &from_relay(547), &p, at(0)).dropped(),
        Some(DropReason::RelayTooDeep)
    );
}

#[test]
fn reservation_by_remote_id() {
    let mut e = engine();
    let mut t = MemoryTable::new();
    let inner = msg(MessageType::Request, &duid(6), Some(&sid()), |w| {
        ia_na(w, 1, &[]);
        ia_pd(w, 2, &[]);
    });
    let p = relay(&inner, 0, "2001:db8:1::1", |w| {
        w.remote_id(3561, &[0xaa, 0xbb, 0xcc, 0xdd]);
    });
    let r = run(&mut e, &mut t, &from_relay(547), &p, at(0));
    assert_eq!(
        r.ia_na(1).2[0].0,
        "2001:db8:1::1abc".parse::<Ipv6Addr>().unwrap()
    );
    assert_eq!(
        r.ia_pd(2).2[0].0,
        "2001:db8:100:4200::".parse::<Ipv6Addr>().unwrap()
    );
    // Nobody else gets the reserved resources dynamically.
    for n in 100..200u8 {
        let s = msg(MessageType::Solicit, &duid(n), None, |w| {
            ia_na(w, 1, &["2001:db8:1::1abc"]);
            ia_pd(w, 2, &[("2001:db8:100:4200::", 56)]);
        });
        let r = run(&mut e, &mut t, &multicast(), &s, at(1));
        assert_ne!(
            r.ia_na(1).2[0].0,
            "2001:db8:1::1abc".parse::<Ipv6Addr>().unwrap()
        );
        assert_ne!(
            r.ia_pd(2).2[0].0,
            "2001:db8:100:4200::".parse::<Ipv6Addr>().unwrap()
        );
    }
}

#[test]
fn release_and_decline() {
    let mut e = engine();
    let mut t = MemoryTable::new();
    let req = msg(MessageType::Request, &duid(7), Some(&sid()), |w| {
        ia_na(w, 1, &[]);
        ia_pd(w, 2, &[]);
    });
    let r = run(&mut e, &mut t, &multicast(), &req, at(0));
    let a = r.ia_na(1).2[0].0;
    let (p, l, _) = r.ia_pd(2).2[0];
    let rel = msg(MessageType::Release, &duid(7), Some(&sid()), |w| {
        ia_na(w, 1, &[&a.to_string()]);
        ia_pd(w, 2, &[(&p.to_string(), l)]);
    });
    let r = run(&mut e, &mut t, &multicast(), &rel, at(5));
    assert_eq!(r.status(), Some(StatusCode::Success));
    assert_eq!(
        t.by_resource(&Resource::address(a)).unwrap().state,
        BindingState::Released
    );
    // Again: nothing bound any more.
    let r = run(&mut e, &mut t, &multicast(), &rel, at(6));
    assert_eq!(r.ia_na(1).3, Some(StatusCode::NoBinding));

    // Decline: the address is quarantined and the client gets another one.
    let r = run(&mut e, &mut t, &multicast(), &req, at(10));
    let a2 = r.ia_na(1).2[0].0;
    let dec = msg(MessageType::Decline, &duid(7), Some(&sid()), |w| {
        ia_na(w, 1, &[&a2.to_string()])
    });
    let r = run(&mut e, &mut t, &multicast(), &dec, at(11));
    assert_eq!(r.status(), Some(StatusCode::Success));
    let l = t.by_resource(&Resource::address(a2)).unwrap();
    assert_eq!(
        (l.state, l.expires_at),
        (BindingState::Abandoned, T0 + 11 + 86_400)
    );
    let r = run(&mut e, &mut t, &multicast(), &req, at(12));
    assert_ne!(r.ia_na(1).2[0].0, a2);
}

#[test]
fn confirm_and_information_request() {
    let mut e = engine();
    let mut t = MemoryTable::new();
    let on = msg(MessageType::Confirm, &duid(8), None, |w| {
        ia_na(w, 1, &["2001:db8:1::1234"])
    });
    let r = run(&mut e, &mut t, &multicast(), &on, at(0));
    assert_eq!(r.status(), Some(StatusCode::Success));
    assert!(!r.commits(), "a Confirm's Reply grants nothing");
    let off = msg(MessageType::Confirm, &duid(8), None, |w| {
        ia_na(w, 1, &["2001:db8:9::1"])
    });
    assert_eq!(
        run(&mut e, &mut t, &multicast(), &off, at(0)).status(),
        Some(StatusCode::NotOnLink)
    );

    let mut b = Vec::new();
    let mut w = Writer::message(&mut b, MessageType::InformationRequest, 5);
    w.oro(&[
        wire::OPTION_DNS_SERVERS,
        wire::OPTION_INFORMATION_REFRESH_TIME,
    ]);
    w.finish().unwrap();
    let r = run(&mut e, &mut t, &multicast(), &b, at(0));
    assert_eq!(r.message().msg_type(), MessageType::Reply);
    assert!(
        !r.commits(),
        "an Information-request's Reply grants nothing"
    );
    assert_eq!(
        r.option(wire::OPTION_INFORMATION_REFRESH_TIME),
        Some(&7200u32.to_be_bytes()[..])
    );
    assert_eq!(r.option(wire::OPTION_DNS_SERVERS).unwrap().len(), 16);
    assert!(
        r.option(wire::OPTION_CLIENTID).is_none(),
        "no CLIENTID to copy"
    );
    assert!(
        r.option(wire::OPTION_DOMAIN_LIST).is_none(),
        "not requested"
    );
}

#[test]
fn renew_rebind_without_binding() {
    let mut e = engine();
    let mut t = MemoryTable::new();
    // Renew for an address the server has no record of (e.g. lost state): re-granted.
    let renew = msg(MessageType::Renew, &duid(9), Some(&sid()), |w| {
        ia_na(w, 1, &["2001:db8:1::1111"])
    });
    let r = run(&mut e, &mut t, &multicast(), &renew, at(0));
    assert_eq!(
        r.ia_na(1).2,
        vec![("2001:db8:1::1111".parse().unwrap(), 1000, 2000)]
    );
    // Rebind on a link without Rapid Commit: no new bindings (RFC 8415 §18.3.5) ...
    let rebind = msg(MessageType::Rebind, &duid(10), None, |w| {
        ia_na(w, 1, &["2001:db8:1::1112"])
    });
    let r = run(&mut e, &mut t, &multicast(), &rebind, at(0));
    assert_eq!(r.ia_na(1).3, Some(StatusCode::NoBinding));
    // ... and addresses from another link come back with lifetime 0.
    let rebind = msg(MessageType::Rebind, &duid(9), None, |w| {
        ia_na(w, 1, &["2001:db8:1::1111", "2001:db8:7::1"])
    });
    let r = run(&mut e, &mut t, &multicast(), &rebind, at(1));
    let addrs = r.ia_na(1).2;
    assert!(addrs.contains(&("2001:db8:1::1111".parse().unwrap(), 1000, 2000)));
    assert!(addrs.contains(&("2001:db8:7::1".parse().unwrap(), 0, 0)));
    // A Request naming an address off the link: NotOnLink.
    let req = msg(MessageType::Request, &duid(11), Some(&sid()), |w| {
        ia_na(w, 1, &["2001:db8:7::1"])
    });
    assert_eq!(
        run(&mut e, &mut t, &multicast(), &req, at(0)).ia_na(1).3,
        Some(StatusCode::NotOnLink)
    );
}

#[test]
fn pool_exhaustion_ia_ta_and_several_ias() {
    let mut e = engine();
    let mut t = MemoryTable::new();
    let rx = from_relay(547);
    let mut got = Vec::new();
    for n in 0..3u8 {
        let inner = msg(MessageType::Request, &duid(20 + n), Some(&sid()), |w| {
            ia_na(w, 1, &[]);
            w.ia_ta(5, |_| {});
        });
        let p = relay(&inner, 0, "2001:db8:2::1", |_| {});
        let r = run(&mut e, &mut t, &rx, &p, at(0));
        got.push(r.ia_na(1));
    }
    // The pool of subnet 2 has two addresses; IA_TA competes for them (temporary_addresses).
    let granted: usize = got.iter().map(|g| g.2.len()).sum();
    assert_eq!(
        granted,
        1 + got.iter().filter(|g| g.3.is_none()).count() - 1
    );
    assert_eq!(got[2].3, Some(StatusCode::NoAddrsAvail));

    // IA_TA on subnet 1 (not configured) → NoAddrsAvail; two IA_NA → two addresses.
    let p = msg(MessageType::Request, &duid(30), Some(&sid()), |w| {
        ia_na(w, 1, &[]);
        ia_na(w, 2, &[]);
        w.ia_ta(3, |_| {});
    });
    let r = run(&mut e, &mut t, &multicast(), &p, at(0));
    let (a, b) = (r.ia_na(1), r.ia_na(2));
    assert_ne!(a.2[0].0, b.2[0].0);
    assert_eq!((a.0, a.1), (b.0, b.1));
    let ta = r.option(wire::OPTION_IA_TA).unwrap();
    let st = crate::wire::IaTa::new_checked(ta)
        .unwrap()
        .options()
        .get(wire::OPTION_STATUS_CODE)
        .unwrap();
    assert_eq!(
        StatusView::new_checked(st).unwrap().status(),
        StatusCode::NoAddrsAvail
    );
}

#[test]
fn prefix_length_hint_and_expiry() {
    let mut e = engine();
    let mut t = MemoryTable::new();
    let req = msg(MessageType::Request, &duid(40), Some(&sid()), |w| {
        ia_pd(w, 1, &[("::", 60)])
    });
    let r = run(&mut e, &mut t, &multicast(), &req, at(0));
    let (p, len, _) = r.ia_pd(1).2[0];
    assert_eq!(len, 60, "RFC 8168 length hint picks the /60 pool");
    // After the valid lifetime the prefix goes back to the pool.
    assert_eq!(e.expire(at(1000), &mut t, 100), 0);
    assert_eq!(e.expire(at(2001), &mut t, 100), 1);
    assert_eq!(
        t.by_resource(&Resource::prefix(p, 60)).unwrap().state,
        BindingState::Expired
    );
    // The same client asking again gets its previous prefix back.
    let r = run(&mut e, &mut t, &multicast(), &req, at(2002));
    assert_eq!(r.ia_pd(1).2[0].0, p);
}

#[test]
fn fqdn_is_echoed_only_when_requested() {
    let mut e = engine();
    let mut t = MemoryTable::new();
    let name = b"\x03cpe\x00";
    let p = msg(MessageType::Solicit, &duid(50), None, |w| {
        ia_na(w, 1, &[]);
        w.client_fqdn_wire(0x01, name);
        w.oro(&[wire::OPTION_CLIENT_FQDN]);
    });
    let r = run(&mut e, &mut t, &multicast(), &p, at(0));
    let f = r.option(wire::OPTION_CLIENT_FQDN).unwrap();
    assert_eq!(f[0], 0x06, "N=1 (no updates), O=1 (S overridden)");
    assert_eq!(&f[1..], name);
    let p = msg(MessageType::Solicit, &duid(50), None, |w| {
        ia_na(w, 1, &[]);
        w.client_fqdn_wire(0x01, name);
    });
    assert!(run(&mut e, &mut t, &multicast(), &p, at(0))
        .option(wire::OPTION_CLIENT_FQDN)
        .is_none());
}

/// A table that refuses new records, like a full store.
struct FullTable(MemoryTable, bool);

impl LeaseTable for FullTable {
    fn ia_leases(&self, d: &Duid, t: IaType, i: u32, out: &mut Vec<Lease>) {
        self.0.ia_leases(d, t, i, out)
    }
    fn client_leases(&self, d: &Duid, out: &mut Vec<Lease>) {
        self.0.client_leases(d, out)
    }
    fn by_resource(&self, r: &Resource) -> Option<Lease> {
        self.0.by_resource(r)
    }
    fn upsert(&mut self, l: Lease) -> Result<(), crate::lease::TableError> {
        if self.1 && self.0.by_resource(&l.resource).is_none() {
            return Err(crate::lease::TableError::Full);
        }
        self.0.upsert(l)
    }
    fn remove(&mut self, r: &Resource) -> Result<(), crate::lease::TableError> {
        self.0.remove(r)
    }
    fn expire(&mut self, now: u64, budget: usize, freed: &mut Vec<Lease>) -> usize {
        self.0.expire(now, budget, freed)
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn for_each(&self, f: &mut dyn FnMut(&Lease)) {
        self.0.for_each(f)
    }
    fn commit(&mut self) -> Result<Option<CommitId>, crate::lease::TableError> {
        self.0.commit()
    }
    fn durable(&mut self, wait: bool) -> Result<CommitId, crate::lease::TableError> {
        self.0.durable(wait)
    }
}

#[test]
fn full_store_keeps_renewing_but_grants_nothing_new() {
    let mut e = engine();
    let mut t = FullTable(MemoryTable::new(), false);
    let req = msg(MessageType::Request, &duid(60), Some(&sid()), |w| {
        ia_na(w, 1, &[]);
        ia_pd(w, 2, &[]);
    });
    let a = run(&mut e, &mut t, &multicast(), &req, at(0)).ia_na(1).2[0].0;
    t.1 = true;
    let renew = msg(MessageType::Renew, &duid(60), Some(&sid()), |w| {
        ia_na(w, 1, &[&a.to_string()])
    });
    assert_eq!(
        run(&mut e, &mut t, &multicast(), &renew, at(10)).ia_na(1).2,
        vec![(a, 1000, 2000)]
    );
    let other = msg(MessageType::Request, &duid(61), Some(&sid()), |w| {
        ia_na(w, 1, &[]);
        ia_pd(w, 2, &[]);
    });
    let r = run(&mut e, &mut t, &multicast(), &other, at(10));
    assert_eq!(r.ia_na(1).3, Some(StatusCode::NoAddrsAvail));
    assert_eq!(r.ia_pd(2).3, Some(StatusCode::NoPrefixAvail));
    assert_eq!(e.counters().store_full, 2);
}

#[test]
fn shards_partition_addresses_and_prefixes() {
    let cfg = CONFIG;
    let mut seen_a = HashSet::new();
    let mut seen_p = HashSet::new();
    for shard in 0..3 {
        let mut e = engine_with(
            cfg,
            ShardId {
                index: shard,
                count: 3,
            },
        );
        let mut t = MemoryTable::new();
        for n in 0..40u8 {
            let d = duid(n);
            let req = msg(MessageType::Request, &d, Some(&sid()), |w| {
                ia_na(w, 1, &[]);
                ia_pd(w, 2, &[]);
            });
            let r = run(&mut e, &mut t, &multicast(), &req, at(0));
            let a = r.ia_na(1).2[0].0;
            assert_eq!(((u128::from(a) as u64 >> 1) % 3) as usize, shard);
            assert!(seen_a.insert(a));
            assert!(seen_p.insert(r.ia_pd(2).2[0].0));
        }
    }
}

#[test]
fn owner_shard_follows_the_innermost_client_id() {
    let inner = msg(MessageType::Solicit, &duid(70), None, |_| {});
    let p = relay(&relay(&inner, 0, "::", |_| {}), 1, "2001:db8:1::1", |_| {});
    assert_eq!(
        owner_shard(&p, 4),
        Ok(Duid::new(&duid(70)).unwrap().shard_of(4))
    );
    assert_eq!(
        owner_shard(&[1, 0, 0, 0], 4),
        Err(DropReason::MissingClientId)
    );
    assert!(owner_shard(&[1, 0], 4).is_err());
}

#[test]
fn load_rebuilds_prefix_bitmaps() {
    let mut e = engine();
    let mut t = MemoryTable::new();
    let mut held = Vec::new();
    for n in 0..5u8 {
        let req = msg(MessageType::Request, &duid(n), Some(&sid()), |w| {
            ia_pd(w, 2, &[("::", 48)])
        });
        held.push(run(&mut e, &mut t, &multicast(), &req, at(0)).ia_pd(2).2[0].0);
    }
    // A restarted engine over the same table must not hand those prefixes out again.
    let mut e2 = engine();
    e2.load(&t);
    for n in 100..150u8 {
        let req = msg(MessageType::Request, &duid(n), Some(&sid()), |w| {
            ia_pd(w, 2, &[("::", 56)])
        });
        let p = run(&mut e2, &mut t, &multicast(), &req, at(1)).ia_pd(2).2[0].0;
        assert!(!held.contains(&p));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_on_arbitrary_payloads(payload in proptest::collection::vec(any::<u8>(), 0..600), relayed in any::<bool>()) {
        let mut e = engine();
        let mut t = MemoryTable::new();
        let rx = if relayed { from_relay(547) } else { multicast() };
        let mut out = Vec::new();
        let o = e.handle(&rx, &payload, at(0), &mut t, &mut out);
        if matches!(o, Outcome::Drop(_)) {
            prop_assert!(out.is_empty());
        }
        let _ = owner_shard(&payload, 4);
    }

    #[test]
    fn never_panics_on_mutated_valid_packets(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6), cut in any::<usize>()) {
        let mut e = engine();
        let mut t = MemoryTable::new();
        let inner = msg(MessageType::Request, &duid(1), Some(&sid()), |w| {
            ia_na(w, 1, &["2001:db8:1::1000"]);
            ia_pd(w, 2, &[("::", 56)]);
            w.oro(&[23, 24, 39]);
            w.client_fqdn_wire(1, b"\x01a\x00");
        });
        let mut p = relay(&inner, 0, "2001:db8:1::1", |w| { w.interface_id(b"x"); w.ero(&[18, 37]); });
        for (i, b) in flips {
            let n = p.len();
            p[i % n] = b;
        }
        p.truncate(cut % (p.len() + 1));
        let mut out = Vec::new();
        match e.handle(&from_relay(547), &p, at(0), &mut t, &mut out) {
            Outcome::Drop(_) => prop_assert!(out.is_empty()),
            // Whatever is answered parses back.
            Outcome::Reply { .. } => { prop_assert!(parse_relayed(&out).is_ok()); }
        }
    }
}

#[test]
fn failover_scope_governs_answers_halves_and_lifetimes() {
    use crate::failover::{Role, ServerState, ServiceScope};
    let scope = |role, state| ServiceScope {
        role: Some(role),
        state,
        mclt: 300,
        partner_down_since: 0,
    };
    let mut e = engine();
    let mut t = MemoryTable::new();
    e.set_scope(scope(Role::Primary, ServerState::Normal));
    let req = msg(MessageType::Request, &duid(80), Some(&sid()), |w| {
        ia_na(w, 1, &[]);
        ia_pd(w, 2, &[]);
    });
    let r = run(&mut e, &mut t, &multicast(), &req, at(0));
    let (_, _, addrs, _) = r.ia_na(1);
    assert_eq!(
        u128::from(addrs[0].0) & 1,
        1,
        "primary allocates bit 127 = 1"
    );
    assert_eq!(
        (addrs[0].1, addrs[0].2),
        (300, 300),
        "MCLT caps an unacknowledged lease"
    );
    assert_eq!(r.ia_pd(2).2[0].2, 300);

    // The secondary in NORMAL is renew responsive: no Solicit, and no FREE prefixes.
    e.set_scope(scope(Role::Secondary, ServerState::Normal));
    let sol = msg(MessageType::Solicit, &duid(81), None, |w| ia_na(w, 1, &[]));
    assert_eq!(
        run(&mut e, &mut t, &multicast(), &sol, at(1)).dropped(),
        Some(DropReason::Policy)
    );
    let req = msg(MessageType::Request, &duid(81), Some(&sid()), |w| {
        ia_na(w, 1, &[]);
        ia_pd(w, 2, &[]);
    });
    let r = run(&mut e, &mut t, &multicast(), &req, at(1));
    assert_eq!(
        u128::from(r.ia_na(1).2[0].0) & 1,
        0,
        "secondary allocates bit 127 = 0"
    );
    assert_eq!(r.ia_pd(2).3, Some(StatusCode::NoPrefixAvail));
    // Given a FREE-BACKUP prefix, the secondary can delegate it.
    let p = Resource::prefix("2001:db8:100:7700::".parse().unwrap(), 56);
    e.set_prefix_status(p, crate::failover::PoolStatus::FreeBackup);
    let r = run(&mut e, &mut t, &multicast(), &req, at(2));
    assert_eq!(r.ia_pd(2).2[0].0, p.addr);

    // RECOVER-DONE: existing leases are extended, nothing new is made.
    e.set_scope(scope(Role::Secondary, ServerState::RecoverDone));
    let other = msg(MessageType::Request, &duid(82), Some(&sid()), |w| {
        ia_na(w, 1, &[])
    });
    assert_eq!(
        run(&mut e, &mut t, &multicast(), &other, at(3)).ia_na(1).3,
        Some(StatusCode::NoAddrsAvail)
    );
    // STARTUP: unresponsive.
    e.set_scope(scope(Role::Primary, ServerState::Startup));
    assert_eq!(
        run(&mut e, &mut t, &multicast(), &req, at(4)).dropped(),
        Some(DropReason::Policy)
    );
}

#[test]
fn foreign_resources_stay_taken() {
    let mut e = engine();
    let mut t = MemoryTable::new();
    let mut foreign = Lease {
        resource: Resource::address("2001:db8:2::100".parse().unwrap()),
        ia_type: IaType::Na,
        duid: Duid::new(&duid(99)).unwrap(),
        iaid: 1,
        state: BindingState::Active,
        preferred_lifetime: 10,
        valid_lifetime: 10,
        cltt: T0,
        expires_at: T0 + 10,
        subnet: 1,
        partner_lifetime: 0,
        update_pending: false,
    };
    let pd = {
        foreign.resource = Resource::prefix("2001:db8:300::".parse().unwrap(), 56);
        foreign
    };
    foreign.resource = Resource::address("2001:db8:2::100".parse().unwrap());
    e.mark_foreign(&[foreign.resource, pd.resource]);
    // Long after the foreign leases' own expiry (the other shard may have renewed them).
    e.expire(at(100_000), &mut t, 100);
    let mut got = Vec::new();
    for n in 0..2u8 {
        let inner = msg(MessageType::Request, &duid(90 + n), Some(&sid()), |w| {
            ia_na(w, 1, &["2001:db8:2::100"]);
            ia_pd(w, 2, &[("2001:db8:300::", 56)]);
        });
        let p = relay(&inner, 0, "2001:db8:2::1", |_| {});
        let r = run(&mut e, &mut t, &from_relay(547), &p, at(100_001));
        assert_ne!(r.ia_pd(2).2.first().map(|p| p.0), Some(pd.resource.addr));
        got.push(r.ia_na(1));
    }
    assert_eq!(
        got[0].2[0].0,
        "2001:db8:2::101".parse::<Ipv6Addr>().unwrap()
    );
    assert_eq!(got[1].3, Some(StatusCode::NoAddrsAvail));
}

fn failover_scope(
    role: crate::failover::Role,
    state: crate::failover::ServerState,
) -> crate::failover::ServiceScope {
    crate::failover::ServiceScope {
        role: Some(role),
        state,
        mclt: 300,
        partner_down_since: T0,
    }
}

#[test]
fn failover_release_holds_the_resource_until_the_partner_acknowledges() {
    use crate::failover::{Role, ServerState};
    let mut e = engine();
    let mut t = MemoryTable::new();
    e.set_scope(failover_scope(Role::Primary, ServerState::Normal));
    let req = |n: u8, hint: Option<(&str, u8)>| {
        msg(MessageType::Request, &duid(n), Some(&sid()), |w| {
            ia_pd(w, 2, hint.as_slice());
        })
    };
    let r = run(&mut e, &mut t, &multicast(), &req(1, None), at(0));
    let (p, len, _) = r.ia_pd(2).2[0];
    let prefix = Resource::prefix(p, len);
    assert_eq!(e.drain_binding_updates().collect::<Vec<_>>(), vec![prefix]);
    let rel = msg(MessageType::Release, &duid(1), Some(&sid()), |w| {
        ia_pd(w, 2, &[(&p.to_string(), len)]);
    });
    run(&mut e, &mut t, &multicast(), &rel, at(1));
    let held = t.by_resource(&prefix).unwrap();
    assert_eq!(held.state, BindingState::Released);
    assert!(held.update_pending && held.expires_at == u64::MAX);
    assert_eq!(e.drain_binding_updates().collect::<Vec<_>>(), vec![prefix]);
    // Another client asking for it gets another prefix while the release is unacknowledged.
    let hint = (p.to_string(), len);
    let r = run(
        &mut e,
        &mut t,
        &multicast(),
        &req(2, Some((&hint.0, len))),
        at(2),
    );
    assert_ne!(r.ia_pd(2).2[0].0, p);
    // The endpoint frees it on the partner's BNDREPLY; the allocator learns it.
    let mut changed = Vec::new();
    ChangeLog::new(&mut t, &mut changed)
        .remove(&prefix)
        .unwrap();
    for c in &changed {
        e.binding_changed(c, &t, at(3));
    }
    let r = run(
        &mut e,
        &mut t,
        &multicast(),
        &req(3, Some((&hint.0, len))),
        at(3),
    );
    assert_eq!(r.ia_pd(2).2[0].0, p);
}

#[test]
fn failover_expiry_keeps_the_record_for_the_partner() {
    use crate::failover::{Role, ServerState};
    let mut e = engine();
    let mut t = MemoryTable::new();
    e.set_scope(failover_scope(Role::Primary, ServerState::Normal));
    let req = msg(MessageType::Request, &duid(4), Some(&sid()), |w| {
        ia_pd(w, 2, &[])
    });
    let r = run(&mut e, &mut t, &multicast(), &req, at(0));
    let (p, len, valid) = r.ia_pd(2).2[0];
    let prefix = Resource::prefix(p, len);
    e.drain_binding_updates().for_each(drop);
    e.expire(at(u64::from(valid) + 1), &mut t, 100);
    let l = t.by_resource(&prefix).unwrap();
    assert_eq!(l.state, BindingState::Expired);
    assert!(l.update_pending && l.expires_at == u64::MAX);
    assert_eq!(e.drain_binding_updates().collect::<Vec<_>>(), vec![prefix]);
    // Still held long after: only the partner's acknowledgement frees it.
    let other = msg(MessageType::Request, &duid(5), Some(&sid()), |w| {
        ia_pd(w, 2, &[(&p.to_string(), len)])
    });
    let r = run(&mut e, &mut t, &multicast(), &other, at(100_000));
    assert_ne!(r.ia_pd(2).2[0].0, p);
}

#[test]
fn failover_renew_keeps_a_partner_resource_this_server_never_saw() {
    use crate::failover::{Role, ServerState};
    let mut e = engine();
    let mut t = MemoryTable::new();
    // The secondary, apart from the primary: a client renews the primary's (odd) address
    // and a FREE (primary's) prefix that the lost BNDUPD never brought here.
    e.set_scope(failover_scope(
        Role::Secondary,
        ServerState::CommunicationsInterrupted,
    ));
    let renew = msg(MessageType::Renew, &duid(6), Some(&sid()), |w| {
        ia_na(w, 1, &["2001:db8:1::1001"]);
        ia_pd(w, 2, &[("2001:db8:100:3300::", 56)]);
    });
    let r = run(&mut e, &mut t, &multicast(), &renew, at(0));
    let (_, _, addrs, _) = r.ia_na(1);
    assert_eq!(addrs[0].0, "2001:db8:1::1001".parse::<Ipv6Addr>().unwrap());
    assert_eq!(addrs[0].2, 300, "MCLT: nothing acknowledged yet");
    assert_eq!(
        r.ia_pd(2).2[0].0,
        "2001:db8:100:3300::".parse::<Ipv6Addr>().unwrap()
    );
    // Another client's binding on it is not taken over.
    let other = msg(MessageType::Renew, &duid(7), Some(&sid()), |w| {
        ia_na(w, 1, &["2001:db8:1::1001"]);
    });
    let r = run(&mut e, &mut t, &multicast(), &other, at(1));
    assert_ne!(
        r.ia_na(1).2[0].0,
        "2001:db8:1::1001".parse::<Ipv6Addr>().unwrap()
    );
}

#[test]
fn partner_down_delegates_its_own_prefixes_first() {
    use crate::failover::{PoolStatus, Role, ServerState};
    let mut e = engine();
    let mut t = MemoryTable::new();
    // The secondary in PARTNER-DOWN for longer than MCLT may use the primary's prefixes,
    // but its own FREE-BACKUP one goes first (§8.4.1), though it is last in the pool.
    e.set_scope(failover_scope(Role::Secondary, ServerState::PartnerDown));
    let own = Resource::prefix("2001:db8:100:ff00::".parse().unwrap(), 56);
    e.set_prefix_status(own, PoolStatus::FreeBackup);
    let req = |n: u8| {
        msg(MessageType::Request, &duid(n), Some(&sid()), |w| {
            ia_pd(w, 2, &[])
        })
    };
    let r = run(&mut e, &mut t, &multicast(), &req(8), at(1_000));
    assert_eq!(r.ia_pd(2).2[0].0, own.addr);
    let r = run(&mut e, &mut t, &multicast(), &req(9), at(1_001));
    let next = r.ia_pd(2).2[0];
    assert!(
        next.0 != own.addr && next.1 == 56,
        "then the partner's, MCLT after entry: {next:?}"
    );
    // Before entry + MCLT only its own.
    e.set_scope(crate::failover::ServiceScope {
        partner_down_since: T0 + 2_000,
        ..failover_scope(Role::Secondary, ServerState::PartnerDown)
    });
    let r = run(&mut e, &mut t, &multicast(), &req(10), at(2_001));
    assert_eq!(r.ia_pd(2).3, Some(StatusCode::NoPrefixAvail));
}

#[test]
fn failover_held_record_frees_its_prefix_at_its_deadline() {
    use crate::failover::{Role, ServerState};
    let mut e = engine();
    let mut t = MemoryTable::new();
    e.set_scope(failover_scope(Role::Primary, ServerState::Normal));
    // The endpoint keeps an acknowledged RELEASED record until a deadline (its recovery
    // hold); the table's own expiry removes it then.
    let p = Resource::prefix("2001:db8:100:4400::".parse().unwrap(), 56);
    let held = Lease {
        resource: p,
        ia_type: IaType::Pd,
        duid: Duid::new(&duid(20)).unwrap(),
        iaid: 2,
        state: BindingState::Released,
        preferred_lifetime: 100,
        valid_lifetime: 100,
        cltt: T0,
        expires_at: T0 + 100,
        subnet: 0,
        partner_lifetime: 0,
        update_pending: false,
    };
    let mut changed = Vec::new();
    ChangeLog::new(&mut t, &mut changed).upsert(held).unwrap();
    for c in &changed {
        e.binding_changed(c, &t, at(0));
    }
    let req = |n: u8| {
        msg(MessageType::Request, &duid(n), Some(&sid()), |w| {
            ia_pd(w, 2, &[("2001:db8:100:4400::", 56)])
        })
    };
    let r = run(&mut e, &mut t, &multicast(), &req(21), at(50));
    assert_ne!(r.ia_pd(2).2[0].0, p.addr, "held until its deadline");
    e.expire(at(101), &mut t, 100);
    assert!(t.by_resource(&p).is_none());
    let r = run(&mut e, &mut t, &multicast(), &req(22), at(102));
    assert_eq!(r.ia_pd(2).2[0].0, p.addr, "the bitmap learnt the removal");
}
