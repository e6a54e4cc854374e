//! In-memory lease table (durability mode `memory`, tests, and the engine's unit tests).

use hashbrown::hash_map::Entry;
use hashbrown::HashMap;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::{BindingState, CommitId, Duid, IaType, Lease, LeaseTable, Resource, TableError};

/// The resources of one client: almost always one address and one prefix, kept inline so
/// a new client costs no allocation.
#[derive(Clone, Debug)]
struct ClientResources {
    inline: [Resource; 2],
    len: u8,
    more: Vec<Resource>,
}

impl Default for ClientResources {
    fn default() -> Self {
        let none = Resource::address(std::net::Ipv6Addr::UNSPECIFIED);
        ClientResources {
            inline: [none; 2],
            len: 0,
            more: Vec::new(),
        }
    }
}

impl ClientResources {
    fn push(&mut self, r: Resource) {
        if usize::from(self.len) < self.inline.len() {
            self.inline[usize::from(self.len)] = r;
            self.len += 1;
        } else {
            self.more.push(r);
        }
    }

    fn remove(&mut self, r: &Resource) {
        let n = usize::from(self.len);
        if let Some(i) = self.inline[..n].iter().position(|x| x == r) {
            match self.more.pop() {
                Some(last) => self.inline[i] = last,
                None => {
                    self.inline[i] = self.inline[n - 1];
                    self.len -= 1;
                }
            }
        } else {
            self.more.retain(|x| x != r);
        }
    }

    fn is_empty(&self) -> bool {
        self.len == 0 && self.more.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = &Resource> {
        self.inline[..usize::from(self.len)]
            .iter()
            .chain(self.more.iter())
    }
}

/// Leases keyed by resource, with a per-client index and an expiry queue.
#[derive(Default)]
pub struct MemoryTable {
    by_resource: HashMap<Resource, Lease>,
    by_client: HashMap<Duid, ClientResources>,
    /// (expires_at, resource) min-heap, so expiry never scans the whole table. Entries are
    /// not removed when a lease changes (a renewal would otherwise cost two tree updates);
    /// an entry is acted on only if the record still ends at that time, otherwise it is a
    /// stale leftover and skipped.
    expiry: BinaryHeap<Reverse<(u64, Resource)>>,
    last_commit: CommitId,
    dirty: bool,
}

impl MemoryTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// A table with room for `leases` records and about `leases / 2` clients before it
    /// grows (a growing hash table rehashes every record; servers size it at start).
    pub fn with_capacity(leases: usize) -> Self {
        MemoryTable {
            by_resource: HashMap::with_capacity(leases),
            by_client: HashMap::with_capacity(leases / 2 + 1),
            expiry: BinaryHeap::with_capacity(leases),
            ..Self::default()
        }
    }

    /// Drops every record but keeps the allocated capacity.
    pub fn clear(&mut self) {
        self.by_resource.clear();
        self.by_client.clear();
        self.expiry.clear();
        self.dirty = true;
    }

    fn unlink_client(&mut self, duid: &Duid, resource: &Resource) {
        if let Some(list) = self.by_client.get_mut(duid) {
            list.remove(resource);
            if list.is_empty() {
                self.by_client.remove(duid);
            }
        }
    }
}

impl LeaseTable for MemoryTable {
    fn ia_leases(&self, duid: &Duid, ia_type: IaType, iaid: u32, out: &mut Vec<Lease>) {
        if let Some(list) = self.by_client.get(duid) {
            out.extend(
                list.iter()
                    .filter_map(|r| self.by_resource.get(r))
                    .filter(|l| l.ia_type == ia_type && l.iaid == iaid)
                    .copied(),
            );
        }
    }

    fn client_leases(&self, duid: &Duid, out: &mut Vec<Lease>) {
        if let Some(list) = self.by_client.get(duid) {
            out.extend(list.iter().filter_map(|r| self.by_resource.get(r)).copied());
        }
    }

    fn by_resource(&self, resource: &Resource) -> Option<Lease> {
        self.by_resource.get(resource).copied()
    }

    fn upsert(&mut self, lease: Lease) -> Result<(), TableError> {
        self.dirty = true;
        let old = match self.by_resource.entry(lease.resource) {
            Entry::Occupied(mut e) => Some(e.insert(lease)),
            Entry::Vacant(e) => {
                e.insert(lease);
                None
            }
        };
        match old {
            // A renewal: same client, same resource; only the expiry may need a new entry.
            Some(old) if old.duid == lease.duid => {
                if old.expires_at != lease.expires_at {
                    self.expiry
                        .push(Reverse((lease.expires_at, lease.resource)));
                }
                return Ok(());
            }
            Some(old) => self.unlink_client(&old.duid, &old.resource),
            None => {}
        }
        self.by_client
            .entry(lease.duid)
            .or_default()
            .push(lease.resource);
        self.expiry
            .push(Reverse((lease.expires_at, lease.resource)));
        Ok(())
    }

