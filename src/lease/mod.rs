//! The lease model and the lease-table interface every store implements.
//!
//! A *lease* (RFC 8415 §4.2 "binding", RFC 8156 §4.3 "lease") ties one resource — an address
//! from an IA_NA/IA_TA or a prefix from an IA_PD — to one client IA (DUID, IA type, IAID).
//! Each shard owns the leases of the clients whose DUID hashes to it (see
//! [`Duid::shard_of`]), so a table is only ever touched by one thread and needs no lock.
//!
//! Implementations:
//! * [`memory::MemoryTable`]: a dense vector with hashbrown indexes, no persistence
//!   (durability mode `memory`).
//! * the durable store (mmapped rkyv snapshot + delta + io_uring WAL), same trait.

pub mod memory;
pub mod mmap;
pub mod store;

use std::fmt;
use std::net::Ipv6Addr;

/// Longest DUID: 2-octet type + up to 128 octets (RFC 8415 §11.1).
pub const DUID_MAX_LEN: usize = 130;

/// A client or server DUID, stored inline so leases are `Copy`-cheap to move around the
/// hot path (no allocation per lookup). Only the first `len` bytes are meaningful.
#[derive(Clone, Copy)]
pub struct Duid {
    len: u8,
    bytes: [u8; DUID_MAX_LEN],
}

impl Duid {
    /// Wraps raw DUID bytes; `None` when empty or longer than [`DUID_MAX_LEN`]
    /// (RFC 8415 §11.1 bounds the DUID at 130 octets including the type).
    pub fn new(raw: &[u8]) -> Option<Duid> {
        if raw.is_empty() || raw.len() > DUID_MAX_LEN {
            return None;
        }
        let mut bytes = [0u8; DUID_MAX_LEN];
        bytes[..raw.len()].copy_from_slice(raw);
        Some(Duid {
            len: raw.len() as u8,
            bytes,
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Stable 64-bit hash of the DUID bytes (FNV-1a). Used for shard ownership, so it must
    /// be the same in every process and every version: it decides where leases live on disk.
    pub fn stable_hash(&self) -> u64 {
        stable_hash(self.as_bytes())
    }

    /// The shard that owns this client's leases.
    pub fn shard_of(&self, shards: usize) -> usize {
        shard_of_duid(self.as_bytes(), shards)
    }
}

/// FNV-1a over `bytes`: tiny, allocation-free and fixed forever (it is part of the on-disk
/// layout through shard ownership).
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The shard owning the client with DUID bytes `duid` among `shards` shards.
pub fn shard_of_duid(duid: &[u8], shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    (stable_hash(duid) % shards as u64) as usize
}

impl PartialEq for Duid {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}
impl Eq for Duid {}

impl std::hash::Hash for Duid {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state)
    }
}

impl fmt::Debug for Duid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Duid({self})")
    }
}

/// Lower-case hex without separators, the form the lease tooling prints and parses.
impl fmt::Display for Duid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The kind of IA a lease belongs to (RFC 8415 §21.4, §21.5, §21.21).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum IaType {
    /// IA_NA: a non-temporary address.
    Na = 1,
    /// IA_TA: a temporary address.
    Ta = 2,
    /// IA_PD: a delegated prefix.
    Pd = 3,
}

impl IaType {
    pub fn from_u8(v: u8) -> Option<IaType> {
        match v {
            1 => Some(IaType::Na),
            2 => Some(IaType::Ta),
            3 => Some(IaType::Pd),
            _ => None,
        }
    }
}

/// What a lease holds: an address (`prefix_len == 128`) or a delegated prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Resource {
    pub addr: Ipv6Addr,
    pub prefix_len: u8,
}

impl Resource {
    pub const fn address(addr: Ipv6Addr) -> Resource {
        Resource {
            addr,
            prefix_len: 128,
        }
    }

    pub const fn prefix(addr: Ipv6Addr, prefix_len: u8) -> Resource {
        Resource { addr, prefix_len }
    }

    pub const fn is_prefix(&self) -> bool {
        self.prefix_len < 128
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_prefix() {
            write!(f, "{}/{}", self.addr, self.prefix_len)
        } else {
            write!(f, "{}", self.addr)
        }
    }
}

/// Binding status, in the words of RFC 8156 §4.3.2 / §5.5.1 (OPTION_F_BINDING_STATUS values),
/// so the store and the failover protocol share one vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BindingState {
    Active = 1,
    Expired = 2,
    Released = 3,
    PendingFree = 4,
    Free = 5,
    FreeBackup = 6,
    /// Declined by a client (RFC 8415 §18.3.8) or otherwise unusable.
    Abandoned = 7,
    Reset = 8,
}

impl BindingState {
    pub fn from_u8(v: u8) -> Option<BindingState> {
        Some(match v {
            1 => BindingState::Active,
            2 => BindingState::Expired,
            3 => BindingState::Released,
            4 => BindingState::PendingFree,
            5 => BindingState::Free,
            6 => BindingState::FreeBackup,
            7 => BindingState::Abandoned,
            8 => BindingState::Reset,
            _ => return None,
        })
    }

    /// The lowercase name the lease tooling prints (`active`, `expired`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            BindingState::Active => "active",
            BindingState::Expired => "expired",
            BindingState::Released => "released",
            BindingState::PendingFree => "pending-free",
            BindingState::Free => "free",
            BindingState::FreeBackup => "free-backup",
            BindingState::Abandoned => "abandoned",
            BindingState::Reset => "reset",
        }
    }
}

