//! Emitting DHCPv6 messages: a writer that appends to a `Vec<u8>`, opens option containers
//! (IA_NA, IAADDR, RELAY_MSG...) and back-patches their lengths when they close.
//!
//! Errors are sticky: the typed methods return `&mut Self` for chaining, the first error is
//! kept and [`Writer::finish`] reports it (and removes the partial message from the buffer),
//! so a builder never leaves a malformed message behind.

use core::net::Ipv6Addr;

use super::codes::*;
use super::domain::encode_name;
use super::relay::{Relayed, MAX_RELAY_DEPTH};
use super::Error;

/// Open containers a writer can track: every relay layer plus the deepest option nesting a
/// server emits (IA_PD > IAPREFIX > PD_EXCLUDE / STATUS_CODE) with room to spare.
const MAX_OPEN: usize = MAX_RELAY_DEPTH + 8;

/// An option container opened by [`Writer::begin`]; close it with [`Writer::end`].
#[must_use = "an opened option must be closed with Writer::end"]
#[derive(Debug)]
pub struct Mark {
    depth: usize,
}

/// Appends one DHCPv6 message (or a bare option sequence) to a buffer.
pub struct Writer<'b> {
    buf: &'b mut Vec<u8>,
    start: usize,
    /// Offsets of the 4-octet headers of the options still open, with their codes.
    open: [(usize, u16); MAX_OPEN],
    depth: usize,
    error: Option<Error>,
}

impl<'b> Writer<'b> {
    /// A writer appending bare options (or a header written with [`Writer::header`]).
    pub fn new(buf: &'b mut Vec<u8>) -> Self {
        Writer {
            start: buf.len(),
            buf,
            open: [(0, 0); MAX_OPEN],
            depth: 0,
            error: None,
        }
    }

    /// Starts a client/server message (RFC 8415 §8).
    pub fn message(buf: &'b mut Vec<u8>, msg_type: MessageType, transaction_id: u32) -> Self {
        let mut w = Writer::new(buf);
        w.header(msg_type, transaction_id);
        w
    }

    /// Starts a relay message (RFC 8415 §9).
    pub fn relay(
        buf: &'b mut Vec<u8>,
        msg_type: MessageType,
        hop_count: u8,
        link_address: Ipv6Addr,
        peer_address: Ipv6Addr,
    ) -> Self {
        let mut w = Writer::new(buf);
        w.relay_header(msg_type, hop_count, link_address, peer_address);
        w
    }

    /// Opens the Relay-repl chain answering `request` (RFC 8415 §19.3): for each relay
    /// layer, outermost first, a Relay-repl with the same hop-count, link-address and
    /// peer-address, the options the server must echo, and an open RELAY_MSG. The caller
    /// then writes the server's message ([`Writer::header`] and options) and
    /// [`Writer::finish`] closes every layer. With no relay layers this is [`Writer::new`].
    ///
    /// Echoed per layer, in this order:
    /// - INTERFACE_ID: RFC 8415 §21.18, "the server MUST copy the Interface-Id option".
    /// - RELAY_PORT: RFC 8357 §5.2, the server "MUST copy the option".
    /// - Options named by the layer's ERO (RFC 4994 §5), copied verbatim when present in
    ///   the Relay-forw and not already echoed. A malformed ERO is ignored.
    pub fn relay_reply(buf: &'b mut Vec<u8>, request: &Relayed<'_>) -> Self {
        let mut w = Writer::new(buf);
        for layer in request.layers() {
            w.relay_header(
                MessageType::RelayRepl,
                layer.hop_count(),
                layer.link_address(),
                layer.peer_address(),
            );
            for opt in layer.options() {
                if opt.code == OPTION_INTERFACE_ID || opt.code == OPTION_RELAY_PORT {
                    w.raw(opt.code, opt.data);
                }
            }
            if let Some(Ok(ero)) = layer.ero() {
                for (i, code) in ero.iter().enumerate() {
                    let echoed = matches!(
                        code,
                        OPTION_INTERFACE_ID | OPTION_RELAY_PORT | OPTION_RELAY_MSG | OPTION_ERO
                    ) || ero.iter().take(i).any(|c| c == code);
                    if echoed {
                        continue;
                    }
                    for opt in layer.options().filter(|o| o.code == code) {
                        w.raw(opt.code, opt.data);
                    }
                }
            }
            // Left open on purpose: finish() closes the chain innermost first.
            let _ = w.begin(OPTION_RELAY_MSG);
        }
        w
    }

