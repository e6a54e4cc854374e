//! DHCPv6 packets as the rig sends and reads them.
//!
//! The rig is a client (and relay) emulator for *any* DHCPv6 server, so it carries its own
//! small codec instead of depending on the server's: emitting writes the few client messages
//! straight into a send buffer (no allocation, a few dozen bytes per packet), and reading is a
//! zero-copy walk over the reply that checks every length and extracts only what the
//! scenarios need (message type, transaction-id, CLIENTID, SERVERID, the IA_NA address, the
//! IA_PD prefix, status codes, T1).
//!
//! Subscribers are not stored with their identity: subscriber `i` has the DUID-LL (RFC 8415
//! §11.4) `00:03 00:01 02:SS:ii:ii:ii:ii` where `SS` is the run's seed byte and `ii..` is `i`
//! big-endian, so the DUID is recomputed on every send and the subscriber index is recovered
//! from the CLIENTID the server echoes in its reply (RFC 8415 §18.3: the server copies the
//! Client Identifier option into every reply).

use std::net::Ipv6Addr;

/// RFC 8415 §7.3 message types.
pub mod msg {
    pub const SOLICIT: u8 = 1;
    pub const ADVERTISE: u8 = 2;
    pub const REQUEST: u8 = 3;
    pub const CONFIRM: u8 = 4;
    pub const RENEW: u8 = 5;
    pub const REBIND: u8 = 6;
    pub const REPLY: u8 = 7;
    pub const RELEASE: u8 = 8;
    pub const DECLINE: u8 = 9;
    pub const INFORMATION_REQUEST: u8 = 11;
    pub const RELAY_FORW: u8 = 12;
    pub const RELAY_REPL: u8 = 13;
}

/// RFC 8415 §21 option codes (plus RFC 4580 Subscriber-ID and RFC 4649 Remote-ID).
pub mod opt {
    pub const CLIENTID: u16 = 1;
    pub const SERVERID: u16 = 2;
    pub const IA_NA: u16 = 3;
    pub const IAADDR: u16 = 5;
    pub const ORO: u16 = 6;
    pub const ELAPSED_TIME: u16 = 8;
    pub const RELAY_MSG: u16 = 9;
    pub const STATUS_CODE: u16 = 13;
    pub const RAPID_COMMIT: u16 = 14;
    pub const INTERFACE_ID: u16 = 18;
    pub const DNS_SERVERS: u16 = 23;
    pub const DOMAIN_LIST: u16 = 24;
    pub const IA_PD: u16 = 25;
    pub const IAPREFIX: u16 = 26;
    pub const REMOTE_ID: u16 = 37;
    pub const SUBSCRIBER_ID: u16 = 38;
}

/// RFC 8415 §21.13 status codes the rig counts.
pub mod status {
    pub const SUCCESS: u16 = 0;
    pub const NO_ADDRS_AVAIL: u16 = 2;
    pub const NO_BINDING: u16 = 3;
    pub const NOT_ON_LINK: u16 = 4;
    pub const USE_MULTICAST: u16 = 5;
    pub const NO_PREFIX_AVAIL: u16 = 6;
}

/// Length of the DUID-LL the rig gives each subscriber.
pub const DUID_LEN: usize = 10;
/// IAID of the IA_NA (and, separately, of the IA_PD) every emulated CPE asks for.
pub const IAID_NA: u32 = 1;
pub const IAID_PD: u32 = 2;
/// Enterprise number used in the emulated relays' Remote-ID (RFC 4649): the Broadband Forum.
pub const REMOTE_ID_ENTERPRISE: u32 = 3561;
/// Largest packet the rig emits (relay header + relay options + client message).
pub const MAX_PACKET: usize = 512;

/// Subscriber `index`'s DUID-LL (RFC 8415 §11.4, hardware type 1 = Ethernet), with a locally
/// administered MAC address so it never collides with a real device's.
pub fn duid(seed: u8, index: u32) -> [u8; DUID_LEN] {
    let i = index.to_be_bytes();
    [0, 3, 0, 1, 0x02, seed, i[0], i[1], i[2], i[3]]
}

