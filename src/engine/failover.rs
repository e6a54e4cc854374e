//! The engine's side of an RFC 8156 failover relationship.
//!
//! Without failover none of this runs: the engine serves with
//! [`ServiceScope::standalone`](crate::failover::ServiceScope::standalone) and every check
//! below is one `role.is_some()` test. With failover the control core (or the simulation)
//! keeps the engine and its partner endpoint in step through four hooks:
//!
//! * [`Engine::set_scope`]: the endpoint state's [`ServiceScope`](crate::failover::ServiceScope)
//!   (which messages to answer, which half of the address pools and which delegable
//!   prefixes to allocate from, the MCLT clamp), handed over on every change;
//! * [`Engine::set_prefix_status`]: the FREE / FREE-BACKUP split of the delegable prefixes
//!   (§4.2.2), on the endpoint's `PoolChanged`;
//! * [`Engine::drain_binding_updates`]: the resources whose records the engine changed
//!   (grants, renewals, releases, expiries), for the endpoint's lazy BNDUPDs (§4.3);
//! * [`Engine::binding_changed`]: a record the endpoint wrote or removed (a partner's
//!   binding stored from BNDUPD or UPDREQALL, a lease freed by the partner's
//!   acknowledgement), so the prefix bitmaps follow the table. [`ChangeLog`] collects
//!   those resources around any endpoint call that is handed the table.
//!
//! The rules the engine applies itself under failover: EXPIRED and RELEASED records keep
//! their resource until the partner acknowledges them (§7.5.5, [`super::occupies`]), a
//! Renew/Rebind of a resource this server has no binding for keeps the client on it
//! whichever partner owns it ([`Engine::renew_unknown`], §4.2.1), and PARTNER-DOWN
//! delegates its own prefixes first (§8.4.1, in `take_prefix`).

use std::cmp::Reverse;
use std::net::Ipv6Addr;

use super::{ia_resources, occupies, Client, Engine, IaRequest};
use crate::config::Subnet;
use crate::failover::{binding as fo_binding, PoolStatus};
use crate::lease::{BindingState, CommitId, Duid, IaType, Lease, LeaseTable, Resource, TableError};
use crate::time::Timestamp;

impl Engine {
    /// Records the pool status of a free delegable prefix (RFC 8156 §4.2.2: FREE is the
    /// primary's, FREE-BACKUP the secondary's, a prefix being reclaimed nobody's). The
    /// control core hands over the endpoint's split whenever it changes; prefixes never
    /// named are FREE.
    pub fn set_prefix_status(&mut self, prefix: Resource, status: PoolStatus) {
        match status {
            PoolStatus::Free => {
                self.prefix_status.remove(&prefix);
            }
            s => {
                self.prefix_status.insert(prefix, s);
            }
        }
    }

