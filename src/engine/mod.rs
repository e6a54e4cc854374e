//! The sans-IO DHCPv6 server engine (RFC 8415 §16, §18.3).
//!
//! One [`Engine`] per shard. [`Engine::handle`] takes a received UDP payload with where it
//! came from, the current time and the shard's lease table, and writes the reply (Advertise,
//! Reply, or the Relay-repl chain around one) into a caller-owned buffer. No sockets, clocks
//! or threads: the shard loop does I/O, reads the clock once per batch, and holds replies
//! until the lease batch they depend on is durable (RFC 8415 §18.3: stable storage first).
//!
//! A request is handled in three steps:
//! 1. parse and validate (§16): relay walk (≤ 32 layers), option structure, CLIENTID /
//!    SERVERID rules, unicast rules (§18.4); anything wrong is dropped and counted
//!    ([`DropReason`]), never answered with more than it asked (no amplification);
//! 2. decide: link selection (§13.1), reservations, then each IA against the lease table
//!    and the allocators ([`crate::alloc`]), writing leases through [`LeaseTable`];
//! 3. emit: SERVERID, CLIENTID, the IAs with one T1/T2 for all (§18.3.2), options per ORO,
//!    wrapped in Relay-repl layers that echo Interface-ID, RELAY_PORT and ERO options.

mod binding;
mod counters;
mod failover;

pub use counters::{Counters, DropReason};
pub use failover::ChangeLog;

use std::net::{Ipv6Addr, SocketAddrV6};
use std::sync::Arc;

use hashbrown::{HashMap, HashSet};

use crate::alloc::{duid_link_layer, ClientKeys, Ownership, Partition, PrefixBitmap, Reservations};
use crate::config::{Config, Subnet};
use crate::failover::{Answer, ClientMessage, PoolStatus, Role, ServiceScope};
use crate::lease::{shard_of_duid, BindingState, Duid, IaType, Lease, LeaseTable, Resource};
use crate::time::Timestamp;
use crate::wire::{
    self, Ia, IaAddr, IaKind, IaPrefix, MessageType, OptionCodes, Options, Relayed, StatusCode,
    Writer,
};

/// Which shard this engine is, of how many.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardId {
    pub index: usize,
    pub count: usize,
}

/// Where a payload came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// Source address and port: a client (546), or a relay (547 or its RFC 8357 port).
    pub src: SocketAddrV6,
    /// Destination address: ff02::1:2 for direct clients, unicast for relays and unicasting
    /// clients (RFC 8415 §18.4 depends on it).
    pub dst: Ipv6Addr,
    /// Receiving interface (link selection fallback, RFC 8415 §13.1).
    pub ifindex: u32,
}

/// What to do with the bytes in `out`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Send `out` to `dst` from `src` (`UNSPECIFIED`: let the kernel pick, e.g. the
    /// link-local address of the receiving interface for multicast requests).
    ///
    /// `commits` says whether the reply grants or reports leases the client may rely on
    /// (a Reply to Request, Renew, Rebind, Release, Decline or a rapid-commit Solicit): RFC
    /// 8415 §18.3.1 and §18.3.2 require the server to commit those assignments before the
    /// Reply leaves, so the driver holds it until the batch that holds them (and every
    /// earlier one) is on stable storage. An Advertise (§18.3.9: an offer, not a grant) and
    /// the Replies to Confirm and Information-request promise nothing about leases and may
    /// leave at once.
    Reply {
        dst: SocketAddrV6,
        src: Ipv6Addr,
        commits: bool,
    },
    /// Send nothing; `out` is empty.
    Drop(DropReason),
}

/// Most IA options answered in one message: real CPEs send one IA_NA and one IA_PD; the
/// bound keeps a spoofed request from buying a large reply.
pub const MAX_IAS: usize = 16;
/// Most addresses or prefixes the engine looks at inside one IA.
pub const MAX_IA_ENTRIES: usize = 8;

/// The shard of the client that sent `payload`: FNV-1a of the innermost CLIENTID
/// ([`Duid::shard_of`]). Cheap: walks the relay layers without allocating.
pub fn owner_shard(payload: &[u8], shards: usize) -> Result<usize, DropReason> {
    match wire::client_id(payload) {
        Ok(duid) => Ok(shard_of_duid(duid, shards)),
        Err(wire::Error::MissingOption {
            code: wire::OPTION_CLIENTID,
        }) => Err(DropReason::MissingClientId),
        Err(e) => Err(DropReason::from_wire(e)),
    }
}

/// One IA option of the request.
#[derive(Clone, Copy, Debug)]
struct IaRequest<'a> {
    ia_type: IaType,
    iaid: u32,
    /// The IA's own options (IAADDR / IAPREFIX...), structure already checked.
    options: &'a [u8],
}

