//! The one error type of the DHCPv6 codec.

use core::fmt;

use super::codes::option_name;

/// What broke while parsing or emitting a DHCPv6 message, and where (the option code).
///
/// `Copy` and allocation-free so the hot path can return it by value and count it: each
/// variant maps to one drop counter through [`Error::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer ends inside a fixed-size header: the 4-octet client/server header (RFC 8415
    /// §8), the 34-octet relay header (§9) or an option's 4-octet code/length (§21.1).
    Truncated,
    /// An option's length runs past the end of the buffer (or the option) that holds it.
    OptionOverrun { code: u16 },
    /// An option's length is wrong for its type: shorter than its fixed fields, longer than a
    /// fixed-size option, or not a whole number of elements (e.g. ORO of odd length).
    BadLength { code: u16 },
    /// A field holds a value the RFC does not allow (e.g. a prefix length above 128, a
    /// PD_EXCLUDE not longer than its delegated prefix).
    BadValue { code: u16 },
    /// A DUID shorter than 3 or longer than 130 octets (RFC 8415 §11.1), or a typed DUID too
    /// short for its type.
    BadDuid { code: u16 },
    /// A domain name that is not an uncompressed RFC 1035 §3.1 name (label over 63 octets,
    /// name over 255, compression pointer, missing root label where one is required).
    BadDomainName { code: u16 },
    /// A Relay-forw or Relay-repl without a Relay Message option (RFC 8415 §9).
    MissingRelayMessage,
    /// A required option is absent (e.g. CLIENTID for the shard router).
    MissingOption { code: u16 },
    /// More than [`MAX_RELAY_DEPTH`](super::MAX_RELAY_DEPTH) nested relay layers.
    RelayTooDeep,
    /// A message type where it cannot be: a relay header where a client/server message is
    /// expected (or the reverse), or a Relay-repl nested in a Relay-forw.
    UnexpectedMessageType { msg_type: u8 },
    /// Emitting: an option body would not fit the 16-bit length field.
    OptionTooLong { code: u16 },
    /// Options nested deeper than any DHCPv6 message needs (owned [`Repr`] parsing only;
    /// the views never recurse).
    ///
    /// [`Repr`]: super::repr::Repr
    NestingTooDeep { code: u16 },
}

/// [`Error`] without its location: one counter per variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ErrorKind {
    Truncated,
    OptionOverrun,
    BadLength,
    BadValue,
    BadDuid,
    BadDomainName,
    MissingRelayMessage,
    MissingOption,
    RelayTooDeep,
    UnexpectedMessageType,
    OptionTooLong,
    NestingTooDeep,
}

impl ErrorKind {
    /// Number of kinds: the size of a counter array indexed by [`ErrorKind::index`].
    pub const COUNT: usize = 12;

    /// Every kind, in index order.
    pub const ALL: [ErrorKind; ErrorKind::COUNT] = [
        ErrorKind::Truncated,
        ErrorKind::OptionOverrun,
        ErrorKind::BadLength,
        ErrorKind::BadValue,
        ErrorKind::BadDuid,
        ErrorKind::BadDomainName,
        ErrorKind::MissingRelayMessage,
        ErrorKind::MissingOption,
        ErrorKind::RelayTooDeep,
        ErrorKind::UnexpectedMessageType,
        ErrorKind::OptionTooLong,
        ErrorKind::NestingTooDeep,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    /// A short snake_case name for counters and logs.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Truncated => "truncated",
            ErrorKind::OptionOverrun => "option_overrun",
            ErrorKind::BadLength => "bad_length",
            ErrorKind::BadValue => "bad_value",
            ErrorKind::BadDuid => "bad_duid",
            ErrorKind::BadDomainName => "bad_domain_name",
            ErrorKind::MissingRelayMessage => "missing_relay_message",
            ErrorKind::MissingOption => "missing_option",
            ErrorKind::RelayTooDeep => "relay_too_deep",
            ErrorKind::UnexpectedMessageType => "unexpected_message_type",
            ErrorKind::OptionTooLong => "option_too_long",
            ErrorKind::NestingTooDeep => "nesting_too_deep",
        }
    }
}

impl Error {
    pub fn kind(self) -> ErrorKind {
        match self {
            Error::Truncated => ErrorKind::Truncated,
            Error::OptionOverrun { .. } => ErrorKind::OptionOverrun,
            Error::BadLength { .. } => ErrorKind::BadLength,
            Error::BadValue { .. } => ErrorKind::BadValue,
            Error::BadDuid { .. } => ErrorKind::BadDuid,
            Error::BadDomainName { .. } => ErrorKind::BadDomainName,
            Error::MissingRelayMessage => ErrorKind::MissingRelayMessage,
            Error::MissingOption { .. } => ErrorKind::MissingOption,
            Error::RelayTooDeep => ErrorKind::RelayTooDeep,
            Error::UnexpectedMessageType { .. } => ErrorKind::UnexpectedMessageType,
            Error::OptionTooLong { .. } => ErrorKind::OptionTooLong,
            Error::NestingTooDeep { .. } => ErrorKind::NestingTooDeep,
        }
    }

    /// The option code the error is about, if it is about one.
    pub fn option_code(self) -> Option<u16> {
        match self {
            Error::OptionOverrun { code }
            | Error::BadLength { code }
            | Error::BadValue { code }
            | Error::BadDuid { code }
            | Error::BadDomainName { code }
            | Error::MissingOption { code }
            | Error::OptionTooLong { code }
            | Error::NestingTooDeep { code } => Some(code),
            _ => None,
        }
    }
}

struct OptionLabel(u16);

impl fmt::Display for OptionLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match option_name(self.0) {
            Some(name) => write!(f, "{name} ({})", self.0),
            None => write!(f, "option {}", self.0),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Truncated => f.write_str("truncated header"),
            Error::OptionOverrun { code } => {
                write!(
                    f,
                    "{} runs past the end of its container",
                    OptionLabel(code)
                )
            }
            Error::BadLength { code } => write!(f, "{} has a bad length", OptionLabel(code)),
            Error::BadValue { code } => write!(f, "{} has a bad field value", OptionLabel(code)),
            Error::BadDuid { code } => write!(f, "{} holds a malformed DUID", OptionLabel(code)),
            Error::BadDomainName { code } => {
                write!(f, "{} holds a malformed domain name", OptionLabel(code))
            }
            Error::MissingRelayMessage => f.write_str("relay message without OPTION_RELAY_MSG"),
            Error::MissingOption { code } => write!(f, "{} is missing", OptionLabel(code)),
            Error::RelayTooDeep => write!(
                f,
                "more than {} nested relay layers",
                super::MAX_RELAY_DEPTH
            ),
            Error::UnexpectedMessageType { msg_type } => {
                write!(
                    f,
                    "unexpected message type {}",
                    super::MessageType::from(msg_type)
                )
            }
            Error::OptionTooLong { code } => {
                write!(f, "{} would exceed 65535 octets", OptionLabel(code))
            }
            Error::NestingTooDeep { code } => {
                write!(f, "{} is nested too deeply", OptionLabel(code))
            }
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_index_their_own_slot() {
        for (i, kind) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i);
        }
        assert_eq!(Error::BadLength { code: 3 }.kind(), ErrorKind::BadLength);
        assert_eq!(
            Error::BadLength { code: 3 }.to_string(),
            "OPTION_IA_NA (3) has a bad length"
        );
    }
}
