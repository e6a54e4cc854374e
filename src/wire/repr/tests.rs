//! Golden vectors and property tests for the whole codec (views, writer and Repr).

use std::path::PathBuf;

use proptest::prelude::*;

use super::*;
use crate::wire::{
    client_id, parse_relayed, DhcpOption, IaNa, IaPd, Message, Options, MAX_RELAY_DEPTH,
};

fn vectors() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            (path.extension()? == "bin").then(|| {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&path).unwrap())
            })
        })
        .collect();
    out.sort();
    out
}

fn vector(name: &str) -> Vec<u8> {
    vectors()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("missing vector {name}"))
        .1
}

/// Walks everything the views can reach, the way the engine and the fuzz target do.
fn walk_views(payload: &[u8]) -> Result<usize, Error> {
    let relayed = parse_relayed(payload)?;
    let mut seen = 0;
    for layer in relayed.layers() {
        for opt in layer.options() {
            DhcpOption::parse(opt)?;
            seen += 1;
        }
    }
    for opt in relayed.message().options() {
        seen += 1;
        match DhcpOption::parse(opt)? {
            DhcpOption::IaNa(ia) => {
                for a in ia.addresses() {
                    a?;
                }
            }
            DhcpOption::IaPd(ia) => {
                for p in ia.prefixes() {
                    if let Some(ex) = p?.pd_exclude() {
                        ex?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(seen)
}

#[test]
fn golden_vectors_round_trip_byte_for_byte() {
    let all = vectors();
    // The directory holds the captures and the RFC-figure frames; an empty or half-copied
    // directory must fail rather than pass vacuously.
    assert!(all.len() >= 60, "only {} vectors", all.len());
    for (name, bytes) in &all {
        let repr = Repr::parse(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(repr.buffer_len(), bytes.len(), "{name}");
        let mut emitted = Vec::new();
        repr.emit(&mut emitted).unwrap();
        assert_eq!(&emitted, bytes, "{name}: emit differs");
        assert_eq!(Repr::parse(&emitted).unwrap(), repr, "{name}");
        let options = walk_views(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(options > 0, "{name}");
    }
}

#[test]
fn every_client_vector_routes_by_its_client_id() {
    for (name, bytes) in vectors() {
        let relayed = parse_relayed(&bytes).unwrap();
        let msg = relayed.message();
        if msg.msg_type().is_client_to_server() {
            let id = client_id(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(id, msg.client_id().unwrap().unwrap().as_bytes(), "{name}");
        }
    }
}

#[test]
fn kea_advertise_to_dhclient_carries_what_kea_was_configured_with() {
    let adv = vector("dhclient-na-02-advertise-to-solicit.bin");
    let m = Message::new_checked(&adv[..]).unwrap();
    assert_eq!(m.msg_type(), MessageType::Advertise);
    // capture.sh: server-id EN 2495 / 0a0b0c0d0e0f, T1 3, T2 5, lifetimes 20/30, pool
    // 2001:db8:1::1000-1fff.
    assert_eq!(
        m.server_id().unwrap().unwrap().kind().unwrap(),
        crate::wire::DuidKind::En {
            enterprise: 2495,
            identifier: &[0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f]
        }
    );
    let ia = IaNa::new_checked(m.option(OPTION_IA_NA).unwrap()).unwrap();
    assert_eq!((ia.t1(), ia.t2()), (3, 5));
    let addr = ia.addresses().next().unwrap().unwrap();
    let a = u128::from(addr.address());
    assert!((0x2001_0db8_0001_0000_0000_0000_0000_1000
        ..=0x2001_0db8_0001_0000_0000_0000_0000_1fff)
        .contains(&a));
    assert_eq!((addr.preferred_lifetime(), addr.valid_lifetime()), (20, 30));
}

#[test]
fn kea_delegates_a_56_from_the_pd_pool() {
    let reply = vector("dhclient-pd-04-reply-to-request.bin");
    let m = Message::new_checked(&reply[..]).unwrap();
    assert_eq!(m.msg_type(), MessageType::Reply);
    let pd = IaPd::new_checked(m.option(OPTION_IA_PD).unwrap()).unwrap();
    let p = pd.prefixes().next().unwrap().unwrap();
    assert_eq!(p.prefix_len(), 56);
    // Inside the pool 2001:db8:8000::/40.
    assert_eq!(p.prefix().octets()[..5], [0x20, 0x01, 0x0d, 0xb8, 0x80]);
}

#[test]
fn kea_relay_reply_mirrors_the_two_hop_chain() {
    let req = vector("scapy-relay-01-relay-forw-relay-forw-solicit.bin");
    let rep = vector("scapy-relay-02-relay-repl-relay-repl-advertise-to-solicit.bin");
    let req = parse_relayed(&req).unwrap();
    let rep = parse_relayed(&rep).unwrap();
    assert_eq!(req.depth(), 2);
    assert_eq!(rep.depth(), 2);
    for (q, r) in req.layers().iter().zip(rep.layers()) {
        assert_eq!(r.msg_type(), MessageType::RelayRepl);
        assert_eq!(q.hop_count(), r.hop_count());
        assert_eq!(q.link_address(), r.link_address());
        assert_eq!(q.peer_address(), r.peer_address());
        assert_eq!(q.interface_id(), r.interface_id());
    }
    assert_eq!(
        req.innermost_relay().unwrap().remote_id(),
        Some(Ok((3561, &b"cpe-0001"[..])))
    );
    assert_eq!(rep.message().msg_type(), MessageType::Advertise);
}

#[test]
fn our_relay_reply_matches_the_rfc_figure_frame() {
    // rfc8415-relay-repl-2hop-reply.bin was built by scapy as the answer to
    // rfc8415-relay-forw-2hop-solicit.bin; Writer::relay_reply around the same Reply must
    // produce the same bytes (Interface-ID, relay port, ERO-requested Remote-ID echoed).
    let req = vector("rfc8415-relay-forw-2hop-solicit.bin");
    let expected = vector("rfc8415-relay-repl-2hop-reply.bin");
    let expected_inner = parse_relayed(&expected).unwrap().message();
    let relayed = parse_relayed(&req).unwrap();
    let mut out = Vec::new();
    let mut w = Writer::relay_reply(&mut out, &relayed);
    w.bytes(expected_inner.as_bytes());
    w.finish().unwrap();
    assert_eq!(out, expected);
}

#[test]
fn relay_chain_deeper_than_the_limit_is_refused_by_repr_too() {
    let mut msg = vector("rfc8415-solicit.bin");
    for hop in 0..=MAX_RELAY_DEPTH as u8 {
        let mut next = Vec::new();
        let mut w = Writer::relay(
            &mut next,
            MessageType::RelayForw,
            hop,
            Ipv6Addr::UNSPECIFIED,
            Ipv6Addr::LOCALHOST,
        );
        w.raw(OPTION_RELAY_MSG, &msg);
        w.finish().unwrap();
        msg = next;
    }
    assert_eq!(Repr::parse(&msg), Err(Error::RelayTooDeep));
}

#[test]
fn deep_option_nesting_is_refused_not_recursed() {
    // 10 IA_NA nested in each other's option area.
    let mut body: Vec<u8> = Vec::new();
    for _ in 0..10 {
        let mut outer = vec![0, 3];
        outer.extend(((12 + body.len()) as u16).to_be_bytes());
        outer.extend([0u8; 12]);
        outer.extend(&body);
        body = outer;
    }
    let mut msg = vec![1, 0, 0, 1];
    msg.extend(&body);
    assert!(matches!(
        Repr::parse(&msg),
        Err(Error::NestingTooDeep { code: OPTION_IA_NA })
    ));
}

// ---- property tests -------------------------------------------------------------------

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn nonempty(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 1..max)
}

fn addr() -> impl Strategy<Value = Ipv6Addr> {
    any::<u128>().prop_map(Ipv6Addr::from)
}

fn domain_name(fully_qualified: bool) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec("[a-z0-9-]{1,20}", 1..4).prop_map(move |labels| {
        let mut wire = Vec::new();
        for l in labels {
            wire.push(l.len() as u8);
            wire.extend(l.as_bytes());
        }
        if fully_qualified {
            wire.push(0);
        }
        wire
    })
}

fn leaf_option() -> impl Strategy<Value = OptionRepr> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 3..=130).prop_map(OptionRepr::ClientId),
        prop::collection::vec(any::<u8>(), 3..=130).prop_map(OptionRepr::ServerId),
        prop::collection::vec(any::<u16>(), 0..8).prop_map(OptionRepr::Oro),
        any::<u8>().prop_map(OptionRepr::Preference),
        any::<u16>().prop_map(OptionRepr::ElapsedTime),
        prop::collection::vec(any::<u8>(), 11..40).prop_map(OptionRepr::Auth),
        addr().prop_map(OptionRepr::Unicast),
        (any::<u16>(), bytes(30)).prop_map(|(s, message)| OptionRepr::StatusCode {
            status: StatusCode::from(s),
            message
        }),
        Just(OptionRepr::RapidCommit),
        prop::collection::vec(bytes(10), 0..4).prop_map(OptionRepr::UserClass),
        (any::<u32>(), prop::collection::vec(bytes(10), 0..4))
            .prop_map(|(enterprise, data)| OptionRepr::VendorClass { enterprise, data }),
        (
            any::<u32>(),
            prop::collection::vec((any::<u16>(), bytes(10)), 0..4)
        )
            .prop_map(|(enterprise, options)| OptionRepr::VendorOpts {
                enterprise,
                options
            }),
        bytes(20).prop_map(OptionRepr::InterfaceId),
        any::<u8>().prop_map(OptionRepr::ReconfMsg),
        Just(OptionRepr::ReconfAccept),
        prop::collection::vec(addr(), 0..4).prop_map(OptionRepr::DnsServers),
        prop::collection::vec(domain_name(true), 0..4).prop_map(OptionRepr::DomainList),
        any::<u32>().prop_map(OptionRepr::InformationRefreshTime),
        (any::<u32>(), nonempty(20)).prop_map(|(enterprise, remote_id)| OptionRepr::RemoteId {
            enterprise,
            remote_id
        }),
        nonempty(20).prop_map(OptionRepr::SubscriberId),
        (
            any::<u8>(),
            prop_oneof![domain_name(true), domain_name(false), Just(vec![])]
        )
            .prop_map(|(flags, name)| OptionRepr::ClientFqdn { flags, name }),
        prop::collection::vec(any::<u16>(), 0..8).prop_map(OptionRepr::Ero),
        (0u8..=128, prop::collection::vec(any::<u8>(), 1..=16)).prop_map(
            |(prefix_len, subnet_id)| OptionRepr::PdExclude {
                prefix_len,
                subnet_id
            }
        ),
        (any::<u16>(), nonempty(16)).prop_map(|(link_layer_type, address)| {
            OptionRepr::ClientLinklayerAddr {
                link_layer_type,
                address,
            }
        }),
        any::<u32>().prop_map(OptionRepr::SolMaxRt),
        any::<u32>().prop_map(OptionRepr::InfMaxRt),
        any::<u16>().prop_map(OptionRepr::RelayPort),
        // Codes the codec keeps opaque (unassigned, SIP, NTP, VSS...).
        (
            prop::sample::select(vec![10u16, 21, 22, 31, 56, 68, 1000, 65535]),
            bytes(20)
        )
            .prop_map(|(code, data)| OptionRepr::Unknown { code, data }),
    ]
}

fn option_tree() -> impl Strategy<Value = OptionRepr> {
    leaf_option().prop_recursive(3, 24, 4, |inner| {
        let opts = prop::collection::vec(inner, 0..4);
        prop_oneof![
            (any::<u32>(), any::<u32>(), any::<u32>(), opts.clone()).prop_map(
                |(iaid, t1, t2, options)| OptionRepr::IaNa {
                    iaid,
                    t1,
                    t2,
                    options
                }
            ),
            (any::<u32>(), opts.clone())
                .prop_map(|(iaid, options)| OptionRepr::IaTa { iaid, options }),
            (any::<u32>(), any::<u32>(), any::<u32>(), opts.clone()).prop_map(
                |(iaid, t1, t2, options)| OptionRepr::IaPd {
                    iaid,
                    t1,
                    t2,
                    options
                }
            ),
            (addr(), any::<u32>(), any::<u32>(), opts.clone()).prop_map(
                |(address, preferred, valid, options)| OptionRepr::IaAddr {
                    address,
                    preferred,
                    valid,
                    options
                }
            ),
            (any::<u32>(), any::<u32>(), 0u8..=128, addr(), opts).prop_map(
                |(preferred, valid, prefix_len, prefix, options)| OptionRepr::IaPrefix {
                    preferred,
                    valid,
                    prefix_len,
                    prefix,
                    options
                }
            ),
        ]
    })
}

fn client_message() -> impl Strategy<Value = Repr> {
    (
        (1u8..=255).prop_filter("not a relay type", |t| *t != 12 && *t != 13),
        0u32..(1 << 24),
        prop::collection::vec(option_tree(), 0..8),
    )
        .prop_map(|(t, transaction_id, options)| Repr::Message {
            msg_type: MessageType::from(t),
            transaction_id,
            options,
        })
}

fn message() -> impl Strategy<Value = Repr> {
    // A client message inside 0-3 Relay-forw (or Relay-repl) layers, each with some
    // relay-agent options besides RELAY_MSG.
    (
        client_message(),
        prop::collection::vec(
            (
                any::<u8>(),
                addr(),
                addr(),
                prop::collection::vec(leaf_option(), 0..3),
            ),
            0..4,
        ),
        any::<bool>(),
    )
        .prop_map(|(inner, layers, forward)| {
            let msg_type = if forward {
                MessageType::RelayForw
            } else {
                MessageType::RelayRepl
            };
            layers.into_iter().fold(
                inner,
                |inner, (hop_count, link_address, peer_address, mut options)| {
                    options.push(OptionRepr::RelayMsg(Box::new(inner)));
                    Repr::Relay {
                        msg_type,
                        hop_count,
                        link_address,
                        peer_address,
                        options,
                    }
                },
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn repr_round_trips(repr in message()) {
        let mut buf = Vec::new();
        let n = repr.emit(&mut buf).unwrap();
        prop_assert_eq!(n, buf.len());
        prop_assert_eq!(repr.buffer_len(), buf.len());
        let parsed = Repr::parse(&buf).unwrap();
        prop_assert_eq!(&parsed, &repr);
        // The views agree with the owned form.
        let relayed = parse_relayed(&buf).unwrap();
        let mut depth = 0;
        let mut cur = &repr;
        while let Repr::Relay { options, .. } = cur {
            depth += 1;
            cur = options.iter().find_map(|o| match o {
                OptionRepr::RelayMsg(m) => Some(&**m),
                _ => None,
            }).unwrap();
        }
        prop_assert_eq!(relayed.depth(), depth);
        prop_assert_eq!(relayed.message().options().count(), cur.options().len());
        for opt in relayed.message().options() {
            DhcpOption::parse(opt).unwrap();
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in bytes(600)) {
        let _ = parse_relayed(&data).map(|r| r.depth());
        let _ = client_id(&data);
        let _ = walk_views(&data);
        if let Ok(repr) = Repr::parse(&data) {
            // Whatever parses re-emits to the same bytes.
            let mut out = Vec::new();
            repr.emit(&mut out).unwrap();
            prop_assert_eq!(&out, &data);
        }
        for opt in Options::new_unchecked(&data) {
            let _ = DhcpOption::parse(opt);
        }
    }

    #[test]
    fn damaged_messages_never_panic_and_never_lie(
        repr in message(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut buf = Vec::new();
        repr.emit(&mut buf).unwrap();
        for (at, byte) in edits {
            let i = at.index(buf.len());
            buf[i] = byte;
        }
        buf.truncate(cut.index(buf.len() + 1));
        let _ = parse_relayed(&buf).map(|r| r.depth());
        let _ = client_id(&buf);
        let _ = walk_views(&buf);
        if let Ok(parsed) = Repr::parse(&buf) {
            let mut out = Vec::new();
            parsed.emit(&mut out).unwrap();
            prop_assert_eq!(out, buf);
        }
    }
}
