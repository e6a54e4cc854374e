//! Binding decisions per IA (RFC 8415 §18.3.1-§18.3.8): which addresses and prefixes a
//! client gets, keeps, or must stop using, and the lease records behind them.

use std::net::Ipv6Addr;

use super::{
    ia_resources, occupies, Client, DropReason, Engine, Entry, IaReply, IaRequest, Request,
};
use crate::alloc::allocate_na;
use crate::config::Subnet;
use crate::failover::{binding as fo_binding, PoolStatus, Role, ServerState};
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
            let r = self.assign_ia(ia, client, link, &leases, mode, missing, now, table);
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
                !occupies(&l, now, self.scope.role.is_some())
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
    pub(super) fn store(
        &mut self,
        table: &mut dyn LeaseTable,
        lease: Lease,
    ) -> Result<bool, DropReason> {
        match table.upsert(lease) {
            Ok(()) => {
                self.counters.leases_committed += 1;
                if self.scope.role.is_some() {
                    // RFC 8156 §4.3: every change goes to the partner in a lazy BNDUPD.
                    self.binding_updates.push(lease.resource);
                }
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
        if self.scope.role.is_some() {
            // RFC 8156 §7.5.5: held until the partner acknowledges the RELEASED update.
            fo_binding::release(&mut r, now);
            self.store(table, r)?;
            return Ok(());
        }
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

    /// One IA_NA, IA_TA or IA_PD (RFC 8415 §18.3.1-§18.3.5): keep the client's binding
    /// while it is still appropriate for the link, end the others with lifetime 0, weigh
    /// the client's hints, else allocate. Addresses and prefixes differ only in what is
    /// appropriate for the link and where a new resource comes from
    /// ([`Engine::choose_address`], [`Engine::choose_prefix`]).
    #[allow(clippy::too_many_arguments)]
    fn assign_ia(
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
        let prefixes = ia.ia_type == IaType::Pd;
        let unavailable = if prefixes {
            StatusCode::NoPrefixAvail
        } else {
            StatusCode::NoAddrsAvail
        };
        if ia.ia_type == IaType::Ta && !link.temporary_addresses {
            // RFC 8415 §21.5: IA_TA is only served where configured.
            self.push_status(ia, first, unavailable);
            return Ok(());
        }
        let reserved = self.reserved_resource(&ia, client, link);
        let appropriate = |r: &Resource| match reserved {
            Some(x) => *r == x,
            None if prefixes => link.owns_prefix(r.addr, r.prefix_len),
            None => {
                link.pools.iter().any(|p| p.contains(r.addr)) && !link.exclude.contains(&r.addr)
            }
        };
        let bound = |l: &&Lease| l.is_bound_at(now);
        // The binding to keep: the first appropriate one, or with several (e.g. a released
        // binding the failover partner revived, RFC 8156 §7.5.4), the one the client names
        // (RFC 8415 §18.3.4: the addresses "in the IA" are the ones it is using).
        let named_keep = if leases.iter().filter(bound).nth(1).is_some() {
            leases
                .iter()
                .filter(bound)
                .find(|l| appropriate(&l.resource) && ia_resources(&ia).any(|r| r == l.resource))
                .map(|l| l.resource)
        } else {
            None
        };
        // Under failover a Renew/Rebind may name a resource the partner gave this client
        // after the binding this server still holds for the IA: renewed instead of it.
        let renewed = if mode == Mode::Extend
            && self.scope.role.is_some()
            && self.allow_new
            && reserved.is_none()
        {
            self.renew_named_instead(table, client, &ia, link, leases, now)
        } else {
            None
        };
        let mut kept: Option<Lease> = None;
        for l in leases.iter().filter(bound) {
            let wanted = match named_keep {
                Some(r) => l.resource == r,
                None => appropriate(&l.resource),
            };
            if kept.is_none() && renewed.is_none() && wanted {
                kept = Some(*l);
            } else {
                // RFC 8415 §18.3.4/§18.3.5: no longer appropriate for the link → lifetime 0.
                self.retire(table, l, mode, now)?;
            }
        }
        let mut hints = [Resource::address(Ipv6Addr::UNSPECIFIED); super::MAX_IA_ENTRIES];
        let mut n_hints = 0;
        let mut len_hint = None;
        for r in ia_resources(&ia) {
            if prefixes {
                // RFC 8168: `::` with a length only hints at the length.
                if r.prefix_len != 0 {
                    len_hint.get_or_insert(r.prefix_len);
                }
                if r.addr.is_unspecified() {
                    continue;
                }
            }
            if leases.iter().filter(bound).any(|l| l.resource == r) {
                continue;
            }
            let on_link = if prefixes {
                link.owns_prefix(r.addr, r.prefix_len)
            } else {
                link.on_link(r.addr)
            };
            if !on_link {
                match mode {
                    // RFC 8415 §18.3.2: "MUST return the IA ... with NotOnLink" (addresses).
                    Mode::Request if !prefixes => {
                        self.push_status(ia, first, StatusCode::NotOnLink);
                        return Ok(());
                    }
                    Mode::Extend => self.push_entry(r, 0, 0),
                    Mode::Request | Mode::Advertise | Mode::Commit => {}
                }
            } else if kept.is_some() {
                // On the link but not this client's: tell it not to use it.
                if mode == Mode::Extend {
                    self.push_entry(r, 0, 0);
                }
            } else {
                hints[n_hints] = r;
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
            self.push_status(ia, first, unavailable);
            return Ok(());
        }
        let hints = &hints[..n_hints];
        // RFC 8156 §4.2.1 ("any server may renew any lease"), §4.3: under failover a
        // Renew/Rebind of a resource this server has no binding for (the partner granted
        // it and its lazy BNDUPD has not arrived, or never will) keeps the client on it,
        // whichever partner owns it, unless another client holds it here.
        let renewed = match renewed {
            Some(r) => Some(r),
            None if mode == Mode::Extend && self.scope.role.is_some() && reserved.is_none() => {
                self.renew_unknown(table, client, link, hints, now)
            }
            None => None,
        };
        let chosen = if let Some(r) = renewed {
            Some((r, false))
        } else if prefixes {
            self.choose_prefix(
                table, client, &ia, link, reserved, hints, len_hint, leases, now,
            )
        } else {
            self.choose_address(table, client, &ia, link, reserved, hints, now)
                .map(|a| (Resource::address(a), false))
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
                self.push_status(ia, first, unavailable);
                Ok(())
            }
        }
    }

    /// The resource the client's reservation holds for this IA on `link`, if any (IA_TA
    /// addresses are never reserved).
    fn reserved_resource(
        &self,
        ia: &IaRequest<'_>,
        client: &Client<'_>,
        link: &Subnet,
    ) -> Option<Resource> {
        let r = &self.config.reservations[client.reservation?];
        match ia.ia_type {
            IaType::Na => r
                .addresses
                .iter()
                .find(|a| link.on_link(**a))
                .map(|a| Resource::address(*a)),
            IaType::Ta => None,
            IaType::Pd => r
                .prefixes
                .iter()
                .find(|p| link.owns_prefix(p.addr, p.len))
                .map(|p| Resource::prefix(p.addr, p.len)),
        }
    }

    /// A new address for an IA_NA / IA_TA: the reservation, else a client hint this shard
    /// may hand out, else the hashed allocation.
    #[allow(clippy::too_many_arguments)]
    fn choose_address(
        &self,
        table: &dyn LeaseTable,
        client: &Client<'_>,
        ia: &IaRequest<'_>,
        link: &Subnet,
        reserved: Option<Resource>,
        hints: &[Resource],
        now: u64,
    ) -> Option<Ipv6Addr> {
        let reserved = reserved.map(|r| r.addr);
        reserved
            .filter(|r| self.free_for(table, Resource::address(*r), client, ia, now))
            .or_else(|| {
                // A client's hint (RFC 8415 §18.3.1), or the address it renews after the
                // server lost its binding: honour it when this shard may hand it out.
                hints.iter().map(|r| r.addr).find(|a| {
                    self.dynamic_address_ok(link, *a)
                        && self.free_for(table, Resource::address(*a), client, ia, now)
                })
            })
            .or_else(|| {
                let iaid = if ia.ia_type == IaType::Ta {
                    ia.iaid ^ TA_SALT
                } else {
                    ia.iaid
                };
                link.pools.iter().find_map(|pool| {
                    allocate_na(client.duid.as_bytes(), iaid, pool, &self.partition, |a| {
                        !self.reservations.is_reserved_address(a)
                            && !link.exclude.contains(&a)
                            && self.free_for(table, Resource::address(a), client, ia, now)
                    })
                })
            })
            // RFC 8156 §4.2.1: the failover state decides whether new addresses are given.
            .filter(|a| Some(*a) == reserved || self.scope.may_allocate_address(*a))
    }

    /// A new prefix for an IA_PD: the reservation, else one from the bitmaps
    /// ([`Engine::take_prefix`]); the flag says it came from a bitmap.
    #[allow(clippy::too_many_arguments)]
    fn choose_prefix(
        &mut self,
        table: &dyn LeaseTable,
        client: &Client<'_>,
        ia: &IaRequest<'_>,
        link: &Subnet,
        reserved: Option<Resource>,
        hints: &[Resource],
        len_hint: Option<u8>,
        leases: &[Lease],
        now: u64,
    ) -> Option<(Resource, bool)> {
        match reserved {
            Some(r) if self.free_for(table, r, client, ia, now) => Some((r, false)),
            _ => {
                // Lease stability: a prefix this IA held before (expired or released) is
                // offered again while it is still free.
                let prev: &[Lease] = leases
                    .iter()
                    .position(|l| !l.is_bound_at(now))
                    .map_or(&[], |i| &leases[i..i + 1]);
                self.take_prefix(table, link, hints, prev, len_hint, now)
                    .map(|r| (r, true))
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
        exact: &[Resource],
        previous: &[Lease],
        len_hint: Option<u8>,
        now: u64,
    ) -> Option<Resource> {
        let s = link.index as usize;
        let reservations = &self.reservations;
        let foreign = &self.foreign;
        let scope = self.scope;
        let failover = scope.role.is_some();
        let status = &self.prefix_status;
        let maps = self.prefixes.get_mut(s)?;
        // RFC 8156 §8.4.1: in PARTNER-DOWN a server "MUST deplete its own pool" before it
        // uses the partner's (allowed MCLT after entry): two passes, own prefixes first.
        let partner_down = failover && scope.state == ServerState::PartnerDown;
        let mut partners_too = !partner_down;
        let usable = |p: Ipv6Addr, len: u8, partners_too: bool| {
            let r = Resource::prefix(p, len);
            let owner_ok = !failover || {
                // RFC 8156 §4.2.2: FREE prefixes are the primary's, FREE-BACKUP the
                // secondary's; one being reclaimed (FREE sent, not yet acknowledged) is
                // nobody's.
                let owner = match status.get(&r) {
                    None | Some(PoolStatus::Free) => Some(Role::Primary),
                    Some(PoolStatus::FreeBackup) => Some(Role::Secondary),
                    Some(PoolStatus::Reclaiming) => None,
                };
                owner.is_some_and(|o| {
                    scope.may_allocate_prefix(o, now) && (partners_too || scope.role == Some(o))
                })
            };
            owner_ok
                && !reservations.is_reserved_prefix(p, len)
                && !foreign.contains(&r)
                && table
                    .by_resource(&r)
                    .is_none_or(|l| !occupies(&l, now, failover))
        };
        let wanted = exact
            .iter()
            .chain(previous.iter().map(|l| &l.resource))
            .map(|r| (r.addr, r.prefix_len));
        for (p, len) in wanted {
            for m in maps.iter_mut() {
                if let Some(idx) = m.index_of(p, len) {
                    if m.is_free(idx) && usable(p, len, true) && m.take(idx) {
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
        loop {
            for &i in &order[..n] {
                let m = &mut maps[i];
                let pool = *m.pool();
                let len = pool.delegated_length;
                if let Some(idx) = m.allocate(|idx| usable(pool.nth(idx), len, partners_too)) {
                    return Some(Resource::prefix(pool.nth(idx), len));
                }
            }
            if partners_too {
                return None;
            }
            partners_too = true;
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
                if !ia_resources(&ia).any(|r| r == l.resource) {
                    continue;
                }
                found += 1;
                let mut r = *l;
                r.cltt = now;
                r.update_pending = true;
                let failover = self.scope.role.is_some();
                if decline {
                    r.state = BindingState::Abandoned;
                    r.expires_at = now.saturating_add(u64::from(quarantine));
                } else if failover {
                    // RFC 8156 §7.5.5, Figure 2 (3): RELEASED holds the resource until the
                    // partner acknowledges; the endpoint frees it then.
                    fo_binding::release(&mut r, now);
                } else {
                    r.state = BindingState::Released;
                    r.expires_at = now;
                }
                if let Err(e) = self.store(table, r) {
                    result = Err(e);
                    break;
                }
                if !decline && !failover {
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
