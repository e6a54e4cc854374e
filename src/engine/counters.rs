//! Why packets were dropped, and the per-shard counters.

use std::fmt;

use crate::wire::{ErrorKind, MessageType};

/// Why the engine sent nothing back. Each variant is one counter ([`Counters::dropped`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The codec rejected the packet (truncated, lengths past the end, bad option bodies...).
    Malformed(ErrorKind),
    /// More than 32 Relay-forw layers.
    RelayTooDeep,
    /// No CLIENTID where RFC 8415 §16 requires one.
    MissingClientId,
    /// Request/Renew/Release/Decline without SERVERID (RFC 8415 §16).
    MissingServerId,
    /// A SERVERID that is not ours: the client chose another server (RFC 8415 §16).
    WrongServerId,
    /// Solicit/Confirm/Rebind carrying a SERVERID (RFC 8415 §16).
    UnexpectedServerId,
    /// Solicit/Confirm/Rebind unicast by a direct client: never allowed (RFC 8415 §18.4).
    /// (Other types unicast without a Server Unicast option get a UseMulticast reply.)
    UnicastNotAllowed,
    /// A message a server never accepts (Advertise, Reply, Reconfigure, Relay-repl,
    /// leasequery and failover types over this path...).
    UnexpectedMessageType,
    /// Information-request with an IA option (RFC 8415 §16).
    IaInInformationRequest,
    /// A relay-only option (Interface-ID, Remote-ID, Relay Message...) inside a client
    /// message (RFC 8415 Appendix B).
    MisplacedOption,
    /// More IA options in one message than the engine answers (bounds the reply size).
    TooManyIas,
    /// No configured link matches the client (RFC 8415 §13.1): nothing to offer.
    NoLink,
    /// Confirm with no address to check, or Rebind with nothing to say (RFC 8415 §18.3.3,
    /// §18.3.5): the RFC says not to answer.
    NothingToSay,
    /// The lease store failed (I/O error): no reply rather than a lease that is not stored.
    StoreFailed,
    /// The reply could not be encoded (an option over 65535 octets).
    ReplyTooLarge,
    /// The failover endpoint state says not to answer (RFC 8156 §8: unresponsive, or renew
    /// responsive and the message is not directed to this server).
    Policy,
}

impl DropReason {
    /// Number of distinct counters.
    pub const COUNT: usize = ErrorKind::COUNT + 15;

    /// Counter slot of this reason.
    pub fn index(self) -> usize {
        let k = ErrorKind::COUNT;
        match self {
            DropReason::Malformed(kind) => kind.index(),
            DropReason::RelayTooDeep => k,
            DropReason::MissingClientId => k + 1,
            DropReason::MissingServerId => k + 2,
            DropReason::WrongServerId => k + 3,
            DropReason::UnexpectedServerId => k + 4,
            DropReason::UnicastNotAllowed => k + 5,
            DropReason::UnexpectedMessageType => k + 6,
            DropReason::IaInInformationRequest => k + 7,
            DropReason::MisplacedOption => k + 8,
            DropReason::TooManyIas => k + 9,
            DropReason::NoLink => k + 10,
            DropReason::NothingToSay => k + 11,
            DropReason::StoreFailed => k + 12,
            DropReason::ReplyTooLarge => k + 13,
            DropReason::Policy => k + 14,
        }
    }

    /// Every reason, in counter order.
    pub fn all() -> impl Iterator<Item = DropReason> {
        ErrorKind::ALL
            .into_iter()
            .map(DropReason::Malformed)
            .chain([
                DropReason::RelayTooDeep,
                DropReason::MissingClientId,
                DropReason::MissingServerId,
                DropReason::WrongServerId,
                DropReason::UnexpectedServerId,
                DropReason::UnicastNotAllowed,
                DropReason::UnexpectedMessageType,
                DropReason::IaInInformationRequest,
                DropReason::MisplacedOption,
                DropReason::TooManyIas,
                DropReason::NoLink,
                DropReason::NothingToSay,
                DropReason::StoreFailed,
                DropReason::ReplyTooLarge,
                DropReason::Policy,
            ])
    }

