//! RFC 8156 failover wire format: TCP framing (RFC 5460 §5.1), the 8-octet failover header
//! (RFC 8156 §5.2), the failover options (§5.5, codes 114–134) and the options borrowed from
//! leasequery (RFC 5007 OPTION_CLIENT_DATA/CLT_TIME/LQ_RELAY_DATA, RFC 7653 LQ_BASE_TIME).
//!
//! Built on the DHCPv6 codec rather than beside it, since RFC 8156 §5.5 options are RFC 8415
//! §21.1 TLVs: a zero-copy [`Message`] view whose accessors never panic once
//! [`Message::new_checked`] passed; [`Options`], a checked run of options walked by the
//! DHCPv6 codec's own iterator ([`RawOption`] items), adding the §5.5 singleton rule; a
//! [`Builder`] that frames a message and writes its options with the DHCPv6 [`Writer`]; and
//! small `Repr` types for the messages whose content the endpoint interprets. Errors of the
//! shared walker and writer convert into this layer's one [`Error`]. Parsing never allocates
//! except [`BindingUpdateRepr::parse`], which appends into a caller-reused `Vec`.

use std::net::Ipv6Addr;

use super::{check_options, Error as WireError, Options as TlvWalker, Writer};
use crate::lease::{BindingState, Duid, IaType, Resource};

pub use super::RawOption;

/// Every failover message is prefixed by a 2-octet length (RFC 5460 §5.1, RFC 8156 §5.1).
pub const FRAME_PREFIX_LEN: usize = 2;
/// msg-type (1) + transaction-id (3) + sent-time (4) (RFC 8156 §5.2).
pub const HEADER_LEN: usize = 8;
/// msg-type (1) + transaction-id (3): the DHCPv6 header (RFC 8415 §8) of the RFC 7653
/// STARTTLS and REPLY messages, which share the connection before TLS (RFC 8156 §6.1).
pub const DHCPV6_HEADER_LEN: usize = 4;
/// Largest message the 2-octet length prefix can describe.
pub const MAX_MESSAGE_LEN: usize = u16::MAX as usize;
/// RFC 8156 §6.1: the failover TCP port ("dhcp-failover").
pub const FAILOVER_PORT: u16 = 647;
/// RFC 8156 §6.1.1: OPTION_F_PROTOCOL_VERSION major/minor this implementation speaks.
pub const PROTOCOL_VERSION: (u16, u16) = (1, 0);

/// Option codes used on the failover connection (RFC 8156 §11, RFC 8415 §21, RFC 5007 §4.1,
/// RFC 7653 §6.3.1).
pub mod option {
    pub const CLIENTID: u16 = 1;
    pub const IA_NA: u16 = 3;
    pub const IA_TA: u16 = 4;
    pub const IAADDR: u16 = 5;
    pub const STATUS_CODE: u16 = 13;
    pub const IA_PD: u16 = 25;
    pub const IAPREFIX: u16 = 26;
    pub const CLIENT_FQDN: u16 = 39;
    pub const CLIENT_DATA: u16 = 45;
    pub const CLT_TIME: u16 = 46;
    pub const LQ_RELAY_DATA: u16 = 47;
    pub const VSS: u16 = 68;
    pub const LQ_BASE_TIME: u16 = 100;
    pub const F_BINDING_STATUS: u16 = 114;
    pub const F_CONNECT_FLAGS: u16 = 115;
    pub const F_DNS_REMOVAL_INFO: u16 = 116;
    pub const F_DNS_HOST_NAME: u16 = 117;
    pub const F_DNS_ZONE_NAME: u16 = 118;
    pub const F_DNS_FLAGS: u16 = 119;
    pub const F_EXPIRATION_TIME: u16 = 120;
    pub const F_MAX_UNACKED_BNDUPD: u16 = 121;
    pub const F_MCLT: u16 = 122;
    pub const F_PARTNER_LIFETIME: u16 = 123;
    pub const F_PARTNER_LIFETIME_SENT: u16 = 124;
    pub const F_PARTNER_DOWN_TIME: u16 = 125;
    pub const F_PARTNER_RAW_CLT_TIME: u16 = 126;
    pub const F_PROTOCOL_VERSION: u16 = 127;
    pub const F_KEEPALIVE_TIME: u16 = 128;
    pub const F_RECONFIGURE_DATA: u16 = 129;
    pub const F_RELATIONSHIP_NAME: u16 = 130;
    pub const F_SERVER_FLAGS: u16 = 131;
    pub const F_SERVER_STATE: u16 = 132;
    pub const F_START_TIME_OF_STATE: u16 = 133;
    pub const F_STATE_EXPIRATION_TIME: u16 = 134;
}

/// One error enum for the failover codec; every variant is a drop counter in the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Error {
    /// The length prefix announced fewer octets than the shortest message header (4).
    #[error("frame length {0} is shorter than any message header")]
    FrameTooShort(u16),
    /// A message viewed as STARTTLS/REPLY has another msg-type (RFC 7653 §6.2.2, §9.1).
    #[error("msg-type {0} is not STARTTLS or REPLY")]
    NotTlsNegotiation(u8),
    /// The message is shorter than the failover header.
    #[error("message shorter than the 8-octet failover header")]
    HeaderTruncated,
    /// A builder produced more than 65535 octets (RFC 5460 §5.1 length prefix).
    #[error("message longer than 65535 octets")]
    MessageTooLong,
    /// An option header or body runs past the end of its container.
    #[error("option {0} truncated")]
    OptionTruncated(u16),
    /// An option has a length its format does not allow.
    #[error("option {0} has a bad length")]
    BadOptionLength(u16),
    /// A mandatory option is absent (RFC 8156 §6.1.1, §6.3, §7.4).
    #[error("mandatory option {0} missing")]
    MissingOption(u16),
    /// A singleton option appears twice (RFC 8156 §5.5: all failover options are singletons).
    #[error("option {0} appears more than once")]
    DuplicateOption(u16),
    /// OPTION_F_BINDING_STATUS holds a value outside 1..=8 (RFC 8156 §5.5.1).
    #[error("unknown binding-status {0}")]
    UnknownBindingStatus(u8),
    /// OPTION_F_SERVER_STATE holds a value outside 1..=10 (RFC 8156 §5.5.13).
    #[error("unknown server state {0}")]
    UnknownServerState(u8),
    /// OPTION_CLIENTID is empty or longer than 130 octets (RFC 8415 §11.1).
    #[error("bad client DUID")]
    BadDuid,
    /// A BNDUPD must hold exactly one OPTION_CLIENT_DATA or one OPTION_IAPREFIX (§7.4).
    #[error("binding update holds no or several bindings")]
    NotOneBinding,
    /// An IAPREFIX prefix length above 128.
    #[error("prefix length above 128")]
    BadPrefixLength,
}

/// The shared DHCPv6 walker and writer report in the DHCPv6 codec's terms; on the failover
/// connection they mean the same failures.
impl From<WireError> for Error {
    fn from(e: WireError) -> Error {
        match e {
            WireError::Truncated => Error::OptionTruncated(0),
            WireError::OptionOverrun { code } => Error::OptionTruncated(code),
            WireError::OptionTooLong { .. } | WireError::NestingTooDeep { .. } => {
                Error::MessageTooLong
            }
            WireError::BadValue { code: 26 } => Error::BadPrefixLength,
            other => Error::BadOptionLength(other.option_code().unwrap_or(0)),
        }
    }
}