    /// Writes a client/server header (msg-type, transaction-id) at the current position,
    /// e.g. inside a RELAY_MSG opened by [`Writer::relay_reply`].
    pub fn header(&mut self, msg_type: MessageType, transaction_id: u32) -> &mut Self {
        self.buf.push(msg_type.into());
        self.buf
            .extend_from_slice(&transaction_id.to_be_bytes()[1..]);
        self
    }

    /// Writes a relay header (§9) at the current position.
    pub fn relay_header(
        &mut self,
        msg_type: MessageType,
        hop_count: u8,
        link_address: Ipv6Addr,
        peer_address: Ipv6Addr,
    ) -> &mut Self {
        self.buf.push(msg_type.into());
        self.buf.push(hop_count);
        self.buf.extend_from_slice(&link_address.octets());
        self.buf.extend_from_slice(&peer_address.octets());
        self
    }

    fn fail(&mut self, error: Error) {
        if self.error.is_none() {
            self.error = Some(error);
        }
    }

    /// Bytes written so far by this writer.
    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Opens an option whose length is patched by [`Writer::end`].
    pub fn begin(&mut self, code: u16) -> Mark {
        if self.depth == MAX_OPEN {
            self.fail(Error::NestingTooDeep { code });
            return Mark { depth: usize::MAX };
        }
        self.open[self.depth] = (self.buf.len(), code);
        self.depth += 1;
        self.buf.extend_from_slice(&code.to_be_bytes());
        self.buf.extend_from_slice(&[0, 0]);
        Mark { depth: self.depth }
    }

    /// Closes the option opened by `mark` (and any still open inside it).
    pub fn end(&mut self, mark: Mark) -> &mut Self {
        while self.depth >= mark.depth && self.depth > 0 {
            self.close_one();
        }
        self
    }

    fn close_one(&mut self) {
        self.depth -= 1;
        let (at, code) = self.open[self.depth];
        let len = self.buf.len() - at - 4;
        match u16::try_from(len) {
            Ok(len) => self.buf[at + 2..at + 4].copy_from_slice(&len.to_be_bytes()),
            Err(_) => self.fail(Error::OptionTooLong { code }),
        }
    }

    /// Writes an option container: `code`, a fixed `header`, then whatever `body` writes.
    pub fn nested(&mut self, code: u16, header: &[u8], body: impl FnOnce(&mut Self)) -> &mut Self {
        let mark = self.begin(code);
        self.buf.extend_from_slice(header);
        body(self);
        self.end(mark)
    }

    /// Appends raw octets at the current position (inside an open option).
    pub fn bytes(&mut self, data: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(data);
        self
    }

    /// An option with an opaque body.
    pub fn raw(&mut self, code: u16, data: &[u8]) -> &mut Self {
        let Ok(len) = u16::try_from(data.len()) else {
            self.fail(Error::OptionTooLong { code });
            return self;
        };
        self.buf.extend_from_slice(&code.to_be_bytes());
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(data);
        self
    }

    pub fn u8_option(&mut self, code: u16, value: u8) -> &mut Self {
        self.raw(code, &[value])
    }
    pub fn u16_option(&mut self, code: u16, value: u16) -> &mut Self {
        self.raw(code, &value.to_be_bytes())
    }
    pub fn u32_option(&mut self, code: u16, value: u32) -> &mut Self {
        self.raw(code, &value.to_be_bytes())
    }

