//! Binding decisions per IA (RFC 8415 §18.3.1-§18.3.8): which addresses and prefixes a
//! client gets, keeps, or must stop using, and the lease records behind them.

use std::net::Ipv6Addr;

use super::{
    ia_addresses, ia_prefixes, occupies, Client, DropReason, Engine, Entry, IaReply, IaRequest,
    Request,
};
use crate::alloc::allocate_na;
use crate::config::Subnet;
use crate::failover::Role;
use crate::lease::{BindingState, IaType, Lease, LeaseTable, Resource, TableError};
use crate::wire::{StatusCode, INFINITY};

/// How far a message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// Solicit without Rapid Commit: say what would be assigned, store nothing.
    Advertise,
    /// Solicit with Rapid Commit (§18.3.1): assign and store.
    Commit,
    /// Request (§18.3.2): assign and store; addresses off the link are NotOnLink.
    Request,
    /// Renew / Rebind (§18.3.4, §18.3.5): extend; resources off the link get lifetime 0.
    Extend,
}

/// What to do for an IA the client has no binding for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Missing {
    Allocate,
    /// Renew/Rebind when creating bindings is not configured: IA with NoBinding.
    NoBinding,
}

/// IA_TA addresses hash with a different IAID space than IA_NA, so an NA and a TA with the
/// same IAID do not compute the same first candidate.
const TA_SALT: u32 = 0x7461_0000;

fn expiry(now: u64, valid: u32) -> u64 {
    if valid == INFINITY {
        u64::MAX
    } else {
        now.saturating_add(u64::from(valid))
    }
}

/// Seconds left of a lifetime granted at `cltt`, for a lease that cannot be extended.
fn remaining(l: &Lease, lifetime: u32, now: u64) -> u32 {
    if lifetime == INFINITY {
        return INFINITY;
    }
    let end = l.cltt.saturating_add(u64::from(lifetime));
    end.saturating_sub(now).min(u64::from(u32::MAX - 1)) as u32
}

impl Engine {
    pub(super) fn assign_all(
        &mut self,
        req: &Request<'_>,
        client: &Client<'_>,
        mode: Mode,
        missing: Missing,
        now: u64,
        table: &mut dyn LeaseTable,
    ) -> Result<(), DropReason> {
        let Some(link) = client.link else {
            return Err(DropReason::NoLink);
        };
        for ia in req.ias() {
            let mut leases = std::mem::take(&mut self.scratch.leases);
            leases.clear();
            table.ia_leases(&client.duid, ia.ia_type, ia.iaid, &mut leases);
            let r = match ia.ia_type {
                IaType::Na | IaType::Ta => {
                    self.assign_address(ia, client, link, &leases, mode, missing, now, table)
                }
                IaType::Pd => {
                    self.assign_prefix(ia, client, link, &leases, mode, missing, now, table)
                }
            };
            self.scratch.leases = leases;
            r?;
        }
        Ok(())
    }

    fn push_status(&mut self, ia: IaRequest<'_>, first: usize, status: StatusCode) {
        // A status IA carries no addresses (RFC 8415 §18.3.2 "with no addresses").
        self.scratch.entries.truncate(first);
        self.scratch.ias.push(IaReply {
            ia_type: ia.ia_type,
            iaid: ia.iaid,
            first,
            len: 0,
            status: Some((status, super::status_text(status))),
        });
    }

    fn push_entry(&mut self, resource: Resource, preferred: u32, valid: u32) {
        self.scratch.entries.push(Entry {
            resource,
            preferred,
            valid,
        });
    }

    fn finish_ia(&mut self, ia: IaRequest<'_>, first: usize) {
        self.scratch.ias.push(IaReply {
            ia_type: ia.ia_type,
            iaid: ia.iaid,
            first,
            len: self.scratch.entries.len() - first,
            status: None,
        });
    }

    /// Whether `r` may be given to IA `(client, ia)`: nobody else holds it, it is not
    /// excluded, not declined, not a foreign shard's.
    fn free_for(
        &self,
        table: &dyn LeaseTable,
        r: Resource,
        client: &Client<'_>,
        ia: &IaRequest<'_>,
        now: u64,
    ) -> bool {
        if self.foreign.contains(&r) {
            return false;
        }
        match table.by_resource(&r) {
            None => true,
            Some(l) => {
                !occupies(&l, now)
                    || (l.state == BindingState::Active
                        && l.duid == client.duid
                        && l.ia_type == ia.ia_type
                        && l.iaid == ia.iaid)
            }
        }
    }