/// A client message, parsed and checked once.
struct Request<'a> {
    msg_type: MessageType,
    transaction_id: u32,
    client_id: Option<&'a [u8]>,
    server_id: Option<&'a [u8]>,
    oro: Option<OptionCodes<'a>>,
    rapid_commit: bool,
    ias: [IaRequest<'a>; MAX_IAS],
    n_ias: usize,
    /// CLIENT_FQDN body (RFC 4704), echoed when also requested.
    fqdn: Option<&'a [u8]>,
}

impl<'a> IaRequest<'a> {
    /// Checks an IA option body and every IAADDR / IAPREFIX in it.
    fn parse<K: IaKind>(data: &'a [u8], ia_type: IaType) -> Result<Self, wire::Error> {
        let view = Ia::<K>::new_checked(data)?;
        view.check_entries()?;
        Ok(IaRequest {
            ia_type,
            iaid: view.iaid(),
            options: view.options().as_bytes(),
        })
    }
}

impl<'a> Request<'a> {
    fn ias(&self) -> impl Iterator<Item = IaRequest<'a>> + '_ {
        self.ias[..self.n_ias].iter().copied()
    }

    fn requested(&self, code: u16) -> bool {
        self.oro.is_some_and(|o| o.contains(code))
    }
}

/// Options that only relays may send (RFC 8415 Appendix B, RFC 4649/4580/6939/8357/4994).
fn relay_only(code: u16) -> bool {
    matches!(
        code,
        wire::OPTION_RELAY_MSG
            | wire::OPTION_INTERFACE_ID
            | wire::OPTION_REMOTE_ID
            | wire::OPTION_SUBSCRIBER_ID
            | wire::OPTION_CLIENT_LINKLAYER_ADDR
            | wire::OPTION_RELAY_PORT
            | wire::OPTION_ERO
            | wire::OPTION_RELAY_ID
    )
}

fn parse_request<'a>(relayed: &Relayed<'a>) -> Result<Request<'a>, DropReason> {
    let msg = relayed.message();
    let mut req = Request {
        msg_type: msg.msg_type(),
        transaction_id: msg.transaction_id(),
        client_id: None,
        server_id: None,
        oro: None,
        rapid_commit: false,
        ias: [IaRequest {
            ia_type: IaType::Na,
            iaid: 0,
            options: &[],
        }; MAX_IAS],
        n_ias: 0,
        fqdn: None,
    };
    let malformed = DropReason::from_wire;
    // Message::new_checked (inside parse_relayed) checked the TLV structure.
    for opt in msg.into_options() {
        match opt.code {
            wire::OPTION_CLIENTID if req.client_id.is_none() => {
                wire::DuidView::new_checked(opt.data, opt.code).map_err(malformed)?;
                req.client_id = Some(opt.data);
            }
            wire::OPTION_SERVERID if req.server_id.is_none() => {
                wire::DuidView::new_checked(opt.data, opt.code).map_err(malformed)?;
                req.server_id = Some(opt.data);
            }
            wire::OPTION_ORO => {
                req.oro = Some(OptionCodes::new_checked(opt.data, opt.code).map_err(malformed)?);
            }
            wire::OPTION_RAPID_COMMIT => req.rapid_commit = true,
            wire::OPTION_CLIENT_FQDN => {
                if opt.data.is_empty() {
                    return Err(DropReason::Malformed(wire::ErrorKind::BadLength));
                }
                req.fqdn = Some(opt.data);
            }
            wire::OPTION_IA_NA | wire::OPTION_IA_TA | wire::OPTION_IA_PD => {
                if req.n_ias == MAX_IAS {
                    return Err(DropReason::TooManyIas);
                }
                let ia = match opt.code {
                    wire::OPTION_IA_NA => {
                        IaRequest::parse::<wire::NonTemporary>(opt.data, IaType::Na)
                    }
                    wire::OPTION_IA_TA => IaRequest::parse::<wire::Temporary>(opt.data, IaType::Ta),
                    _ => IaRequest::parse::<wire::PrefixDelegation>(opt.data, IaType::Pd),
                }
                .map_err(malformed)?;
                // RFC 8415 §21.4: an IAID is unique per IA type; a repeated IA is answered once.
                if req
                    .ias()
                    .any(|o| o.ia_type == ia.ia_type && o.iaid == ia.iaid)
                {
                    continue;
                }
                req.ias[req.n_ias] = ia;
                req.n_ias += 1;
            }
            code if relay_only(code) => return Err(DropReason::MisplacedOption),
            _ => {}
        }
    }
    Ok(req)
}

/// The addresses (IAADDR, non-`::` ones) or prefixes (IAPREFIX) a client put in an IA.
/// A prefix `::` with a length is a length hint (RFC 8168), so it is kept.
fn ia_resources<'a>(ia: &IaRequest<'a>) -> impl Iterator<Item = Resource> + 'a {
    let prefixes = ia.ia_type == IaType::Pd;
    Options::new_unchecked(ia.options)
        .filter_map(move |o| match o.code {
            wire::OPTION_IAPREFIX if prefixes => IaPrefix::new_checked(o.data)
                .ok()
                .map(|p| Resource::prefix(p.prefix(), p.prefix_len())),
            wire::OPTION_IAADDR if !prefixes => IaAddr::new_checked(o.data)
                .ok()
                .map(|a| Resource::address(a.address()))
                .filter(|r| !r.addr.is_unspecified()),
            _ => None,
        })
        .take(MAX_IA_ENTRIES)
}

