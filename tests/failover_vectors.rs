//! Golden vectors for the RFC 8156 failover codec (tests/vectors/failover/, written field by
//! field from the RFCs' figures by make_vectors.py; README.md there names the figure of each
//! field). Every vector is split from its RFC 5460 frame, decoded, checked field by field
//! against the values the generator wrote, then re-emitted with tandem's builders and
//! compared byte for byte.

use std::net::Ipv6Addr;
use std::path::Path;

use tandem::lease::{BindingState, Duid, IaType, Resource};
use tandem::wire::failover::{
    split_frame, top_status, BindingUpdateRepr, Builder, ConnectRepr, Frame, Message, MessageType,
    ServerFlags, ServerState, StateRepr, StatusCode, Subject, TlsNegotiation,
    CONNECT_FLAG_FIXED_PD_LENGTH, PROTOCOL_VERSION,
};

/// The generator's clock: Unix 1_800_000_000 s in seconds since 2000 (RFC 8156 §5.2).
const SENT: u32 = 1_800_000_000 - 946_684_800;
const BASE: u32 = SENT - 1;
const START: u32 = SENT - 600;
const VALID: u32 = 3600;
const PREF: u32 = 3000;
const MCLT: u32 = 3600;

fn vector(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors/failover")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Splits the single frame of a vector and returns the message inside.
fn unframe(bytes: &[u8]) -> &[u8] {
    match split_frame(bytes) {
        Ok(Frame::Complete { message, consumed }) => {
            assert_eq!(consumed, bytes.len(), "one frame per vector");
            message
        }
        other => panic!("not a whole frame: {other:?}"),
    }
}

fn failover_message(bytes: &[u8]) -> Message<&[u8]> {
    let m = Message::new_checked(unframe(bytes)).expect("valid failover message");
    assert_eq!(m.sent_time(), SENT);
    m
}

/// Re-emits a header-only or status-only message.
fn emit_simple(kind: MessageType, xid: u32, status: Option<StatusCode>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut b = Builder::new(&mut out, kind, xid, SENT);
    if let Some(code) = status {
        b.status(code, "");
    }
    b.finish().unwrap();
    out
}

#[test]
fn header_only_messages() {
    for (name, kind, xid) in [
        ("contact.bin", MessageType::Contact, 0x2a),
        ("updreq.bin", MessageType::Updreq, 0x101),
        ("updreqall.bin", MessageType::Updreqall, 0x102),
        ("upddone.bin", MessageType::Upddone, 0x102),
        ("poolreq.bin", MessageType::Poolreq, 0x103),
        ("poolresp.bin", MessageType::Poolresp, 0x103),
    ] {
        let bytes = vector(name);
        let m = failover_message(&bytes);
        assert_eq!(m.msg_type(), Some(kind), "{name}");
        assert_eq!(m.transaction_id(), xid, "{name}");
        assert_eq!(m.options().into_iter().count(), 0, "{name}");
        assert_eq!(emit_simple(kind, xid, None), bytes, "{name}");
    }
}

#[test]
fn connect_and_connectreply() {
    let expected = ConnectRepr {
        protocol_version: PROTOCOL_VERSION,
        mclt: MCLT,
        keepalive_time: 60,
        max_unacked_bndupd: 100,
        relationship_name: Some("isp-site-a"),
        connect_flags: CONNECT_FLAG_FIXED_PD_LENGTH,
    };
    for (name, kind) in [
        ("connect.bin", MessageType::Connect),
        ("connectreply-accept.bin", MessageType::Connectreply),
    ] {
        let bytes = vector(name);
        let m = failover_message(&bytes);
        assert_eq!(m.msg_type(), Some(kind));
        assert_eq!(m.transaction_id(), 1);
        let c = ConnectRepr::parse(m.options()).unwrap();
        assert_eq!(c, expected, "{name}");
        assert_eq!(top_status(m.options()).unwrap(), None, "an accepting reply");
        let mut out = Vec::new();
        let mut b = Builder::new(&mut out, kind, 1, SENT);
        c.emit(&mut b);
        b.finish().unwrap();
        assert_eq!(out, bytes, "{name}");
    }
}

#[test]
fn status_only_messages() {
    for (name, kind, xid, code) in [
        (
            "connectreply-excessive-skew.bin",
            MessageType::Connectreply,
            1,
            StatusCode::ExcessiveTimeSkew,
        ),
        (
            "disconnect.bin",
            MessageType::Disconnect,
            4,
            StatusCode::ServerShuttingDown,
        ),
    ] {
        let bytes = vector(name);
        let m = failover_message(&bytes);
        assert_eq!(m.msg_type(), Some(kind));
        assert_eq!(top_status(m.options()).unwrap(), Some(code), "{name}");
        assert!(
            ConnectRepr::parse(m.options()).is_err(),
            "a rejection has no session"
        );
        assert_eq!(emit_simple(kind, xid, Some(code)), bytes, "{name}");
    }
}

#[test]
fn state_messages() {
    for (name, xid, expected) in [
        (
            "state-normal.bin",
            2,
            StateRepr {
                state: ServerState::Normal,
                flags: ServerFlags(ServerFlags::COMMUNICATED),
                start_time_of_state: START,
                partner_down_time: None,
            },
        ),
        (
            "state-startup.bin",
            3,
            StateRepr {
                state: ServerState::Normal,
                flags: ServerFlags(ServerFlags::COMMUNICATED | ServerFlags::STARTUP),
                start_time_of_state: START,
                partner_down_time: None,
            },
        ),
        (
            "state-partner-down.bin",
            5,
            StateRepr {
                state: ServerState::PartnerDown,
                flags: ServerFlags(ServerFlags::COMMUNICATED | ServerFlags::ACK_STARTUP),
                start_time_of_state: SENT - 60,
                partner_down_time: Some(SENT - 60),
            },
        ),
    ] {
        let bytes = vector(name);
        let m = failover_message(&bytes);
        assert_eq!(m.msg_type(), Some(MessageType::State));
        let s = StateRepr::parse(m.options()).unwrap();
        assert_eq!(s, expected, "{name}");
        let mut out = Vec::new();
        let mut b = Builder::new(&mut out, MessageType::State, xid, SENT);
        s.emit(&mut b);
        b.finish().unwrap();
        assert_eq!(out, bytes, "{name}");
    }
}

fn duid() -> Duid {
    Duid::new(&[
        0, 1, 0, 1, 0x2a, 0x2b, 0x2c, 0x2d, 0x00, 0x16, 0x3e, 0x2a, 0x2b, 0x2c,
    ])
    .unwrap()
}

fn address() -> Resource {
    Resource::address("2001:db8:1::1001".parse().unwrap())
}

fn prefix() -> Resource {
    Resource::prefix("2001:db8:100:1200::".parse().unwrap(), 56)
}

/// Decodes a BNDUPD/BNDREPLY vector, re-emits it and returns the decoded repr.
fn binding_roundtrip(name: &str, kind: MessageType, xid: u32) -> BindingUpdateRepr {
    let bytes = vector(name);
    let m = failover_message(&bytes);
    assert_eq!(m.msg_type(), Some(kind));
    assert_eq!(m.transaction_id(), xid);
    let reply = kind == MessageType::Bndreply;
    let mut u = BindingUpdateRepr::default();
    u.parse(m.options(), reply).unwrap();
    let mut out = Vec::new();
    let mut b = Builder::new(&mut out, kind, xid, SENT);
    u.emit(&mut b, reply);
    b.finish().unwrap();
    assert_eq!(out, bytes, "{name} re-emits byte for byte");
    u
}

#[test]
fn bndupd_for_a_client() {
    let u = binding_roundtrip("bndupd-client.bin", MessageType::Bndupd, 0x10);
    assert_eq!(u.subject, Subject::Client(duid()));
    assert_eq!(u.base_time, BASE);
    assert_eq!(u.top_status, None);
    assert_eq!(u.records.len(), 2);
    for (rec, ia_type, iaid, resource) in [
        (u.records[0], IaType::Na, 1, address()),
        (u.records[1], IaType::Pd, 2, prefix()),
    ] {
        assert_eq!((rec.ia_type, rec.iaid), (ia_type, iaid));
        assert_eq!((rec.t1, rec.t2), (PREF / 2, PREF * 4 / 5));
        assert_eq!(rec.resource, resource);
        assert_eq!((rec.preferred_lifetime, rec.valid_lifetime), (PREF, VALID));
        assert_eq!(rec.status, BindingState::Active);
        assert_eq!(rec.start_time_of_state, Some(START));
        assert_eq!(rec.state_expiration_time, Some(START + VALID));
        assert_eq!(rec.clt_time, Some(BASE - START));
        assert_eq!(
            rec.clt_abs(u.base_time),
            Some(START),
            "CLT_TIME is relative"
        );
        assert_eq!(rec.partner_lifetime, Some(START + VALID + MCLT));
        assert_eq!(rec.partner_raw_clt_time, Some(START - 1800));
        assert_eq!(rec.expiration_time, Some(START + VALID));
        assert_eq!(rec.partner_lifetime_sent, None);
        assert_eq!(rec.status_code, None);
    }
}

#[test]
fn bndupd_for_a_free_prefix() {
    let u = binding_roundtrip("bndupd-free-prefix.bin", MessageType::Bndupd, 0x11);
    assert_eq!(u.subject, Subject::Prefix);
    assert_eq!(u.base_time, BASE);
    assert_eq!(u.records.len(), 1);
    let rec = u.records[0];
    assert_eq!(
        rec.resource,
        Resource::prefix("2001:db8:200:3400::".parse::<Ipv6Addr>().unwrap(), 56)
    );
    assert_eq!(rec.status, BindingState::FreeBackup);
    assert_eq!(rec.start_time_of_state, Some(BASE));
    assert_eq!((rec.preferred_lifetime, rec.valid_lifetime), (0, 0));
}

#[test]
fn bndreply_accepting_and_rejecting() {
    let ok = binding_roundtrip("bndreply-client.bin", MessageType::Bndreply, 0x10);
    assert_eq!(ok.subject, Subject::Client(duid()));
    assert_eq!(ok.records.len(), 2);
    for rec in &ok.records {
        assert_eq!(rec.status_code, None);
        assert_eq!(rec.status, BindingState::Active);
        assert_eq!(rec.state_expiration_time, Some(START + VALID));
        assert_eq!(rec.partner_lifetime_sent, Some(START + VALID + MCLT));
        assert_eq!(rec.start_time_of_state, None, "not echoed (§7.6)");
    }
    let outdated = binding_roundtrip("bndreply-outdated.bin", MessageType::Bndreply, 0x10);
    assert_eq!(outdated.records[0].resource, address());
    assert_eq!(
        outdated.records[0].status_code,
        Some(StatusCode::OutdatedBindingInformation)
    );
    assert_eq!(outdated.records[1].resource, prefix());
    assert_eq!(
        outdated.records[1].status_code, None,
        "the prefix is accepted"
    );
    // A BNDREPLY lacks LQ_BASE_TIME, so it does not decode as a BNDUPD.
    let bytes = vector("bndreply-client.bin");
    let m = failover_message(&bytes);
    assert!(BindingUpdateRepr::default()
        .parse(m.options(), false)
        .is_err());
}

#[test]
fn starttls_negotiation_uses_the_dhcpv6_header() {
    for (name, expected) in [
        (
            "starttls.bin",
            TlsNegotiation {
                msg_type: MessageType::Starttls,
                transaction_id: 7,
                status: None,
            },
        ),
        (
            "reply-starttls-accept.bin",
            TlsNegotiation {
                msg_type: MessageType::Reply,
                transaction_id: 7,
                status: None,
            },
        ),
        (
            "reply-starttls-refused.bin",
            TlsNegotiation {
                msg_type: MessageType::Reply,
                transaction_id: 7,
                status: Some(StatusCode::TlsConnectionRefused),
            },
        ),
    ] {
        let bytes = vector(name);
        let message = unframe(&bytes);
        let t = TlsNegotiation::parse(message).unwrap();
        assert_eq!(t, expected, "{name}");
        let mut out = Vec::new();
        t.emit(&mut out).unwrap();
        assert_eq!(out, bytes, "{name}");
    }
    // A failover message is not a TLS negotiation message.
    let bytes = vector("contact.bin");
    assert!(TlsNegotiation::parse(unframe(&bytes)).is_err());
}

/// Every vector, cut anywhere, is an incomplete frame; cut inside the frame body after the
/// prefix is patched to the shorter length, it is an error or a different message, never a
/// panic.
#[test]
fn truncations_never_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/failover");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "bin") {
            continue;
        }
        seen += 1;
        let bytes = std::fs::read(&path).unwrap();
        for cut in 0..bytes.len() {
            assert!(matches!(
                split_frame(&bytes[..cut]),
                Ok(Frame::Incomplete { .. })
            ));
            let mut short = bytes[..cut.max(2)].to_vec();
            let len = (short.len() - 2) as u16;
            short[..2].copy_from_slice(&len.to_be_bytes());
            if let Ok(Frame::Complete { message, .. }) = split_frame(&short) {
                if let Ok(m) = Message::new_checked(message) {
                    let _ = ConnectRepr::parse(m.options());
                    let _ = StateRepr::parse(m.options());
                    let _ = BindingUpdateRepr::default().parse(m.options(), false);
                    let _ = BindingUpdateRepr::default().parse(m.options(), true);
                }
                let _ = TlsNegotiation::parse(message);
            }
        }
    }
    assert_eq!(seen, 20, "every vector was checked");
}