    /// Whether an address can be handed out dynamically by this shard on `link`.
    fn dynamic_address_ok(&self, link: &Subnet, a: Ipv6Addr) -> bool {
        link.pools.iter().any(|p| p.contains(a))
            && self.partition.owns_address(a)
            && !self.reservations.is_reserved_address(a)
            && !link.exclude.contains(&a)
    }

    /// Writes a lease; `Ok(false)` when the table is full (the caller answers with a
    /// status), `Err` when the store failed.
    fn store(&mut self, table: &mut dyn LeaseTable, lease: Lease) -> Result<bool, DropReason> {
        match table.upsert(lease) {
            Ok(()) => {
                self.counters.leases_committed += 1;
                Ok(true)
            }
            Err(TableError::Full) => {
                self.counters.store_full += 1;
                Ok(false)
            }
            Err(TableError::Io) => Err(DropReason::StoreFailed),
        }
    }

    fn new_lease(
        &self,
        client: &Client<'_>,
        ia: &IaRequest<'_>,
        link: &Subnet,
        resource: Resource,
        now: u64,
    ) -> Lease {
        Lease {
            resource,
            ia_type: ia.ia_type,
            duid: client.duid,
            iaid: ia.iaid,
            state: BindingState::Active,
            preferred_lifetime: link.preferred_lifetime,
            valid_lifetime: link.valid_lifetime,
            cltt: now,
            expires_at: expiry(now, link.valid_lifetime),
            subnet: link.index,
            partner_lifetime: 0,
            update_pending: true,
        }
    }

    /// Ends a binding the client must stop using (moved link, reservation changed): it is
    /// returned with lifetime 0 and its record becomes Released.
    fn retire(
        &mut self,
        table: &mut dyn LeaseTable,
        l: &Lease,
        mode: Mode,
        now: u64,
    ) -> Result<(), DropReason> {
        if mode == Mode::Advertise {
            return Ok(());
        }
        self.push_entry(l.resource, 0, 0);
        let mut r = *l;
        r.state = BindingState::Released;
        r.cltt = now;
        r.expires_at = now;
        r.update_pending = true;
        self.store(table, r)?;
        self.release_resource(&l.resource);
        Ok(())
    }