    /// snake_case name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed(kind) => kind.name(),
            DropReason::RelayTooDeep => "relay_too_deep",
            DropReason::MissingClientId => "missing_client_id",
            DropReason::MissingServerId => "missing_server_id",
            DropReason::WrongServerId => "wrong_server_id",
            DropReason::UnexpectedServerId => "unexpected_server_id",
            DropReason::UnicastNotAllowed => "unicast_not_allowed",
            DropReason::UnexpectedMessageType => "unexpected_message_type",
            DropReason::IaInInformationRequest => "ia_in_information_request",
            DropReason::MisplacedOption => "misplaced_option",
            DropReason::TooManyIas => "too_many_ias",
            DropReason::NoLink => "no_link",
            DropReason::NothingToSay => "nothing_to_say",
            DropReason::StoreFailed => "store_failed",
            DropReason::ReplyTooLarge => "reply_too_large",
            DropReason::Policy => "policy",
        }
    }

    /// Maps a codec error to its counter (relay depth gets its own).
    pub fn from_wire(e: crate::wire::Error) -> DropReason {
        match e.kind() {
            ErrorKind::RelayTooDeep => DropReason::RelayTooDeep,
            ErrorKind::UnexpectedMessageType => DropReason::UnexpectedMessageType,
            kind => DropReason::Malformed(kind),
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Per-shard counters. Plain integers: one shard owns them; the shard loop logs or exports
/// a copy.
#[derive(Clone, Debug)]
pub struct Counters {
    /// Every payload handed to [`super::Engine::handle`].
    pub received: u64,
    /// Answered requests, indexed by the *request's* message type code (1..=11).
    pub answered: [u64; 12],
    /// Drops, indexed by [`DropReason::index`].
    pub dropped: [u64; DropReason::COUNT],
    /// Requests answered with UseMulticast (RFC 8415 §18.4).
    pub use_multicast: u64,
    /// IAs answered NoAddrsAvail/NoPrefixAvail because the store was full.
    pub store_full: u64,
    /// Leases written (new or extended).
    pub leases_committed: u64,
    /// Leases moved on by [`super::Engine::expire`].
    pub leases_expired: u64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            received: 0,
            answered: [0; 12],
            dropped: [0; DropReason::COUNT],
            use_multicast: 0,
            store_full: 0,
            leases_committed: 0,
            leases_expired: 0,
        }
    }
}

impl Counters {
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()]
    }

    pub fn total_dropped(&self) -> u64 {
        self.dropped.iter().sum()
    }

    pub fn answered(&self, request: MessageType) -> u64 {
        self.answered
            .get(usize::from(u8::from(request)))
            .copied()
            .unwrap_or(0)
    }

    pub fn total_answered(&self) -> u64 {
        self.answered.iter().sum()
    }

    /// Non-zero drop counters with their names.
    pub fn drops(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::all()
            .map(|r| (r, self.dropped(r)))
            .filter(|(_, n)| *n > 0)
    }

    /// Adds `other` into `self` (to total several shards).
    pub fn merge(&mut self, other: &Counters) {
        self.received += other.received;
        for (a, b) in self.answered.iter_mut().zip(other.answered) {
            *a += b;
        }
        for (a, b) in self.dropped.iter_mut().zip(other.dropped) {
            *a += b;
        }
        self.use_multicast += other.use_multicast;
        self.store_full += other.store_full;
        self.leases_committed += other.leases_committed;
        self.leases_expired += other.leases_expired;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_slot() {
        let all: Vec<DropReason> = DropReason::all().collect();
        assert_eq!(all.len(), DropReason::COUNT);
        for (i, r) in all.iter().enumerate() {
            assert_eq!(r.index(), i, "{r}");
        }
    }
}