/// One lease. Times are whole seconds since the Unix epoch (see [`crate::time::Timestamp`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub resource: Resource,
    pub ia_type: IaType,
    pub duid: Duid,
    pub iaid: u32,
    pub state: BindingState,
    /// Lifetimes last granted to the client (RFC 8415 §21.6, §21.22).
    pub preferred_lifetime: u32,
    pub valid_lifetime: u32,
    /// Client last transaction time (RFC 8156 §4.3 CLTT): when the lease was last granted.
    pub cltt: u64,
    /// When the current state ends: for `Active`, `cltt + valid_lifetime`; for `Abandoned`
    /// (declined) the end of the quarantine; for states waiting on the partner, the
    /// RFC 8156 §4.3.2 deadline. `u64::MAX` for an infinite lifetime.
    pub expires_at: u64,
    /// Configured subnet the resource belongs to (index into the validated config).
    pub subnet: u32,
    /// RFC 8156 §4.4: the lifetime the partner has acknowledged (absolute, Unix seconds);
    /// 0 when no partner has acknowledged this lease. Bounds the lease by the MCLT rule.
    pub partner_lifetime: u64,
    /// RFC 8156 §7.1: this lease changed since the partner last acknowledged it.
    pub update_pending: bool,
}

impl Lease {
    /// True if the lease binds its resource at `now_secs` (Active and not past its end).
    pub fn is_bound_at(&self, now_secs: u64) -> bool {
        self.state == BindingState::Active && now_secs < self.expires_at
    }
}

/// Why a table refused a change. The engine answers the affected IA with a status instead of
/// granting a lease it could not store (RFC 8415 §18.3: stable storage before the Reply).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// No room for a new record (disk full, or the configured bound reached). Updates to
    /// existing leases may still succeed.
    #[error("lease store is full")]
    Full,
    /// The store cannot write at all (I/O error); the shard stops granting leases.
    #[error("lease store failed: I/O error")]
    Io,
}

/// Monotonic number of a commit batch within one table (see [`LeaseTable::commit`]).
pub type CommitId = u64;

/// The lease-table interface: what the engine and the shard loop need from a store.
///
/// Contract for the engine: lookups see every change made through `upsert`/`remove` so far,
/// committed or not (so a second packet in the same batch sees the first one's lease).
///
/// Contract for the shard loop (group commit, RFC 8415 §18.3 "stable storage"): after a
/// receive batch, the loop calls [`commit`](LeaseTable::commit), which seals all changes
/// since the previous commit into one batch and starts making it durable; replies produced
/// for that batch are held back until [`durable`](LeaseTable::durable) reports an id at or
/// past the batch's. Meanwhile the loop already processes the next batch (pipelining).
pub trait LeaseTable {
    /// Every lease, in any state, of `duid`'s IA `(ia_type, iaid)`, appended to `out`.
    fn ia_leases(&self, duid: &Duid, ia_type: IaType, iaid: u32, out: &mut Vec<Lease>);

    /// Every lease of `duid` (all IAs), appended to `out`. Used for Confirm and tooling.
    fn client_leases(&self, duid: &Duid, out: &mut Vec<Lease>);

    /// The lease record on `resource`, if any (in any state).
    fn by_resource(&self, resource: &Resource) -> Option<Lease>;

    /// Inserts or replaces the record for `lease.resource`.
    fn upsert(&mut self, lease: Lease) -> Result<(), TableError>;

    /// Deletes the record on `resource` (the resource becomes free with no history).
    fn remove(&mut self, resource: &Resource) -> Result<(), TableError>;

    /// Moves up to `budget` leases whose state ended at or before `now_secs` to their next
    /// state (Active → Expired, Expired/Released/Abandoned → removed), appending the leases
    /// whose resources became free to `freed`. Returns how many records it changed; the
    /// caller calls again while that equals `budget`.
    fn expire(&mut self, now_secs: u64, budget: usize, freed: &mut Vec<Lease>) -> usize;

    /// Number of lease records.
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` for every record (tooling, failover resync).
    fn for_each(&self, f: &mut dyn FnMut(&Lease));

    /// The record at position `pos` of [`LeaseTable::for_each`]'s order, borrowed, for a
    /// table that keeps its records in one addressable sequence (the failover resync walks
    /// the table in that order without a hash lookup per binding). A hint only: removals
    /// may move records, so callers check the resource and fall back to
    /// [`LeaseTable::by_resource`]. Default: `None`.
    fn record_at(&self, _pos: usize) -> Option<&Lease> {
        None
    }

    /// Calls `f` with the resource, binding state and expiry time of every record: all that
    /// the startup passes (allocator bitmaps, foreign resources) need. A mapped table answers
    /// straight from its archived records without building whole leases (no DUID copy).
    fn for_each_resource(&self, f: &mut dyn FnMut(&Resource, BindingState, u64)) {
        self.for_each(&mut |l| f(&l.resource, l.state, l.expires_at));
    }

    /// [`LeaseTable::for_each_resource`] for the records whose resource lies in
    /// `first..=last` (in `Resource` order): a table sorted by resource reads only that
    /// range (the allocator's startup pass reads only its prefix pools).
    fn for_each_resource_in(
        &self,
        first: &Resource,
        last: &Resource,
        f: &mut dyn FnMut(&Resource, BindingState, u64),
    ) {
        self.for_each_resource(&mut |r, state, expires_at| {
            if first <= r && r <= last {
                f(r, state, expires_at);
            }
        });
    }

    /// Seals the changes since the previous call into one batch and starts making it durable.
    /// Returns the batch id, or `None` if nothing changed.
    fn commit(&mut self) -> Result<Option<CommitId>, TableError>;

    /// The highest batch id known durable. With `wait`, blocks until at least one more batch
    /// completes if any is in flight. Tables without persistence return the last commit id.
    fn durable(&mut self, wait: bool) -> Result<CommitId, TableError>;
}
