//! What the DHCPv6 engine may do in the current endpoint state (RFC 8156 §8, "responsive",
//! "renew responsive", "unresponsive", and the allocation rules of §4.2, §8.4.1).
//!
//! The control core hands each shard a [`ServiceScope`] (it is `Copy`) whenever the
//! endpoint state changes; the engine asks it before answering and before allocating.

use std::net::Ipv6Addr;

use super::Role;
use crate::wire::failover::ServerState;

/// The client messages the engine distinguishes (RFC 8415 §7.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientMessage {
    Solicit,
    Request,
    Confirm,
    Renew,
    Rebind,
    Release,
    Decline,
    InformationRequest,
}

/// RFC 8156 §3 definitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Responsiveness {
    /// Responds to all valid client messages.
    Responsive,
    /// Responds only to messages whose OPTION_SERVERID holds this server's DUID.
    RenewResponsive,
    /// Responds to nothing.
    Unresponsive,
}

/// The engine's answer for one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Answer {
    /// Process it normally.
    Serve,
    /// Process it, but only extend leases the server already holds (RECOVER-DONE, §8.7.1):
    /// no new allocation.
    ServeExistingOnly,
    /// Drop it silently (counted as `DropReason::Policy`).
    Ignore,
}

/// What a server may do for clients in its current endpoint state. Without a failover
/// relationship the engine uses [`ServiceScope::standalone`], which allows everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceScope {
    /// `None` when no failover relationship is configured.
    pub role: Option<Role>,
    pub state: ServerState,
    /// MCLT in seconds (the primary's value, §6.1.2).
    pub mclt: u32,
    /// When PARTNER-DOWN was entered (Unix seconds); meaningful in PARTNER-DOWN only.
    pub partner_down_since: u64,
}

impl ServiceScope {
    /// No failover: responsive, any address, no MCLT clamp.
    pub const fn standalone() -> ServiceScope {
        ServiceScope {
            role: None,
            state: ServerState::PartnerDown,
            mclt: 0,
            partner_down_since: 0,
        }
    }

    /// RFC 8156 §8.3.1–§8.12.1 per state.
    pub fn responsiveness(&self) -> Responsiveness {
        let Some(role) = self.role else {
            return Responsiveness::Responsive;
        };
        match self.state {
            // §8.3.1, §8.10.1, §8.5.1, §8.6.1: MUST NOT be responsive.
            ServerState::Startup
            | ServerState::PotentialConflict
            | ServerState::Recover
            | ServerState::RecoverWait => Responsiveness::Unresponsive,
            // §8.8.1: the primary is responsive, the secondary renew responsive.
            ServerState::Normal => match role {
                Role::Primary => Responsiveness::Responsive,
                Role::Secondary => Responsiveness::RenewResponsive,
            },
            // §8.7.1: SHOULD be renew responsive.
            ServerState::RecoverDone => Responsiveness::RenewResponsive,
            // §8.9.1, §8.4.1, §8.11.1, §8.12.1.
            ServerState::CommunicationsInterrupted
            | ServerState::PartnerDown
            | ServerState::ResolutionInterrupted
            | ServerState::ConflictDone => Responsiveness::Responsive,
        }
    }

    /// May the engine answer `msg`? `to_us` is true when the message carries an
    /// OPTION_SERVERID with this server's DUID.
    pub fn may_answer(&self, msg: ClientMessage, to_us: bool) -> Answer {
        match self.responsiveness() {
            Responsiveness::Responsive => Answer::Serve,
            Responsiveness::Unresponsive => Answer::Ignore,
            Responsiveness::RenewResponsive => {
                // §3 "Renew Responsive": only messages directed to this server. Solicit,
                // Rebind and Confirm carry no Server Identifier and are never answered.
                let directed = matches!(
                    msg,
                    ClientMessage::Request
                        | ClientMessage::Renew
                        | ClientMessage::Release
                        | ClientMessage::Decline
                        | ClientMessage::InformationRequest
                ) && to_us;
                if !directed {
                    Answer::Ignore
                } else if self.state == ServerState::RecoverDone {
                    // §8.7.1: "MUST NOT allocate new leases".
                    Answer::ServeExistingOnly
                } else {
                    Answer::Serve
                }
            }
        }
    }

    /// May the engine give out a *new* address `addr` (RFC 8156 §4.2.1 independent
    /// allocation: the primary owns bit 127 = 1, the secondary bit 127 = 0)? Renewing an
    /// existing lease on any address is always allowed when the message may be answered.
    ///
    /// PARTNER-DOWN: §4.2.1 says MUST NOT use the partner's addresses, §8.4.1 SHOULD NOT
    /// (and only after entry + MCLT). tandem follows §4.2.1: an IA_NA pool is vast, so the
    /// partner's half is never needed (docs/FAILOVER.md, decision D4).
    pub fn may_allocate_address(&self, addr: Ipv6Addr) -> bool {
        let Some(role) = self.role else {
            return true;
        };
        self.allocates() && owns_address(role, addr)
    }