/// Failover message types (RFC 8156 §5.3, §11) plus the two RFC 7653 messages used on the
/// same connection for the STARTTLS negotiation (RFC 7653 §8.2, §9.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    /// RFC 8415 REPLY, RFC 7653 §9.1: answer to STARTTLS.
    Reply = 7,
    /// RFC 7653 §6.2.2.
    Starttls = 23,
    Bndupd = 24,
    Bndreply = 25,
    Poolreq = 26,
    Poolresp = 27,
    Updreq = 28,
    Updreqall = 29,
    Upddone = 30,
    Connect = 31,
    Connectreply = 32,
    Disconnect = 33,
    State = 34,
    Contact = 35,
}

impl MessageType {
    pub fn from_u8(v: u8) -> Option<MessageType> {
        use MessageType::*;
        Some(match v {
            7 => Reply,
            23 => Starttls,
            24 => Bndupd,
            25 => Bndreply,
            26 => Poolreq,
            27 => Poolresp,
            28 => Updreq,
            29 => Updreqall,
            30 => Upddone,
            31 => Connect,
            32 => Connectreply,
            33 => Disconnect,
            34 => State,
            35 => Contact,
            _ => return None,
        })
    }
}

/// Failover endpoint states, with their OPTION_F_SERVER_STATE codes (RFC 8156 §5.5.13).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ServerState {
    Startup = 1,
    Normal = 2,
    CommunicationsInterrupted = 3,
    PartnerDown = 4,
    PotentialConflict = 5,
    Recover = 6,
    /// Code 7 was SHUTDOWN in the protocol drafts; RFC 8156 assigns it to RECOVER-WAIT.
    RecoverWait = 7,
    RecoverDone = 8,
    ResolutionInterrupted = 9,
    ConflictDone = 10,
}

impl ServerState {
    pub const ALL: [ServerState; 10] = [
        ServerState::Startup,
        ServerState::Normal,
        ServerState::CommunicationsInterrupted,
        ServerState::PartnerDown,
        ServerState::PotentialConflict,
        ServerState::Recover,
        ServerState::RecoverWait,
        ServerState::RecoverDone,
        ServerState::ResolutionInterrupted,
        ServerState::ConflictDone,
    ];

    pub fn from_u8(v: u8) -> Option<ServerState> {
        ServerState::ALL
            .get(usize::from(v).wrapping_sub(1))
            .copied()
    }

    /// The RFC's spelling, for logs and tooling.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Startup => "STARTUP",
            ServerState::Normal => "NORMAL",
            ServerState::CommunicationsInterrupted => "COMMUNICATIONS-INTERRUPTED",
            ServerState::PartnerDown => "PARTNER-DOWN",
            ServerState::PotentialConflict => "POTENTIAL-CONFLICT",
            ServerState::Recover => "RECOVER",
            ServerState::RecoverWait => "RECOVER-WAIT",
            ServerState::RecoverDone => "RECOVER-DONE",
            ServerState::ResolutionInterrupted => "RESOLUTION-INTERRUPTED",
            ServerState::ConflictDone => "CONFLICT-DONE",
        }
    }
}

/// Status codes used on the failover connection (RFC 8415 §21.13, RFC 7653 §7,
/// RFC 8156 §5.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum StatusCode {
    Success = 0,
    UnspecFail = 1,
    NotSupported = 14,
    TlsConnectionRefused = 15,
    AddressInUse = 16,
    ConfigurationConflict = 17,
    MissingBindingInformation = 18,
    OutdatedBindingInformation = 19,
    ServerShuttingDown = 20,
    DnsUpdateNotSupported = 21,
    ExcessiveTimeSkew = 22,
}

impl StatusCode {
    pub fn from_u16(v: u16) -> Option<StatusCode> {
        use StatusCode::*;
        Some(match v {
            0 => Success,
            1 => UnspecFail,
            14 => NotSupported,
            15 => TlsConnectionRefused,
            16 => AddressInUse,
            17 => ConfigurationConflict,
            18 => MissingBindingInformation,
            19 => OutdatedBindingInformation,
            20 => ServerShuttingDown,
            21 => DnsUpdateNotSupported,
            22 => ExcessiveTimeSkew,
            _ => return None,
        })
    }
}

/// OPTION_F_SERVER_FLAGS (RFC 8156 §5.5.12). The RFC numbers bits from the MSB, so bit 7
/// (COMMUNICATED) is the least significant one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServerFlags(pub u8);

impl ServerFlags {
    /// C: the sending server has communicated with its partner at some time.
    pub const COMMUNICATED: u8 = 0x01;
    /// S: the sending server is in STARTUP.
    pub const STARTUP: u8 = 0x02;
    /// A: ACK_STARTUP, acknowledges a partner STATE with S set.
    pub const ACK_STARTUP: u8 = 0x04;

    pub fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }
}

/// OPTION_F_CONNECT_FLAGS bit 15 (value 0x0001): every prefix delegated from one delegable
/// prefix has the same length (RFC 8156 §5.5.2).
pub const CONNECT_FLAG_FIXED_PD_LENGTH: u16 = 0x0001;

/// Result of looking for one frame at the start of a TCP receive buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole message (without its length prefix) and how many octets the frame used.
    Complete { message: &'a [u8], consumed: usize },
    /// Not enough octets yet; at least `needed` octets in total are required.
    Incomplete { needed: usize },
}

/// Splits one RFC 5460 §5.1 frame off the front of `buf`.
pub fn split_frame(buf: &[u8]) -> Result<Frame<'_>, Error> {
    let Some(prefix) = buf.get(..FRAME_PREFIX_LEN) else {
        return Ok(Frame::Incomplete {
            needed: FRAME_PREFIX_LEN,
        });
    };
    let len = u16::from_be_bytes([prefix[0], prefix[1]]);
    // The STARTTLS/REPLY exchange (RFC 7653 §8.2) uses the 4-octet DHCPv6 header; every
    // other message the 8-octet failover header, which `Message::new_checked` checks.
    if usize::from(len) < DHCPV6_HEADER_LEN {
        return Err(Error::FrameTooShort(len));
    }
    let end = FRAME_PREFIX_LEN + usize::from(len);
    match buf.get(FRAME_PREFIX_LEN..end) {
        Some(message) => Ok(Frame::Complete {
            message,
            consumed: end,
        }),
        None => Ok(Frame::Incomplete { needed: end }),
    }
}

mod field {
    use std::ops::Range;
    pub const MSG_TYPE: usize = 0;
    pub const XID: Range<usize> = 1..4;
    pub const SENT_TIME: Range<usize> = 4..8;
    pub const OPTIONS: usize = 8;
}

/// Zero-copy view of one failover message (without the frame's length prefix).
#[derive(Clone, Copy, Debug)]
pub struct Message<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Message<T> {
    /// Wraps `buffer` after checking it holds the header and that its options are a whole
    /// TLV sequence (RFC 8415 §21.1, which RFC 8156 §5.5 uses unchanged).
    pub fn new_checked(buffer: T) -> Result<Message<T>, Error> {
        let m = Message { buffer };
        m.check_len()?;
        Ok(m)
    }