    /// Grants, extends or stores `lease` and adds its entry; handles a full table.
    #[allow(clippy::too_many_arguments)]
    fn grant(
        &mut self,
        table: &mut dyn LeaseTable,
        ia: IaRequest<'_>,
        first: usize,
        mut lease: Lease,
        existing: Option<Lease>,
        mode: Mode,
        now: u64,
    ) -> Result<(), DropReason> {
        if self.scope.mclt_applies() {
            // RFC 8156 §4.4: never promise a client more than MCLT past what the partner
            // has acknowledged.
            let valid =
                self.scope
                    .valid_lifetime(lease.valid_lifetime, lease.partner_lifetime, now);
            lease.valid_lifetime = valid;
            lease.preferred_lifetime =
                crate::failover::mclt::preferred_lifetime(lease.preferred_lifetime, valid);
        }
        if mode != Mode::Advertise {
            lease.cltt = now;
            lease.state = BindingState::Active;
            lease.expires_at = expiry(now, lease.valid_lifetime);
            lease.update_pending = true;
            if !self.store(table, lease)? {
                match existing {
                    // Full: updates to existing records may fail too; the client keeps what
                    // it was granted, no more (RFC 8415 §18.3.4 "unable to extend").
                    Some(old) => {
                        let p = remaining(&old, old.preferred_lifetime, now);
                        let v = remaining(&old, old.valid_lifetime, now);
                        self.push_entry(old.resource, p, v);
                        self.finish_ia(ia, first);
                        return Ok(());
                    }
                    None => {
                        self.release_resource(&lease.resource);
                        let st = if lease.resource.is_prefix() {
                            StatusCode::NoPrefixAvail
                        } else {
                            StatusCode::NoAddrsAvail
                        };
                        self.push_status(ia, first, st);
                        return Ok(());
                    }
                }
            }
        }
        self.push_entry(
            lease.resource,
            lease.preferred_lifetime,
            lease.valid_lifetime,
        );
        self.finish_ia(ia, first);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn assign_address(
        &mut self,
        ia: IaRequest<'_>,
        client: &Client<'_>,
        link: &Subnet,
        leases: &[Lease],
        mode: Mode,
        missing: Missing,
        now: u64,
        table: &mut dyn LeaseTable,
    ) -> Result<(), DropReason> {
        let first = self.scratch.entries.len();
        if ia.ia_type == IaType::Ta && !link.temporary_addresses {
            // RFC 8415 §21.5: IA_TA is only served where configured.
            self.push_status(ia, first, StatusCode::NoAddrsAvail);
            return Ok(());
        }
        let config = self.config.clone();
        let reserved = match (ia.ia_type, client.reservation) {
            (IaType::Na, Some(i)) => config.reservations[i]
                .addresses
                .iter()
                .copied()
                .find(|a| link.on_link(*a)),
            _ => None,
        };
        let bound = |l: &&Lease| l.is_bound_at(now);
        let mut kept: Option<Lease> = None;
        for l in leases.iter().filter(bound) {
            let a = l.resource.addr;
            let appropriate = match reserved {
                Some(r) => a == r,
                None => link.pools.iter().any(|p| p.contains(a)) && !link.exclude.contains(&a),
            };
            if appropriate && kept.is_none() {
                kept = Some(*l);
            } else {
                // RFC 8415 §18.3.4/§18.3.5: no longer appropriate for the link → lifetime 0.
                self.retire(table, l, mode, now)?;
            }
        }
        let mut hints = [Ipv6Addr::UNSPECIFIED; super::MAX_IA_ENTRIES];
        let mut n_hints = 0;
        for a in ia_addresses(ia.options) {
            if leases.iter().filter(bound).any(|l| l.resource.addr == a) {
                continue;
            }
            if !link.on_link(a) {
                match mode {
                    // RFC 8415 §18.3.2: "MUST return the IA ... with NotOnLink".
                    Mode::Request => {
                        self.push_status(ia, first, StatusCode::NotOnLink);
                        return Ok(());
                    }
                    Mode::Extend => self.push_entry(Resource::address(a), 0, 0),
                    Mode::Advertise | Mode::Commit => {}
                }
            } else if kept.is_some() {
                // On the link but not this client's: tell it not to use it.
                if mode == Mode::Extend {
                    self.push_entry(Resource::address(a), 0, 0);
                }
            } else {
                hints[n_hints] = a;
                n_hints += 1;
            }
        }
        if let Some(l) = kept {
            let mut lease = l;
            lease.preferred_lifetime = link.preferred_lifetime;
            lease.valid_lifetime = link.valid_lifetime;
            lease.subnet = link.index;
            return self.grant(table, ia, first, lease, Some(l), mode, now);
        }
        if missing == Missing::NoBinding && !leases.iter().any(|l| l.is_bound_at(now)) {
            self.push_status(ia, first, StatusCode::NoBinding);
            return Ok(());
        }
        if !self.allow_new {
            // RFC 8156 §8.7.1 (RECOVER-DONE): existing leases only.
            self.push_status(ia, first, StatusCode::NoAddrsAvail);
            return Ok(());
        }
        let chosen = reserved
            .filter(|r| self.free_for(table, Resource::address(*r), client, &ia, now))
            .or_else(|| {
                // A client's hint (RFC 8415 §18.3.1), or the address it renews after the
                // server lost its binding: honour it when this shard may hand it out.
                hints[..n_hints].iter().copied().find(|a| {
                    self.dynamic_address_ok(link, *a)
                        && self.free_for(table, Resource::address(*a), client, &ia, now)
                })
            })
            .or_else(|| {
                let iaid = if ia.ia_type == IaType::Ta {
                    ia.iaid ^ TA_SALT
                } else {
                    ia.iaid
                };
                let tbl: &dyn LeaseTable = table;
                link.pools.iter().find_map(|pool| {
                    allocate_na(client.duid.as_bytes(), iaid, pool, &self.partition, |a| {
                        !self.reservations.is_reserved_address(a)
                            && !link.exclude.contains(&a)
                            && self.free_for(tbl, Resource::address(a), client, &ia, now)
                    })
                })
            })
            // RFC 8156 §4.2.1: the failover state decides whether new addresses are given.
            .filter(|a| Some(*a) == reserved || self.scope.may_allocate_address(*a));
        match chosen {
            Some(a) => {
                let lease = self.new_lease(client, &ia, link, Resource::address(a), now);
                self.grant(table, ia, first, lease, None, mode, now)
            }
            None => {
                self.push_status(ia, first, StatusCode::NoAddrsAvail);
                Ok(())
            }
        }
    }

    /// Takes a free prefix index from the link's bitmaps: the exact hint, else the client's
    /// previous prefix, else any, from the pools whose delegated length is closest to the
    /// length hint (RFC 8168 §3).
    fn take_prefix(
        &mut self,
        table: &dyn LeaseTable,
        link: &Subnet,
        exact: &[(Ipv6Addr, u8)],
        previous: &[Lease],
        len_hint: Option<u8>,
        now: u64,
    ) -> Option<Resource> {
        let s = link.index as usize;
        let reservations = &self.reservations;
        let foreign = &self.foreign;
        let scope = self.scope;
        let backup = &self.backup_prefixes;
        let maps = self.prefixes.get_mut(s)?;
        let usable = |p: Ipv6Addr, len: u8| {
            let r = Resource::prefix(p, len);
            // RFC 8156 §4.2.2: FREE prefixes are the primary's, FREE-BACKUP the secondary's.
            let owner = if backup.contains(&r) {
                Role::Secondary
            } else {
                Role::Primary
            };
            scope.may_allocate_prefix(owner, now)
                && !reservations.is_reserved_prefix(p, len)
                && !foreign.contains(&Resource::prefix(p, len))
                && table
                    .by_resource(&Resource::prefix(p, len))
                    .is_none_or(|l| !occupies(&l, now))
        };
        let wanted = exact.iter().copied().chain(
            previous
                .iter()
                .map(|l| (l.resource.addr, l.resource.prefix_len)),
        );
        for (p, len) in wanted {
            for m in maps.iter_mut() {
                if let Some(idx) = m.index_of(p, len) {
                    if m.is_free(idx) && usable(p, len) && m.take(idx) {
                        return Some(Resource::prefix(p, len));
                    }
                }
            }
        }
        let mut order: [usize; 16] = [0; 16];
        let n = maps.len().min(16);
        for (i, o) in order.iter_mut().enumerate().take(n) {
            *o = i;
        }
        if let Some(h) = len_hint {
            // Closest delegated length first; ties prefer the shorter (bigger) prefix.
            order[..n].sort_by_key(|&i| {
                let d = maps[i].pool().delegated_length;
                (d.abs_diff(h), d)
            });
        }
        for &i in &order[..n] {
            let m = &mut maps[i];
            let pool = *m.pool();
            let len = pool.delegated_length;
            if let Some(idx) = m.allocate(|idx| usable(pool.nth(idx), len)) {
                return Some(Resource::prefix(pool.nth(idx), len));
            }
        }
        None
    }

    #[allow(clippy::too_many_arguments)]
    fn assign_prefix(
        &mut self,
        ia: IaRequest<'_>,
        client: &Client<'_>,
        link: &Subnet,
        leases: &[Lease],
        mode: Mode,
        missing: Missing,
        now: u64,
        table: &mut dyn LeaseTable,
    ) -> Result<(), DropReason> {
        let first = self.scratch.entries.len();
        let config = self.config.clone();
        let reserved = client.reservation.and_then(|i| {
            config.reservations[i]
                .prefixes
                .iter()
                .copied()
                .find(|p| link.owns_prefix(p.addr, p.len))
        });
        let mut kept: Option<Lease> = None;
        for l in leases.iter().filter(|l| l.is_bound_at(now)) {
            let r = l.resource;
            let appropriate = match reserved {
                Some(p) => r.addr == p.addr && r.prefix_len == p.len,
                None => link.owns_prefix(r.addr, r.prefix_len),
            };
            if appropriate && kept.is_none() {
                kept = Some(*l);
            } else {
                self.retire(table, l, mode, now)?;
            }
        }
        let mut exact = [(Ipv6Addr::UNSPECIFIED, 0u8); super::MAX_IA_ENTRIES];
        let mut n_exact = 0;
        let mut len_hint = None;
        for (p, len) in ia_prefixes(ia.options) {
            if len != 0 {
                len_hint.get_or_insert(len);
            }
            if p.is_unspecified() {
                continue;
            }
            if leases
                .iter()
                .any(|l| l.is_bound_at(now) && l.resource.addr == p && l.resource.prefix_len == len)
            {
                continue;
            }
            if !link.owns_prefix(p, len) {
                // RFC 8415 §18.3.4/§18.3.5: not appropriate for the link → lifetime 0.
                if mode == Mode::Extend {
                    self.push_entry(Resource::prefix(p, len), 0, 0);
                }
            } else if kept.is_some() {
                if mode == Mode::Extend {
                    self.push_entry(Resource::prefix(p, len), 0, 0);
                }
            } else {
                exact[n_exact] = (p, len);
                n_exact += 1;
            }
        }
        if let Some(l) = kept {
            let mut lease = l;
            lease.preferred_lifetime = link.preferred_lifetime;
            lease.valid_lifetime = link.valid_lifetime;
            lease.subnet = link.index;
            return self.grant(table, ia, first, lease, Some(l), mode, now);
        }
        if missing == Missing::NoBinding && !leases.iter().any(|l| l.is_bound_at(now)) {
            self.push_status(ia, first, StatusCode::NoBinding);
            return Ok(());
        }
        if !self.allow_new {
            self.push_status(ia, first, StatusCode::NoPrefixAvail);
            return Ok(());
        }
        let chosen = match reserved {
            Some(p) if self.free_for(table, Resource::prefix(p.addr, p.len), client, &ia, now) => {
                Some((Resource::prefix(p.addr, p.len), false))
            }
            _ => {
                // Lease stability: a prefix this IA held before (expired or released) is
                // offered again while it is still free.
                let prev: &[Lease] = leases
                    .iter()
                    .position(|l| !l.is_bound_at(now))
                    .map_or(&[], |i| &leases[i..i + 1]);
                self.take_prefix(table, link, &exact[..n_exact], prev, len_hint, now)
                    .map(|r| (r, true))
            }
        };
        match chosen {
            Some((r, from_bitmap)) => {
                if mode == Mode::Advertise && from_bitmap {
                    // Nothing is stored for an Advertise: give the prefix back at once.
                    self.release_resource(&r);
                }
                let lease = self.new_lease(client, &ia, link, r, now);
                self.grant(table, ia, first, lease, None, mode, now)
            }
            None => {
                self.push_status(ia, first, StatusCode::NoPrefixAvail);
                Ok(())
            }
        }
    }

    /// Release (RFC 8415 §18.3.7) and Decline (§18.3.8). Released resources go back to the
    /// pool; declined addresses are Abandoned for the quarantine time.
    pub(super) fn release_all(
        &mut self,
        req: &Request<'_>,
        client: &Client<'_>,
        now: u64,
        table: &mut dyn LeaseTable,
        decline: bool,
    ) -> Result<(), DropReason> {
        let quarantine = self.config.server.decline_quarantine;
        for ia in req.ias() {
            if decline && ia.ia_type == IaType::Pd {
                // Decline is about addresses only (§18.2.8); a prefix cannot be declined.
                continue;
            }
            let mut leases = std::mem::take(&mut self.scratch.leases);
            leases.clear();
            table.ia_leases(&client.duid, ia.ia_type, ia.iaid, &mut leases);
            let mut found = 0;
            let mut result = Ok(());
            for l in leases.iter().filter(|l| l.is_bound_at(now)) {
                let named = if ia.ia_type == IaType::Pd {
                    ia_prefixes(ia.options)
                        .any(|(p, len)| p == l.resource.addr && len == l.resource.prefix_len)
                } else {
                    ia_addresses(ia.options).any(|a| a == l.resource.addr)
                };
                if !named {
                    continue;
                }
                found += 1;
                let mut r = *l;
                r.cltt = now;
                r.update_pending = true;
                if decline {
                    r.state = BindingState::Abandoned;
                    r.expires_at = now.saturating_add(u64::from(quarantine));
                } else {
                    r.state = BindingState::Released;
                    r.expires_at = now;
                }
                if let Err(e) = self.store(table, r) {
                    result = Err(e);
                    break;
                }
                if !decline {
                    self.release_resource(&l.resource);
                }
            }
            self.scratch.leases = leases;
            result?;
            // §18.3.7: "for each IA in the Release message for which the server has no
            // binding information, the server adds an IA option ... NoBinding" (the same
            // for Decline, §18.3.8).
            if found == 0 {
                let first = self.scratch.entries.len();
                self.push_status(ia, first, StatusCode::NoBinding);
            }
        }
        Ok(())
    }
}
