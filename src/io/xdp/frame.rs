//! Ethernet frames as AF_XDP delivers and sends them: a zero-copy view that finds the DHCPv6
//! payload in a received frame (Ethernet, up to two VLAN tags, IPv6, UDP; every length
//! checked) and a builder that frames a reply in place (reflected L2, IPv6 and UDP headers,
//! UDP checksum).
//!
//! Pure code over byte slices: no rings, no sockets, so all of it is unit and property tested
//! here, and fuzzed through the same entry point as the ring code uses.

use std::net::{Ipv6Addr, SocketAddrV6};

use crate::io::L2Header;

/// EtherType of IPv6 (RFC 2464 §3).
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// TPID of an IEEE 802.1Q (customer) tag.
pub const TPID_8021Q: u16 = 0x8100;
/// TPID of an IEEE 802.1ad (service, QinQ outer) tag.
pub const TPID_8021AD: u16 = 0x88a8;
/// IPv6 next-header value of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// RFC 8415 §7.2: servers and relay agents listen on UDP port 547.
pub const SERVER_PORT: u16 = 547;

const ETH_HEADER: usize = 14;
const VLAN_TAG: usize = 4;
const IPV6_HEADER: usize = 40;
const UDP_HEADER: usize = 8;
/// The largest header stack a reply carries: Ethernet + two tags + IPv6 + UDP.
pub const MAX_HEADERS: usize = ETH_HEADER + 2 * VLAN_TAG + IPV6_HEADER + UDP_HEADER;

/// RFC 8415 §7.1: All_DHCP_Relay_Agents_and_Servers (link-scoped).
pub const ALL_DHCP_RELAY_AGENTS_AND_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);
/// RFC 8415 §7.1: All_DHCP_Servers (site-scoped), used by relays.
pub const ALL_DHCP_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff05, 0, 0, 0, 0, 0, 1, 3);

/// Why a received frame is not handed to the engine. One counter per variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameError {
    /// A header is cut short by the end of the frame.
    Truncated,
    /// More than two VLAN tags (the XDP program passes these; seen only if it changes).
    TooManyVlans,
    /// The EtherType after the tags is not IPv6.
    NotIpv6,
    /// The IP version field is not 6.
    BadIpVersion,
    /// The next header is not UDP (extension headers are left to the kernel).
    NotUdp,
    /// The IPv6 payload length runs past the end of the frame.
    BadIpLength,
    /// The UDP length is below 8 or runs past the IPv6 payload.
    BadUdpLength,
    /// The UDP checksum is zero (forbidden over IPv6, RFC 8200 §8.1) or wrong.
    BadChecksum,
    /// The destination port is not 547.
    NotServerPort,
    /// Multicast to a group other than the two DHCPv6 server groups.
    NotOurGroup,
    /// The reply does not fit the frame buffer.
    ReplyTooLarge,
}

impl FrameError {
    pub const ALL: [FrameError; 11] = [
        FrameError::Truncated,
        FrameError::TooManyVlans,
        FrameError::NotIpv6,
        FrameError::BadIpVersion,
        FrameError::NotUdp,
        FrameError::BadIpLength,
        FrameError::BadUdpLength,
        FrameError::BadChecksum,
        FrameError::NotServerPort,
        FrameError::NotOurGroup,
        FrameError::ReplyTooLarge,
    ];

    /// Dense index for counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            FrameError::Truncated => "truncated",
            FrameError::TooManyVlans => "too_many_vlans",
            FrameError::NotIpv6 => "not_ipv6",
            FrameError::BadIpVersion => "bad_ip_version",
            FrameError::NotUdp => "not_udp",
            FrameError::BadIpLength => "bad_ip_length",
            FrameError::BadUdpLength => "bad_udp_length",
            FrameError::BadChecksum => "bad_checksum",
            FrameError::NotServerPort => "not_server_port",
            FrameError::NotOurGroup => "not_our_group",
            FrameError::ReplyTooLarge => "reply_too_large",
        }
    }
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for FrameError {}

/// A received DHCPv6 datagram, viewed in place in its frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxFrame<'a> {
    pub l2: L2Header,
    /// Source address and port; link-local sources carry `scope_id` = the receiving ifindex.
    pub src: SocketAddrV6,
    pub dst: Ipv6Addr,
    pub hop_limit: u8,
    /// The UDP payload (the DHCPv6 message), bounded by the UDP length.
    pub payload: &'a [u8],
}

fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn ipv6_at(bytes: &[u8], at: usize) -> Ipv6Addr {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&bytes[at..at + 16]);
    Ipv6Addr::from(octets)
}

fn is_link_local(addr: &Ipv6Addr) -> bool {
    addr.segments()[0] & 0xffc0 == 0xfe80
}

/// Parses a frame received on interface `ifindex`. `verify_checksum` checks the UDP checksum
/// as the kernel's UDP layer would (turn it off only behind checksum-offloading links that
/// deliver partial checksums, like a veth peer with TX offload on).
pub fn parse(frame: &[u8], ifindex: u32, verify_checksum: bool) -> Result<RxFrame<'_>, FrameError> {
    parse_for_port(frame, ifindex, verify_checksum, SERVER_PORT)
}

/// [`parse`] for a server listening on `port` instead of 547.
pub fn parse_for_port(
    frame: &[u8],
    ifindex: u32,
    verify_checksum: bool,
    port: u16,
) -> Result<RxFrame<'_>, FrameError> {
    if frame.len() < ETH_HEADER {
        return Err(FrameError::Truncated);
    }
    let mut l2 = L2Header::default();
    l2.dst_mac.copy_from_slice(&frame[0..6]);
    l2.src_mac.copy_from_slice(&frame[6..12]);
    let mut ethertype = be16(frame, 12);
    let mut at = ETH_HEADER;
    while ethertype == TPID_8021Q || ethertype == TPID_8021AD {
        if usize::from(l2.vlan_count) == l2.vlans.len() {
            return Err(FrameError::TooManyVlans);
        }
        if frame.len() < at + VLAN_TAG {
            return Err(FrameError::Truncated);
        }
        l2.vlans[usize::from(l2.vlan_count)] = (ethertype, be16(frame, at));
        l2.vlan_count += 1;
        ethertype = be16(frame, at + 2);
        at += VLAN_TAG;
    }
    if ethertype != ETHERTYPE_IPV6 {
        return Err(FrameError::NotIpv6);
    }

    let ip = &frame[at..];
    if ip.len() < IPV6_HEADER {
        return Err(FrameError::Truncated);
    }
    if ip[0] >> 4 != 6 {
        return Err(FrameError::BadIpVersion);
    }
    // The IPv6 payload length, not the frame length, bounds the packet: frames may carry
    // padding or a trailer after it.
    let payload_length = usize::from(be16(ip, 4));
    if ip[6] != IPPROTO_UDP {
        return Err(FrameError::NotUdp);
    }
    let hop_limit = ip[7];
    let src = ipv6_at(ip, 8);
    let dst = ipv6_at(ip, 24);
    if ip.len() - IPV6_HEADER < payload_length {
        return Err(FrameError::BadIpLength);
    }
    let udp = &ip[IPV6_HEADER..IPV6_HEADER + payload_length];
    if udp.len() < UDP_HEADER {
        return Err(FrameError::Truncated);
    }
    let src_port = be16(udp, 0);
    let dst_port = be16(udp, 2);
    let udp_length = usize::from(be16(udp, 4));
    if udp_length < UDP_HEADER || udp_length > udp.len() {
        return Err(FrameError::BadUdpLength);
    }
    let udp = &udp[..udp_length];
    if dst_port != port {
        return Err(FrameError::NotServerPort);
    }
    if dst.is_multicast() && dst != ALL_DHCP_RELAY_AGENTS_AND_SERVERS && dst != ALL_DHCP_SERVERS {
        return Err(FrameError::NotOurGroup);
    }
    if verify_checksum {
        // RFC 8200 §8.1: a zero UDP checksum over IPv6 is discarded; otherwise the one's
        // complement sum over pseudo-header and datagram (checksum included) is 0xffff.
        if be16(udp, 6) == 0 || checksum_sum(&src, &dst, udp) != 0xffff {
            return Err(FrameError::BadChecksum);
        }
    }
    let scope_id = if is_link_local(&src) { ifindex } else { 0 };
    Ok(RxFrame {
        l2,
        src: SocketAddrV6::new(src, src_port, 0, scope_id),
        dst,
        hop_limit,
        payload: &udp[UDP_HEADER..],
    })
}