/// Inverse of [`duid`]: the subscriber index if `bytes` is one of this run's DUIDs.
pub fn subscriber_of(seed: u8, bytes: &[u8]) -> Option<u32> {
    match bytes {
        [0, 3, 0, 1, 0x02, s, a, b, c, d] if *s == seed => {
            Some(u32::from_be_bytes([*a, *b, *c, *d]))
        }
        _ => None,
    }
}

/// The emulated CPE's link-local address, as its relay reports it in Relay-forw peer-address
/// (RFC 8415 §9.1): modified EUI-64 of the DUID's MAC address.
pub fn peer_address(seed: u8, index: u32) -> Ipv6Addr {
    let i = index.to_be_bytes();
    Ipv6Addr::from([
        0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x00, seed, i[0], 0xff, 0xfe, i[1], i[2], i[3],
    ])
}

/// What the rig asks for in one client message.
#[derive(Clone, Copy, Debug)]
pub struct ClientMessage<'a> {
    pub msg_type: u8,
    pub xid: u32,
    pub seed: u8,
    pub subscriber: u32,
    /// Centiseconds since the first transmission of this exchange (RFC 8415 §21.9).
    pub elapsed_cs: u16,
    pub server_id: Option<&'a [u8]>,
    /// Ask for an IA_NA; with `Some(addr)` the address is included (Request/Renew/Rebind/
    /// Release carry the leased address, RFC 8415 §18.2.2-§18.2.6).
    pub ia_na: Option<Option<Ipv6Addr>>,
    /// Ask for an IA_PD; with `Some((len, prefix))` the prefix is included.
    pub ia_pd: Option<Option<(u8, Ipv6Addr)>>,
    pub rapid_commit: bool,
}

/// The relay agent that wraps a client message (RFC 8415 §19.1.1).
#[derive(Clone, Copy, Debug)]
pub struct RelayInfo {
    pub link_address: Ipv6Addr,
    pub peer_address: Ipv6Addr,
    /// Emulated relay number (goes into Interface-ID as the relay's port name).
    pub relay: u32,
    /// Subscriber index (goes into Remote-ID and Subscriber-ID, as access nodes do).
    pub subscriber: u32,
}

/// A bounds-checked cursor over an output buffer. The rig's buffers are sized by
/// [`MAX_PACKET`], so running out of room is a bug in the caller, reported as `None`.
struct Writer<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> Option<()> {
        let end = self.len.checked_add(bytes.len())?;
        self.buf.get_mut(self.len..end)?.copy_from_slice(bytes);
        self.len = end;
        Some(())
    }
    fn u8(&mut self, v: u8) -> Option<()> {
        self.put(&[v])
    }
    fn u16(&mut self, v: u16) -> Option<()> {
        self.put(&v.to_be_bytes())
    }
    fn u32(&mut self, v: u32) -> Option<()> {
        self.put(&v.to_be_bytes())
    }
    /// Writes an option header with a zero length and returns where to patch it.
    fn begin(&mut self, code: u16) -> Option<usize> {
        self.u16(code)?;
        let at = self.len;
        self.u16(0)?;
        Some(at)
    }
    fn end(&mut self, at: usize) -> Option<()> {
        let len = u16::try_from(self.len - at - 2).ok()?;
        self.buf
            .get_mut(at..at + 2)?
            .copy_from_slice(&len.to_be_bytes());
        Some(())
    }
    fn option(&mut self, code: u16, body: &[u8]) -> Option<()> {
        self.u16(code)?;
        self.u16(u16::try_from(body.len()).ok()?)?;
        self.put(body)
    }
}

