//! IA_PD free bitmaps: one per pool per shard, over the delegated-prefix indices the shard
//! owns (`idx % shards == shard`).

use std::net::Ipv6Addr;

use super::Partition;
use crate::config::PdPool;

/// Free bitmap of one shard's share of one PD pool. A set bit means free.
///
/// Allocation is next-fit over 64-bit words (`trailing_zeros` on the first non-zero word
/// from a cursor), so a run of allocations touches each word once; `free` counts make an
/// exhausted pool an O(1) answer.
#[derive(Clone, Debug)]
pub struct PrefixBitmap {
    pool: PdPool,
    shard: u32,
    shards: u32,
    /// Number of indices this shard owns (local indices `0..owned`).
    owned: u32,
    words: Vec<u64>,
    free: u32,
    cursor: usize,
}

impl PrefixBitmap {
    /// All of the shard's prefixes in `pool` start free.
    pub fn new(pool: PdPool, part: &Partition) -> PrefixBitmap {
        let count = u64::from(pool.count());
        let (shard, shards) = (part.shard as u64, part.shards as u64);
        let owned = if count > shard {
            ((count - shard).div_ceil(shards)) as u32
        } else {
            0
        };
        let nwords = (owned as usize).div_ceil(64);
        let mut words = vec![u64::MAX; nwords];
        if owned % 64 != 0 {
            if let Some(last) = words.last_mut() {
                *last = (1u64 << (owned % 64)) - 1;
            }
        }
        PrefixBitmap {
            pool,
            shard: shard as u32,
            shards: shards as u32,
            owned,
            words,
            free: owned,
            cursor: 0,
        }
    }

    pub fn pool(&self) -> &PdPool {
        &self.pool
    }

    /// Prefixes this shard owns in the pool.
    pub fn owned(&self) -> u32 {
        self.owned
    }

    /// Prefixes still free.
    pub fn free(&self) -> u32 {
        self.free
    }

    /// The local bit of pool index `idx`, if this shard owns it.
    fn local(&self, idx: u32) -> Option<u32> {
        (idx < self.pool.count() && idx % self.shards == self.shard).then_some(idx / self.shards)
    }

    /// Pool index of the prefix `p/len`, if it is one of this shard's.
    pub fn index_of(&self, p: Ipv6Addr, len: u8) -> Option<u32> {
        self.pool
            .index_of(p, len)
            .filter(|&i| self.local(i).is_some())
    }

    pub fn prefix_at(&self, idx: u32) -> Ipv6Addr {
        self.pool.nth(idx)
    }

    pub fn is_free(&self, idx: u32) -> bool {
        match self.local(idx) {
            Some(j) => self.words[(j / 64) as usize] & (1 << (j % 64)) != 0,
            None => false,
        }
    }

    /// Marks `idx` used; returns whether it was free (false also for indices not owned).
    pub fn take(&mut self, idx: u32) -> bool {
        let Some(j) = self.local(idx) else {
            return false;
        };
        let w = &mut self.words[(j / 64) as usize];
        let bit = 1u64 << (j % 64);
        if *w & bit == 0 {
            return false;
        }
        *w &= !bit;
        self.free -= 1;
        true
    }

    /// Marks `idx` free again; returns whether it was used.
    pub fn release(&mut self, idx: u32) -> bool {
        let Some(j) = self.local(idx) else {
            return false;
        };
        let w = &mut self.words[(j / 64) as usize];
        let bit = 1u64 << (j % 64);
        if *w & bit != 0 {
            return false;
        }
        *w |= bit;
        self.free += 1;
        true
    }

    /// The next free index accepted by `accept` (which can veto reserved prefixes), taken;
    /// `None` when none is left.
    pub fn allocate(&mut self, mut accept: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.free == 0 {
            return None;
        }
        let n = self.words.len();
        for step in 0..=n {
            let wi = (self.cursor + step) % n;
            let mut w = self.words[wi];
            while w != 0 {
                let b = w.trailing_zeros();
                w &= w - 1;
                let j = wi as u32 * 64 + b;
                let idx = j * self.shards + self.shard;
                if accept(idx) {
                    self.cursor = wi;
                    self.take(idx);
                    return Some(idx);
                }
            }
        }
        None
    }
}