/// Adds `bytes` as big-endian 16-bit words to a one's complement accumulator.
fn add_words(sum: u64, bytes: &[u8]) -> u64 {
    // RFC 1071 §2(B): the one's complement sum does not depend on byte order, so sum the
    // data as native 64-bit words (end-around carry) and swap the folded 16-bit result to
    // network order once: a quarter of the additions of a 16-bit-word loop, no byte swaps.
    let mut acc = 0u64;
    let mut add = |word: u64| {
        let (s, carry) = acc.overflowing_add(word);
        acc = s + u64::from(carry);
    };
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        add(u64::from_ne_bytes(word));
    }
    // The tail, zero-padded: an odd last byte is the high byte of its word (RFC 1071).
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut tail = [0u8; 8];
        tail[..rest.len()].copy_from_slice(rest);
        add(u64::from_ne_bytes(tail));
    }
    sum + u64::from(u16::from_be(fold(acc)))
}

fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// One's complement sum of the IPv6 pseudo-header (RFC 8200 §8.1) and the UDP datagram.
fn checksum_sum(src: &Ipv6Addr, dst: &Ipv6Addr, udp: &[u8]) -> u16 {
    let mut sum = add_words(0, &src.octets());
    sum = add_words(sum, &dst.octets());
    sum += udp.len() as u64; // upper-layer packet length (fits: frames are < 64 KiB)
    sum += u64::from(IPPROTO_UDP);
    fold(add_words(sum, udp))
}

/// Where a reply is framed from: the interface's own MAC and the request's L2 header.
#[derive(Clone, Copy, Debug)]
pub struct ReplyFraming<'a> {
    /// Source MAC of the reply: the interface's address (the request may have gone to a
    /// multicast MAC, which is never a valid source).
    pub own_mac: [u8; 6],
    /// The request's L2 header: its source MAC becomes the destination, its tags are kept.
    pub request_l2: &'a L2Header,
    pub src: Ipv6Addr,
    pub dst: SocketAddrV6,
    pub src_port: u16,
    pub hop_limit: u8,
}