    /// CLIENTID (§21.2) with raw DUID bytes.
    pub fn client_id(&mut self, duid: &[u8]) -> &mut Self {
        self.raw(OPTION_CLIENTID, duid)
    }
    /// SERVERID (§21.3) with raw DUID bytes.
    pub fn server_id(&mut self, duid: &[u8]) -> &mut Self {
        self.raw(OPTION_SERVERID, duid)
    }

    /// IA_NA (§21.4); `body` writes the IA_NA-options (IAADDR, STATUS_CODE).
    pub fn ia_na(
        &mut self,
        iaid: u32,
        t1: u32,
        t2: u32,
        body: impl FnOnce(&mut Self),
    ) -> &mut Self {
        self.nested(OPTION_IA_NA, &ia_header(iaid, t1, t2), body)
    }
    /// IA_TA (§21.5).
    pub fn ia_ta(&mut self, iaid: u32, body: impl FnOnce(&mut Self)) -> &mut Self {
        self.nested(OPTION_IA_TA, &iaid.to_be_bytes(), body)
    }
    /// IA_PD (§21.21); `body` writes the IA_PD-options (IAPREFIX, STATUS_CODE).
    pub fn ia_pd(
        &mut self,
        iaid: u32,
        t1: u32,
        t2: u32,
        body: impl FnOnce(&mut Self),
    ) -> &mut Self {
        self.nested(OPTION_IA_PD, &ia_header(iaid, t1, t2), body)
    }

    /// IAADDR (§21.6); `body` writes the IAaddr-options (usually none or STATUS_CODE).
    pub fn ia_addr(
        &mut self,
        address: Ipv6Addr,
        preferred: u32,
        valid: u32,
        body: impl FnOnce(&mut Self),
    ) -> &mut Self {
        let mut header = [0u8; 24];
        header[..16].copy_from_slice(&address.octets());
        header[16..20].copy_from_slice(&preferred.to_be_bytes());
        header[20..].copy_from_slice(&valid.to_be_bytes());
        self.nested(OPTION_IAADDR, &header, body)
    }

    /// IAPREFIX (§21.22); `body` writes the IAprefix-options (PD_EXCLUDE, STATUS_CODE).
    pub fn ia_prefix(
        &mut self,
        preferred: u32,
        valid: u32,
        prefix_len: u8,
        prefix: Ipv6Addr,
        body: impl FnOnce(&mut Self),
    ) -> &mut Self {
        if prefix_len > 128 {
            self.fail(Error::BadValue {
                code: OPTION_IAPREFIX,
            });
        }
        let mut header = [0u8; 25];
        header[..4].copy_from_slice(&preferred.to_be_bytes());
        header[4..8].copy_from_slice(&valid.to_be_bytes());
        header[8] = prefix_len;
        header[9..].copy_from_slice(&prefix.octets());
        self.nested(OPTION_IAPREFIX, &header, body)
    }

    /// PD_EXCLUDE (RFC 6603 §4.2) inside an IAPREFIX for `delegated/delegated_len`:
    /// the bits of `excluded` after `delegated_len`, left-aligned in
    /// ceil((excluded_len - delegated_len) / 8) octets.
    pub fn pd_exclude(
        &mut self,
        delegated_len: u8,
        excluded: Ipv6Addr,
        excluded_len: u8,
    ) -> &mut Self {
        if excluded_len <= delegated_len || excluded_len > 128 {
            self.fail(Error::BadValue {
                code: OPTION_PD_EXCLUDE,
            });
            return self;
        }
        let bits = u32::from(excluded_len - delegated_len);
        let octets = bits.div_ceil(8) as usize;
        // The subnet-ID bits, moved to the top of a u128 and cut to whole octets.
        let id = u128::from(excluded) << u32::from(delegated_len);
        let id = id & (u128::MAX << (128 - bits));
        let mut body = [0u8; 17];
        body[0] = excluded_len;
        body[1..1 + octets].copy_from_slice(&id.to_be_bytes()[..octets]);
        self.raw(OPTION_PD_EXCLUDE, &body[..1 + octets])
    }

