//! In-memory lease table (durability mode `memory`, tests, and the engine's unit tests).
//!
//! Layout, chosen for the serving path (a new client's Request writes two leases, a Renew
//! rewrites them): the records live in one dense `Vec<Lease>` (a new lease is an append,
//! sequential memory), and the two indexes hold only small slot numbers, so an insert
//! touches a few cache lines instead of copying a ~200-byte record into a random hash
//! bucket. The client index is keyed by a 64-bit digest of the DUID rather than the
//! 131-byte inline DUID; lookups confirm the DUID on the record, so two DUIDs with the same
//! digest only share a slot list.

use hashbrown::hash_map::Entry;
use hashbrown::HashMap;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::BuildHasher;

use super::{BindingState, CommitId, Duid, IaType, Lease, LeaseTable, Resource, TableError};

/// A record's position in [`MemoryTable::leases`].
type Slot = u32;

/// The record slots of the clients with one DUID digest: almost always one client with one
/// address and one prefix, kept inline so a new client costs no allocation.
#[derive(Clone, Debug, Default)]
struct ClientSlots {
    inline: [Slot; 2],
    len: u8,
    more: Vec<Slot>,
}

impl ClientSlots {
    fn push(&mut self, s: Slot) {
        if usize::from(self.len) < self.inline.len() {
            self.inline[usize::from(self.len)] = s;
            self.len += 1;
        } else {
            self.more.push(s);
        }
    }

    fn remove(&mut self, s: Slot) {
        let n = usize::from(self.len);
        if let Some(i) = self.inline[..n].iter().position(|&x| x == s) {
            match self.more.pop() {
                Some(last) => self.inline[i] = last,
                None => {
                    self.inline[i] = self.inline[n - 1];
                    self.len -= 1;
                }
            }
        } else {
            self.more.retain(|&x| x != s);
        }
    }

    /// Renames slot `from` to `to` (the record moved).
    fn replace(&mut self, from: Slot, to: Slot) {
        let n = usize::from(self.len);
        if let Some(x) = self.inline[..n]
            .iter_mut()
            .chain(self.more.iter_mut())
            .find(|x| **x == from)
        {
            *x = to;
        }
    }

    fn is_empty(&self) -> bool {
        self.len == 0 && self.more.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = Slot> + '_ {
        self.inline[..usize::from(self.len)]
            .iter()
            .chain(self.more.iter())
            .copied()
    }
}

/// One expiry-queue entry. Ordered by time alone: leases granted now end after every
/// earlier grant with the same lifetime, so a new entry stays at the bottom of the heap
/// instead of climbing past equal deadlines by resource order (one cache miss per level).
#[derive(Clone, Copy, Debug)]
struct Deadline {
    at: u64,
    resource: Resource,
}

impl PartialEq for Deadline {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Deadline {}
impl PartialOrd for Deadline {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Deadline {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.at.cmp(&other.at)
    }
}

/// Leases in a dense vector, indexed by resource and by client, with an expiry queue.
#[derive(Default)]
pub struct MemoryTable {
    leases: Vec<Lease>,
    by_resource: HashMap<Resource, Slot>,
    /// DUID digest ([`MemoryTable::digest`]) → slots of that digest's clients.
    by_client: HashMap<u64, ClientSlots>,
    /// Min-heap of deadlines, so expiry never scans the whole table. Entries are not
    /// removed when a lease changes (a renewal would otherwise cost two tree updates); an
    /// entry is acted on only if the record still ends at that time, otherwise it is a
    /// stale leftover and skipped.
    expiry: BinaryHeap<Reverse<Deadline>>,
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
            leases: Vec::with_capacity(leases),
            by_resource: HashMap::with_capacity(leases),
            by_client: HashMap::with_capacity(leases / 2 + 1),
            expiry: BinaryHeap::with_capacity(leases),
            ..Self::default()
        }
    }

    /// Drops every record but keeps the allocated capacity.
    pub fn clear(&mut self) {
        self.leases.clear();
        self.by_resource.clear();
        self.by_client.clear();
        self.expiry.clear();
        self.dirty = true;
    }

    /// The client-index key of `duid` (process-local; never stored).
    fn digest(&self, duid: &Duid) -> u64 {
        self.by_client.hasher().hash_one(duid.as_bytes())
    }

    /// The records of `duid` (all IAs).
    fn client_records<'s>(&'s self, duid: &'s Duid) -> impl Iterator<Item = &'s Lease> + 's {
        self.by_client
            .get(&self.digest(duid))
            .into_iter()
            .flat_map(ClientSlots::iter)
            .map(|s| &self.leases[s as usize])
            .filter(move |l| l.duid == *duid)
    }

    fn push_deadline(&mut self, lease: &Lease) {
        self.expiry.push(Reverse(Deadline {
            at: lease.expires_at,
            resource: lease.resource,
        }));
    }

    fn link_client(&mut self, duid: &Duid, slot: Slot) {
        let d = self.digest(duid);
        self.by_client.entry(d).or_default().push(slot);
    }

    fn unlink_client(&mut self, duid: &Duid, slot: Slot) {
        let d = self.digest(duid);
        if let Some(list) = self.by_client.get_mut(&d) {
            list.remove(slot);
            if list.is_empty() {
                self.by_client.remove(&d);
            }
        }
    }
}

