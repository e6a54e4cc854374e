//! Walking nested relay messages (RFC 8415 §9, §19) without allocating.

use core::net::Ipv6Addr;

use super::codes::*;
use super::message::{Message, RelayMessage, HEADER_LEN, RELAY_HEADER_LEN};
use super::options::{find_option_checked, DuidView, OptionCodes, Options};
use super::Error;

/// The deepest relay nesting tandem accepts. RFC 8415 §7.6 caps relaying at HOP_COUNT_LIMIT
/// (8) by default but lets operators raise it; 32 covers any real access network while
/// bounding the work and the stack a crafted packet can cost.
pub const MAX_RELAY_DEPTH: usize = 32;

/// One checked relay layer: a Relay-forw (or Relay-repl) header and its options, minus
/// nothing: `bytes` is the whole relay message, checked by [`RelayMessage::check_len`] and
/// holding exactly one RELAY_MSG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayLayer<'a> {
    bytes: &'a [u8],
}

impl<'a> RelayLayer<'a> {
    const EMPTY: RelayLayer<'static> = RelayLayer { bytes: &[] };

    fn view(&self) -> RelayMessage<&'a [u8]> {
        RelayMessage::new_unchecked(self.bytes)
    }

    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
    pub fn msg_type(&self) -> MessageType {
        self.view().msg_type()
    }
    pub fn hop_count(&self) -> u8 {
        self.view().hop_count()
    }
    pub fn link_address(&self) -> Ipv6Addr {
        self.view().link_address()
    }
    pub fn peer_address(&self) -> Ipv6Addr {
        self.view().peer_address()
    }
    pub fn options(&self) -> Options<'a> {
        Options::new_unchecked(&self.bytes[RELAY_HEADER_LEN..])
    }
    pub fn option(&self, code: u16) -> Option<&'a [u8]> {
        self.options().get(code)
    }
    /// The Interface-ID option (§21.18), which the server MUST echo in the Relay-repl.
    pub fn interface_id(&self) -> Option<&'a [u8]> {
        self.option(OPTION_INTERFACE_ID)
    }
    /// RFC 8357 §5: the relay's downstream source port; `Some(Err)` if malformed.
    pub fn relay_port(&self) -> Option<Result<u16, Error>> {
        self.option(OPTION_RELAY_PORT).map(|d| match d {
            [hi, lo] => Ok(u16::from_be_bytes([*hi, *lo])),
            _ => Err(Error::BadLength {
                code: OPTION_RELAY_PORT,
            }),
        })
    }
    /// RFC 4649 Remote-ID: `(enterprise-number, remote-id)`.
    pub fn remote_id(&self) -> Option<Result<(u32, &'a [u8]), Error>> {
        self.option(OPTION_REMOTE_ID).map(|d| {
            if d.len() < 5 {
                return Err(Error::BadLength {
                    code: OPTION_REMOTE_ID,
                });
            }
            Ok((u32::from_be_bytes([d[0], d[1], d[2], d[3]]), &d[4..]))
        })
    }
    /// RFC 4580 Subscriber-ID.
    pub fn subscriber_id(&self) -> Option<Result<&'a [u8], Error>> {
        self.option(OPTION_SUBSCRIBER_ID).map(|d| {
            if d.is_empty() {
                Err(Error::BadLength {
                    code: OPTION_SUBSCRIBER_ID,
                })
            } else {
                Ok(d)
            }
        })
    }
    /// RFC 6939 client link-layer address: `(link-layer type, address)`.
    pub fn client_linklayer_addr(&self) -> Option<Result<(u16, &'a [u8]), Error>> {
        self.option(OPTION_CLIENT_LINKLAYER_ADDR).map(|d| {
            if d.len() < 3 {
                return Err(Error::BadLength {
                    code: OPTION_CLIENT_LINKLAYER_ADDR,
                });
            }
            Ok((u16::from_be_bytes([d[0], d[1]]), &d[2..]))
        })
    }
    /// RFC 4994 Echo Request option: the relay options it wants echoed.
    pub fn ero(&self) -> Option<Result<OptionCodes<'a>, Error>> {
        self.option(OPTION_ERO)
            .map(|d| OptionCodes::new_checked(d, OPTION_ERO))
    }
    /// The relayed message: the next layer or the client's message.
    pub fn relay_msg(&self) -> &'a [u8] {
        // Checked by parse_relayed: every stored layer has a RELAY_MSG.
        self.option(OPTION_RELAY_MSG).unwrap_or(&[])
    }
}