    /// ORO (§21.7).
    pub fn oro(&mut self, codes: &[u16]) -> &mut Self {
        self.code_list(OPTION_ORO, codes)
    }
    /// ERO (RFC 4994 §3).
    pub fn ero(&mut self, codes: &[u16]) -> &mut Self {
        self.code_list(OPTION_ERO, codes)
    }
    fn code_list(&mut self, code: u16, codes: &[u16]) -> &mut Self {
        let mark = self.begin(code);
        for c in codes {
            self.buf.extend_from_slice(&c.to_be_bytes());
        }
        self.end(mark)
    }

    /// PREFERENCE (§21.8).
    pub fn preference(&mut self, value: u8) -> &mut Self {
        self.u8_option(OPTION_PREFERENCE, value)
    }
    /// ELAPSED_TIME (§21.9), hundredths of a second.
    pub fn elapsed_time(&mut self, value: u16) -> &mut Self {
        self.u16_option(OPTION_ELAPSED_TIME, value)
    }
    /// RELAY_MSG (§21.10); `body` writes the relayed message, header included.
    pub fn relay_msg(&mut self, body: impl FnOnce(&mut Self)) -> &mut Self {
        self.nested(OPTION_RELAY_MSG, &[], body)
    }
    /// UNICAST (§21.12).
    pub fn unicast(&mut self, address: Ipv6Addr) -> &mut Self {
        self.raw(OPTION_UNICAST, &address.octets())
    }
    /// STATUS_CODE (§21.13) with a UTF-8 message for humans.
    pub fn status_code(&mut self, status: StatusCode, message: &str) -> &mut Self {
        let mark = self.begin(OPTION_STATUS_CODE);
        self.buf.extend_from_slice(&u16::from(status).to_be_bytes());
        self.buf.extend_from_slice(message.as_bytes());
        self.end(mark)
    }
    /// RAPID_COMMIT (§21.14).
    pub fn rapid_commit(&mut self) -> &mut Self {
        self.raw(OPTION_RAPID_COMMIT, &[])
    }
    /// USER_CLASS (§21.15).
    pub fn user_class<'d>(&mut self, items: impl IntoIterator<Item = &'d [u8]>) -> &mut Self {
        let mark = self.begin(OPTION_USER_CLASS);
        self.class_data(OPTION_USER_CLASS, items);
        self.end(mark)
    }
    /// VENDOR_CLASS (§21.16).
    pub fn vendor_class<'d>(
        &mut self,
        enterprise: u32,
        items: impl IntoIterator<Item = &'d [u8]>,
    ) -> &mut Self {
        let mark = self.begin(OPTION_VENDOR_CLASS);
        self.buf.extend_from_slice(&enterprise.to_be_bytes());
        self.class_data(OPTION_VENDOR_CLASS, items);
        self.end(mark)
    }
    fn class_data<'d>(&mut self, code: u16, items: impl IntoIterator<Item = &'d [u8]>) {
        for item in items {
            match u16::try_from(item.len()) {
                Ok(len) => {
                    self.buf.extend_from_slice(&len.to_be_bytes());
                    self.buf.extend_from_slice(item);
                }
                Err(_) => self.fail(Error::OptionTooLong { code }),
            }
        }
    }
    /// VENDOR_OPTS (§21.17); `body` writes the vendor's options with [`Writer::raw`].
    pub fn vendor_opts(&mut self, enterprise: u32, body: impl FnOnce(&mut Self)) -> &mut Self {
        self.nested(OPTION_VENDOR_OPTS, &enterprise.to_be_bytes(), body)
    }
    /// INTERFACE_ID (§21.18).
    pub fn interface_id(&mut self, id: &[u8]) -> &mut Self {
        self.raw(OPTION_INTERFACE_ID, id)
    }
    /// RECONF_MSG (§21.19).
    pub fn reconf_msg(&mut self, msg_type: MessageType) -> &mut Self {
        self.u8_option(OPTION_RECONF_MSG, msg_type.into())
    }
    /// RECONF_ACCEPT (§21.20).
    pub fn reconf_accept(&mut self) -> &mut Self {
        self.raw(OPTION_RECONF_ACCEPT, &[])
    }
    /// DNS_SERVERS (RFC 3646 §3).
    pub fn dns_servers(&mut self, servers: &[Ipv6Addr]) -> &mut Self {
        self.address_list(OPTION_DNS_SERVERS, servers)
    }
    /// Any option that is a list of IPv6 addresses.
    pub fn address_list(&mut self, code: u16, addresses: &[Ipv6Addr]) -> &mut Self {
        let mark = self.begin(code);
        for a in addresses {
            self.buf.extend_from_slice(&a.octets());
        }
        self.end(mark)
    }
    /// DOMAIN_LIST (RFC 3646 §4): fully qualified names, uncompressed (RFC 8415 §10).
    /// Encodes the names on every call; a server answering many clients with the same
    /// list should encode it once and use [`Writer::domain_list_wire`].
    pub fn domain_list<'n>(&mut self, names: impl IntoIterator<Item = &'n str>) -> &mut Self {
        let mark = self.begin(OPTION_DOMAIN_LIST);
        for name in names {
            if let Err(e) = encode_name(name, true, OPTION_DOMAIN_LIST, self.buf) {
                self.fail(e);
            }
        }
        self.end(mark)
    }
    /// DOMAIN_LIST from names already in wire format.
    pub fn domain_list_wire(&mut self, wire: &[u8]) -> &mut Self {
        self.raw(OPTION_DOMAIN_LIST, wire)
    }
    /// INFORMATION_REFRESH_TIME (§21.23), seconds.
    pub fn information_refresh_time(&mut self, secs: u32) -> &mut Self {
        self.u32_option(OPTION_INFORMATION_REFRESH_TIME, secs)
    }
    /// REMOTE_ID (RFC 4649 §3).
    pub fn remote_id(&mut self, enterprise: u32, remote_id: &[u8]) -> &mut Self {
        let mark = self.begin(OPTION_REMOTE_ID);
        self.buf.extend_from_slice(&enterprise.to_be_bytes());
        self.buf.extend_from_slice(remote_id);
        self.end(mark)
    }
    /// SUBSCRIBER_ID (RFC 4580 §2).
    pub fn subscriber_id(&mut self, id: &[u8]) -> &mut Self {
        self.raw(OPTION_SUBSCRIBER_ID, id)
    }
    /// CLIENT_FQDN (RFC 4704 §4) with the name already in wire format (e.g. echoed).
    pub fn client_fqdn_wire(&mut self, flags: u8, name: &[u8]) -> &mut Self {
        let mark = self.begin(OPTION_CLIENT_FQDN);
        self.buf.push(flags);
        self.buf.extend_from_slice(name);
        self.end(mark)
    }
    /// CLIENT_FQDN (RFC 4704 §4) from a presentation-format name.
    pub fn client_fqdn(&mut self, flags: u8, name: &str, fully_qualified: bool) -> &mut Self {
        let mark = self.begin(OPTION_CLIENT_FQDN);
        self.buf.push(flags);
        if let Err(e) = encode_name(name, fully_qualified, OPTION_CLIENT_FQDN, self.buf) {
            self.fail(e);
        }
        self.end(mark)
    }
    /// CLIENT_LINKLAYER_ADDR (RFC 6939 §4).
    pub fn client_linklayer_addr(&mut self, link_layer_type: u16, address: &[u8]) -> &mut Self {
        let mark = self.begin(OPTION_CLIENT_LINKLAYER_ADDR);
        self.buf.extend_from_slice(&link_layer_type.to_be_bytes());
        self.buf.extend_from_slice(address);
        self.end(mark)
    }
    /// SOL_MAX_RT (§21.24), seconds.
    pub fn sol_max_rt(&mut self, secs: u32) -> &mut Self {
        self.u32_option(OPTION_SOL_MAX_RT, secs)
    }
    /// INF_MAX_RT (§21.25), seconds.
    pub fn inf_max_rt(&mut self, secs: u32) -> &mut Self {
        self.u32_option(OPTION_INF_MAX_RT, secs)
    }
    /// RELAY_PORT (RFC 8357 §5).
    pub fn relay_port(&mut self, port: u16) -> &mut Self {
        self.u16_option(OPTION_RELAY_PORT, port)
    }

    /// Closes every open option (innermost first) and reports the first error. On error the
    /// partial message is removed from the buffer.
    pub fn finish(self) -> Result<usize, Error> {
        self.finish_with_buffer()
            .map(|(buf, start)| buf.len() - start)
    }

    /// [`Writer::finish`] that hands back the buffer and the offset this writer started at,
    /// for a caller that frames the message itself (the failover codec's 2-octet length
    /// prefix, RFC 5460 §5.1).
    pub fn finish_with_buffer(mut self) -> Result<(&'b mut Vec<u8>, usize), Error> {
        while self.depth > 0 {
            self.close_one();
        }
        match self.error {
            None => Ok((self.buf, self.start)),
            Some(e) => {
                self.buf.truncate(self.start);
                Err(e)
            }
        }
    }
}

