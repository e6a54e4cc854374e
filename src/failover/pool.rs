//! Proportional allocation of delegable prefixes (RFC 8156 §4.2.2): every free delegable
//! prefix belongs to the primary (FREE) or, once the primary sent it over with a BNDUPD,
//! to the secondary (FREE-BACKUP). Prefixes that are delegated belong to nobody; when
//! released or expired they return to the primary.

use std::net::Ipv6Addr;

use super::Role;
use crate::lease::Resource;

/// One delegable-prefix pool: `prefix/prefix_len` cut into `/delegated_len` prefixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PdPool {
    pub prefix: Ipv6Addr,
    pub prefix_len: u8,
    pub delegated_len: u8,
}

impl PdPool {
    /// Number of delegable prefixes (capped at 2^24 so a misconfiguration cannot make the
    /// status table huge; the config layer rejects wider splits).
    pub fn len(&self) -> usize {
        let bits = u32::from(self.delegated_len.saturating_sub(self.prefix_len)).min(24);
        1usize << bits
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn prefix_at(&self, idx: usize) -> Resource {
        let base = u128::from(self.prefix);
        let shift = 128 - u32::from(self.delegated_len);
        let addr = base | ((idx as u128).checked_shl(shift).unwrap_or(0));
        Resource::prefix(Ipv6Addr::from(addr), self.delegated_len)
    }

    pub fn index_of(&self, r: &Resource) -> Option<usize> {
        if r.prefix_len != self.delegated_len {
            return None;
        }
        let a = u128::from(r.addr);
        let b = u128::from(self.prefix);
        let outer = 128 - u32::from(self.prefix_len);
        if self.prefix_len > 0 && (a >> outer) != (b >> outer) {
            return None;
        }
        let shift = 128 - u32::from(self.delegated_len);
        let sub_bits = u32::from(self.delegated_len.saturating_sub(self.prefix_len)).min(127);
        let idx = (a.checked_shr(shift).unwrap_or(0) & ((1u128 << sub_bits) - 1)) as usize;
        (idx < self.len()).then_some(idx)
    }
}

/// Pool status of one free delegable prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PoolStatus {
    /// FREE: the primary's.
    Free = 0,
    /// FREE-BACKUP: the secondary's.
    FreeBackup = 1,
    /// The primary sent BNDUPD(FREE) to take it back; nobody allocates it until the
    /// secondary's BNDREPLY (§4.2.2: the secondary rejects if it already delegated it).
    Reclaiming = 2,
}

/// The FREE / FREE-BACKUP split of every configured delegable prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrefixPool {
    pools: Vec<(PdPool, Vec<PoolStatus>)>,
}

impl PrefixPool {
    pub fn new(pools: &[PdPool]) -> PrefixPool {
        PrefixPool {
            pools: pools
                .iter()
                .map(|p| (*p, vec![PoolStatus::Free; p.len()]))
                .collect(),
        }
    }

    pub fn pools(&self) -> impl Iterator<Item = &PdPool> {
        self.pools.iter().map(|(p, _)| p)
    }

    fn slot(&self, r: &Resource) -> Option<(usize, usize)> {
        self.pools
            .iter()
            .enumerate()
            .find_map(|(i, (p, _))| p.index_of(r).map(|idx| (i, idx)))
    }

    pub fn contains(&self, r: &Resource) -> bool {
        self.slot(r).is_some()
    }

    pub fn status(&self, r: &Resource) -> Option<PoolStatus> {
        self.slot(r).map(|(i, idx)| self.pools[i].1[idx])
    }

    /// Who may allocate the free prefix `r` (§4.2.2); `None` while being reclaimed.
    pub fn owner(&self, r: &Resource) -> Option<Role> {
        match self.status(r)? {
            PoolStatus::Free => Some(Role::Primary),
            PoolStatus::FreeBackup => Some(Role::Secondary),
            PoolStatus::Reclaiming => None,
        }
    }

    pub fn set(&mut self, r: &Resource, s: PoolStatus) {
        if let Some((i, idx)) = self.slot(r) {
            self.pools[i].1[idx] = s;
        }
    }

    /// Every prefix with its status (for the store and tooling).
    pub fn iter(&self) -> impl Iterator<Item = (Resource, PoolStatus)> + '_ {
        self.pools
            .iter()
            .flat_map(|(p, st)| st.iter().enumerate().map(|(i, s)| (p.prefix_at(i), *s)))
    }

    /// §4.2.2: the moves that bring each pool's free prefixes to `share_pct` % FREE-BACKUP,
    /// with a hysteresis of `threshold` prefixes. `is_free(r)` says whether the prefix is
    /// not delegated (no lease record holds it). Moves are applied here as well: FREE →
    /// FREE-BACKUP at once (§4.2.2 "the primary MUST NOT use them" once sent), FREE-BACKUP
    /// → Reclaiming until the secondary acknowledges.
    pub fn rebalance(
        &mut self,
        share_pct: u8,
        threshold: usize,
        is_free: &dyn Fn(&Resource) -> bool,
        moves: &mut Vec<(Resource, PoolStatus)>,
    ) {
        for (pool, status) in &mut self.pools {
            let mut free = Vec::new();
            let mut backup = Vec::new();
            for (idx, s) in status.iter().enumerate() {
                let r = pool.prefix_at(idx);
                if !is_free(&r) {
                    continue;
                }
                match s {
                    PoolStatus::Free => free.push(idx),
                    PoolStatus::FreeBackup => backup.push(idx),
                    PoolStatus::Reclaiming => {}
                }
            }
            let total = free.len() + backup.len();
            let target = total * usize::from(share_pct.min(100)) / 100;
            if backup.len() + threshold < target {
                // Hand over from the end of the pool so the primary keeps the low indices.
                for &idx in free.iter().rev().take(target - backup.len()) {
                    status[idx] = PoolStatus::FreeBackup;
                    moves.push((pool.prefix_at(idx), PoolStatus::FreeBackup));
                }
            } else if backup.len() > target + threshold {
                for &idx in backup.iter().take(backup.len() - target) {
                    status[idx] = PoolStatus::Reclaiming;
                    moves.push((pool.prefix_at(idx), PoolStatus::Free));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> PdPool {
        PdPool {
            prefix: "2001:db8:100::".parse().unwrap(),
            prefix_len: 48,
            delegated_len: 56,
        }
    }

    #[test]
    fn index_roundtrip() {
        let p = pool();
        assert_eq!(p.len(), 256);
        for idx in [0, 1, 77, 255] {
            assert_eq!(p.index_of(&p.prefix_at(idx)), Some(idx));
        }
        assert_eq!(
            p.prefix_at(1).addr,
            "2001:db8:100:100::".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            p.index_of(&Resource::prefix("2001:db8:200::".parse().unwrap(), 56)),
            None
        );
    }

    #[test]
    fn rebalance_moves_toward_the_share_with_hysteresis() {
        let mut pp = PrefixPool::new(&[pool()]);
        let mut moves = Vec::new();
        pp.rebalance(50, 4, &|_| true, &mut moves);
        assert_eq!(moves.len(), 128);
        assert!(moves.iter().all(|(_, s)| *s == PoolStatus::FreeBackup));
        moves.clear();
        pp.rebalance(50, 4, &|_| true, &mut moves);
        assert!(moves.is_empty(), "balanced pools stay put");
        pp.rebalance(10, 4, &|_| true, &mut moves);
        assert_eq!(moves.len(), 128 - 25);
        assert!(moves.iter().all(|(_, s)| *s == PoolStatus::Free));
        assert_eq!(pp.owner(&moves[0].0), None);
    }
}