    pub fn check_len(&self) -> Result<(), Error> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::HeaderTruncated);
        }
        check_options(&b[field::OPTIONS..])?;
        Ok(())
    }

    pub fn msg_type_raw(&self) -> u8 {
        self.buffer.as_ref()[field::MSG_TYPE]
    }

    pub fn msg_type(&self) -> Option<MessageType> {
        MessageType::from_u8(self.msg_type_raw())
    }

    /// 24-bit transaction id (RFC 8156 §5.4).
    pub fn transaction_id(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::XID];
        u32::from_be_bytes([0, b[0], b[1], b[2]])
    }

    /// Seconds since 2000-01-01 UTC when the sender sent the message (RFC 8156 §5.2).
    pub fn sent_time(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::SENT_TIME];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The top-level options, already checked by [`Message::new_checked`].
    pub fn options(&self) -> Options<'_> {
        Options {
            body: &self.buffer.as_ref()[field::OPTIONS..],
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Message<T> {
    /// Rewrites sent-time just before transmission (RFC 8156 §7.1: "as close as possible").
    pub fn set_sent_time(&mut self, secs_since_2000: u32) {
        self.buffer.as_mut()[field::SENT_TIME].copy_from_slice(&secs_since_2000.to_be_bytes());
    }
}

/// STARTTLS (RFC 7653 §6.2.2) and the REPLY answering it (§9.1): how a primary asks its
/// secondary to secure the connection before CONNECT (RFC 8156 §6.1). Unlike every failover
/// message these are DHCPv6 messages: the RFC 8415 §8 header (msg-type, transaction-id),
/// no sent-time, inside the same RFC 5460 framing. A receiver tells them apart by msg-type
/// (23 and 7 are no failover message types, §5.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsNegotiation {
    /// [`MessageType::Starttls`] or [`MessageType::Reply`].
    pub msg_type: MessageType,
    pub transaction_id: u32,
    /// REPLY only: `None` means "go ahead with TLS", `TlsConnectionRefused` refuses (§9.1).
    pub status: Option<StatusCode>,
}

impl TlsNegotiation {
    /// Parses one message (without its length prefix).
    pub fn parse(message: &[u8]) -> Result<TlsNegotiation, Error> {
        let Some(header) = message.get(..DHCPV6_HEADER_LEN) else {
            return Err(Error::HeaderTruncated);
        };
        let msg_type = match MessageType::from_u8(header[0]) {
            Some(t @ (MessageType::Starttls | MessageType::Reply)) => t,
            _ => return Err(Error::NotTlsNegotiation(header[0])),
        };
        let options = Options::new_checked(&message[DHCPV6_HEADER_LEN..])?;
        Ok(TlsNegotiation {
            msg_type,
            transaction_id: u32::from_be_bytes([0, header[1], header[2], header[3]]),
            // §6.2.2: options in a STARTTLS "SHOULD be ignored".
            status: match msg_type {
                MessageType::Reply => top_status(options)?,
                _ => None,
            },
        })
    }

    /// Appends the framed message to `buf`.
    pub fn emit(&self, buf: &mut Vec<u8>) -> Result<usize, Error> {
        let start = buf.len();
        let mut w = Writer::new(buf);
        w.bytes(&[0, 0, self.msg_type as u8])
            .bytes(&self.transaction_id.to_be_bytes()[1..]);
        if let (MessageType::Reply, Some(code)) = (self.msg_type, self.status) {
            emit_status(&mut w, code, "");
        }
        let (buf, _) = w.finish_with_buffer()?;
        let len = buf.len() - start - FRAME_PREFIX_LEN;
        // At most 4 + 6 octets: always fits the prefix.
        buf[start..start + FRAME_PREFIX_LEN].copy_from_slice(&(len as u16).to_be_bytes());
        Ok(len + FRAME_PREFIX_LEN)
    }
}

/// Fixed-size option bodies: a length other than `N` is `BadOptionLength`.
fn fixed<const N: usize>(o: &RawOption<'_>) -> Result<[u8; N], Error> {
    o.data
        .try_into()
        .map_err(|_| Error::BadOptionLength(o.code))
}

/// The body of a one-octet option (OPTION_F_BINDING_STATUS, OPTION_F_SERVER_STATE, ...).
pub fn option_u8(o: &RawOption<'_>) -> Result<u8, Error> {
    fixed::<1>(o).map(|[v]| v)
}

/// The body of a two-octet option (OPTION_F_CONNECT_FLAGS).
pub fn option_u16(o: &RawOption<'_>) -> Result<u16, Error> {
    fixed::<2>(o).map(u16::from_be_bytes)
}

/// The body of a four-octet option (every time and count in RFC 8156 §5.5).
pub fn option_u32(o: &RawOption<'_>) -> Result<u32, Error> {
    fixed::<4>(o).map(u32::from_be_bytes)
}

/// The options nested in an encapsulating option after its `fixed_len` fixed octets, checked
/// as a whole TLV sequence.
pub fn nested<'a>(o: &RawOption<'a>, fixed_len: usize) -> Result<Options<'a>, Error> {
    match o.data.get(fixed_len..) {
        Some(rest) => Options::new_checked(rest),
        None => Err(Error::BadOptionLength(o.code)),
    }
}

/// A run of options whose every header and length has been checked (with the DHCPv6
/// codec's [`check_options`]); iterating it is the DHCPv6 codec's walker ([`TlvWalker`]),
/// so the crate has one TLV walker. `Copy`, so a decoder can look for several singletons
/// in the same run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options<'a> {
    body: &'a [u8],
}

impl<'a> Options<'a> {
    pub fn new_checked(body: &'a [u8]) -> Result<Options<'a>, Error> {
        check_options(body)?;
        Ok(Options { body })
    }

    /// The raw octets of the run.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.body
    }

    /// The single option `code`; `DuplicateOption` if it repeats (RFC 8156 §5.5 singletons).
    pub fn find(self, code: u16) -> Result<Option<RawOption<'a>>, Error> {
        let mut found = None;
        for opt in self {
            if opt.code == code {
                if found.is_some() {
                    return Err(Error::DuplicateOption(code));
                }
                found = Some(opt);
            }
        }
        Ok(found)
    }

    pub fn require(self, code: u16) -> Result<RawOption<'a>, Error> {
        self.find(code)?.ok_or(Error::MissingOption(code))
    }
}

impl<'a> IntoIterator for Options<'a> {
    type Item = RawOption<'a>;
    type IntoIter = TlvWalker<'a>;

    fn into_iter(self) -> TlvWalker<'a> {
        // Checked at construction: the unchecked walker yields every option.
        TlvWalker::new_unchecked(self.body)
    }
}

/// Writes one framed failover message into a caller-owned buffer: the 2-octet length and
/// the 8-octet header, then options through the DHCPv6 codec's [`Writer`] (reached through
/// `Deref`), which nests containers and back-patches their lengths.
pub struct Builder<'a> {
    w: Writer<'a>,
}