impl LeaseTable for MemoryTable {
    fn ia_leases(&self, duid: &Duid, ia_type: IaType, iaid: u32, out: &mut Vec<Lease>) {
        out.extend(
            self.client_records(duid)
                .filter(|l| l.ia_type == ia_type && l.iaid == iaid)
                .copied(),
        );
    }

    fn client_leases(&self, duid: &Duid, out: &mut Vec<Lease>) {
        out.extend(self.client_records(duid).copied());
    }

    fn by_resource(&self, resource: &Resource) -> Option<Lease> {
        self.by_resource
            .get(resource)
            .map(|&s| self.leases[s as usize])
    }

    fn upsert(&mut self, lease: Lease) -> Result<(), TableError> {
        self.dirty = true;
        let slot = match self.by_resource.entry(lease.resource) {
            Entry::Occupied(e) => {
                let slot = *e.get();
                let old = &mut self.leases[slot as usize];
                let (old_duid, old_expires) = (old.duid, old.expires_at);
                *old = lease;
                if old_duid == lease.duid {
                    // A renewal: same client, same resource; only the expiry may need a new
                    // entry.
                    if old_expires != lease.expires_at {
                        self.push_deadline(&lease);
                    }
                    return Ok(());
                }
                self.unlink_client(&old_duid, slot);
                slot
            }
            Entry::Vacant(e) => {
                let Ok(slot) = Slot::try_from(self.leases.len()) else {
                    return Err(TableError::Full);
                };
                e.insert(slot);
                self.leases.push(lease);
                slot
            }
        };
        self.link_client(&lease.duid, slot);
        self.push_deadline(&lease);
        Ok(())
    }

    fn remove(&mut self, resource: &Resource) -> Result<(), TableError> {
        let Some(slot) = self.by_resource.remove(resource) else {
            return Ok(());
        };
        self.dirty = true;
        let duid = self.leases[slot as usize].duid;
        self.unlink_client(&duid, slot);
        // Keep the vector dense: the last record moves into the hole.
        let last = (self.leases.len() - 1) as Slot;
        self.leases.swap_remove(slot as usize);
        if slot != last {
            let moved = self.leases[slot as usize];
            if let Some(s) = self.by_resource.get_mut(&moved.resource) {
                *s = slot;
            }
            let d = self.digest(&moved.duid);
            if let Some(list) = self.by_client.get_mut(&d) {
                list.replace(last, slot);
            }
        }
        Ok(())
    }