    /// The resources whose lease records the engine changed since the last call, each to
    /// be handed to the failover endpoint (`Endpoint::lease_changed`) once the table batch
    /// holding the change is durable. Empty without failover.
    pub fn drain_binding_updates(&mut self) -> std::vec::Drain<'_, Resource> {
        self.binding_updates.drain(..)
    }

    /// The record of `resource` in `table` was written or removed outside the engine (by
    /// the failover endpoint): brings the prefix bitmaps in line with it. A prefix a
    /// record now holds is taken, one no record holds is free again. Addresses have no
    /// allocator state.
    pub fn binding_changed(&mut self, resource: &Resource, table: &dyn LeaseTable, now: Timestamp) {
        if !resource.is_prefix()
            || self
                .reservations
                .is_reserved_prefix(resource.addr, resource.prefix_len)
            || self.foreign.contains(resource)
        {
            return;
        }
        let Some((s, i, idx)) =
            Self::locate_prefix(&self.prefixes, resource.addr, resource.prefix_len)
        else {
            return;
        };
        let now_secs = now.secs();
        let failover = self.scope.role.is_some();
        match table.by_resource(resource) {
            Some(l) if occupies(&l, now_secs, failover) => {
                self.prefixes[s][i].take(idx);
                if failover
                    && matches!(l.state, BindingState::Expired | BindingState::Released)
                    && l.expires_at != u64::MAX
                {
                    // An acknowledged record held until a deadline: the table's expiry
                    // removes it then, and `expire` frees the bit.
                    self.held_prefixes.push(Reverse((l.expires_at, *resource)));
                }
            }
            _ => {
                self.prefixes[s][i].release(idx);
            }
        }
    }

    /// [`Engine::expire`] under failover: ACTIVE → EXPIRED keeps the record and its
    /// resource, flagged for the partner (RFC 8156 Figure 2 (8), §7.5.5); the endpoint
    /// frees it on the partner's acknowledgement.
    pub(super) fn expire_under_failover(
        &mut self,
        now: Timestamp,
        table: &mut dyn LeaseTable,
        budget: usize,
    ) -> usize {
        let now_secs = now.secs();
        let mut freed = std::mem::take(&mut self.scratch.freed);
        freed.clear();
        let changed = table.expire(now_secs, budget, &mut freed);
        for l in freed.iter().filter(|l| l.state == BindingState::Expired) {
            let mut e = *l;
            fo_binding::expire(&mut e);
            // A full table cannot refuse a record it already holds; a failed store keeps
            // the table's own EXPIRED record, which still holds the resource here.
            if self.store(table, e).is_err() {
                break;
            }
        }
        self.scratch.freed = freed;
        while let Some(&Reverse((at, r))) = self.held_prefixes.peek() {
            if at > now_secs {
                break;
            }
            self.held_prefixes.pop();
            self.binding_changed(&r, table, now);
        }
        self.counters.leases_expired += changed as u64;
        changed
    }

    /// Under failover, a Renew/Rebind of an IA this server holds a binding for but whose
    /// message names none of its resources, only others (the client came back through
    /// the partner, which gave it those after this binding): the first named one
    /// [`Engine::renew_unknown`] accepts, which the caller renews instead of the stale
    /// binding (that one ends with lifetime 0). Out of line: never on the path without
    /// failover.
    #[inline(never)]
    pub(super) fn renew_named_instead(
        &mut self,
        table: &dyn LeaseTable,
        client: &Client<'_>,
        ia: &IaRequest<'_>,
        link: &Subnet,
        leases: &[Lease],
        now: u64,
    ) -> Option<Resource> {
        let bound = |r: &Resource| {
            leases
                .iter()
                .any(|l| l.is_bound_at(now) && l.resource == *r)
        };
        if !leases.iter().any(|l| l.is_bound_at(now)) {
            return None;
        }
        let prefixes = ia.ia_type == IaType::Pd;
        let mut named = [Resource::address(Ipv6Addr::UNSPECIFIED); super::MAX_IA_ENTRIES];
        let mut n = 0;
        for r in ia_resources(ia) {
            if bound(&r) {
                // The client names a binding this server holds: nothing to replace.
                return None;
            }
            let on_link = if prefixes {
                r.prefix_len != 0 && link.owns_prefix(r.addr, r.prefix_len)
            } else {
                link.on_link(r.addr)
            };
            if on_link {
                named[n] = r;
                n += 1;
            }
        }
        self.renew_unknown(table, client, link, &named[..n], now)
    }

    /// RFC 8156 §4.2.1 "any server may renew any lease", §4.3 (a partner may have no
    /// record at all of a lease its partner granted): the first of the client's hints in
    /// a Renew/Rebind that is appropriate for the link, this shard's, and not held here
    /// by another client's binding ([`fo_binding::claimable_by`]) is kept, whichever
    /// partner owns it (bit 127, FREE / FREE-BACKUP). Only under failover: without it a
    /// hint is weighed like any request for a new resource.
    pub(super) fn renew_unknown(
        &mut self,
        table: &dyn LeaseTable,
        client: &Client<'_>,
        link: &Subnet,
        hints: &[Resource],
        now: u64,
    ) -> Option<Resource> {
        let shard_only =
            crate::alloc::Partition::new(self.shard.index, self.shard.count, Default::default());
        for r in hints {
            if self.foreign.contains(r) {
                continue;
            }
            let claimable =
                fo_binding::claimable_by(table.by_resource(r).as_ref(), &client.duid, now);
            if !claimable {
                continue;
            }
            if r.is_prefix() {
                if self.reservations.is_reserved_prefix(r.addr, r.prefix_len)
                    || !link.owns_prefix(r.addr, r.prefix_len)
                {
                    continue;
                }
                let Some(maps) = self.prefixes.get_mut(link.index as usize) else {
                    continue;
                };
                // Only a prefix of this shard's bitmaps (another shard owns the others);
                // its bit may already be taken by the record being claimed.
                if let Some((m, idx)) = maps
                    .iter_mut()
                    .find_map(|m| m.index_of(r.addr, r.prefix_len).map(|i| (m, i)))
                {
                    m.take(idx);
                    return Some(*r);
                }
            } else if link.pools.iter().any(|p| p.contains(r.addr))
                && !link.exclude.contains(&r.addr)
                && !self.reservations.is_reserved_address(r.addr)
                && shard_only.owns_address(r.addr)
            {
                return Some(*r);
            }
        }
        None
    }
}