impl<'a> Builder<'a> {
    /// Starts a message at the end of `buf` (earlier content, e.g. other frames, is kept).
    pub fn new(buf: &'a mut Vec<u8>, msg_type: MessageType, xid: u32, sent_time: u32) -> Self {
        let mut w = Writer::new(buf);
        // The length prefix is patched by `finish` (RFC 5460 §5.1).
        w.bytes(&[0, 0, msg_type as u8])
            .bytes(&xid.to_be_bytes()[1..])
            .bytes(&sent_time.to_be_bytes());
        Builder { w }
    }

    /// OPTION_STATUS_CODE (RFC 8415 §21.13) with a UTF-8 message.
    pub fn status(&mut self, code: StatusCode, text: &str) -> &mut Self {
        emit_status(&mut self.w, code, text);
        self
    }

    /// Closes what is still open and patches the frame length. On error the partial
    /// message is removed from the buffer.
    pub fn finish(self) -> Result<usize, Error> {
        let (buf, start) = self.w.finish_with_buffer()?;
        let len = buf.len() - start - FRAME_PREFIX_LEN;
        let Ok(prefix) = u16::try_from(len) else {
            buf.truncate(start);
            return Err(Error::MessageTooLong);
        };
        buf[start..start + FRAME_PREFIX_LEN].copy_from_slice(&prefix.to_be_bytes());
        Ok(len + FRAME_PREFIX_LEN)
    }
}

impl<'a> std::ops::Deref for Builder<'a> {
    type Target = Writer<'a>;
    fn deref(&self) -> &Writer<'a> {
        &self.w
    }
}

impl std::ops::DerefMut for Builder<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.w
    }
}
/// Rejects an option that appeared twice where RFC 8156 §5.5 allows one.
fn set_once<V>(slot: &mut Option<V>, code: u16, v: V) -> Result<(), Error> {
    if slot.is_some() {
        return Err(Error::DuplicateOption(code));
    }
    *slot = Some(v);
    Ok(())
}

/// CONNECT (§6.1.1) and an accepting CONNECTREPLY (§6.1.2): the session parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectRepr<'a> {
    pub protocol_version: (u16, u16),
    /// Seconds. The primary dictates it; the secondary echoes it (§6.1.2).
    pub mclt: u32,
    pub keepalive_time: u32,
    pub max_unacked_bndupd: u32,
    pub relationship_name: Option<&'a str>,
    pub connect_flags: u16,
}

impl<'a> ConnectRepr<'a> {
    pub fn parse(options: Options<'a>) -> Result<ConnectRepr<'a>, Error> {
        let v = options.require(option::F_PROTOCOL_VERSION)?;
        let v = option_u32(&v)?;
        let name = match options.find(option::F_RELATIONSHIP_NAME)? {
            Some(o) => Some(
                std::str::from_utf8(o.data)
                    .map_err(|_| Error::BadOptionLength(option::F_RELATIONSHIP_NAME))?,
            ),
            None => None,
        };
        Ok(ConnectRepr {
            protocol_version: ((v >> 16) as u16, v as u16),
            mclt: option_u32(&options.require(option::F_MCLT)?)?,
            keepalive_time: option_u32(&options.require(option::F_KEEPALIVE_TIME)?)?,
            max_unacked_bndupd: option_u32(&options.require(option::F_MAX_UNACKED_BNDUPD)?)?,
            relationship_name: name,
            // §6.1.1 says it MUST appear; a missing one is read as "no flags" so a partner
            // built from protocol-00 (which lacked the option) can still connect.
            connect_flags: match options.find(option::F_CONNECT_FLAGS)? {
                Some(o) => option_u16(&o)?,
                None => 0,
            },
        })
    }

    pub fn emit(&self, b: &mut Builder<'_>) {
        let (maj, min) = self.protocol_version;
        b.u32_option(
            option::F_PROTOCOL_VERSION,
            (u32::from(maj) << 16) | u32::from(min),
        )
        .u32_option(option::F_MCLT, self.mclt)
        .u32_option(option::F_KEEPALIVE_TIME, self.keepalive_time)
        .u32_option(option::F_MAX_UNACKED_BNDUPD, self.max_unacked_bndupd)
        .u16_option(option::F_CONNECT_FLAGS, self.connect_flags);
        if let Some(name) = self.relationship_name {
            b.raw(option::F_RELATIONSHIP_NAME, name.as_bytes());
        }
    }
}

/// The status code at the top level of a message (CONNECTREPLY, DISCONNECT, REPLY),
/// `None` when absent. Unknown codes map to `UnspecFail`.
pub fn top_status(options: Options<'_>) -> Result<Option<StatusCode>, Error> {
    match options.find(option::STATUS_CODE)? {
        Some(o) => {
            let Some(code) = o.data.get(..2) else {
                return Err(Error::BadOptionLength(option::STATUS_CODE));
            };
            let code = u16::from_be_bytes([code[0], code[1]]);
            Ok(Some(
                StatusCode::from_u16(code).unwrap_or(StatusCode::UnspecFail),
            ))
        }
        None => Ok(None),
    }
}

/// STATE (RFC 8156 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateRepr {
    /// In STARTUP the sender puts its previous state here and sets the STARTUP flag (§6.3).
    pub state: ServerState,
    pub flags: ServerFlags,
    pub start_time_of_state: u32,
    /// Only while the sender is in PARTNER-DOWN (§6.3).
    pub partner_down_time: Option<u32>,
}

impl StateRepr {
    pub fn parse(options: Options<'_>) -> Result<StateRepr, Error> {
        let s = option_u8(&options.require(option::F_SERVER_STATE)?)?;
        Ok(StateRepr {
            state: ServerState::from_u8(s).ok_or(Error::UnknownServerState(s))?,
            flags: ServerFlags(option_u8(&options.require(option::F_SERVER_FLAGS)?)?),
            start_time_of_state: option_u32(&options.require(option::F_START_TIME_OF_STATE)?)?,
            partner_down_time: match options.find(option::F_PARTNER_DOWN_TIME)? {
                Some(o) => Some(option_u32(&o)?),
                None => None,
            },
        })
    }

    pub fn emit(&self, b: &mut Builder<'_>) {
        b.u8_option(option::F_SERVER_STATE, self.state as u8)
            .u8_option(option::F_SERVER_FLAGS, self.flags.0)
            .u32_option(option::F_START_TIME_OF_STATE, self.start_time_of_state);
        if let Some(t) = self.partner_down_time {
            b.u32_option(option::F_PARTNER_DOWN_TIME, t);
        }
    }
}

/// One lease inside a BNDUPD or BNDREPLY: an IAADDR/IAPREFIX with its IA's fields and the
/// failover options inside it (RFC 8156 §7.4, §7.6). Absolute times are seconds since 2000.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseRecord {
    pub ia_type: IaType,
    pub iaid: u32,
    pub t1: u32,
    pub t2: u32,
    pub resource: Resource,
    pub preferred_lifetime: u32,
    pub valid_lifetime: u32,
    /// OPTION_F_BINDING_STATUS (MUST in BNDUPD and BNDREPLY).
    pub status: BindingState,
    /// OPTION_F_START_TIME_OF_STATE (MUST in BNDUPD).
    pub start_time_of_state: Option<u32>,
    pub state_expiration_time: Option<u32>,
    /// OPTION_CLT_TIME: seconds *before* the update's LQ_BASE_TIME (RFC 7653 §6.3.1).
    pub clt_time: Option<u32>,
    pub partner_lifetime: Option<u32>,
    pub partner_raw_clt_time: Option<u32>,
    pub expiration_time: Option<u32>,
    /// BNDREPLY only: echo of the received partner-lifetime (§7.6).
    pub partner_lifetime_sent: Option<u32>,
    /// BNDREPLY only: the innermost status covering this lease (§7.7 granularity).
    pub status_code: Option<StatusCode>,
}