/// One address or prefix in a reply IA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    resource: Resource,
    preferred: u32,
    valid: u32,
}

/// One IA of the reply: entries (in `Scratch::entries[first..first + len]`) or a status.
#[derive(Clone, Copy, Debug)]
struct IaReply {
    ia_type: IaType,
    iaid: u32,
    first: usize,
    len: usize,
    status: Option<(StatusCode, &'static str)>,
}

/// Buffers reused across packets so the hot path does not allocate once warm.
#[derive(Default)]
struct Scratch {
    leases: Vec<Lease>,
    entries: Vec<Entry>,
    ias: Vec<IaReply>,
    key: Vec<u8>,
    freed: Vec<Lease>,
}

/// Everything the decision step needs to know about the client.
struct Client<'a> {
    duid: Duid,
    link: Option<&'a Subnet>,
    reservation: Option<usize>,
}

/// Whether a lease record keeps its resource from being handed to someone else.
/// `failover`: under a failover relationship ([`failover_occupies`]).
pub(crate) fn occupies(l: &Lease, now_secs: u64, failover: bool) -> bool {
    if failover {
        failover_occupies(l.state, l.expires_at, now_secs)
    } else {
        state_occupies(l.state, l.expires_at, now_secs)
    }
}

/// [`occupies`] under failover (RFC 8156 §4.2.1, §7.5.5, §8.8.1): an ACTIVE record holds
/// its resource until the engine moves it to EXPIRED, and an EXPIRED or RELEASED record
/// until the partner has acknowledged it ("released or expired leases not given to another
/// client before the partner acknowledges"): the failover endpoint removes the record then.
fn failover_occupies(state: BindingState, expires_at: u64, now_secs: u64) -> bool {
    match state {
        BindingState::Active | BindingState::Expired | BindingState::Released => true,
        s => state_occupies(s, expires_at, now_secs),
    }
}

/// [`occupies`] on a record's state and expiry alone (the startup scan reads no more).
fn state_occupies(state: BindingState, expires_at: u64, now_secs: u64) -> bool {
    match state {
        BindingState::Active
        | BindingState::Abandoned
        | BindingState::PendingFree
        | BindingState::Reset => now_secs < expires_at,
        // RFC 8156 §4.2.2: FREE_BACKUP resources belong to the partner.
        BindingState::FreeBackup => true,
        BindingState::Expired | BindingState::Released | BindingState::Free => false,
    }
}

/// The sans-IO server of one shard.
pub struct Engine {
    config: Arc<Config>,
    server_duid: Duid,
    shard: ShardId,
    partition: Partition,
    reservations: Reservations,
    /// Free bitmaps, `[subnet][pd_pool]`.
    prefixes: Vec<Vec<PrefixBitmap>>,
    /// Resources in this shard's partition held by clients of other shards (after a
    /// re-shard): taken until the next restart ([`Engine::mark_foreign`]).
    foreign: HashSet<Resource>,
    counters: Counters,
    scratch: Scratch,
    /// What the failover endpoint state allows ([`Engine::set_scope`]).
    scope: ServiceScope,
    /// Pool status of the free delegable prefixes that are not FREE (RFC 8156 §4.2.2:
    /// FREE-BACKUP is the secondary's, a prefix being reclaimed is nobody's); every prefix
    /// not named here is FREE, the primary's ([`Engine::set_prefix_status`]).
    prefix_status: HashMap<Resource, PoolStatus>,
    /// Whether the message being handled may create new leases (RFC 8156 §8.7.1).
    allow_new: bool,
    /// Under failover: resources whose records the engine changed since the failover
    /// endpoint last took them ([`Engine::drain_binding_updates`]), for the lazy BNDUPDs.
    binding_updates: Vec<Resource>,
    /// Under failover: acknowledged EXPIRED/RELEASED prefix records held until a deadline
    /// (the endpoint's recovery hold); the table's expiry removes them without telling
    /// anyone, so [`Engine::expire`] looks at them when they are due.
    held_prefixes: std::collections::BinaryHeap<std::cmp::Reverse<(u64, Resource)>>,
}

impl Engine {
    pub fn new(config: Arc<Config>, server_duid: Duid, shard: ShardId) -> Engine {
        let partition = Partition::new(shard.index, shard.count, Ownership::Any);
        let reservations = Reservations::new(&config.reservations);
        let mut engine = Engine {
            prefixes: Vec::new(),
            config,
            server_duid,
            shard,
            partition,
            reservations,
            foreign: HashSet::new(),
            counters: Counters::default(),
            scratch: Scratch::default(),
            scope: ServiceScope::standalone(),
            prefix_status: HashMap::new(),
            allow_new: true,
            binding_updates: Vec::new(),
            held_prefixes: std::collections::BinaryHeap::new(),
        };
        engine.rebuild_bitmaps();
        engine
    }