    fn remove(&mut self, resource: &Resource) -> Result<(), TableError> {
        if let Some(old) = self.by_resource.remove(resource) {
            self.unlink_client(&old.duid, &old.resource);
            self.dirty = true;
        }
        Ok(())
    }

    fn expire(&mut self, now_secs: u64, budget: usize, freed: &mut Vec<Lease>) -> usize {
        let mut changed = 0;
        while changed < budget {
            let Some(&Reverse((at, resource))) = self.expiry.peek() else {
                break;
            };
            if at > now_secs {
                break;
            }
            self.expiry.pop();
            let Some(mut lease) = self.by_resource.get(&resource).copied() else {
                continue;
            };
            if lease.expires_at != at {
                continue; // stale entry: the lease was renewed or changed since
            }
            changed += 1;
            if lease.state == BindingState::Active {
                // RFC 8415 §18.3: the resource returns to the pool when the valid lifetime
                // ends. The record stays as Expired (history for a returning client) until
                // the same deadline passes again, which the store may use as a grace period.
                lease.state = BindingState::Expired;
                lease.expires_at = now_secs.saturating_add(u64::from(lease.valid_lifetime));
                let _ = self.upsert(lease);
                freed.push(lease);
            } else {
                let _ = self.remove(&resource);
            }
        }
        changed
    }

    fn len(&self) -> usize {
        self.by_resource.len()
    }

    fn for_each(&self, f: &mut dyn FnMut(&Lease)) {
        for l in self.by_resource.values() {
            f(l);
        }
    }

    fn commit(&mut self) -> Result<Option<CommitId>, TableError> {
        if !self.dirty {
            return Ok(None);
        }
        self.dirty = false;
        self.last_commit += 1;
        Ok(Some(self.last_commit))
    }

    fn durable(&mut self, _wait: bool) -> Result<CommitId, TableError> {
        Ok(self.last_commit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    fn lease(n: u8, expires_at: u64) -> Lease {
        Lease {
            resource: Resource::address(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(n))),
            ia_type: IaType::Na,
            duid: Duid::new(&[0, 3, 0, 1, n]).unwrap(),
            iaid: 1,
            state: BindingState::Active,
            preferred_lifetime: 50,
            valid_lifetime: 100,
            cltt: expires_at.saturating_sub(100),
            expires_at,
            subnet: 0,
            partner_lifetime: 0,
            update_pending: false,
        }
    }

    #[test]
    fn renewed_leases_do_not_expire_at_their_old_time() {
        let mut t = MemoryTable::new();
        t.upsert(lease(1, 100)).unwrap();
        t.upsert(lease(2, 100)).unwrap();
        t.upsert(lease(1, 300)).unwrap(); // renewed
        let mut freed = Vec::new();
        assert_eq!(t.expire(150, 10, &mut freed), 1);
        assert_eq!(freed.len(), 1);
        assert_eq!(freed[0].duid, lease(2, 0).duid);
        assert_eq!(
            t.by_resource(&lease(1, 0).resource).unwrap().state,
            BindingState::Active
        );
        // Lease 2's Expired record goes at 150 + 100; lease 1 expires at 300.
        freed.clear();
        assert_eq!(t.expire(300, 10, &mut freed), 2);
        assert!(t.by_resource(&lease(2, 0).resource).is_none());
        assert_eq!(freed.len(), 1);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_resource_moving_to_another_client_leaves_the_old_index() {
        let mut t = MemoryTable::new();
        t.upsert(lease(1, 100)).unwrap();
        let mut other = lease(2, 200);
        other.resource = lease(1, 0).resource;
        t.upsert(other).unwrap();
        let mut out = Vec::new();
        t.client_leases(&lease(1, 0).duid, &mut out);
        assert!(out.is_empty());
        t.client_leases(&other.duid, &mut out);
        assert_eq!(out, vec![other]);
        assert_eq!(t.len(), 1);
    }
}

#[cfg(test)]
mod client_list_tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv6Addr;

    proptest! {
        #[test]
        fn client_resources_behave_like_a_set(ops in proptest::collection::vec((any::<bool>(), 0u8..6), 0..60)) {
            let mut list = ClientResources::default();
            let mut model: Vec<Resource> = Vec::new();
            for (add, n) in ops {
                let r = Resource::address(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(n)));
                if add && !model.contains(&r) {
                    list.push(r);
                    model.push(r);
                } else if !add {
                    list.remove(&r);
                    model.retain(|x| *x != r);
                }
                let mut got: Vec<Resource> = list.iter().copied().collect();
                got.sort();
                let mut want = model.clone();
                want.sort();
                prop_assert_eq!(got, want);
                prop_assert_eq!(list.is_empty(), model.is_empty());
            }
        }
    }
}