/// Writes `m` (wrapped in a Relay-forw when `relay` is given) into `buf`; returns the length,
/// or `None` when `buf` is too small.
pub fn emit(m: &ClientMessage<'_>, relay: Option<&RelayInfo>, buf: &mut [u8]) -> Option<usize> {
    let mut w = Writer { buf, len: 0 };
    let relay_msg_at = match relay {
        Some(r) => {
            // RFC 8415 §9.1: msg-type, hop-count, link-address, peer-address, options.
            w.u8(msg::RELAY_FORW)?;
            w.u8(0)?;
            w.put(&r.link_address.octets())?;
            w.put(&r.peer_address.octets())?;
            // RFC 8415 §21.18: Interface-ID, opaque to the server and echoed back.
            let mut ifid = *b"rly-00000000";
            hex8(&mut ifid[4..], r.relay);
            w.option(opt::INTERFACE_ID, &ifid)?;
            // RFC 4649: Remote-ID = enterprise number + access-node circuit identifier.
            let at = w.begin(opt::REMOTE_ID)?;
            w.u32(REMOTE_ID_ENTERPRISE)?;
            let mut rid = *b"cpe-00000000";
            hex8(&mut rid[4..], r.subscriber);
            w.put(&rid)?;
            w.end(at)?;
            // RFC 4580: Subscriber-ID, the operator's name for the subscriber line.
            let mut sid = *b"sub-00000000";
            hex8(&mut sid[4..], r.subscriber);
            w.option(opt::SUBSCRIBER_ID, &sid)?;
            Some(w.begin(opt::RELAY_MSG)?)
        }
        None => None,
    };
    // RFC 8415 §8: msg-type, transaction-id (24 bits), options.
    w.u8(m.msg_type)?;
    w.put(&m.xid.to_be_bytes()[1..])?;
    w.option(opt::CLIENTID, &duid(m.seed, m.subscriber))?;
    if let Some(sid) = m.server_id {
        w.option(opt::SERVERID, sid)?;
    }
    // RFC 8415 §21.9: every client message carries Elapsed Time.
    w.option(opt::ELAPSED_TIME, &m.elapsed_cs.to_be_bytes())?;
    if m.msg_type != msg::RELEASE {
        // RFC 8415 §21.7: ask for what a CPE configures from DHCPv6 (DNS servers, search list).
        let mut oro = [0u8; 4];
        oro[..2].copy_from_slice(&opt::DNS_SERVERS.to_be_bytes());
        oro[2..].copy_from_slice(&opt::DOMAIN_LIST.to_be_bytes());
        w.option(opt::ORO, &oro)?;
    }
    if m.rapid_commit {
        w.option(opt::RAPID_COMMIT, &[])?;
    }
    if let Some(addr) = m.ia_na {
        // RFC 8415 §21.4: IAID, T1, T2 (0 = no preference), then IA Address options.
        let at = w.begin(opt::IA_NA)?;
        w.u32(IAID_NA)?;
        w.u32(0)?;
        w.u32(0)?;
        if let Some(a) = addr {
            let ia = w.begin(opt::IAADDR)?;
            w.put(&a.octets())?;
            w.u32(0)?;
            w.u32(0)?;
            w.end(ia)?;
        }
        w.end(at)?;
    }
    if let Some(prefix) = m.ia_pd {
        // RFC 8415 §21.21 / §21.22: IA_PD, then IA Prefix (lifetimes, length, prefix).
        let at = w.begin(opt::IA_PD)?;
        w.u32(IAID_PD)?;
        w.u32(0)?;
        w.u32(0)?;
        if let Some((len, p)) = prefix {
            let ip = w.begin(opt::IAPREFIX)?;
            w.u32(0)?;
            w.u32(0)?;
            w.u8(len)?;
            w.put(&p.octets())?;
            w.end(ip)?;
        }
        w.end(at)?;
    }
    if let Some(at) = relay_msg_at {
        w.end(at)?;
    }
    Some(w.len)
}

fn hex8(out: &mut [u8], v: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, o) in out.iter_mut().take(8).enumerate() {
        *o = HEX[((v >> (28 - 4 * i)) & 0xf) as usize];
    }
}

/// Why a received datagram was not a usable reply (each is a counter in the results).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Shorter than its header or an option overruns its container.
    Truncated,
    /// Relay-repl nesting deeper than RFC 8415 §7.6 HOP_COUNT_LIMIT (32).
    TooDeep,
    /// Relay-repl without a Relay Message option.
    NoRelayMessage,
    /// Not a message a server sends to a client (Advertise or Reply).
    NotAReply,
    /// No CLIENTID, or one that is not one of this run's subscribers.
    NotOurs,
}

/// The parts of a server's Advertise/Reply the rig acts on; borrowed from the datagram.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReplyView<'a> {
    pub msg_type: u8,
    pub xid: u32,
    pub subscriber: u32,
    pub server_id: &'a [u8],
    /// Top-level Status Code (RFC 8415 §21.13), if any.
    pub status: Option<u16>,
    pub rapid_commit: bool,
    pub na: Option<Ipv6Addr>,
    pub na_status: Option<u16>,
    pub na_t1: u32,
    pub pd: Option<(u8, Ipv6Addr)>,
    pub pd_status: Option<u16>,
    pub pd_t1: u32,
}