impl LeaseRecord {
    /// Absolute client-last-transaction-time (seconds since 2000) given the base time.
    pub fn clt_abs(&self, base_time: u32) -> Option<u32> {
        self.clt_time.map(|rel| base_time.saturating_sub(rel))
    }
}

/// What a binding update is about: one client (OPTION_CLIENT_DATA) or one delegable prefix
/// not tied to a client (stand-alone OPTION_IAPREFIX) (RFC 8156 §7.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    Client(Duid),
    Prefix,
}

/// A decoded BNDUPD or BNDREPLY. `records` is reused between parses to avoid allocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingUpdateRepr {
    pub subject: Subject,
    /// OPTION_LQ_BASE_TIME (seconds since 2000), the reference of every OPTION_CLT_TIME.
    pub base_time: u32,
    /// BNDREPLY: status at the top of CLIENT_DATA / IAPREFIX rejecting everything (§7.7).
    pub top_status: Option<StatusCode>,
    pub records: Vec<LeaseRecord>,
}

impl Default for BindingUpdateRepr {
    fn default() -> Self {
        BindingUpdateRepr {
            subject: Subject::Prefix,
            base_time: 0,
            top_status: None,
            records: Vec::new(),
        }
    }
}

fn status_of(o: &RawOption<'_>) -> Result<StatusCode, Error> {
    let Some(code) = o.data.get(..2) else {
        return Err(Error::BadOptionLength(option::STATUS_CODE));
    };
    Ok(StatusCode::from_u16(u16::from_be_bytes([code[0], code[1]]))
        .unwrap_or(StatusCode::UnspecFail))
}

fn u32_at(d: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
}

fn ipv6_at(d: &[u8], at: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&d[at..at + 16]);
    Ipv6Addr::from(a)
}

/// The per-lease failover options, common to IAADDR and IAPREFIX (and the stand-alone
/// IAPREFIX, which may also carry LQ_BASE_TIME).
#[derive(Default)]
struct LeaseOptions {
    status: Option<BindingState>,
    start: Option<u32>,
    state_exp: Option<u32>,
    clt: Option<u32>,
    plt: Option<u32>,
    raw_clt: Option<u32>,
    exp: Option<u32>,
    plt_sent: Option<u32>,
    code: Option<StatusCode>,
    base_time: Option<u32>,
}

impl LeaseOptions {
    fn parse(opts: Options<'_>, reply: bool) -> Result<LeaseOptions, Error> {
        let mut l = LeaseOptions::default();
        for o in opts {
            match o.code {
                option::F_BINDING_STATUS => {
                    let v = option_u8(&o)?;
                    let s = BindingState::from_u8(v).ok_or(Error::UnknownBindingStatus(v))?;
                    set_once(&mut l.status, o.code, s)?
                }
                option::F_START_TIME_OF_STATE => set_once(&mut l.start, o.code, option_u32(&o)?)?,
                option::F_STATE_EXPIRATION_TIME => {
                    set_once(&mut l.state_exp, o.code, option_u32(&o)?)?
                }
                option::CLT_TIME => set_once(&mut l.clt, o.code, option_u32(&o)?)?,
                option::F_PARTNER_LIFETIME => set_once(&mut l.plt, o.code, option_u32(&o)?)?,
                option::F_PARTNER_RAW_CLT_TIME => {
                    set_once(&mut l.raw_clt, o.code, option_u32(&o)?)?
                }
                option::F_EXPIRATION_TIME => set_once(&mut l.exp, o.code, option_u32(&o)?)?,
                // §5.5.8, §7.6: only a BNDREPLY echoes a partner lifetime; §7.4 does not list
                // it for a BNDUPD, which is decoded as if it were absent.
                option::F_PARTNER_LIFETIME_SENT if reply => {
                    set_once(&mut l.plt_sent, o.code, option_u32(&o)?)?
                }
                option::STATUS_CODE => set_once(&mut l.code, o.code, status_of(&o)?)?,
                option::LQ_BASE_TIME => set_once(&mut l.base_time, o.code, option_u32(&o)?)?,
                // OPTION_CLIENT_FQDN, OPTION_F_DNS_REMOVAL_INFO, OPTION_VSS: carried but not
                // interpreted (tandem does no DNS update and serves the default VPN only).
                _ => {}
            }
        }
        Ok(l)
    }
}

/// Writes OPTION_STATUS_CODE (RFC 8415 §21.13).
fn emit_status(w: &mut Writer<'_>, code: StatusCode, text: &str) {
    w.nested(option::STATUS_CODE, &(code as u16).to_be_bytes(), |w| {
        w.bytes(text.as_bytes());
    });
}

impl BindingUpdateRepr {
    /// Decodes the options of a BNDUPD or BNDREPLY in one pass over each container.
    /// `MissingBindingInformation` cases (§7.5.3) surface as `NotOneBinding` /
    /// `MissingOption`. A BNDREPLY (`reply == true`) carries no LQ_BASE_TIME (§7.6); a
    /// BNDUPD must.
    pub fn parse(&mut self, options: Options<'_>, reply: bool) -> Result<(), Error> {
        self.records.clear();
        self.top_status = None;
        let mut subject = None;
        for o in options {
            if matches!(o.code, option::CLIENT_DATA | option::IAPREFIX) {
                if subject.is_some() {
                    return Err(Error::NotOneBinding);
                }
                subject = Some(o);
            }
        }
        let subject = subject.ok_or(Error::NotOneBinding)?;
        let base_time = |found: Option<u32>| match (found, reply) {
            (Some(t), _) => Ok(t),
            (None, true) => Ok(0),
            (None, false) => Err(Error::MissingOption(option::LQ_BASE_TIME)),
        };
        if subject.code == option::IAPREFIX {
            self.subject = Subject::Prefix;
            let (rec, base) = Self::parse_prefix(&subject, reply)?;
            self.base_time = base_time(base)?;
            self.top_status = rec.status_code;
            self.records.push(rec);
            return Ok(());
        }
        // RFC 5007 §4.1.2.2 OPTION_CLIENT_DATA: client-options (CLIENTID, the IAs,
        // CLT_TIME...), with RFC 8156 §7.4's LQ_BASE_TIME and a BNDREPLY's STATUS_CODE.
        let mut duid = None;
        let mut base = None;
        let mut top = None;
        for o in Options::new_checked(subject.data)? {
            match o.code {
                option::CLIENTID => set_once(&mut duid, o.code, o.data)?,
                option::LQ_BASE_TIME => set_once(&mut base, o.code, option_u32(&o)?)?,
                option::STATUS_CODE => set_once(&mut top, o.code, status_of(&o)?)?,
                option::IA_NA | option::IA_TA | option::IA_PD => self.parse_ia(&o, reply)?,
                _ => {}
            }
        }
        let duid = duid.ok_or(Error::MissingOption(option::CLIENTID))?;
        self.subject = Subject::Client(Duid::new(duid).ok_or(Error::BadDuid)?);
        self.base_time = base_time(base)?;
        if let Some(code) = top {
            // §7.7: a status at the top of CLIENT_DATA covers every lease without its own.
            self.top_status = Some(code);
            for r in &mut self.records {
                r.status_code = r.status_code.or(Some(code));
            }
        }
        if self.records.is_empty() {
            // §7.4: at least one IA with one lease must appear.
            return Err(Error::MissingOption(option::IAADDR));
        }
        Ok(())
    }

