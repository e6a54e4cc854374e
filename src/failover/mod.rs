//! The sans-IO RFC 8156 failover endpoint.
//!
//! One [`Endpoint`] per failover relationship, owned by the control core. It takes
//! messages, connection events and timer ticks with the current time, and produces framed
//! messages to send ([`Endpoint::poll_transmit`]), the next deadline
//! ([`Endpoint::poll_timeout`]) and events for the driver ([`Endpoint::poll_event`]):
//! no sockets, clocks or threads (docs/FAILOVER.md describes the driver contract).
//!
//! The pieces the DHCPv6 engine calls are plain functions and `Copy` values:
//! [`ServiceScope`] (may this state answer this message, may it allocate this resource)
//! and [`mclt::valid_lifetime`] (the §4.4 clamp). [`binding`] holds the pure BNDUPD rules
//! and [`state`] the endpoint state data and transition tables.

pub mod binding;
mod endpoint;
pub mod mclt;
pub mod pool;
pub mod scope;
pub mod state;

pub use crate::wire::failover::ServerState;
pub use endpoint::{Alarm, CloseReason, Counters, Endpoint, Event, NotAllowed};
pub use pool::{PdPool, PoolStatus, PrefixPool};
pub use scope::{Answer, ClientMessage, Responsiveness, ServiceScope};
pub use state::{PersistentState, State};

use std::net::Ipv6Addr;

/// The server's role in the relationship (RFC 8156 §4.1). The primary connects, dictates
/// the MCLT, owns odd addresses (bit 127 = 1) and all delegable prefixes at first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Primary,
    Secondary,
}

/// A link (subnet) served by the relationship; both servers must be configured alike
/// (§4.1). Updates for resources outside every subnet are rejected with
/// ConfigurationConflict (§7.5.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    pub prefix: Ipv6Addr,
    pub prefix_len: u8,
    /// Configured ("desired", §4.4) valid lifetime, used for the partner lifetime.
    pub desired_valid: u32,
}

impl Subnet {
    pub fn contains(&self, addr: Ipv6Addr) -> bool {
        let shift = 128 - u32::from(self.prefix_len.min(128));
        u128::from(addr).checked_shr(shift).unwrap_or(0)
            == u128::from(self.prefix).checked_shr(shift).unwrap_or(0)
    }
}

/// Relationship parameters. Defaults follow RFC 8156 §6.5 where it gives numbers; the
/// others are the implementation-defined timers of §14 of the digest (see docs/FAILOVER.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailoverConfig {
    pub role: Role,
    /// OPTION_F_RELATIONSHIP_NAME (§6.2); `None` = the only relationship between the pair.
    pub relationship_name: Option<String>,
    /// MCLT in seconds (the primary's value wins, §6.1.2).
    pub mclt: u32,
    /// FO_KEEPALIVE_TIME (§6.5): 60 s.
    pub keepalive_time: u32,
    /// FO_CONTACT_PER_KEEPALIVE_TIME (§6.5): 4.
    pub contacts_per_keepalive: u32,
    /// OPTION_F_MAX_UNACKED_BNDUPD we offer the partner.
    pub max_unacked_bndupd: u32,
    /// STARTUP timer (§8.3.2 step 3), seconds.
    pub startup_time: u32,
    /// Auto-partner-down delay in COMMUNICATIONS-INTERRUPTED (§8.9.2); `None` = operator only.
    pub auto_partner_down: Option<u32>,
    /// §8.3.2 step 1: go to PARTNER-DOWN after STARTUP when stable storage holds no state
    /// and the partner was not reached (commissioning a server before its partner).
    pub partner_down_on_first_start: bool,
    /// Period of the scan that re-queues leases whose "update partner" flag is set
    /// (§7.5.4), of the primary's pool rebalancing and of PARTNER-DOWN reclamation.
    pub scan_interval: u32,
    /// §8.8.2: in NORMAL, a BNDUPD unacknowledged this long drops the connection.
    pub ack_timeout: u32,
    /// §8.5.2: no UPDDONE and no BNDUPD for this long drops the connection.
    pub update_request_timeout: u32,
    /// Served links and their desired lifetimes.
    pub subnets: Vec<Subnet>,
    /// Delegable-prefix pools under proportional allocation (§4.2.2).
    pub pd_pools: Vec<PdPool>,
    /// Percentage of free delegable prefixes the primary gives the secondary.
    pub secondary_prefix_share: u8,
    /// Rebalancing hysteresis, in prefixes per pool.
    pub rebalance_threshold: usize,
    /// OPTION_F_CONNECT_FLAGS we send (FIXED_PD_LENGTH when every pool has one length).
    pub connect_flags: u16,
}

impl FailoverConfig {
    pub fn new(role: Role) -> FailoverConfig {
        FailoverConfig {
            role,
            relationship_name: None,
            mclt: 3600,
            keepalive_time: 60,
            contacts_per_keepalive: 4,
            max_unacked_bndupd: 256,
            startup_time: 10,
            auto_partner_down: None,
            partner_down_on_first_start: false,
            scan_interval: 60,
            ack_timeout: 60,
            update_request_timeout: 120,
            subnets: Vec::new(),
            pd_pools: Vec::new(),
            secondary_prefix_share: 50,
            rebalance_threshold: 4,
            connect_flags: crate::wire::failover::CONNECT_FLAG_FIXED_PD_LENGTH,
        }
    }
}