/// A message as the server received it: up to [`MAX_RELAY_DEPTH`] relay layers around a
/// client (or server) message.
///
/// `layers()[0]` is the outermost layer (the relay that talked to the server), the last one
/// is the relay closest to the client, whose link-address selects the link (§13.1).
#[derive(Clone, Copy)]
pub struct Relayed<'a> {
    layers: [RelayLayer<'a>; MAX_RELAY_DEPTH],
    depth: u8,
    message: Message<&'a [u8]>,
}

impl<'a> Relayed<'a> {
    /// The relay layers, outermost first; empty for a message received directly.
    pub fn layers(&self) -> &[RelayLayer<'a>] {
        &self.layers[..usize::from(self.depth)]
    }
    pub fn depth(&self) -> usize {
        usize::from(self.depth)
    }
    pub fn is_relayed(&self) -> bool {
        self.depth > 0
    }
    /// The relay closest to the client, whose link-address identifies the client's link.
    pub fn innermost_relay(&self) -> Option<&RelayLayer<'a>> {
        self.layers().last()
    }
    /// The client (or server) message inside the relays.
    pub fn message(&self) -> Message<&'a [u8]> {
        self.message
    }
}

impl core::fmt::Debug for Relayed<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Relayed")
            .field("layers", &self.layers())
            .field("message", &self.message)
            .finish()
    }
}

/// Parses a UDP payload: walks Relay-forw (or Relay-repl) layers down to the client/server
/// message, checking every layer's header and option lengths on the way.
///
/// Errors: [`Error::RelayTooDeep`] beyond [`MAX_RELAY_DEPTH`] layers,
/// [`Error::MissingRelayMessage`] for a layer without RELAY_MSG,
/// [`Error::UnexpectedMessageType`] for a Relay-repl inside a Relay-forw or vice versa.
/// The inner message's option bodies are not decoded; use the typed views for that.
pub fn parse_relayed(payload: &[u8]) -> Result<Relayed<'_>, Error> {
    let mut relayed = Relayed {
        layers: [RelayLayer::EMPTY; MAX_RELAY_DEPTH],
        depth: 0,
        message: Message::new_unchecked(&[]),
    };
    let mut current = payload;
    let mut chain_type: Option<MessageType> = None;
    loop {
        let Some(&first) = current.first() else {
            return Err(Error::Truncated);
        };
        let msg_type = MessageType::from(first);
        if !msg_type.is_relay() {
            relayed.message = Message::new_checked(current)?;
            return Ok(relayed);
        }
        // §9: a Relay-forw carries a Relay-forw or a client message; a Relay-repl carries a
        // Relay-repl or a server message. Mixing the two is never valid.
        if chain_type.is_some_and(|t| t != msg_type) {
            return Err(Error::UnexpectedMessageType { msg_type: first });
        }
        chain_type = Some(msg_type);
        if usize::from(relayed.depth) == MAX_RELAY_DEPTH {
            return Err(Error::RelayTooDeep);
        }
        let layer = RelayMessage::new_checked(current)?;
        let inner = layer.into_relay_msg()?;
        relayed.layers[usize::from(relayed.depth)] = RelayLayer { bytes: current };
        relayed.depth += 1;
        current = inner;
    }
}