    /// One IA_NA / IA_TA / IA_PD of a CLIENT_DATA (RFC 8415 §21.4, §21.5, §21.21).
    fn parse_ia(&mut self, ia: &RawOption<'_>, reply: bool) -> Result<(), Error> {
        let (ia_type, fixed_len) = match ia.code {
            option::IA_NA => (IaType::Na, 12),
            option::IA_TA => (IaType::Ta, 4),
            _ => (IaType::Pd, 12),
        };
        let d = ia.data;
        if d.len() < fixed_len {
            return Err(Error::BadOptionLength(ia.code));
        }
        let iaid = u32_at(d, 0);
        let (t1, t2) = if fixed_len == 12 {
            (u32_at(d, 4), u32_at(d, 8))
        } else {
            (0, 0)
        };
        let first = self.records.len();
        let mut ia_status = None;
        for lo in nested(ia, fixed_len)? {
            let mut rec = match (ia_type, lo.code) {
                (_, option::STATUS_CODE) => {
                    set_once(&mut ia_status, lo.code, status_of(&lo)?)?;
                    continue;
                }
                (IaType::Na | IaType::Ta, option::IAADDR) => Self::parse_addr(&lo, reply)?,
                (IaType::Pd, option::IAPREFIX) => Self::parse_prefix(&lo, reply)?.0,
                _ => continue,
            };
            rec.ia_type = ia_type;
            rec.iaid = iaid;
            rec.t1 = t1;
            rec.t2 = t2;
            self.records.push(rec);
        }
        if let Some(code) = ia_status {
            // §7.7: an IA's status covers its leases without their own.
            for r in &mut self.records[first..] {
                r.status_code = r.status_code.or(Some(code));
            }
        }
        Ok(())
    }

    fn record(
        ia_type: IaType,
        resource: Resource,
        pref: u32,
        valid: u32,
        l: LeaseOptions,
    ) -> Result<LeaseRecord, Error> {
        Ok(LeaseRecord {
            ia_type,
            iaid: 0,
            t1: 0,
            t2: 0,
            resource,
            preferred_lifetime: pref,
            valid_lifetime: valid,
            status: l
                .status
                .ok_or(Error::MissingOption(option::F_BINDING_STATUS))?,
            start_time_of_state: l.start,
            state_expiration_time: l.state_exp,
            clt_time: l.clt,
            partner_lifetime: l.plt,
            partner_raw_clt_time: l.raw_clt,
            expiration_time: l.exp,
            partner_lifetime_sent: l.plt_sent,
            status_code: l.code,
        })
    }

    fn parse_addr(o: &RawOption<'_>, reply: bool) -> Result<LeaseRecord, Error> {
        // RFC 8415 §21.6: address (16), preferred (4), valid (4), options.
        let d = o.data;
        if d.len() < 24 {
            return Err(Error::BadOptionLength(o.code));
        }
        let l = LeaseOptions::parse(nested(o, 24)?, reply)?;
        Self::record(
            IaType::Na,
            Resource::address(ipv6_at(d, 0)),
            u32_at(d, 16),
            u32_at(d, 20),
            l,
        )
    }

    fn parse_prefix(o: &RawOption<'_>, reply: bool) -> Result<(LeaseRecord, Option<u32>), Error> {
        // RFC 8415 §21.22: preferred (4), valid (4), prefix-length (1), prefix (16), options.
        let d = o.data;
        if d.len() < 25 {
            return Err(Error::BadOptionLength(o.code));
        }
        let plen = d[8];
        if plen > 128 {
            return Err(Error::BadPrefixLength);
        }
        let l = LeaseOptions::parse(nested(o, 25)?, reply)?;
        let base = l.base_time;
        let rec = Self::record(
            IaType::Pd,
            Resource::prefix(ipv6_at(d, 9), plen),
            u32_at(d, 0),
            u32_at(d, 4),
            l,
        )?;
        Ok((rec, base))
    }