fn ia_header(iaid: u32, t1: u32, t2: u32) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[..4].copy_from_slice(&iaid.to_be_bytes());
    h[4..8].copy_from_slice(&t1.to_be_bytes());
    h[8..].copy_from_slice(&t2.to_be_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::super::{parse_relayed, DhcpOption, IaNa, Message, PdExclude};
    use super::*;

    const DUID: &[u8] = &[0, 3, 0, 1, 0, 0x11, 0x22, 0x33, 0x44, 0x55];

    #[test]
    fn builds_an_advertise_that_parses_back() {
        let a: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let mut buf = vec![0xee]; // writers append: earlier bytes stay untouched
        let mut w = Writer::message(&mut buf, MessageType::Advertise, 0xabcdef);
        w.server_id(DUID).client_id(DUID).ia_na(7, 1800, 2880, |w| {
            w.ia_addr(a, 3600, 7200, |_| {});
        });
        w.status_code(StatusCode::Success, "ok").preference(255);
        let n = w.finish().unwrap();
        assert_eq!(n, buf.len() - 1);
        let m = Message::new_checked(&buf[1..]).unwrap();
        assert_eq!(m.msg_type(), MessageType::Advertise);
        assert_eq!(m.transaction_id(), 0xabcdef);
        let ia = IaNa::new_checked(m.option(OPTION_IA_NA).unwrap()).unwrap();
        assert_eq!((ia.iaid(), ia.t1(), ia.t2()), (7, 1800, 2880));
        let addr = ia.addresses().next().unwrap().unwrap();
        assert_eq!(addr.address(), a);
        assert_eq!(addr.valid_lifetime(), 7200);
        let kinds: Vec<u16> = m.options().map(|o| o.code).collect();
        assert_eq!(kinds, [2, 1, 3, 13, 7]);
    }

    #[test]
    fn oversized_option_is_an_error_and_leaves_nothing() {
        let mut buf = Vec::new();
        let mut w = Writer::message(&mut buf, MessageType::Reply, 1);
        w.vendor_opts(9, |w| {
            w.raw(1, &[0u8; 40_000]).raw(2, &[0u8; 40_000]);
        });
        assert_eq!(
            w.finish(),
            Err(Error::OptionTooLong {
                code: OPTION_VENDOR_OPTS
            })
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn nesting_past_the_open_limit_is_an_error() {
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf);
        let marks: Vec<Mark> = (0..=MAX_OPEN)
            .map(|_| w.begin(OPTION_VENDOR_OPTS))
            .collect();
        for mark in marks.into_iter().rev() {
            w.end(mark);
        }
        assert_eq!(
            w.finish(),
            Err(Error::NestingTooDeep {
                code: OPTION_VENDOR_OPTS
            })
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn pd_exclude_round_trips() {
        let delegated: Ipv6Addr = "2001:db8:0:ff00::".parse().unwrap();
        for (excluded, len) in [("2001:db8:0:ff01::", 64u8), ("2001:db8:0:ffa0::", 60)] {
            let excluded: Ipv6Addr = excluded.parse().unwrap();
            let mut buf = Vec::new();
            let mut w = Writer::new(&mut buf);
            w.pd_exclude(56, excluded, len);
            w.finish().unwrap();
            let ex = PdExclude::new_checked(&buf[4..]).unwrap();
            assert_eq!(ex.excluded_prefix(delegated, 56).unwrap(), (excluded, len));
        }
    }

    #[test]
    fn relay_reply_mirrors_layers_and_echoes() {
        // Relay-forw(hop 1, Interface-ID "b", ERO[37]) > Relay-forw(hop 0, Interface-ID "a",
        // Remote-ID, RELAY_PORT, ERO[37, 18, 99]) > Solicit.
        let mut req = Vec::new();
        let link: Ipv6Addr = "2001:db8:1::1".parse().unwrap();
        let peer: Ipv6Addr = "fe80::1".parse().unwrap();
        let mut w = Writer::relay(
            &mut req,
            MessageType::RelayForw,
            1,
            Ipv6Addr::UNSPECIFIED,
            link,
        );
        w.interface_id(b"b").ero(&[37]).relay_msg(|w| {
            w.relay_header(MessageType::RelayForw, 0, link, peer)
                .interface_id(b"a")
                .remote_id(4491, b"cpe-1")
                .relay_port(1000)
                .ero(&[37, 18, 99])
                .relay_msg(|w| {
                    w.header(MessageType::Solicit, 5).client_id(DUID);
                });
        });
        w.finish().unwrap();

        let relayed = parse_relayed(&req).unwrap();
        assert_eq!(relayed.depth(), 2);
        let mut out = Vec::new();
        let mut w = Writer::relay_reply(&mut out, &relayed);
        w.header(MessageType::Advertise, 5).server_id(DUID);
        w.finish().unwrap();

        let reply = parse_relayed(&out).unwrap();
        assert_eq!(reply.depth(), 2);
        let outer = reply.layers()[0];
        assert_eq!(outer.msg_type(), MessageType::RelayRepl);
        assert_eq!(outer.hop_count(), 1);
        assert_eq!(outer.peer_address(), link);
        assert_eq!(outer.interface_id(), Some(&b"b"[..]));
        assert!(outer.remote_id().is_none(), "outer layer had no Remote-ID");
        let inner = reply.layers()[1];
        assert_eq!(inner.interface_id(), Some(&b"a"[..]));
        assert_eq!(inner.relay_port(), Some(Ok(1000)));
        assert_eq!(inner.remote_id(), Some(Ok((4491, &b"cpe-1"[..]))));
        let codes: Vec<u16> = inner.options().map(|o| o.code).collect();
        assert_eq!(codes, [OPTION_INTERFACE_ID, OPTION_RELAY_PORT, 37, 9]);
        assert_eq!(reply.message().msg_type(), MessageType::Advertise);
        assert!(matches!(
            reply.message().options().next().unwrap().parse(),
            Ok(DhcpOption::ServerId(_))
        ));
    }
}