/// The CLIENTID of the innermost client message, descending through relay layers: the shard
/// router's cheap path (no typed views, no allocation). Checks the TLV structure of every
/// layer it crosses and the DUID length.
pub fn client_id(payload: &[u8]) -> Result<&[u8], Error> {
    let mut current = payload;
    for _ in 0..=MAX_RELAY_DEPTH {
        let (&first, _) = current.split_first().ok_or(Error::Truncated)?;
        if MessageType::from(first).is_relay() {
            if current.len() < RELAY_HEADER_LEN {
                return Err(Error::Truncated);
            }
            current = find_option_checked(&current[RELAY_HEADER_LEN..], OPTION_RELAY_MSG)?
                .ok_or(Error::MissingRelayMessage)?;
            continue;
        }
        if current.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let duid = find_option_checked(&current[HEADER_LEN..], OPTION_CLIENTID)?.ok_or(
            Error::MissingOption {
                code: OPTION_CLIENTID,
            },
        )?;
        return DuidView::new_checked(duid, OPTION_CLIENTID).map(|d| d.as_bytes());
    }
    Err(Error::RelayTooDeep)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay_forw(inner: &[u8], hop: u8, extra: &[u8]) -> Vec<u8> {
        let mut v = vec![12, hop];
        v.extend(Ipv6Addr::new(0x2001, 0xdb8, 0, hop.into(), 0, 0, 0, 1).octets());
        v.extend(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, hop.into()).octets());
        v.extend(extra);
        v.extend(OPTION_RELAY_MSG.to_be_bytes());
        v.extend((inner.len() as u16).to_be_bytes());
        v.extend(inner);
        v
    }

    const SOLICIT: &[u8] = &[
        1, 0, 0, 1, 0, 1, 0, 10, 0, 3, 0, 1, 0, 0x11, 0x22, 0x33, 0x44, 0x55,
    ];

    #[test]
    fn walks_two_layers() {
        let iid = [0, 18, 0, 3, b'e', b't', b'h'];
        let one = relay_forw(SOLICIT, 0, &iid);
        let two = relay_forw(&one, 1, &[]);
        let r = parse_relayed(&two).unwrap();
        assert_eq!(r.depth(), 2);
        assert_eq!(r.layers()[0].hop_count(), 1);
        let inner = r.innermost_relay().unwrap();
        assert_eq!(inner.hop_count(), 0);
        assert_eq!(inner.interface_id(), Some(&b"eth"[..]));
        assert_eq!(
            inner.link_address(),
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)
        );
        assert_eq!(r.message().msg_type(), MessageType::Solicit);
        assert_eq!(client_id(&two).unwrap(), &SOLICIT[8..]);
    }

    #[test]
    fn direct_message_has_no_layers() {
        let r = parse_relayed(SOLICIT).unwrap();
        assert!(!r.is_relayed());
        assert_eq!(client_id(SOLICIT).unwrap(), &SOLICIT[8..]);
    }

    #[test]
    fn thirty_two_layers_pass_thirty_three_fail() {
        let mut msg = SOLICIT.to_vec();
        for hop in 0..32u8 {
            msg = relay_forw(&msg, hop, &[]);
        }
        assert_eq!(parse_relayed(&msg).unwrap().depth(), 32);
        assert!(client_id(&msg).is_ok());
        let deeper = relay_forw(&msg, 32, &[]);
        assert_eq!(parse_relayed(&deeper).unwrap_err(), Error::RelayTooDeep);
        assert_eq!(client_id(&deeper).unwrap_err(), Error::RelayTooDeep);
    }

    #[test]
    fn malformed_layers_are_reported() {
        let mut no_msg = relay_forw(SOLICIT, 0, &[]);
        no_msg.truncate(RELAY_HEADER_LEN);
        assert_eq!(
            parse_relayed(&no_msg).unwrap_err(),
            Error::MissingRelayMessage
        );
        assert_eq!(client_id(&no_msg).unwrap_err(), Error::MissingRelayMessage);
        let mut mixed = relay_forw(&relay_forw(SOLICIT, 0, &[]), 1, &[]);
        mixed[0] = 13;
        assert!(parse_relayed(&mixed).is_err());
        let mut cut = relay_forw(SOLICIT, 0, &[]);
        cut.pop();
        assert_eq!(
            parse_relayed(&cut).unwrap_err(),
            Error::OptionOverrun {
                code: OPTION_RELAY_MSG
            }
        );
        assert_eq!(
            client_id(&[1, 0, 0, 1]).unwrap_err(),
            Error::MissingOption {
                code: OPTION_CLIENTID
            }
        );
        assert_eq!(parse_relayed(&[]).unwrap_err(), Error::Truncated);
    }
}
