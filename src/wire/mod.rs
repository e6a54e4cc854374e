//! DHCPv6 (RFC 8415) wire codec: zero-copy views for parsing, a writer for emitting.
//! The RFC 8156 failover codec lives in [`failover`].
//!
//! Parsing never allocates and never panics on any input:
//!
//! * [`parse_relayed`] walks up to [`MAX_RELAY_DEPTH`] Relay-forw layers (RFC 8415 §9) into a
//!   fixed array of [`RelayLayer`]s and checks the client message inside.
//! * [`Message`] and [`RelayMessage`] are views over the two header formats (§8, §9) with
//!   `new_checked`; after it succeeds no getter panics.
//! * [`Options`] iterates a TLV sequence as [`RawOption`]s (code, body); [`DhcpOption`] and
//!   the views beside it ([`IaNa`], [`IaPd`], [`IaPrefix`], [`DuidView`], ...) decode the
//!   bodies a server reads, each checking its lengths once.
//! * [`client_id`] is the shard router's shortcut: the innermost CLIENTID, nothing else.
//!
//! Emitting goes through [`Writer`], which appends to a `Vec<u8>`, back-patches container
//! lengths and mirrors a request's relay chain with [`Writer::relay_reply`].
//!
//! [`repr`] holds owned representations for tests and as an oracle; the hot path does not
//! use them. Every failure is one [`Error`] value whose [`ErrorKind`] is a drop counter.

mod builder;
mod codes;
pub mod domain;
mod error;
pub mod failover;
mod message;
mod options;
mod relay;
pub mod repr;

pub use builder::{Mark, Writer};
pub use codes::*;
pub use domain::{DomainName, DomainNames};
pub use error::{Error, ErrorKind};
pub use message::{Message, RelayMessage, HEADER_LEN, RELAY_HEADER_LEN};
pub use options::{
    check_options, find_option_checked, AddressIa, AddressList, ClassData, ClassDataIter,
    DhcpOption, DuidKind, DuidView, Ia, IaAddr, IaKind, IaNa, IaPd, IaPrefix, IaTa, IaWithTimers,
    NonTemporary, OptionCodes, Options, PdExclude, PrefixDelegation, RawOption, StatusView,
    Temporary,
};
pub use relay::{client_id, parse_relayed, RelayLayer, Relayed, MAX_RELAY_DEPTH};
pub use repr::{OptionRepr, Repr};