/// Iterates (code, body) over an option area, failing on the first overrun.
pub(crate) fn options(mut area: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8]), ParseError>> {
    std::iter::from_fn(move || {
        if area.is_empty() {
            return None;
        }
        if area.len() < 4 {
            area = &[];
            return Some(Err(ParseError::Truncated));
        }
        let code = u16::from_be_bytes([area[0], area[1]]);
        let len = usize::from(u16::from_be_bytes([area[2], area[3]]));
        let Some(body) = area.get(4..4 + len) else {
            area = &[];
            return Some(Err(ParseError::Truncated));
        };
        area = &area[4 + len..];
        Some(Ok((code, body)))
    })
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn status_of(body: &[u8]) -> Result<u16, ParseError> {
    body.get(..2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or(ParseError::Truncated)
}

/// Reads a server → client message, unwrapping Relay-repl layers (RFC 8415 §19.2/§9.2).
pub fn parse_reply(seed: u8, mut pkt: &[u8]) -> Result<ReplyView<'_>, ParseError> {
    for _ in 0..=32 {
        let (&t, rest) = pkt.split_first().ok_or(ParseError::Truncated)?;
        if t != msg::RELAY_REPL {
            let _ = rest;
            return parse_client_reply(seed, pkt);
        }
        // hop-count(1) link-address(16) peer-address(16), then options.
        let area = pkt.get(34..).ok_or(ParseError::Truncated)?;
        let mut inner = None;
        for o in options(area) {
            let (code, body) = o?;
            if code == opt::RELAY_MSG {
                inner = Some(body);
            }
        }
        pkt = inner.ok_or(ParseError::NoRelayMessage)?;
    }
    Err(ParseError::TooDeep)
}

fn parse_client_reply(seed: u8, pkt: &[u8]) -> Result<ReplyView<'_>, ParseError> {
    let header = pkt.get(..4).ok_or(ParseError::Truncated)?;
    let mut v = ReplyView {
        msg_type: header[0],
        xid: u32::from_be_bytes([0, header[1], header[2], header[3]]),
        ..ReplyView::default()
    };
    if v.msg_type != msg::ADVERTISE && v.msg_type != msg::REPLY {
        return Err(ParseError::NotAReply);
    }
    let mut subscriber = None;
    for o in options(&pkt[4..]) {
        let (code, body) = o?;
        match code {
            opt::CLIENTID => subscriber = subscriber_of(seed, body),
            opt::SERVERID => v.server_id = body,
            opt::STATUS_CODE => v.status = Some(status_of(body)?),
            opt::RAPID_COMMIT => v.rapid_commit = true,
            opt::IA_NA | opt::IA_PD => {
                // IAID(4) T1(4) T2(4), then IA options.
                let fixed = body.get(..12).ok_or(ParseError::Truncated)?;
                let t1 = be32(&fixed[4..8]);
                let mut st = None;
                let mut lease = None;
                for o in options(&body[12..]) {
                    let (c, b) = o?;
                    match c {
                        opt::STATUS_CODE => st = Some(status_of(b)?),
                        opt::IAADDR if code == opt::IA_NA => {
                            let a = b.get(..24).ok_or(ParseError::Truncated)?;
                            // A zero valid lifetime returns the address (RFC 8415 §18.3.4):
                            // it is not a lease the client may keep.
                            if be32(&a[20..24]) != 0 {
                                let octets: [u8; 16] = a[..16].try_into().unwrap_or([0; 16]);
                                lease = Some((128, Ipv6Addr::from(octets)));
                            }
                        }
                        opt::IAPREFIX if code == opt::IA_PD => {
                            let p = b.get(..25).ok_or(ParseError::Truncated)?;
                            if be32(&p[4..8]) != 0 {
                                let octets: [u8; 16] = p[9..25].try_into().unwrap_or([0; 16]);
                                lease = Some((p[8], Ipv6Addr::from(octets)));
                            }
                        }
                        _ => {}
                    }
                }
                if code == opt::IA_NA {
                    v.na = lease.map(|(_, a)| a);
                    v.na_status = st;
                    v.na_t1 = t1;
                } else {
                    v.pd = lease;
                    v.pd_status = st;
                    v.pd_t1 = t1;
                }
            }
            _ => {}
        }
    }
    v.subscriber = subscriber.ok_or(ParseError::NotOurs)?;
    Ok(v)
}