/// A [`LeaseTable`] that forwards to another and notes the resource of every record
/// written or removed through it, so a driver can tell the engine what the failover
/// endpoint changed ([`Engine::binding_changed`]): the driver hands the endpoint a
/// `ChangeLog::new(&mut table, &mut changed)` instead of the table, then calls
/// `engine.binding_changed(&r, &table, now)` for every resource `r` drained from `changed`
/// (tests/failover_sim.rs does exactly this).
pub struct ChangeLog<'a> {
    table: &'a mut dyn LeaseTable,
    changed: &'a mut Vec<Resource>,
}

impl<'a> ChangeLog<'a> {
    pub fn new(table: &'a mut dyn LeaseTable, changed: &'a mut Vec<Resource>) -> ChangeLog<'a> {
        ChangeLog { table, changed }
    }
}

impl LeaseTable for ChangeLog<'_> {
    fn ia_leases(&self, duid: &Duid, ia_type: IaType, iaid: u32, out: &mut Vec<Lease>) {
        self.table.ia_leases(duid, ia_type, iaid, out)
    }

    fn client_leases(&self, duid: &Duid, out: &mut Vec<Lease>) {
        self.table.client_leases(duid, out)
    }

    fn by_resource(&self, resource: &Resource) -> Option<Lease> {
        self.table.by_resource(resource)
    }

    fn upsert(&mut self, lease: Lease) -> Result<(), TableError> {
        self.changed.push(lease.resource);
        self.table.upsert(lease)
    }

    fn remove(&mut self, resource: &Resource) -> Result<(), TableError> {
        self.changed.push(*resource);
        self.table.remove(resource)
    }

    fn expire(&mut self, now_secs: u64, budget: usize, freed: &mut Vec<Lease>) -> usize {
        let first = freed.len();
        let n = self.table.expire(now_secs, budget, freed);
        self.changed
            .extend(freed[first..].iter().map(|l| l.resource));
        n
    }

    fn len(&self) -> usize {
        self.table.len()
    }

    fn for_each(&self, f: &mut dyn FnMut(&Lease)) {
        self.table.for_each(f)
    }

    fn record_at(&self, pos: usize) -> Option<&Lease> {
        self.table.record_at(pos)
    }

    fn for_each_resource(&self, f: &mut dyn FnMut(&Resource, BindingState, u64)) {
        self.table.for_each_resource(f)
    }

    fn for_each_resource_in(
        &self,
        first: &Resource,
        last: &Resource,
        f: &mut dyn FnMut(&Resource, BindingState, u64),
    ) {
        self.table.for_each_resource_in(first, last, f)
    }

    fn commit(&mut self) -> Result<Option<CommitId>, TableError> {
        self.table.commit()
    }

    fn durable(&mut self, wait: bool) -> Result<CommitId, TableError> {
        self.table.durable(wait)
    }
}
