//! Address and prefix allocation: computed IA_NA addresses (bit-127 halves) and IA_PD free
//! bitmaps. Pure: no I/O, no clock; the caller says what is taken through a predicate or
//! by marking bitmap bits.
//!
//! The partition rules (docs/ARCHITECTURE.md, "Ownership"), so that two shards — and two
//! failover partners — never compute the same free resource:
//! * IA_NA: an address belongs to shard `i` of `n` when `((iid >> 1) % n) == i`, where `iid`
//!   is its low 64 bits; with failover, the primary owns addresses whose bit 127 (the lowest
//!   bit) is 1 and the secondary those with 0 (RFC 8156 §4.2.1, "address allocation").
//! * IA_PD: a pool's delegated prefixes are numbered `0..count`; shard `i` owns indices
//!   with `idx % n == i` and keeps a free bitmap over them.
//!
//! Reservations ([`Reservations`]) come before dynamic allocation and their resources are
//! excluded from it in every shard.

mod prefix;
mod reservations;

pub use prefix::PrefixBitmap;
pub use reservations::{duid_link_layer, ClientKeys, Reservations};

use std::net::Ipv6Addr;

use crate::config::Pool;
use crate::lease::stable_hash;

/// Which half of each pool this server may hand out (RFC 8156 §4.2.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Ownership {
    /// No failover: every address.
    #[default]
    Any,
    /// Failover primary: addresses with bit 127 set (odd interface-ids).
    Odd,
    /// Failover secondary: addresses with bit 127 clear (even interface-ids).
    Even,
}

/// The slice of the address space one shard of one server allocates from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition {
    pub shard: usize,
    pub shards: usize,
    pub ownership: Ownership,
}

impl Partition {
    pub fn new(shard: usize, shards: usize, ownership: Ownership) -> Partition {
        let shards = shards.max(1);
        Partition {
            shard: shard % shards,
            shards,
            ownership,
        }
    }

    /// Whether dynamic allocation in this shard may hand out `a` (ignoring pools).
    pub fn owns_address(&self, a: Ipv6Addr) -> bool {
        let iid = u128::from(a) as u64;
        let half = match self.ownership {
            Ownership::Any => true,
            Ownership::Odd => iid & 1 == 1,
            Ownership::Even => iid & 1 == 0,
        };
        half && ((iid >> 1) % self.shards as u64) as usize == self.shard
    }

    /// Whether delegated-prefix index `idx` belongs to this shard.
    pub fn owns_prefix_index(&self, idx: u32) -> bool {
        (idx as usize) % self.shards == self.shard
    }

    /// The owned address nearest above (or, at the top of the pool, below) `a`, within
    /// `pool`. Adjusts only the interface-id so the hash's spread is kept.
    fn snap(&self, a: u128, pool: &Pool) -> Option<u128> {
        let (lo, hi) = (u128::from(pool.start), u128::from(pool.end));
        let n = self.shards as u64;
        let iid = a as u64;
        let high = a & !u128::from(u64::MAX);
        let bit0 = match self.ownership {
            Ownership::Any => iid & 1,
            Ownership::Odd => 1,
            Ownership::Even => 0,
        };
        let q = iid >> 1;
        let base = q - q % n + self.shard as u64;
        // Candidates: the owned slot in this group of n, then the next and previous group.
        let make = |q: u64| -> Option<u128> {
            if q > (u64::MAX >> 1) {
                return None;
            }
            let v = high | u128::from((q << 1) | bit0);
            (lo..=hi).contains(&v).then_some(v)
        };
        make(base)
            .or_else(|| base.checked_add(n).and_then(make))
            .or_else(|| base.checked_sub(n).and_then(make))
    }
}

/// How many hashed attempts before IA_NA allocation gives up or falls back to a scan.
pub const NA_HASH_ATTEMPTS: u32 = 16;
/// Pools up to this many addresses are scanned when hashing keeps colliding, so a small
/// pool can be filled completely. Larger pools (a /64) never fill by chance.
pub const NA_SCAN_LIMIT: u128 = 1 << 16;

/// The `attempt`-th candidate address for IA `(duid, iaid)` in `pool`, adjusted into the
/// partition; `None` when the partition holds no address near the hashed point.
///
/// hash(DUID, IAID, attempt) → offset in the pool: the same client gets the same address
/// from the same pool every time (stable across restarts and between shards counts that do
/// not change), without any search structure over a /64.
pub fn na_candidate(
    duid: &[u8],
    iaid: u32,
    attempt: u32,
    pool: &Pool,
    part: &Partition,
) -> Option<Ipv6Addr> {
    let size = pool.size();
    let mut key = [0u8; 8];
    key[..4].copy_from_slice(&iaid.to_be_bytes());
    key[4..].copy_from_slice(&attempt.to_be_bytes());
    // Two independent 64-bit hashes make a 128-bit offset, so /48-sized pools spread too.
    let h1 = stable_hash(duid) ^ stable_hash(&key).rotate_left(17);
    let h2 = mix64(h1 ^ 0x9e37_79b9_7f4a_7c15);
    let h = (u128::from(mix64(h1)) << 64) | u128::from(h2);
    let offset = if size == 0 { h } else { h % size };
    part.snap(u128::from(pool.start).wrapping_add(offset), pool)
        .map(Ipv6Addr::from)
}

/// splitmix64 finaliser: spreads FNV's weak low bits.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Allocates an address for IA `(duid, iaid)` from `pool` in partition `part`.
/// `is_free(a)` says whether `a` may be handed out (no lease, not reserved, not excluded,
/// not declined). Tries [`NA_HASH_ATTEMPTS`] hashed candidates, then for small pools scans
/// the partition from the first candidate, so a small pool can be filled to the last
/// address. `None`: the pool has nothing free for this shard (NoAddrsAvail).
pub fn allocate_na(
    duid: &[u8],
    iaid: u32,
    pool: &Pool,
    part: &Partition,
    mut is_free: impl FnMut(Ipv6Addr) -> bool,
) -> Option<Ipv6Addr> {
    let mut first = None;
    for attempt in 0..NA_HASH_ATTEMPTS {
        if let Some(a) = na_candidate(duid, iaid, attempt, pool, part) {
            first.get_or_insert(a);
            if is_free(a) {
                return Some(a);
            }
        }
    }
    if pool.size() > NA_SCAN_LIMIT {
        return None;
    }
    // Walk every owned address once, starting at the first hashed candidate (so different
    // clients start in different places) and wrapping at the pool's end.
    let (lo, hi) = (u128::from(pool.start), u128::from(pool.end));
    let start = first.map_or(lo, u128::from);
    let mut a = start;
    loop {
        let addr = Ipv6Addr::from(a);
        if part.owns_address(addr) && is_free(addr) {
            return Some(addr);
        }
        a = if a >= hi { lo } else { a + 1 };
        if a == start {
            return None;
        }
    }
}

#[cfg(test)]
mod tests;