/// The reflector's answer: turns a client (or relay) message into the message type a server
/// would answer with, in place and without changing its size, so a client sees a reply it
/// can match (RFC 8415 §7.3 pairs: Solicit → Advertise, or Reply with Rapid Commit §18.3.1;
/// every other client message → Reply; Relay-forw → Relay-repl at every level, §19.3).
/// Returns false for datagrams that are not client or relay messages (left untouched).
pub fn reflect_in_place(pkt: &mut [u8]) -> bool {
    let mut off = 0usize;
    for _ in 0..=32 {
        let Some(&t) = pkt.get(off) else { return false };
        match t {
            msg::RELAY_FORW => {
                pkt[off] = msg::RELAY_REPL;
                let start = off + 34;
                let Some(area) = pkt.get(start..) else {
                    return false;
                };
                let mut inner = None;
                let mut at = start;
                for o in options(area) {
                    let Ok((code, body)) = o else { return false };
                    if code == opt::RELAY_MSG {
                        inner = Some(at + 4);
                    }
                    at += 4 + body.len();
                }
                match inner {
                    Some(i) => off = i,
                    None => return false,
                }
            }
            msg::SOLICIT => {
                let rapid = pkt
                    .get(off + 4..)
                    .map(|a| options(a).any(|o| matches!(o, Ok((opt::RAPID_COMMIT, _)))))
                    .unwrap_or(false);
                pkt[off] = if rapid { msg::REPLY } else { msg::ADVERTISE };
                return true;
            }
            msg::REQUEST
            | msg::CONFIRM
            | msg::RENEW
            | msg::REBIND
            | msg::RELEASE
            | msg::DECLINE
            | msg::INFORMATION_REQUEST => {
                pkt[off] = msg::REPLY;
                return true;
            }
            _ => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solicit(subscriber: u32) -> ClientMessage<'static> {
        ClientMessage {
            msg_type: msg::SOLICIT,
            xid: 0x00ab_cdef,
            seed: 7,
            subscriber,
            elapsed_cs: 0,
            server_id: None,
            ia_na: Some(None),
            ia_pd: Some(None),
            rapid_commit: false,
        }
    }

    #[test]
    fn duid_round_trips_and_rejects_foreign_duids() {
        for i in [0, 1, 0xffff, 9_999_999, u32::MAX] {
            assert_eq!(subscriber_of(7, &duid(7, i)), Some(i));
            assert_eq!(subscriber_of(8, &duid(7, i)), None);
        }
        assert_eq!(subscriber_of(7, &[0, 1, 0, 1, 2, 7, 0, 0, 0, 1]), None);
    }

    #[test]
    fn solicit_layout_matches_rfc8415() {
        let mut buf = [0u8; MAX_PACKET];
        let n = emit(&solicit(5), None, &mut buf).unwrap();
        let p = &buf[..n];
        assert_eq!(p[..4], [1, 0xab, 0xcd, 0xef]);
        // CLIENTID option: code 1, length 10, DUID-LL.
        assert_eq!(p[4..8], [0, 1, 0, 10]);
        assert_eq!(p[8..18], duid(7, 5));
        // Elapsed time follows, then ORO, IA_NA (12-byte body) and IA_PD.
        assert_eq!(p[18..24], [0, 8, 0, 2, 0, 0]);
        assert_eq!(p[24..32], [0, 6, 0, 4, 0, 23, 0, 24]);
        assert_eq!(p[32..36], [0, 3, 0, 12]);
        assert_eq!(p[36..40], IAID_NA.to_be_bytes());
        assert_eq!(p[48..52], [0, 25, 0, 12]);
        assert_eq!(n, 64);
    }

    /// Builds the reply a server would send for `m` with an address and prefix.
    fn server_reply(xid: u32, subscriber: u32, na: Ipv6Addr, pd: (u8, Ipv6Addr)) -> Vec<u8> {
        let mut p = vec![msg::REPLY];
        p.extend_from_slice(&xid.to_be_bytes()[1..]);
        let d = duid(7, subscriber);
        p.extend_from_slice(&[0, 1, 0, 10]);
        p.extend_from_slice(&d);
        p.extend_from_slice(&[0, 2, 0, 4, 0xaa, 0xbb, 0xcc, 0xdd]);
        p.extend_from_slice(&[0, 3, 0, 40]);
        p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 3, 232, 0, 0, 7, 208]);
        p.extend_from_slice(&[0, 5, 0, 24]);
        p.extend_from_slice(&na.octets());
        p.extend_from_slice(&[0, 0, 11, 184, 0, 0, 15, 160]);
        p.extend_from_slice(&[0, 25, 0, 41]);
        p.extend_from_slice(&[0, 0, 0, 2, 0, 0, 3, 232, 0, 0, 7, 208]);
        p.extend_from_slice(&[0, 26, 0, 25, 0, 0, 11, 184, 0, 0, 15, 160, pd.0]);
        p.extend_from_slice(&pd.1.octets());
        p
    }

    #[test]
    fn reply_fields_are_extracted_direct_and_relayed() {
        let na: Ipv6Addr = "2001:db8:1::1234".parse().unwrap();
        let pd = (56, "2001:db8:8000:100::".parse().unwrap());
        let r = server_reply(0x123456, 42, na, pd);
        let v = parse_reply(7, &r).unwrap();
        assert_eq!(
            (v.msg_type, v.xid, v.subscriber),
            (msg::REPLY, 0x123456, 42)
        );
        assert_eq!(v.server_id, &[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(
            (v.na, v.na_t1, v.pd, v.pd_t1),
            (Some(na), 1000, Some(pd), 1000)
        );

        // The same reply inside a Relay-repl with an Interface-ID before the Relay Message.
        let mut rr = vec![msg::RELAY_REPL, 0];
        rr.extend_from_slice(&[0u8; 32]);
        rr.extend_from_slice(&[0, 18, 0, 2, b'x', b'y']);
        rr.extend_from_slice(&[0, 9]);
        rr.extend_from_slice(&(r.len() as u16).to_be_bytes());
        rr.extend_from_slice(&r);
        let v = parse_reply(7, &rr).unwrap();
        assert_eq!((v.subscriber, v.na), (42, Some(na)));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let r = server_reply(1, 1, Ipv6Addr::LOCALHOST, (56, Ipv6Addr::LOCALHOST));
        // Cuts at an option boundary leave a shorter but well-formed reply.
        let boundaries = [18, 26, 70];
        for n in 0..r.len() {
            let ok = parse_reply(7, &r[..n]).is_ok();
            assert_eq!(ok, boundaries.contains(&n), "prefix of {n} bytes");
        }
    }

    #[test]
    fn relayed_solicit_is_reflected_into_a_parsable_relay_reply() {
        let relay = RelayInfo {
            link_address: "2001:db8:2::1".parse().unwrap(),
            peer_address: peer_address(7, 9),
            relay: 3,
            subscriber: 9,
        };
        let mut m = solicit(9);
        m.rapid_commit = true;
        let mut buf = [0u8; MAX_PACKET];
        let n = emit(&m, Some(&relay), &mut buf).unwrap();
        assert_eq!(buf[0], msg::RELAY_FORW);
        assert!(reflect_in_place(&mut buf[..n]));
        let v = parse_reply(7, &buf[..n]).unwrap();
        assert_eq!(
            (v.msg_type, v.subscriber, v.rapid_commit),
            (msg::REPLY, 9, true)
        );
        // Without rapid commit a Solicit is answered by an Advertise.
        let n = emit(&solicit(9), None, &mut buf).unwrap();
        assert!(reflect_in_place(&mut buf[..n]));
        assert_eq!(buf[0], msg::ADVERTISE);
    }

    #[test]
    fn garbage_never_panics() {
        let mut x = 0x1234_5678u32;
        for len in 0..300 {
            let mut b: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            if let Some(f) = b.first_mut() {
                *f = [msg::RELAY_REPL, msg::REPLY, msg::RELAY_FORW, msg::SOLICIT][len % 4];
            }
            let _ = parse_reply(7, &b);
            let _ = reflect_in_place(&mut b);
        }
    }
}
