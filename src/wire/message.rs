//! Zero-copy views over whole DHCPv6 messages: client/server messages (RFC 8415 §8) and
//! relay agent/server messages (§9).

use core::net::Ipv6Addr;

use super::codes::*;
use super::options::{check_options, DuidView, Options};
use super::Error;

/// Field offsets (RFC 8415 §8 and §9 figures).
mod field {
    use core::ops::Range;

    pub const MSG_TYPE: usize = 0;
    /// §8: transaction-id, 3 octets.
    pub const TRANSACTION_ID: Range<usize> = 1..4;
    pub const OPTIONS: usize = 4;

    /// §9: hop-count, 1 octet.
    pub const HOP_COUNT: usize = 1;
    pub const LINK_ADDRESS: Range<usize> = 2..18;
    pub const PEER_ADDRESS: Range<usize> = 18..34;
    pub const RELAY_OPTIONS: usize = 34;
}

/// Length of the client/server message header (§8).
pub const HEADER_LEN: usize = field::OPTIONS;
/// Length of the relay message header (§9).
pub const RELAY_HEADER_LEN: usize = field::RELAY_OPTIONS;

fn addr16(b: &[u8]) -> Ipv6Addr {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(b);
    Ipv6Addr::from(octets)
}

/// A client/server message (RFC 8415 §8): msg-type, transaction-id, options.
///
/// Once [`Message::new_checked`] succeeds no accessor panics: the header is complete and the
/// top-level options are a well-formed TLV sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Message<T> {
    /// Wraps a buffer without checking it; accessors may panic until [`check_len`] passes.
    ///
    /// [`check_len`]: Message::check_len
    pub const fn new_unchecked(buffer: T) -> Self {
        Message { buffer }
    }

    /// Wraps and checks a buffer: header present, not a relay message type, options
    /// well-formed.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let message = Message::new_unchecked(buffer);
        message.check_len()?;
        Ok(message)
    }

    pub fn check_len(&self) -> Result<(), Error> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if MessageType::from(b[field::MSG_TYPE]).is_relay() {
            return Err(Error::UnexpectedMessageType {
                msg_type: b[field::MSG_TYPE],
            });
        }
        check_options(&b[field::OPTIONS..])
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole message.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn msg_type(&self) -> MessageType {
        MessageType::from(self.buffer.as_ref()[field::MSG_TYPE])
    }

    /// The 24-bit transaction-id as a number.
    pub fn transaction_id(&self) -> u32 {
        let t = &self.buffer.as_ref()[field::TRANSACTION_ID];
        u32::from_be_bytes([0, t[0], t[1], t[2]])
    }

    /// The option bytes after the header.
    pub fn options_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..]
    }

    pub fn options(&self) -> Options<'_> {
        Options::new_unchecked(self.options_bytes())
    }

    /// The body of the first top-level option with `code`.
    pub fn option(&self, code: u16) -> Option<&[u8]> {
        self.options().get(code)
    }

    /// CLIENTID (§21.2), if present, as a checked DUID.
    pub fn client_id(&self) -> Option<Result<DuidView<'_>, Error>> {
        self.option(OPTION_CLIENTID)
            .map(|d| DuidView::new_checked(d, OPTION_CLIENTID))
    }

    /// SERVERID (§21.3), if present, as a checked DUID.
    pub fn server_id(&self) -> Option<Result<DuidView<'_>, Error>> {
        self.option(OPTION_SERVERID)
            .map(|d| DuidView::new_checked(d, OPTION_SERVERID))
    }
}