    fn expire(&mut self, now_secs: u64, budget: usize, freed: &mut Vec<Lease>) -> usize {
        let mut changed = 0;
        while changed < budget {
            let Some(&Reverse(Deadline { at, resource })) = self.expiry.peek() else {
                break;
            };
            if at > now_secs {
                break;
            }
            self.expiry.pop();
            let Some(mut lease) = self.by_resource(&resource) else {
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
        self.leases.len()
    }

    fn for_each(&self, f: &mut dyn FnMut(&Lease)) {
        for l in &self.leases {
            f(l);
        }
    }

    fn record_at(&self, pos: usize) -> Option<&Lease> {
        self.leases.get(pos)
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
mod model_tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::net::Ipv6Addr;

    #[derive(Clone, Debug)]
    enum Op {
        /// Lease resource `r` to client `c` (IA_NA or IA_PD by `pd`), ending at `end`.
        Upsert {
            r: u8,
            c: u8,
            pd: bool,
            end: u64,
        },
        Remove {
            r: u8,
        },
        Expire {
            now: u64,
            budget: usize,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..12, 0u8..5, any::<bool>(), 1u64..40)
                .prop_map(|(r, c, pd, end)| Op::Upsert { r, c, pd, end }),
            2 => (0u8..12).prop_map(|r| Op::Remove { r }),
            1 => (0u64..60, 1usize..6).prop_map(|(now, budget)| Op::Expire { now, budget }),
        ]
    }

    fn resource(r: u8) -> Resource {
        let a = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(r));
        // Even numbers are prefixes, so both kinds share the table.
        if r % 2 == 0 {
            Resource::prefix(a, 56)
        } else {
            Resource::address(a)
        }
    }

    fn duid(c: u8) -> Duid {
        Duid::new(&[0, 3, 0, 1, c]).unwrap()
    }

    proptest! {
        /// The slot bookkeeping (dense vector, swap-remove, digest-keyed client lists)
        /// behaves like a plain map from resource to lease.
        #[test]
        fn behaves_like_a_map(ops in proptest::collection::vec(op(), 0..80)) {
            let mut t = MemoryTable::new();
            let mut model: BTreeMap<Resource, Lease> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Upsert { r, c, pd, end } => {
                        let l = Lease {
                            resource: resource(r),
                            ia_type: if pd { IaType::Pd } else { IaType::Na },
                            duid: duid(c),
                            iaid: u32::from(c % 2),
                            state: BindingState::Active,
                            preferred_lifetime: 10,
                            valid_lifetime: 20,
                            cltt: 0,
                            expires_at: end,
                            subnet: 0,
                            partner_lifetime: 0,
                            update_pending: false,
                        };
                        t.upsert(l).unwrap();
                        model.insert(l.resource, l);
                    }
                    Op::Remove { r } => {
                        t.remove(&resource(r)).unwrap();
                        model.remove(&resource(r));
                    }
                    Op::Expire { now, budget } => {
                        let mut freed = Vec::new();
                        t.expire(now, budget, &mut freed);
                        for f in &freed {
                            prop_assert_eq!(f.state, BindingState::Expired);
                            prop_assert!(model.contains_key(&f.resource));
                        }
                        // The model follows the table's choice of which records moved on,
                        // after checking each one was due.
                        for (r, l) in model.clone() {
                            match t.by_resource(&r) {
                                Some(now_l) if now_l != l => {
                                    prop_assert!(l.expires_at <= now);
                                    model.insert(r, now_l);
                                }
                                None => {
                                    prop_assert!(l.expires_at <= now);
                                    model.remove(&r);
                                }
                                Some(_) => {}
                            }
                        }
                    }
                }
                prop_assert_eq!(t.len(), model.len());
                for r in 0..12 {
                    prop_assert_eq!(t.by_resource(&resource(r)), model.get(&resource(r)).copied());
                }
                for c in 0..5 {
                    let mut got = Vec::new();
                    t.client_leases(&duid(c), &mut got);
                    got.sort_by_key(|l| l.resource);
                    let want: Vec<Lease> =
                        model.values().filter(|l| l.duid == duid(c)).copied().collect();
                    prop_assert_eq!(&got, &want);
                    for ia_type in [IaType::Na, IaType::Pd] {
                        let mut got = Vec::new();
                        t.ia_leases(&duid(c), ia_type, u32::from(c % 2), &mut got);
                        got.sort_by_key(|l| l.resource);
                        let want: Vec<Lease> =
                            want.iter().filter(|l| l.ia_type == ia_type).copied().collect();
                        prop_assert_eq!(got, want);
                    }
                }
                let mut all = Vec::new();
                t.for_each(&mut |l| all.push(*l));
                all.sort_by_key(|l| l.resource);
                prop_assert_eq!(all, model.values().copied().collect::<Vec<_>>());
            }
        }

        #[test]
        fn client_slots_behave_like_a_set(ops in proptest::collection::vec((any::<bool>(), 0u32..6), 0..60)) {
            let mut list = ClientSlots::default();
            let mut model: Vec<Slot> = Vec::new();
            for (add, s) in ops {
                if add && !model.contains(&s) {
                    list.push(s);
                    model.push(s);
                } else if !add {
                    list.remove(s);
                    model.retain(|x| *x != s);
                }
                let mut got: Vec<Slot> = list.iter().collect();
                got.sort();
                let mut want = model.clone();
                want.sort();
                prop_assert_eq!(got, want);
                prop_assert_eq!(list.is_empty(), model.is_empty());
            }
        }
    }
}