    /// Emits the body of a BNDUPD (`reply == false`) or BNDREPLY (`reply == true`).
    /// Records of one IA must be adjacent; each run of equal (ia_type, iaid) becomes one IA
    /// option. For a BNDREPLY only the §7.6 echo fields are written.
    pub fn emit(&self, b: &mut Builder<'_>, reply: bool) {
        let w: &mut Writer<'_> = b;
        match self.subject {
            Subject::Prefix => {
                if let Some(rec) = self.records.first() {
                    Self::emit_lease(w, rec, Some(self.base_time).filter(|_| !reply), reply);
                }
            }
            Subject::Client(duid) => {
                let data = w.begin(option::CLIENT_DATA);
                w.client_id(duid.as_bytes());
                if !reply {
                    w.u32_option(option::LQ_BASE_TIME, self.base_time);
                }
                if let Some(code) = self.top_status {
                    emit_status(w, code, "");
                }
                for ia in self
                    .records
                    .chunk_by(|a, b| a.ia_type == b.ia_type && a.iaid == b.iaid)
                {
                    let first = ia[0];
                    let body = |w: &mut Writer<'_>| {
                        for rec in ia {
                            Self::emit_lease(w, rec, None, reply);
                        }
                    };
                    match first.ia_type {
                        IaType::Na => w.ia_na(first.iaid, first.t1, first.t2, body),
                        IaType::Ta => w.ia_ta(first.iaid, body),
                        IaType::Pd => w.ia_pd(first.iaid, first.t1, first.t2, body),
                    };
                }
                w.end(data);
            }
        }
    }

    fn emit_lease(w: &mut Writer<'_>, r: &LeaseRecord, base_time: Option<u32>, reply: bool) {
        let body = |w: &mut Writer<'_>| {
            if let Some(t) = base_time {
                w.u32_option(option::LQ_BASE_TIME, t);
            }
            let opt = |w: &mut Writer<'_>, code, v: Option<u32>| {
                if let Some(v) = v {
                    w.u32_option(code, v);
                }
            };
            if reply {
                // §7.6: status only on error, then binding-status and state-expiration-time
                // as received, and the received partner-lifetime echoed unchanged.
                if let Some(code) = r.status_code.filter(|c| *c != StatusCode::Success) {
                    emit_status(w, code, "");
                }
                w.u8_option(option::F_BINDING_STATUS, r.status as u8);
                opt(w, option::F_STATE_EXPIRATION_TIME, r.state_expiration_time);
                opt(w, option::F_PARTNER_LIFETIME_SENT, r.partner_lifetime_sent);
            } else {
                w.u8_option(option::F_BINDING_STATUS, r.status as u8);
                opt(w, option::F_START_TIME_OF_STATE, r.start_time_of_state);
                opt(w, option::F_STATE_EXPIRATION_TIME, r.state_expiration_time);
                opt(w, option::CLT_TIME, r.clt_time);
                opt(w, option::F_PARTNER_LIFETIME, r.partner_lifetime);
                opt(w, option::F_PARTNER_RAW_CLT_TIME, r.partner_raw_clt_time);
                opt(w, option::F_EXPIRATION_TIME, r.expiration_time);
            }
        };
        if r.resource.is_prefix() || r.ia_type == IaType::Pd {
            w.ia_prefix(
                r.preferred_lifetime,
                r.valid_lifetime,
                r.resource.prefix_len,
                r.resource.addr,
                body,
            );
        } else {
            w.ia_addr(
                r.resource.addr,
                r.preferred_lifetime,
                r.valid_lifetime,
                body,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn duid() -> Duid {
        Duid::new(&[0, 3, 0, 1, 2, 3, 4, 5, 6, 7]).unwrap()
    }

    fn record(addr: &str) -> LeaseRecord {
        LeaseRecord {
            ia_type: IaType::Na,
            iaid: 7,
            t1: 1800,
            t2: 2880,
            resource: Resource::address(addr.parse().unwrap()),
            preferred_lifetime: 3000,
            valid_lifetime: 3600,
            status: BindingState::Active,
            start_time_of_state: Some(100),
            state_expiration_time: Some(3700),
            clt_time: Some(5),
            partner_lifetime: Some(5500),
            partner_raw_clt_time: None,
            expiration_time: Some(4000),
            partner_lifetime_sent: None,
            status_code: None,
        }
    }

    #[test]
    fn header_roundtrip_and_frame() {
        let mut buf = vec![0xaa];
        let b = Builder::new(&mut buf, MessageType::Contact, 0x12_3456, 0xdead_beef);
        assert_eq!(b.finish().unwrap(), 10);
        assert_eq!(
            &buf[1..],
            &[0, 8, 35, 0x12, 0x34, 0x56, 0xde, 0xad, 0xbe, 0xef]
        );
        let Frame::Complete { message, consumed } = split_frame(&buf[1..]).unwrap() else {
            panic!("complete frame expected");
        };
        assert_eq!(consumed, 10);
        let m = Message::new_checked(message).unwrap();
        assert_eq!(m.msg_type(), Some(MessageType::Contact));
        assert_eq!(m.transaction_id(), 0x12_3456);
        assert_eq!(m.sent_time(), 0xdead_beef);
        assert_eq!(m.options().into_iter().count(), 0);
        assert_eq!(
            split_frame(&buf[1..5]).unwrap(),
            Frame::Incomplete { needed: 10 }
        );
        assert_eq!(split_frame(&[0, 3]), Err(Error::FrameTooShort(3)));
    }

    #[test]
    fn truncated_option_is_an_error_not_a_panic() {
        // Header, then OPTION_F_BINDING_STATUS announcing 5 octets with 1 present.
        let msg = [34, 0, 0, 1, 0, 0, 0, 0, 0, 114, 0, 5, 1];
        assert_eq!(
            Message::new_checked(&msg[..]).err(),
            Some(Error::OptionTruncated(114))
        );
        let msg = [34, 0, 0, 1, 0, 0, 0, 0, 0, 1];
        assert_eq!(
            Message::new_checked(&msg[..]).err(),
            Some(Error::OptionTruncated(0))
        );
        // A nested run is checked when it is entered.
        let o = RawOption {
            code: option::CLIENT_DATA,
            data: &[0, 1, 0, 9, 0],
        };
        assert_eq!(nested(&o, 0), Err(Error::OptionTruncated(1)));
        assert_eq!(
            nested(&o, 6),
            Err(Error::BadOptionLength(option::CLIENT_DATA))
        );
    }

    #[test]
    fn bndupd_roundtrip() {
        let mut u = BindingUpdateRepr {
            subject: Subject::Client(duid()),
            base_time: 1000,
            top_status: None,
            records: vec![record("2001:db8::1"), record("2001:db8::3")],
        };
        let mut pd = record("2001:db8:100::");
        pd.ia_type = IaType::Pd;
        pd.iaid = 9;
        pd.resource = Resource::prefix("2001:db8:100::".parse().unwrap(), 56);
        u.records.push(pd);
        let mut buf = Vec::new();
        let mut b = Builder::new(&mut buf, MessageType::Bndupd, 1, 2);
        u.emit(&mut b, false);
        b.finish().unwrap();
        let m = Message::new_checked(&buf[2..]).unwrap();
        let mut back = BindingUpdateRepr::default();
        back.parse(m.options(), false).unwrap();
        assert_eq!(back, u);
    }

    /// Fuzz finding (failover_parse, 2026-11-22): a BNDUPD whose IAADDR carried
    /// OPTION_F_PARTNER_LIFETIME_SENT decoded with it, re-emitted without it (§7.4 has no
    /// such field in a BNDUPD) and so changed on the round trip.
    #[test]
    fn partner_lifetime_sent_is_a_bndreply_field() {
        let mut buf = Vec::new();
        let mut b = Builder::new(&mut buf, MessageType::Bndupd, 0x10, 2);
        let data = b.begin(option::CLIENT_DATA);
        b.client_id(duid().as_bytes())
            .u32_option(option::LQ_BASE_TIME, 1000)
            .ia_na(1, 1500, 2400, |w| {
                w.ia_addr("2001:db8::1".parse().unwrap(), 3000, 3600, |w| {
                    w.u8_option(option::F_BINDING_STATUS, 1)
                        .u32_option(option::F_START_TIME_OF_STATE, 900)
                        .u32_option(option::F_PARTNER_LIFETIME_SENT, 5000);
                });
            });
        b.end(data);
        b.finish().unwrap();
        let m = Message::new_checked(&buf[2..]).unwrap();
        let mut u = BindingUpdateRepr::default();
        u.parse(m.options(), false).unwrap();
        assert_eq!(u.records[0].partner_lifetime_sent, None);
        let mut again = Vec::new();
        let mut b = Builder::new(&mut again, MessageType::Bndupd, 0x10, 2);
        u.emit(&mut b, false);
        b.finish().unwrap();
        let mut back = BindingUpdateRepr::default();
        back.parse(Message::new_checked(&again[2..]).unwrap().options(), false)
            .unwrap();
        assert_eq!(back, u);
        // Read as a BNDREPLY, the same option is the echoed partner lifetime.
        u.parse(m.options(), true).unwrap();
        assert_eq!(u.records[0].partner_lifetime_sent, Some(5000));
    }

    #[test]
    fn bndreply_status_granularity() {
        let mut r = record("2001:db8::1");
        r.partner_lifetime_sent = Some(5500);
        r.status_code = Some(StatusCode::OutdatedBindingInformation);
        let u = BindingUpdateRepr {
            subject: Subject::Client(duid()),
            base_time: 0,
            top_status: None,
            records: vec![r],
        };
        let mut buf = Vec::new();
        let mut b = Builder::new(&mut buf, MessageType::Bndreply, 1, 2);
        u.emit(&mut b, true);
        b.finish().unwrap();
        let m = Message::new_checked(&buf[2..]).unwrap();
        let mut back = BindingUpdateRepr::default();
        // A BNDREPLY has no LQ_BASE_TIME: fine as a reply, an error as an update.
        assert_eq!(
            back.clone().parse(m.options(), false),
            Err(Error::MissingOption(option::LQ_BASE_TIME))
        );
        back.parse(m.options(), true).unwrap();
        let got = back.records[0];
        assert_eq!(
            got.status_code,
            Some(StatusCode::OutdatedBindingInformation)
        );
        assert_eq!(got.partner_lifetime_sent, Some(5500));
        assert_eq!(got.state_expiration_time, Some(3700));
        assert_eq!(got.start_time_of_state, None);
    }

    #[test]
    fn state_and_connect_roundtrip() {
        let s = StateRepr {
            state: ServerState::PartnerDown,
            flags: ServerFlags(ServerFlags::COMMUNICATED),
            start_time_of_state: 77,
            partner_down_time: Some(77),
        };
        let c = ConnectRepr {
            protocol_version: PROTOCOL_VERSION,
            mclt: 3600,
            keepalive_time: 60,
            max_unacked_bndupd: 100,
            relationship_name: Some("site-a"),
            connect_flags: CONNECT_FLAG_FIXED_PD_LENGTH,
        };
        let mut buf = Vec::new();
        let mut b = Builder::new(&mut buf, MessageType::State, 1, 2);
        s.emit(&mut b);
        let n = b.finish().unwrap();
        let mut b = Builder::new(&mut buf, MessageType::Connect, 2, 2);
        c.emit(&mut b);
        b.finish().unwrap();
        let m = Message::new_checked(&buf[2..n]).unwrap();
        assert_eq!(StateRepr::parse(m.options()).unwrap(), s);
        let m = Message::new_checked(&buf[n + 2..]).unwrap();
        assert_eq!(ConnectRepr::parse(m.options()).unwrap(), c);
    }

    mod prop {
        use super::super::*;
        use proptest::prelude::*;

        fn opt_u32() -> impl Strategy<Value = Option<u32>> {
            proptest::option::of(any::<u32>())
        }

        fn status_code() -> impl Strategy<Value = Option<StatusCode>> {
            proptest::option::of(
                (14u16..=22)
                    .prop_map(|c| StatusCode::from_u16(c).unwrap())
                    .boxed(),
            )
        }

        prop_compose! {
            /// One lease of an IA: an address for IA_NA/IA_TA, a prefix for IA_PD.
            fn lease(ia_type: IaType)(
                addr in any::<u128>(),
                plen in 0u8..=128,
                pref in any::<u32>(),
                valid in any::<u32>(),
                status in 1u8..=8,
                times in (opt_u32(), opt_u32(), opt_u32(), opt_u32(), opt_u32(), opt_u32()),
                plt_sent in opt_u32(),
                code in status_code(),
            ) -> LeaseRecord {
                let resource = match ia_type {
                    IaType::Pd => Resource::prefix(addr.into(), plen),
                    _ => Resource::address(addr.into()),
                };
                LeaseRecord {
                    ia_type,
                    iaid: 0,
                    t1: 0,
                    t2: 0,
                    resource,
                    preferred_lifetime: pref,
                    valid_lifetime: valid,
                    status: BindingState::from_u8(status).unwrap(),
                    start_time_of_state: times.0,
                    state_expiration_time: times.1,
                    clt_time: times.2,
                    partner_lifetime: times.3,
                    partner_raw_clt_time: times.4,
                    expiration_time: times.5,
                    partner_lifetime_sent: plt_sent,
                    status_code: code,
                }
            }
        }

        /// One IA: type, T1/T2 and one to three leases, all sharing the IA's fields.
        fn ia(iaid: u32) -> impl Strategy<Value = Vec<LeaseRecord>> {
            (1u8..=3, any::<u32>(), any::<u32>()).prop_flat_map(move |(t, t1, t2)| {
                let ia_type = IaType::from_u8(t).unwrap();
                proptest::collection::vec(lease(ia_type), 1..=3).prop_map(move |mut v| {
                    for r in &mut v {
                        r.iaid = iaid;
                        (r.t1, r.t2) = if ia_type == IaType::Ta {
                            (0, 0)
                        } else {
                            (t1, t2)
                        };
                    }
                    v
                })
            })
        }

        fn update() -> impl Strategy<Value = BindingUpdateRepr> {
            let duid = proptest::collection::vec(any::<u8>(), 1..=130);
            (
                duid,
                any::<u32>(),
                ia(1),
                proptest::option::of(ia(2)),
                status_code(),
            )
                .prop_map(|(duid, base_time, a, b, top)| BindingUpdateRepr {
                    subject: Subject::Client(Duid::new(&duid).unwrap()),
                    base_time,
                    top_status: top,
                    records: a.into_iter().chain(b.into_iter().flatten()).collect(),
                })
        }

        fn roundtrip(u: &BindingUpdateRepr, reply: bool) -> BindingUpdateRepr {
            let mut buf = Vec::new();
            let kind = if reply {
                MessageType::Bndreply
            } else {
                MessageType::Bndupd
            };
            let mut b = Builder::new(&mut buf, kind, 9, 9);
            u.emit(&mut b, reply);
            let n = b.finish().unwrap();
            assert_eq!(n, buf.len());
            let Ok(Frame::Complete { message, .. }) = split_frame(&buf) else {
                panic!("our frame splits");
            };
            let mut back = BindingUpdateRepr::default();
            back.parse(Message::new_checked(message).unwrap().options(), reply)
                .unwrap();
            back
        }

        proptest! {
            /// A BNDUPD carries every §7.4 field and no status codes or echoes.
            #[test]
            fn bndupd_roundtrips(mut u in update()) {
                u.top_status = None;
                for r in &mut u.records {
                    r.status_code = None;
                    r.partner_lifetime_sent = None;
                }
                prop_assert_eq!(roundtrip(&u, false), u);
            }

            /// A BNDREPLY carries the §7.6 echo fields; statuses reach every lease below them.
            #[test]
            fn bndreply_roundtrips(u in update()) {
                let mut want = u.clone();
                want.base_time = 0;
                for r in &mut want.records {
                    r.start_time_of_state = None;
                    r.clt_time = None;
                    r.partner_lifetime = None;
                    r.partner_raw_clt_time = None;
                    r.expiration_time = None;
                    r.status_code = r.status_code.or(u.top_status);
                }
                prop_assert_eq!(roundtrip(&u, true), want);
            }

            /// Any byte string after a valid header: decoding never panics.
            #[test]
            fn decoding_arbitrary_options_never_panics(body in proptest::collection::vec(any::<u8>(), 0..300)) {
                let mut msg = vec![24, 0, 0, 1, 0, 0, 0, 0];
                msg.extend_from_slice(&body);
                if let Ok(m) = Message::new_checked(&msg[..]) {
                    let _ = BindingUpdateRepr::default().parse(m.options(), false);
                    let _ = BindingUpdateRepr::default().parse(m.options(), true);
                    let _ = ConnectRepr::parse(m.options());
                    let _ = StateRepr::parse(m.options());
                }
            }
        }
    }
}