impl<'a> Message<&'a [u8]> {
    /// The options with the lifetime of the underlying buffer rather than of the view.
    pub fn into_options(self) -> Options<'a> {
        Options::new_unchecked(&self.buffer[field::OPTIONS..])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Message<T> {
    pub fn set_msg_type(&mut self, msg_type: MessageType) {
        self.buffer.as_mut()[field::MSG_TYPE] = msg_type.into();
    }

    /// Sets the 24-bit transaction-id; the top 8 bits of `id` are ignored.
    pub fn set_transaction_id(&mut self, id: u32) {
        self.buffer.as_mut()[field::TRANSACTION_ID].copy_from_slice(&id.to_be_bytes()[1..]);
    }
}

/// A relay agent/server message (RFC 8415 §9): Relay-forw or Relay-repl.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayMessage<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> RelayMessage<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        RelayMessage { buffer }
    }

    /// Wraps and checks a buffer: 34-octet header, a relay message type, options
    /// well-formed. The Relay Message option is not required here; see
    /// [`RelayMessage::relay_msg`].
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let message = RelayMessage::new_unchecked(buffer);
        message.check_len()?;
        Ok(message)
    }

    pub fn check_len(&self) -> Result<(), Error> {
        let b = self.buffer.as_ref();
        if b.len() < RELAY_HEADER_LEN {
            return Err(Error::Truncated);
        }
        if !MessageType::from(b[field::MSG_TYPE]).is_relay() {
            return Err(Error::UnexpectedMessageType {
                msg_type: b[field::MSG_TYPE],
            });
        }
        check_options(&b[field::RELAY_OPTIONS..])
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn msg_type(&self) -> MessageType {
        MessageType::from(self.buffer.as_ref()[field::MSG_TYPE])
    }

    /// §9: number of relay agents that have already relayed this message.
    pub fn hop_count(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_COUNT]
    }

    /// §9: an address the server uses to identify the client's link (may be unspecified).
    pub fn link_address(&self) -> Ipv6Addr {
        addr16(&self.buffer.as_ref()[field::LINK_ADDRESS])
    }

    /// §9: the address of the client or relay the message came from.
    pub fn peer_address(&self) -> Ipv6Addr {
        addr16(&self.buffer.as_ref()[field::PEER_ADDRESS])
    }

    pub fn options_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[field::RELAY_OPTIONS..]
    }

    pub fn options(&self) -> Options<'_> {
        Options::new_unchecked(self.options_bytes())
    }

    pub fn option(&self, code: u16) -> Option<&[u8]> {
        self.options().get(code)
    }

    /// The relayed message (§21.10); a relay message without one is malformed (§9).
    pub fn relay_msg(&self) -> Result<&[u8], Error> {
        self.option(OPTION_RELAY_MSG)
            .ok_or(Error::MissingRelayMessage)
    }

    /// INTERFACE_ID (§21.18), opaque.
    pub fn interface_id(&self) -> Option<&[u8]> {
        self.option(OPTION_INTERFACE_ID)
    }
}

impl<'a> RelayMessage<&'a [u8]> {
    /// The options with the lifetime of the underlying buffer rather than of the view.
    pub fn into_options(self) -> Options<'a> {
        Options::new_unchecked(&self.buffer[field::RELAY_OPTIONS..])
    }

    /// [`RelayMessage::relay_msg`] with the lifetime of the underlying buffer.
    pub fn into_relay_msg(self) -> Result<&'a [u8], Error> {
        self.into_options()
            .get(OPTION_RELAY_MSG)
            .ok_or(Error::MissingRelayMessage)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> RelayMessage<T> {
    pub fn set_msg_type(&mut self, msg_type: MessageType) {
        self.buffer.as_mut()[field::MSG_TYPE] = msg_type.into();
    }
    pub fn set_hop_count(&mut self, hop_count: u8) {
        self.buffer.as_mut()[field::HOP_COUNT] = hop_count;
    }
    pub fn set_link_address(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::LINK_ADDRESS].copy_from_slice(&a.octets());
    }
    pub fn set_peer_address(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::PEER_ADDRESS].copy_from_slice(&a.octets());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A Solicit with CLIENTID (DUID-LL) and ELAPSED_TIME 0.
    const SOLICIT: [u8; 24] = [
        1, 0x12, 0x34, 0x56, // Solicit, xid
        0, 1, 0, 10, 0, 3, 0, 1, 0, 0x11, 0x22, 0x33, 0x44, 0x55, // CLIENTID DUID-LL
        0, 8, 0, 2, 0, 0, // ELAPSED_TIME
    ];

    #[test]
    fn deconstructs_a_solicit() {
        let m = Message::new_checked(&SOLICIT[..]).unwrap();
        assert_eq!(m.msg_type(), MessageType::Solicit);
        assert_eq!(m.transaction_id(), 0x123456);
        assert_eq!(m.client_id().unwrap().unwrap().as_bytes(), &SOLICIT[8..18]);
        assert!(m.server_id().is_none());
        assert_eq!(m.options().count(), 2);
    }

    #[test]
    fn rejects_short_and_relay_headers() {
        assert_eq!(Message::new_checked(&SOLICIT[..3]), Err(Error::Truncated));
        assert_eq!(
            Message::new_checked(&SOLICIT[..SOLICIT.len() - 1]),
            Err(Error::OptionOverrun {
                code: OPTION_ELAPSED_TIME
            })
        );
        let mut relay = SOLICIT;
        relay[0] = 12;
        assert_eq!(
            Message::new_checked(&relay[..]),
            Err(Error::UnexpectedMessageType { msg_type: 12 })
        );
        assert_eq!(
            RelayMessage::new_checked(&SOLICIT[..]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn setters_write_the_header() {
        let mut buf = SOLICIT;
        let mut m = Message::new_unchecked(&mut buf[..]);
        m.set_msg_type(MessageType::Advertise);
        m.set_transaction_id(0xff_abcdef);
        assert_eq!(&buf[..4], &[2, 0xab, 0xcd, 0xef]);
    }
}