/// Frames `payload` as a UDP/IPv6 reply into `buf` and returns the frame length.
/// Writes the headers and copies the payload once; computes the UDP checksum.
pub fn write_reply(
    buf: &mut [u8],
    framing: &ReplyFraming<'_>,
    payload: &[u8],
) -> Result<usize, FrameError> {
    let vlans = usize::from(framing.request_l2.vlan_count).min(2);
    let l2_len = ETH_HEADER + vlans * VLAN_TAG;
    let udp_len = UDP_HEADER + payload.len();
    let total = l2_len + IPV6_HEADER + udp_len;
    if total > buf.len() || udp_len > usize::from(u16::MAX) {
        return Err(FrameError::ReplyTooLarge);
    }
    let buf = &mut buf[..total];

    buf[0..6].copy_from_slice(&framing.request_l2.src_mac);
    buf[6..12].copy_from_slice(&framing.own_mac);
    let mut at = 12;
    for &(tpid, tci) in &framing.request_l2.vlans[..vlans] {
        buf[at..at + 2].copy_from_slice(&tpid.to_be_bytes());
        buf[at + 2..at + 4].copy_from_slice(&tci.to_be_bytes());
        at += VLAN_TAG;
    }
    buf[at..at + 2].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
    at += 2;

    let ip = &mut buf[at..];
    // Version 6, traffic class 0, flow label 0.
    ip[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
    ip[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    ip[6] = IPPROTO_UDP;
    ip[7] = framing.hop_limit;
    ip[8..24].copy_from_slice(&framing.src.octets());
    ip[24..40].copy_from_slice(&framing.dst.ip().octets());

    let udp = &mut ip[IPV6_HEADER..];
    udp[0..2].copy_from_slice(&framing.src_port.to_be_bytes());
    udp[2..4].copy_from_slice(&framing.dst.port().to_be_bytes());
    udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    udp[UDP_HEADER..].copy_from_slice(payload);
    fill_udp_checksum(&framing.src, framing.dst.ip(), udp);
    Ok(total)
}

/// Computes and stores the UDP checksum of `udp` (header and payload, `udp.len()` bytes,
/// at least the 8-byte header) sent from `src` to `dst`; the checksum field's old value is
/// ignored. For code that edits a datagram in place (the bench reflector) as well as
/// [`write_reply`].
pub fn fill_udp_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, udp: &mut [u8]) {
    if udp.len() < UDP_HEADER {
        return;
    }
    udp[6..8].copy_from_slice(&[0, 0]);
    let mut checksum = !checksum_sum(src, dst, udp);
    // RFC 8200 §8.1 / RFC 768: a computed zero is sent as all ones.
    if checksum == 0 {
        checksum = 0xffff;
    }
    udp[6..8].copy_from_slice(&checksum.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
    const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

    fn client_ll() -> Ipv6Addr {
        "fe80::1".parse().unwrap()
    }

    /// A Solicit-like frame built with the reply builder (then checked against fixed bytes
    /// below, so the builder is not only tested against itself).
    fn frame(l2: &L2Header, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; 1600];
        let reflected = L2Header {
            src_mac: SERVER_MAC,
            ..*l2
        };
        let n = write_reply(
            &mut buf,
            &ReplyFraming {
                own_mac: CLIENT_MAC,
                request_l2: &reflected,
                src: client_ll(),
                dst: SocketAddrV6::new(ALL_DHCP_RELAY_AGENTS_AND_SERVERS, 547, 0, 0),
                src_port: 546,
                hop_limit: 1,
            },
            payload,
        )
        .unwrap();
        buf.truncate(n);
        buf
    }

    /// A minimal client frame written out byte by byte: Ethernet to the group MAC, IPv6
    /// fe80::1 -> ff02::1:2, hop limit 1, UDP 546 -> 547, a 4-byte payload. (The kernel's own
    /// UDP stack checks our checksums in the veth tests.)
    fn golden() -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&[0x33, 0x33, 0, 1, 0, 2]); // dst MAC: 33:33 + group low 32 bits
        f.extend_from_slice(&CLIENT_MAC);
        f.extend_from_slice(&[0x86, 0xdd]);
        f.extend_from_slice(&[0x60, 0, 0, 0, 0, 12, 17, 1]);
        f.extend_from_slice(&client_ll().octets());
        f.extend_from_slice(&ALL_DHCP_RELAY_AGENTS_AND_SERVERS.octets());
        f.extend_from_slice(&[0x02, 0x22, 0x02, 0x23, 0, 12]);
        // Checksum computed by hand: pseudo-header sum + UDP words, complemented.
        let sum = checksum_sum(
            &client_ll(),
            &ALL_DHCP_RELAY_AGENTS_AND_SERVERS,
            &[0x02, 0x22, 0x02, 0x23, 0, 12, 0, 0, 1, 0x12, 0x34, 0x56],
        );
        f.extend_from_slice(&(!sum).to_be_bytes());
        f.extend_from_slice(&[1, 0x12, 0x34, 0x56]);
        f
    }

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 §3 example words 0001 f203 f4f5 f6f7 sum to ddf2.
        assert_eq!(
            fold(add_words(
                0,
                &[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]
            )),
            0xddf2
        );
        // Odd length pads with a zero byte.
        assert_eq!(fold(add_words(0, &[0xab])), 0xab00);
    }

    /// RFC 1071 as written: big-endian 16-bit words, an odd last byte padded with zero.
    fn reference_sum(sum: u64, bytes: &[u8]) -> u64 {
        bytes
            .chunks(2)
            .map(|w| u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
            .fold(sum, |a, w| a + w)
    }

    proptest! {
        #[test]
        fn word_sum_matches_16_bit_reference(
            bytes in proptest::collection::vec(any::<u8>(), 0..1600),
            start in 0u64..0x1_0000_0000,
        ) {
            prop_assert_eq!(
                fold(add_words(start, &bytes)),
                fold(reference_sum(start, &bytes))
            );
        }
    }

    #[test]
    fn parses_golden_solicit() {
        let f = golden();
        let rx = parse(&f, 7, true).unwrap();
        assert_eq!(rx.src, SocketAddrV6::new(client_ll(), 546, 0, 7));
        assert_eq!(rx.dst, ALL_DHCP_RELAY_AGENTS_AND_SERVERS);
        assert_eq!(rx.hop_limit, 1);
        assert_eq!(rx.payload, &[1, 0x12, 0x34, 0x56]);
        assert_eq!(rx.l2.src_mac, CLIENT_MAC);
        assert_eq!(rx.l2.vlan_count, 0);
        // The builder produces the same bytes (MAC roles as in `frame`).
        let l2 = L2Header {
            dst_mac: [0x33, 0x33, 0, 1, 0, 2],
            ..L2Header::default()
        };
        let mut built = frame(&l2, &[1, 0x12, 0x34, 0x56]);
        built[0..6].copy_from_slice(&[0x33, 0x33, 0, 1, 0, 2]);
        assert_eq!(built, f);
    }

    #[test]
    fn bytes_past_the_ipv6_payload_are_ignored() {
        // A trailer (e.g. a kept FCS) after the packet: the IPv6 payload length bounds it.
        let mut f = golden();
        f.extend_from_slice(&[0xee; 4]);
        assert_eq!(parse(&f, 1, true).unwrap().payload, &[1, 0x12, 0x34, 0x56]);
    }

    #[test]
    fn bad_checksum_zero_checksum_and_lengths_are_rejected() {
        let f = golden();
        let udp = 14 + 40;
        let mut bad = f.clone();
        bad[udp + 9] ^= 1;
        assert_eq!(parse(&bad, 1, true), Err(FrameError::BadChecksum));
        assert!(parse(&bad, 1, false).is_ok());
        let mut zero = f.clone();
        zero[udp + 6..udp + 8].copy_from_slice(&[0, 0]);
        assert_eq!(parse(&zero, 1, true), Err(FrameError::BadChecksum));
        let mut long_ip = f.clone();
        long_ip[14 + 5] = 13;
        assert_eq!(parse(&long_ip, 1, false), Err(FrameError::BadIpLength));
        let mut short_udp = f.clone();
        short_udp[udp + 5] = 7;
        assert_eq!(parse(&short_udp, 1, false), Err(FrameError::BadUdpLength));
        let mut long_udp = f.clone();
        long_udp[udp + 5] = 13;
        assert_eq!(parse(&long_udp, 1, false), Err(FrameError::BadUdpLength));
        for cut in 0..f.len() - 4 {
            assert!(parse(&f[..cut], 1, true).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn classifies_other_traffic() {
        let f = golden();
        let mut v4 = f.clone();
        v4[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(parse(&v4, 1, true), Err(FrameError::NotIpv6));
        let mut icmp = f.clone();
        icmp[14 + 6] = 58;
        assert_eq!(parse(&icmp, 1, true), Err(FrameError::NotUdp));
        let mut port = f.clone();
        port[14 + 40 + 3] = 0x24;
        assert_eq!(parse(&port, 1, false), Err(FrameError::NotServerPort));
        let mut group = f.clone();
        group[14 + 24 + 15] = 0x03; // ff02::1:3 (LLMNR)
        assert_eq!(parse(&group, 1, false), Err(FrameError::NotOurGroup));
        let mut v4hdr = f.clone();
        v4hdr[14] = 0x45;
        assert_eq!(parse(&v4hdr, 1, true), Err(FrameError::BadIpVersion));
    }

    #[test]
    fn vlan_and_qinq_tags_round_trip() {
        let single = L2Header {
            vlans: [(TPID_8021Q, 100), (0, 0)],
            vlan_count: 1,
            ..L2Header::default()
        };
        let qinq = L2Header {
            vlans: [(TPID_8021AD, 0x2000 | 10), (TPID_8021Q, 200)],
            vlan_count: 2,
            ..L2Header::default()
        };
        for l2 in [single, qinq] {
            let f = frame(&l2, b"hello");
            let rx = parse(&f, 1, true).unwrap();
            assert_eq!(rx.l2.vlan_count, l2.vlan_count);
            assert_eq!(rx.l2.vlans, l2.vlans);
            assert_eq!(rx.payload, b"hello");
        }
        // A third tag is refused.
        let f = frame(&qinq, b"x");
        let mut three = f[..12].to_vec();
        three.extend_from_slice(&[0x81, 0x00, 0, 5]);
        three.extend_from_slice(&f[12..]);
        assert_eq!(parse(&three, 1, true), Err(FrameError::TooManyVlans));
    }

    #[test]
    fn reply_reflects_l2_and_fills_headers() {
        let request = golden();
        let rx = parse(&request, 3, true).unwrap();
        let mut buf = [0u8; 256];
        let server_ll: Ipv6Addr = "fe80::2".parse().unwrap();
        let n = write_reply(
            &mut buf,
            &ReplyFraming {
                own_mac: SERVER_MAC,
                request_l2: &rx.l2,
                src: server_ll,
                dst: rx.src,
                src_port: SERVER_PORT,
                hop_limit: 64,
            },
            b"reply!",
        )
        .unwrap();
        assert_eq!(n, 14 + 40 + 8 + 6);
        assert_eq!(&buf[0..6], &CLIENT_MAC);
        assert_eq!(&buf[6..12], &SERVER_MAC);
        // Parse it back as the client's kernel would (destination port aside).
        let mut as_request = buf[..n].to_vec();
        as_request[14 + 40 + 2..14 + 40 + 4].copy_from_slice(&547u16.to_be_bytes());
        let back = parse(&as_request, 3, false).unwrap();
        assert_eq!(back.src.ip(), &server_ll);
        assert_eq!(back.src.port(), 547);
        assert_eq!(back.dst, client_ll());
        assert_eq!(back.hop_limit, 64);
        assert_eq!(back.payload, b"reply!");
        // And the checksum in the real frame verifies.
        let udp = &buf[14 + 40..n];
        assert_eq!(checksum_sum(&server_ll, &client_ll(), udp), 0xffff);
    }

    #[test]
    fn reply_too_large_is_an_error() {
        let mut buf = [0u8; 100];
        let l2 = L2Header::default();
        let framing = ReplyFraming {
            own_mac: SERVER_MAC,
            request_l2: &l2,
            src: client_ll(),
            dst: SocketAddrV6::new(client_ll(), 546, 0, 0),
            src_port: 547,
            hop_limit: 64,
        };
        assert_eq!(write_reply(&mut buf, &framing, &[0; 38]), Ok(100));
        assert_eq!(
            write_reply(&mut buf, &framing, &[0; 39]),
            Err(FrameError::ReplyTooLarge)
        );
    }

    fn arb_l2() -> impl Strategy<Value = L2Header> {
        (
            any::<[u8; 6]>(),
            any::<[u8; 6]>(),
            0u8..=2,
            prop::sample::select(vec![TPID_8021Q, TPID_8021AD]),
            any::<u16>(),
            any::<u16>(),
        )
            .prop_map(|(src_mac, dst_mac, vlan_count, tpid, tci0, tci1)| {
                let mut vlans = [(0, 0); 2];
                for (i, tci) in [tci0, tci1]
                    .into_iter()
                    .enumerate()
                    .take(usize::from(vlan_count))
                {
                    vlans[i] = (if i == 0 { tpid } else { TPID_8021Q }, tci);
                }
                L2Header {
                    src_mac,
                    dst_mac,
                    vlans,
                    vlan_count,
                }
            })
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200),
                              verify in any::<bool>()) {
            let _ = parse(&bytes, 1, verify);
        }

        #[test]
        fn mutated_frames_never_panic(flip in 0usize..80, value in any::<u8>(),
                                      cut in 0usize..80) {
            let mut f = golden();
            let i = flip % f.len();
            f[i] = value;
            f.truncate(f.len() - cut.min(f.len()));
            let _ = parse(&f, 1, true);
        }

        #[test]
        fn build_then_parse_round_trips(l2 in arb_l2(),
                                        src in any::<[u8; 16]>(),
                                        dst in any::<[u8; 16]>(),
                                        port in any::<u16>(),
                                        payload in prop::collection::vec(any::<u8>(), 0..600)) {
            let src = Ipv6Addr::from(src);
            // A unicast destination so the group filter does not apply.
            let mut dst = dst;
            dst[0] = 0x20;
            let dst = Ipv6Addr::from(dst);
            let mut buf = vec![0u8; 2048];
            let n = write_reply(&mut buf, &ReplyFraming {
                own_mac: SERVER_MAC,
                request_l2: &l2,
                src,
                dst: SocketAddrV6::new(dst, SERVER_PORT, 0, 0),
                src_port: port,
                hop_limit: 9,
            }, &payload).unwrap();
            let rx = parse(&buf[..n], 1, true).unwrap();
            prop_assert_eq!(rx.payload, &payload[..]);
            prop_assert_eq!(rx.src.port(), port);
            prop_assert_eq!(*rx.src.ip(), src);
            prop_assert_eq!(rx.dst, dst);
            prop_assert_eq!(rx.l2.dst_mac, l2.src_mac);
            prop_assert_eq!(rx.l2.src_mac, SERVER_MAC);
            prop_assert_eq!(rx.l2.vlan_count, l2.vlan_count);
            prop_assert_eq!(rx.l2.vlans, l2.vlans);
        }
    }
}