    fn rebuild_bitmaps(&mut self) {
        let part = self.partition;
        self.prefixes = self
            .config
            .subnets
            .iter()
            .map(|s| {
                s.pd_pools
                    .iter()
                    .map(|p| PrefixBitmap::new(*p, &part))
                    .collect()
            })
            .collect();
        // Reserved prefixes never go to dynamic allocation, in any shard.
        for r in self.reservations.iter() {
            for p in &r.prefixes {
                if let Some((s, i, idx)) = Self::locate_prefix(&self.prefixes, p.addr, p.len) {
                    self.prefixes[s][i].take(idx);
                }
            }
        }
    }

    /// The bitmap (subnet, pool, index) holding `p/len` in this shard.
    fn locate_prefix(
        maps: &[Vec<PrefixBitmap>],
        p: Ipv6Addr,
        len: u8,
    ) -> Option<(usize, usize, u32)> {
        maps.iter().enumerate().find_map(|(s, pools)| {
            pools
                .iter()
                .enumerate()
                .find_map(|(i, m)| m.index_of(p, len).map(|idx| (s, i, idx)))
        })
    }

    /// What the failover endpoint state allows (RFC 8156 §8): which messages to answer,
    /// which address half to allocate from (§4.2.1: primary bit 127 = 1), whether new
    /// leases may be made, and the MCLT clamp on lifetimes (§4.4). The control core hands
    /// every shard a copy whenever the endpoint state changes; without failover the engine
    /// runs with [`ServiceScope::standalone`].
    pub fn set_scope(&mut self, scope: ServiceScope) {
        let ownership = match scope.role {
            None => Ownership::Any,
            Some(Role::Primary) => Ownership::Odd,
            Some(Role::Secondary) => Ownership::Even,
        };
        self.scope = scope;
        self.partition = Partition::new(self.shard.index, self.shard.count, ownership);
    }

    pub fn scope(&self) -> &ServiceScope {
        &self.scope
    }