    /// May the engine give out a free delegable prefix whose pool status is `status`
    /// (FREE belongs to the primary, FREE-BACKUP to the secondary, §4.2.2) at `now_secs`?
    /// In PARTNER-DOWN the partner's prefixes are usable once MCLT has passed since entry
    /// (§4.2.2.1); the engine must try its own first (§8.4.1 "MUST deplete its own pool").
    pub fn may_allocate_prefix(&self, owner: Role, now_secs: u64) -> bool {
        let Some(role) = self.role else {
            return true;
        };
        if !self.allocates() {
            return false;
        }
        if owner == role {
            return true;
        }
        self.state == ServerState::PartnerDown
            && now_secs >= self.partner_down_since.saturating_add(u64::from(self.mclt))
    }

    /// Whether the MCLT clamp of [`super::mclt::valid_lifetime`] applies (everywhere but
    /// PARTNER-DOWN, §8.4.1, and not without failover).
    pub fn mclt_applies(&self) -> bool {
        self.role.is_some() && self.state != ServerState::PartnerDown
    }

    /// The lifetime to give a client: [`super::mclt::valid_lifetime`] in this state.
    pub fn valid_lifetime(&self, desired: u32, acked_partner_lifetime: u64, now_secs: u64) -> u32 {
        super::mclt::valid_lifetime(
            desired,
            acked_partner_lifetime,
            now_secs,
            self.mclt,
            !self.mclt_applies(),
        )
    }

    fn allocates(&self) -> bool {
        match self.state {
            ServerState::Normal
            | ServerState::CommunicationsInterrupted
            | ServerState::PartnerDown
            | ServerState::ResolutionInterrupted
            | ServerState::ConflictDone => true,
            ServerState::Startup
            | ServerState::PotentialConflict
            | ServerState::Recover
            | ServerState::RecoverWait
            | ServerState::RecoverDone => false,
        }
    }
}

/// RFC 8156 §4.2.1: bit 127 (the last bit) set = primary's address.
pub fn owns_address(role: Role, addr: Ipv6Addr) -> bool {
    let odd = addr.octets()[15] & 1 == 1;
    match role {
        Role::Primary => odd,
        Role::Secondary => !odd,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(role: Role, state: ServerState) -> ServiceScope {
        ServiceScope {
            role: Some(role),
            state,
            mclt: 100,
            partner_down_since: 1000,
        }
    }

    #[test]
    fn normal_secondary_is_renew_responsive() {
        let s = scope(Role::Secondary, ServerState::Normal);
        assert_eq!(s.may_answer(ClientMessage::Solicit, false), Answer::Ignore);
        assert_eq!(s.may_answer(ClientMessage::Rebind, false), Answer::Ignore);
        assert_eq!(s.may_answer(ClientMessage::Renew, false), Answer::Ignore);
        assert_eq!(s.may_answer(ClientMessage::Renew, true), Answer::Serve);
        let p = scope(Role::Primary, ServerState::Normal);
        assert_eq!(p.may_answer(ClientMessage::Solicit, false), Answer::Serve);
    }

    #[test]
    fn every_state_has_the_rfc_responsiveness() {
        use Responsiveness::*;
        for (st, want) in [
            (ServerState::Startup, Unresponsive),
            (ServerState::CommunicationsInterrupted, Responsive),
            (ServerState::PartnerDown, Responsive),
            (ServerState::PotentialConflict, Unresponsive),
            (ServerState::Recover, Unresponsive),
            (ServerState::RecoverWait, Unresponsive),
            (ServerState::RecoverDone, RenewResponsive),
            (ServerState::ResolutionInterrupted, Responsive),
            (ServerState::ConflictDone, Responsive),
        ] {
            assert_eq!(scope(Role::Primary, st).responsiveness(), want, "{st:?}");
        }
        assert_eq!(
            scope(Role::Primary, ServerState::RecoverDone).may_answer(ClientMessage::Renew, true),
            Answer::ServeExistingOnly
        );
    }

    #[test]
    fn bit_127_ownership_and_partner_down_prefix_wait() {
        let p = scope(Role::Primary, ServerState::CommunicationsInterrupted);
        assert!(p.may_allocate_address("2001:db8::1".parse().unwrap()));
        assert!(!p.may_allocate_address("2001:db8::2".parse().unwrap()));
        let s = scope(Role::Secondary, ServerState::PartnerDown);
        assert!(!s.may_allocate_address("2001:db8::1".parse().unwrap()));
        assert!(s.may_allocate_prefix(Role::Secondary, 1000));
        assert!(!s.may_allocate_prefix(Role::Primary, 1099));
        assert!(s.may_allocate_prefix(Role::Primary, 1100));
        assert!(ServiceScope::standalone().may_allocate_address("::2".parse().unwrap()));
        assert!(!ServiceScope::standalone().mclt_applies());
    }
}