    pub fn shard(&self) -> ShardId {
        self.shard
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    pub fn server_duid(&self) -> &Duid {
        &self.server_duid
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Rebuilds allocator state from the table at startup: every prefix a lease still
    /// holds is marked taken. (Addresses need no state: the table is the truth for them.)
    pub fn load(&mut self, table: &dyn LeaseTable) {
        self.rebuild_bitmaps();
        let failover = self.scope.role.is_some();
        let maps = &mut self.prefixes;
        // Only the prefix pools' ranges, and resource, state and expiry only: a mapped
        // table walks just those records, in place.
        for pool in self.config.subnets.iter().flat_map(|s| s.pd_pools.iter()) {
            let first = Resource::prefix(pool.prefix.addr, 0);
            let last = Resource::prefix(Ipv6Addr::from(pool.prefix.last()), 128);
            table.for_each_resource_in(&first, &last, &mut |r: &Resource, state, expires_at| {
                let held = if failover {
                    failover_occupies(state, expires_at, 0)
                } else {
                    state_occupies(state, expires_at, 0)
                };
                if r.is_prefix() && held {
                    if let Some((s, i, idx)) = Self::locate_prefix(maps, r.addr, r.prefix_len) {
                        maps[s][i].take(idx);
                    }
                }
            });
        }
    }

    /// Resources in this shard's partition that belong to clients of other shards (the
    /// store finds them when the shard count changed). They stay taken until the next
    /// restart, not just until their current expiry: the owning shard may renew them
    /// meanwhile and this shard would never see the new expiry, so releasing them early
    /// could give one resource to two clients. At the next restart the store recomputes
    /// the set from the tables.
    ///
    /// Resources alone, not leases: after a re-home most of the table is foreign, and the
    /// store's startup scan finds them without building a lease for each.
    pub fn mark_foreign(&mut self, resources: &[Resource]) {
        self.foreign.reserve(resources.len());
        for r in resources {
            if self.foreign.insert(*r) && r.is_prefix() {
                if let Some((s, i, idx)) = Self::locate_prefix(&self.prefixes, r.addr, r.prefix_len)
                {
                    self.prefixes[s][i].take(idx);
                }
            }
        }
    }

    /// Moves leases whose time is up to their next state (at most `budget` records) and
    /// returns their resources to the pools. Returns how many records changed; call again
    /// while it returns `budget`.
    /// Under failover ([`Engine::set_scope`]) an ACTIVE lease whose time is up becomes
    /// EXPIRED and keeps its resource until the partner acknowledges (RFC 8156 §7.5.5).
    pub fn expire(&mut self, now: Timestamp, table: &mut dyn LeaseTable, budget: usize) -> usize {
        if self.scope.role.is_some() {
            return self.expire_under_failover(now, table, budget);
        }
        let now_secs = now.secs();
        let mut freed = std::mem::take(&mut self.scratch.freed);
        freed.clear();
        let changed = table.expire(now_secs, budget, &mut freed);
        for l in &freed {
            self.release_resource(&l.resource);
        }
        self.scratch.freed = freed;
        self.counters.leases_expired += changed as u64;
        changed
    }

    /// Returns a delegated prefix to its bitmap (addresses have no allocator state).
    fn release_resource(&mut self, r: &Resource) {
        if !r.is_prefix()
            || self.reservations.is_reserved_prefix(r.addr, r.prefix_len)
            || self.foreign.contains(r)
        {
            return;
        }
        if let Some((s, i, idx)) = Self::locate_prefix(&self.prefixes, r.addr, r.prefix_len) {
            self.prefixes[s][i].release(idx);
        }
    }

    /// Handles one received payload; see the module doc. `out` is cleared first and holds
    /// the reply when the outcome is [`Outcome::Reply`].
    pub fn handle(
        &mut self,
        req: &Received,
        payload: &[u8],
        now: Timestamp,
        table: &mut dyn LeaseTable,
        out: &mut Vec<u8>,
    ) -> Outcome {
        self.counters.received += 1;
        out.clear();
        match self.handle_inner(req, payload, now, table, out) {
            Ok((msg_type, commits)) => {
                if let Some(n) = self
                    .counters
                    .answered
                    .get_mut(usize::from(u8::from(msg_type)))
                {
                    *n += 1;
                }
                Outcome::Reply {
                    dst: req.src,
                    src: if req.dst.is_multicast() {
                        Ipv6Addr::UNSPECIFIED
                    } else {
                        req.dst
                    },
                    commits,
                }
            }
            Err(reason) => {
                out.clear();
                self.counters.dropped[reason.index()] += 1;
                Outcome::Drop(reason)
            }
        }
    }

    fn handle_inner(
        &mut self,
        rx: &Received,
        payload: &[u8],
        now: Timestamp,
        table: &mut dyn LeaseTable,
        out: &mut Vec<u8>,
    ) -> Result<(MessageType, bool), DropReason> {
        // A match rather than `map_err(..)?`: `Relayed` holds 32 layer slots (~0.5 KiB) and
        // each adapter step copied it (profiled on the AF_XDP path).
        let relayed = match wire::parse_relayed(payload) {
            Ok(r) => r,
            Err(e) => return Err(DropReason::from_wire(e)),
        };
        // A server only accepts Relay-forw chains (RFC 8415 §16: discard Relay-repl).
        if relayed
            .layers()
            .first()
            .is_some_and(|l| l.msg_type() != MessageType::RelayForw)
        {
            return Err(DropReason::UnexpectedMessageType);
        }
        for layer in relayed.layers() {
            // Relay options the engine reads must be well formed; others are opaque.
            if let Some(Err(e)) = layer.relay_port() {
                return Err(DropReason::from_wire(e));
            }
            if let Some(Err(e)) = layer.remote_id() {
                return Err(DropReason::from_wire(e));
            }
            if let Some(Err(e)) = layer.subscriber_id() {
                return Err(DropReason::from_wire(e));
            }
            if let Some(Err(e)) = layer.client_linklayer_addr() {
                return Err(DropReason::from_wire(e));
            }
        }
        let msg_type = relayed.message().msg_type();
        if !msg_type.is_client_to_server() {
            return Err(DropReason::UnexpectedMessageType);
        }
        let req = parse_request(&relayed)?;
        let ours = self.server_duid.as_bytes();
        // RFC 8415 §16 validation, per message type.
        match msg_type {
            MessageType::Solicit | MessageType::Confirm | MessageType::Rebind => {
                if req.client_id.is_none() {
                    return Err(DropReason::MissingClientId);
                }
                if req.server_id.is_some() {
                    return Err(DropReason::UnexpectedServerId);
                }
            }
            MessageType::Request
            | MessageType::Renew
            | MessageType::Release
            | MessageType::Decline => {
                if req.client_id.is_none() {
                    return Err(DropReason::MissingClientId);
                }
                match req.server_id {
                    None => return Err(DropReason::MissingServerId),
                    Some(s) if s != ours => return Err(DropReason::WrongServerId),
                    Some(_) => {}
                }
            }
            MessageType::InformationRequest => {
                if req.server_id.is_some_and(|s| s != ours) {
                    return Err(DropReason::WrongServerId);
                }
                if req.n_ias > 0 {
                    return Err(DropReason::IaInInformationRequest);
                }
            }
            _ => return Err(DropReason::UnexpectedMessageType),
        }
        // RFC 8415 §18.4: a direct client unicasting to us. Relayed messages always arrive
        // by unicast from the relay, so this only applies to direct clients.
        if !relayed.is_relayed() && !rx.dst.is_multicast() {
            match msg_type {
                MessageType::Solicit | MessageType::Confirm | MessageType::Rebind => {
                    return Err(DropReason::UnicastNotAllowed)
                }
                _ if self.config.server.unicast.is_none() => {
                    self.counters.use_multicast += 1;
                    // A UseMulticast status grants nothing.
                    return self.use_multicast(&relayed, &req, out).map(|t| (t, false));
                }
                _ => {}
            }
        }

        // RFC 8156 §8: the failover endpoint state decides whether this server answers.
        let to_us = req.server_id == Some(ours);
        match self.scope.may_answer(client_message(msg_type), to_us) {
            Answer::Serve => self.allow_new = true,
            Answer::ServeExistingOnly => self.allow_new = false,
            Answer::Ignore => return Err(DropReason::Policy),
        }
        let config = self.config.clone();
        let link = select_link(&config, &relayed, rx);
        let duid = req.client_id.and_then(Duid::new);
        // By reference: the inline Duid is 131 bytes.
        let reservation = match &duid {
            Some(d) => self.find_reservation(&relayed, d.as_bytes()),
            None => None,
        };
        let client = Client {
            reservation,
            duid: duid.unwrap_or(self.server_duid),
            link,
        };
        let now_secs = now.secs();
        self.scratch.entries.clear();
        self.scratch.ias.clear();

        let reply_type = match msg_type {
            MessageType::InformationRequest => MessageType::Reply,
            MessageType::Confirm => {
                let status = self.confirm(&req, &client)?;
                return self
                    .emit_status_reply(&relayed, &req, status, out)
                    .map(|_| (msg_type, false));
            }
            _ => {
                if client.link.is_none() {
                    // RFC 8415 §13.1: the server cannot tell which link the client is on,
                    // so it has nothing appropriate to offer.
                    return Err(DropReason::NoLink);
                }
                match msg_type {
                    MessageType::Solicit => {
                        let rapid = req.rapid_commit && client.link.is_some_and(|l| l.rapid_commit);
                        let mode = if rapid {
                            binding::Mode::Commit
                        } else {
                            binding::Mode::Advertise
                        };
                        self.assign_all(
                            &req,
                            &client,
                            mode,
                            binding::Missing::Allocate,
                            now_secs,
                            table,
                        )?;
                        if rapid {
                            MessageType::Reply
                        } else {
                            MessageType::Advertise
                        }
                    }
                    MessageType::Request => {
                        self.assign_all(
                            &req,
                            &client,
                            binding::Mode::Request,
                            binding::Missing::Allocate,
                            now_secs,
                            table,
                        )?;
                        MessageType::Reply
                    }
                    MessageType::Renew | MessageType::Rebind => {
                        let creates = self.config.server.renew_creates
                            && (msg_type == MessageType::Renew
                                || client.link.is_some_and(|l| l.rapid_commit));
                        let missing = if creates {
                            binding::Missing::Allocate
                        } else {
                            binding::Missing::NoBinding
                        };
                        self.assign_all(
                            &req,
                            &client,
                            binding::Mode::Extend,
                            missing,
                            now_secs,
                            table,
                        )?;
                        MessageType::Reply
                    }
                    MessageType::Release => {
                        self.release_all(&req, &client, now_secs, table, false)?;
                        MessageType::Reply
                    }
                    MessageType::Decline => {
                        self.release_all(&req, &client, now_secs, table, true)?;
                        MessageType::Reply
                    }
                    _ => return Err(DropReason::UnexpectedMessageType),
                }
            }
        };
        self.emit(&relayed, &req, &client, reply_type, out)?;
        let commits =
            reply_type == MessageType::Reply && msg_type != MessageType::InformationRequest;
        Ok((msg_type, commits))
    }
}

/// RFC 8415 §13.1: the first non-zero link-address from the relay closest to the client
/// outwards (RFC 6221 LDRAs leave it `::`), then the innermost Interface-ID, then (direct
/// clients only) the receiving interface.
fn select_link<'c>(config: &'c Config, relayed: &Relayed<'_>, rx: &Received) -> Option<&'c Subnet> {
    let subnets = &config.subnets;
    if relayed.is_relayed() {
        let by_addr = relayed
            .layers()
            .iter()
            .rev()
            .map(|l| l.link_address())
            .find(|a| !a.is_unspecified())
            .and_then(|a| {
                subnets
                    .iter()
                    .find(|s| s.prefix.contains(a))
                    .or_else(|| subnets.iter().find(|s| s.relay_addresses.contains(&a)))
            });
        if by_addr.is_some() {
            return by_addr;
        }
        let iid = relayed
            .layers()
            .iter()
            .rev()
            .find_map(|l| l.interface_id())?;
        return subnets
            .iter()
            .find(|s| s.interface_ids.iter().any(|i| i.as_slice() == iid));
    }
    subnets.iter().find(|s| s.ifindexes.contains(&rx.ifindex))
}

impl Engine {
    /// The client's reservation, if any, by the identifiers of the message and the relay
    /// closest to the client (RFC 6939: "closest to the client").
    fn find_reservation(&mut self, relayed: &Relayed<'_>, duid: &[u8]) -> Option<usize> {
        if self.reservations.is_empty() {
            return None;
        }
        let layers = relayed.layers();
        let innermost =
            |f: &dyn Fn(&wire::RelayLayer<'_>) -> bool| layers.iter().rev().find(|l| f(l));
        let keys = ClientKeys {
            duid,
            remote_id: layers
                .iter()
                .rev()
                .find_map(|l| l.remote_id().and_then(Result::ok)),
            subscriber_id: layers
                .iter()
                .rev()
                .find_map(|l| l.subscriber_id().and_then(Result::ok)),
            link_layer: layers
                .iter()
                .rev()
                .find_map(|l| l.client_linklayer_addr().and_then(Result::ok))
                .map(|(_, a)| a)
                .or_else(|| duid_link_layer(duid)),
            interface_id: innermost(&|l| l.interface_id().is_some())
                .and_then(|l| l.interface_id().map(|id| (l.link_address(), id))),
        };
        let found = self.reservations.lookup(&keys, &mut self.scratch.key)?;
        self.config.reservations.iter().position(|r| r == found)
    }

    /// Confirm (RFC 8415 §18.3.3): are the client's addresses on its link?
    fn confirm(&self, req: &Request<'_>, client: &Client<'_>) -> Result<StatusCode, DropReason> {
        let Some(link) = client.link else {
            // "If the server is unable to perform this test ... the server MUST NOT send a
            // reply".
            return Err(DropReason::NoLink);
        };
        let mut any = false;
        for ia in req.ias() {
            if ia.ia_type == IaType::Pd {
                continue;
            }
            for r in ia_resources(&ia) {
                any = true;
                if !link.on_link(r.addr) {
                    return Ok(StatusCode::NotOnLink);
                }
            }
        }
        if any {
            Ok(StatusCode::Success)
        } else {
            Err(DropReason::NothingToSay)
        }
    }

    /// RFC 8415 §18.4: Reply (Advertise for Solicit) with UseMulticast, SERVERID and CLIENTID
    /// only.
    fn use_multicast(
        &self,
        relayed: &Relayed<'_>,
        req: &Request<'_>,
        out: &mut Vec<u8>,
    ) -> Result<MessageType, DropReason> {
        self.emit_status_reply(relayed, req, StatusCode::UseMulticast, out)?;
        Ok(req.msg_type)
    }

    fn emit_status_reply(
        &self,
        relayed: &Relayed<'_>,
        req: &Request<'_>,
        status: StatusCode,
        out: &mut Vec<u8>,
    ) -> Result<(), DropReason> {
        let mut w = Writer::relay_reply(out, relayed);
        w.header(MessageType::Reply, req.transaction_id);
        w.server_id(self.server_duid.as_bytes());
        if let Some(c) = req.client_id {
            w.client_id(c);
        }
        w.status_code(status, status_text(status));
        w.finish()
            .map(|_| ())
            .map_err(|_| DropReason::ReplyTooLarge)
    }

    /// Writes the reply for the IAs decided in `self.scratch`.
    fn emit(
        &self,
        relayed: &Relayed<'_>,
        req: &Request<'_>,
        client: &Client<'_>,
        reply_type: MessageType,
        out: &mut Vec<u8>,
    ) -> Result<(), DropReason> {
        let cfg = &self.config;
        let (t1, t2) = self.timers(client.link);
        let mut w = Writer::relay_reply(out, relayed);
        w.header(reply_type, req.transaction_id);
        w.server_id(self.server_duid.as_bytes());
        if let Some(c) = req.client_id {
            w.client_id(c);
        }
        if reply_type == MessageType::Advertise && cfg.server.preference != 0 {
            // RFC 8415 §18.3.9: absent means 0.
            w.preference(cfg.server.preference);
        }
        if reply_type == MessageType::Reply && req.msg_type == MessageType::Solicit {
            // RFC 8415 §18.3.1: a Reply to a Solicit carries Rapid Commit.
            w.rapid_commit();
        }
        if let Some(u) = cfg.server.unicast {
            if req.msg_type != MessageType::InformationRequest {
                w.unicast(u);
            }
        }
        match req.msg_type {
            MessageType::Release | MessageType::Decline => {
                // RFC 8415 §18.3.7/§18.3.8: top-level Success, IAs only for NoBinding.
                w.status_code(StatusCode::Success, "released");
            }
            _ => {}
        }
        for ia in &self.scratch.ias {
            let entries = &self.scratch.entries[ia.first..ia.first + ia.len];
            let (t1, t2) = if ia.status.is_some() || entries.iter().all(|e| e.valid == 0) {
                (0, 0)
            } else {
                (t1, t2)
            };
            let body = |w: &mut Writer<'_>| {
                for e in entries {
                    if e.resource.is_prefix() {
                        w.ia_prefix(
                            e.preferred,
                            e.valid,
                            e.resource.prefix_len,
                            e.resource.addr,
                            |_| {},
                        );
                    } else {
                        w.ia_addr(e.resource.addr, e.preferred, e.valid, |_| {});
                    }
                }
                if let Some((code, text)) = ia.status {
                    w.status_code(code, text);
                }
            };
            match ia.ia_type {
                IaType::Na => w.ia_na(ia.iaid, t1, t2, body),
                IaType::Ta => w.ia_ta(ia.iaid, body),
                IaType::Pd => w.ia_pd(ia.iaid, t1, t2, body),
            };
        }
        self.emit_options(&mut w, req, client.link);
        w.finish()
            .map(|_| ())
            .map_err(|_| DropReason::ReplyTooLarge)
    }

    /// T1/T2 for every IA of one reply (RFC 8415 §18.3.2: the same across IAs): configured,
    /// or 0.5 / 0.8 of the shortest preferred lifetime granted (§21.4).
    fn timers(&self, link: Option<&Subnet>) -> (u32, u32) {
        let shortest = self
            .scratch
            .entries
            .iter()
            .filter(|e| e.valid > 0)
            .map(|e| e.preferred)
            .min();
        let Some(p) = shortest else {
            return (0, 0);
        };
        if p == wire::INFINITY {
            return (wire::INFINITY, wire::INFINITY);
        }
        let t1 = link.and_then(|l| l.t1).unwrap_or(p / 2);
        let t2 = link
            .and_then(|l| l.t2)
            .unwrap_or((u64::from(p) * 4 / 5) as u32);
        (t1.min(t2), t2)
    }

    /// Configuration options per ORO (RFC 8415 §18.3: only what the client asked for and
    /// the server is configured to return).
    fn emit_options(&self, w: &mut Writer<'_>, req: &Request<'_>, link: Option<&Subnet>) {
        let opts = &self.config.options;
        let dns = link
            .and_then(|l| l.dns_servers.as_deref())
            .unwrap_or(&opts.dns_servers);
        if !dns.is_empty() && req.requested(wire::OPTION_DNS_SERVERS) {
            w.dns_servers(dns);
        }
        let domains = link
            .and_then(|l| l.domain_list.as_deref())
            .unwrap_or(&opts.domain_list);
        if !domains.is_empty() && req.requested(wire::OPTION_DOMAIN_LIST) {
            w.domain_list_wire(domains);
        }
        let info = req.msg_type == MessageType::InformationRequest;
        if info && req.requested(wire::OPTION_INFORMATION_REFRESH_TIME) {
            // RFC 8415 §21.23: only in a Reply to an Information-request.
            w.information_refresh_time(opts.info_refresh_time);
        }
        if !info {
            if let Some(v) = opts
                .sol_max_rt
                .filter(|_| req.requested(wire::OPTION_SOL_MAX_RT))
            {
                w.u32_option(wire::OPTION_SOL_MAX_RT, v);
            }
        }
        if info {
            if let Some(v) = opts
                .inf_max_rt
                .filter(|_| req.requested(wire::OPTION_INF_MAX_RT))
            {
                w.u32_option(wire::OPTION_INF_MAX_RT, v);
            }
        }
        if let Some(fqdn) = req.fqdn.filter(|_| req.requested(wire::OPTION_CLIENT_FQDN)) {
            // RFC 4704 §6.1: tandem performs no DNS updates, so N=1 and S=0; O=1 tells the
            // client its S request was overridden. The name is echoed as sent.
            let client_s = fqdn[0] & 0x01;
            let flags = 0x04 | if client_s != 0 { 0x02 } else { 0 };
            w.client_fqdn_wire(flags, &fqdn[1..]);
        }
    }
}

fn client_message(t: MessageType) -> ClientMessage {
    match t {
        MessageType::Solicit => ClientMessage::Solicit,
        MessageType::Request => ClientMessage::Request,
        MessageType::Confirm => ClientMessage::Confirm,
        MessageType::Renew => ClientMessage::Renew,
        MessageType::Rebind => ClientMessage::Rebind,
        MessageType::Release => ClientMessage::Release,
        MessageType::Decline => ClientMessage::Decline,
        _ => ClientMessage::InformationRequest,
    }
}

fn status_text(s: StatusCode) -> &'static str {
    match s {
        StatusCode::Success => "success",
        StatusCode::NoAddrsAvail => "no addresses available",
        StatusCode::NoPrefixAvail => "no prefixes available",
        StatusCode::NoBinding => "no binding for this IA",
        StatusCode::NotOnLink => "address not on this link",
        StatusCode::UseMulticast => "use multicast",
        _ => "",
    }
}

#[cfg(test)]
mod tests;
