//! Binding updates as pure functions (RFC 8156 §7): the lease ↔ wire record mapping of
//! §7.4, the accept/reject table of §7.5.4 (Figure 4) and the storage rules of §7.5.5
//! (Figure 5), plus the lease transitions failover adds to the engine's (Figure 2).

use super::{mclt, Role};
use crate::lease::{BindingState, Duid, Lease};
use crate::time::EPOCH_2000_UNIX_SECS;
use crate::wire::failover::{LeaseRecord, StatusCode};

/// §7.1, §7.5.4: times within ±5 s of each other compare as equal.
pub const SKEW_TOLERANCE_SECS: u64 = 5;

/// `a` is "clearly later" than `b` (§7.5.4).
pub fn later(a: u64, b: u64) -> bool {
    a > b.saturating_add(SKEW_TOLERANCE_SECS)
}

/// Wire absolute time (seconds since 2000, §3) → Unix seconds. 0xffffffff is infinity.
pub fn to_unix(t: u32) -> u64 {
    if t == u32::MAX {
        u64::MAX
    } else {
        u64::from(t) + EPOCH_2000_UNIX_SECS
    }
}

/// Unix seconds → wire absolute time; `u64::MAX` (infinity) → 0xffffffff.
pub fn to_wire(unix: u64) -> u32 {
    if unix == u64::MAX {
        return u32::MAX;
    }
    unix.saturating_sub(EPOCH_2000_UNIX_SECS)
        .min(u64::from(u32::MAX - 1)) as u32
}

/// When the lease's current binding-status began. The lease model keeps the CLTT only;
/// an EXPIRED lease entered its state when its valid lifetime ended.
pub fn start_time_of_state(lease: &Lease) -> u64 {
    match lease.state {
        BindingState::Expired => lease
            .cltt
            .saturating_add(u64::from(lease.valid_lifetime))
            .min(lease.expires_at),
        _ => lease.cltt,
    }
}

/// Whether this lease holds its resource against allocation to anyone else: every state
/// but the free ones. EXPIRED and RELEASED hold it until the partner acknowledges
/// (§4.2.2.1, §8.8.1: "cannot go to another client until BNDREPLY").
pub fn holds_resource(lease: &Lease) -> bool {
    !matches!(
        lease.state,
        BindingState::Free | BindingState::FreeBackup | BindingState::PendingFree
    )
}

/// May a client renewing or rebinding `resource` (RFC 8415 §18.3.4, §18.3.5) be given it,
/// when the local record is `local`? Yes unless another client holds an unexpired ACTIVE
/// binding on it. An EXPIRED or RELEASED record of another client waiting for the
/// partner's acknowledgement does not block the claim: the partner can only have given the
/// resource to the claimant after it processed that release or expiry, and nobody else
/// holds it. (New allocations, in contrast, must treat such records as taken.)
pub fn claimable_by(local: Option<&Lease>, client: &Duid, now_secs: u64) -> bool {
    match local {
        None => true,
        Some(l) => l.duid == *client || !l.is_bound_at(now_secs),
    }
}

/// The engine's Active → Expired transition under failover: the record stays (holding the
/// resource) with no deadline until the partner acknowledges the EXPIRED update, and is
/// marked for sending (Figure 2 transition 8, §7.4 "MUST be sent").
pub fn expire(lease: &mut Lease) {
    lease.state = BindingState::Expired;
    lease.expires_at = u64::MAX;
    lease.update_pending = true;
}

/// The engine's Release handling under failover (Figure 2 transition 3): RELEASED with the
/// release time as CLTT, held until the partner acknowledges.
pub fn release(lease: &mut Lease, now_secs: u64) {
    lease.state = BindingState::Released;
    lease.cltt = now_secs;
    lease.expires_at = u64::MAX;
    lease.update_pending = true;
}

/// The §7.4 record describing `lease` in a BNDUPD. `base_time` is the LQ_BASE_TIME of the
/// message (Unix seconds); `desired` the configured valid lifetime for the partner lifetime.
pub fn record_of(lease: &Lease, desired: u32, base_time: u64, t1: u32, t2: u32) -> LeaseRecord {
    let has_timeout = matches!(lease.state, BindingState::Active | BindingState::Abandoned)
        && lease.expires_at != u64::MAX;
    let infinite_active = lease.state == BindingState::Active && lease.expires_at == u64::MAX;
    let timed = has_timeout || infinite_active;
    LeaseRecord {
        ia_type: lease.ia_type,
        iaid: lease.iaid,
        t1,
        t2,
        resource: lease.resource,
        preferred_lifetime: lease.preferred_lifetime,
        valid_lifetime: lease.valid_lifetime,
        status: lease.state,
        start_time_of_state: Some(to_wire(start_time_of_state(lease))),
        state_expiration_time: timed.then(|| to_wire(lease.expires_at)),
        clt_time: Some(
            base_time
                .saturating_sub(lease.cltt)
                .min(u64::from(u32::MAX)) as u32,
        ),
        partner_lifetime: timed.then(|| {
            to_wire(if lease.state == BindingState::Active {
                mclt::partner_lifetime(
                    lease.cltt,
                    desired.max(lease.valid_lifetime),
                    lease.valid_lifetime,
                )
                .max(lease.expires_at)
            } else {
                lease.expires_at
            })
        }),
        partner_raw_clt_time: None,
        // The greatest lifetime this server acknowledged for the lease (§7.3). [`store`]
        // keeps every partner lifetime we acknowledged in `partner_lifetime` (with the
        // partner's own acknowledgements), so the later of that and the client's end is
        // never less than what we acknowledged, and never more than what our PARTNER-DOWN
        // reuse time (`mclt::reuse_time`) waits for: the direction that keeps §4.4 safe.
        expiration_time: timed.then(|| to_wire(lease.expires_at.max(lease.partner_lifetime))),
        partner_lifetime_sent: None,
        status_code: None,
    }
}

/// The §7.5.4 verdict on one received lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Reject(StatusCode),
}

/// RFC 8156 §7.5.4, Figure 4. `local` is the receiver's record on the resource,
/// `client` the DUID of the update's OPTION_CLIENT_DATA, `base_time` its LQ_BASE_TIME
/// (wire form), `role` the receiver's role.
pub fn resolve(
    local: Option<&Lease>,
    client: &Duid,
    rec: &LeaseRecord,
    base_time: u32,
    role: Role,
    now_secs: u64,
) -> Verdict {
    let Some(local) = local else {
        return Verdict::Accept;
    };
    let start = rec.start_time_of_state.map(to_unix);
    let clt = rec.clt_abs(base_time).map(to_unix);
    // "The time for the BNDUPD message where the binding-status is ACTIVE, EXPIRED, or
    // RELEASED is the OPTION_CLT_TIME if one appears, or the START_TIME_OF_STATE if one
    // does not. For other binding-status values, ... the later of" the two.
    let update_time = match rec.status {
        BindingState::Active | BindingState::Expired | BindingState::Released => {
            clt.or(start).unwrap_or(0)
        }
        _ => clt.unwrap_or(0).max(start.unwrap_or(0)),
    };
    // "The time for the lease in the server's binding database is the
    // client-last-transaction-time if one appears, or the start-time-of-state."
    let local_time = local.cltt;
    let outdated = Verdict::Reject(StatusCode::OutdatedBindingInformation);
    // Within ±5 s both servers would reject each other's data for ever (both keep their
    // flag, neither is "clearly later"): a release or grant racing the partner's update
    // would strand the lease. Ties go to ACTIVE, then RELEASED and the free states, then
    // EXPIRED, so both sides pick the same version, and the one that keeps a resource
    // held when the order of the two events is unknowable (a client may have been
    // granted the lease again at the partner right after releasing it here). A tie won
    // by ACTIVE only delays reuse until the lease expires on both sides
    // (docs/FAILOVER.md D7).
    let tie_won = !later(local_time, update_time)
        && (tie_rank(rec.status), update_time) > (tie_rank(local.state), local_time);
    let accept = if later(update_time, local_time) || tie_won {
        Verdict::Accept
    } else {
        outdated
    };
    // time(1): "If the current time is later than the receiving server's
    // state-expiration-time, accept it".
    let time1 = if now_secs > local.expires_at {
        Verdict::Accept
    } else {
        outdated
    };
    // time(2): "If the OPTION_CLT_TIME value (if it appears) ... is later than the
    // start-time-of-state in the receiving server's binding".
    let time2_holds = clt.is_some_and(|c| later(c, start_time_of_state(local)));
    let time2 = if time2_holds {
        Verdict::Accept
    } else {
        outdated
    };
    use BindingState as B;
    // Both servers agree already (e.g. both expired the lease on their own): accepting
    // changes nothing and lets each side's PENDING-FREE step proceed. The letter of
    // Figure 4 ("accept iff later") would reject both and strand the lease
    // (docs/FAILOVER.md D6).
    if local.duid == *client && local.state == rec.status && local.state != B::Active {
        return Verdict::Accept;
    }
    match (local.state, rec.status) {
        (B::Active, B::Active) if local.duid == *client => {
            // accept(3), same client: "accept the update" — unless our own data is clearly
            // newer. Taken literally the rule lets a stale update (e.g. sent during
            // POTENTIAL-CONFLICT resolution) shorten a lease the client holds from a
            // later renewal here (docs/FAILOVER.md D9); [`store`] also keeps the later end.
            if later(local_time, update_time) {
                outdated
            } else {
                Verdict::Accept
            }
        }
        (B::Active, B::Active) => {
            // accept(3), different clients.
            if time2_holds || role == Role::Secondary {
                Verdict::Accept
            } else {
                Verdict::Reject(StatusCode::AddressInUse)
            }
        }
        (B::Active, B::Expired) => time1,
        (B::Active, B::Released) => accept,
        (B::Active, B::Free | B::FreeBackup | B::PendingFree) => time1,
        (B::Active, B::Reset | B::Abandoned) => accept,
        (B::Reset, B::Active) => time2,
        _ => accept,
    }
}

/// Precedence between binding statuses whose times compare equal (see [`resolve`]).
fn tie_rank(s: BindingState) -> u8 {
    match s {
        BindingState::Expired => 1,
        BindingState::Active => 3,
        _ => 2,
    }
}

/// What accepting an update does to the receiver's table (§7.5.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    Upsert(Lease),
    /// The partner freed the resource: EXPIRED/RELEASED/FREE updates make it free here
    /// once acknowledged, since the sender frees it on our BNDREPLY (Figure 2, (4)–(6)).
    Remove,
}

/// RFC 8156 §7.5.5 (Figure 5) for an accepted record.
pub fn store(
    local: Option<&Lease>,
    client: &Duid,
    rec: &LeaseRecord,
    base_time: u32,
    subnet: u32,
) -> Stored {
    use BindingState as B;
    match rec.status {
        B::Active | B::Abandoned => {}
        B::Expired | B::Released | B::Free | B::FreeBackup | B::PendingFree | B::Reset => {
            return Stored::Remove
        }
    }
    let start = rec.start_time_of_state.map(to_unix).unwrap_or(0);
    let cltt = rec.clt_abs(base_time).map(to_unix).unwrap_or(start);
    let state_exp = rec.state_expiration_time.map(to_unix).unwrap_or(u64::MAX);
    // Figure 5: partner-lifetime (123) → our expiration-time, and expiration-time (120) →
    // our acknowledged partner lifetime ("only if later"). The lease model has one field
    // for both: `partner_lifetime` keeps the later of them. Folding our expiration-time in
    // lets this server extend the client up to MCLT beyond a lifetime the *partner*
    // promised to respect, which is safe: the partner's own PARTNER-DOWN reuse waits MCLT
    // past the partner lifetime it sent (§8.4.1), and ours waits past this field.
    let same_client = local.filter(|l| l.duid == *client && l.iaid == rec.iaid);
    let acked = rec
        .expiration_time
        .map(to_unix)
        .unwrap_or(0)
        .max(rec.partner_lifetime.map(to_unix).unwrap_or(0))
        .max(same_client.map_or(0, |l| l.partner_lifetime));
    // Same client, both ACTIVE: the client may hold either version's lifetime; keep the
    // later end and CLTT so the resource stays held long enough (D9).
    let same_active = same_client.filter(|l| l.state == B::Active && rec.status == B::Active);
    let cltt = same_active.map_or(cltt, |l| l.cltt.max(cltt));
    // §3 "partner lifetime: the time after which the partner may consider the lease
    // expired": the receiver's lease ends at the later of the client's end and the partner
    // lifetime. Until then the sender may renew the client without telling us yet (lazy
    // update), so the resource must stay held here — in particular it must not be handed to
    // a partner that lost its database and asks with UPDREQALL (§8.5.2).
    let plt = rec.partner_lifetime.map(to_unix).unwrap_or(0);
    let state_exp = same_active
        .map_or(state_exp, |l| l.expires_at.max(state_exp))
        .max(if rec.status == B::Active { plt } else { 0 });
    Stored::Upsert(Lease {
        expires_at: state_exp,
        partner_lifetime: acked,
        ..acknowledged_record(client, rec, cltt, subnet)
    })
}

/// The lease an update describes, stored as acknowledged (`update_pending` clear): the
/// update's client, state, lifetimes and `cltt`; `expires_at` and the partner lifetime are
/// left for the caller (`u64::MAX` and 0).
fn acknowledged_record(client: &Duid, rec: &LeaseRecord, cltt: u64, subnet: u32) -> Lease {
    Lease {
        resource: rec.resource,
        ia_type: rec.ia_type,
        duid: *client,
        iaid: rec.iaid,
        state: rec.status,
        preferred_lifetime: rec.preferred_lifetime,
        valid_lifetime: rec.valid_lifetime,
        cltt,
        expires_at: u64::MAX,
        subnet,
        partner_lifetime: 0,
        update_pending: false,
    }
}

/// The record of an EXPIRED or RELEASED update kept (instead of [`Stored::Remove`]) by a
/// server that must hold the resource for a while: acknowledged (`update_pending` clear),
/// with the update's client, lifetimes and CLTT. The caller sets `expires_at`.
pub fn held_record(client: &Duid, rec: &LeaseRecord, base_time: u32, subnet: u32) -> Lease {
    let start = rec.start_time_of_state.map(to_unix).unwrap_or(0);
    let cltt = rec.clt_abs(base_time).map(to_unix).unwrap_or(start);
    acknowledged_record(client, rec, cltt, subnet)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::{IaType, Resource};

    const NOW: u64 = EPOCH_2000_UNIX_SECS + 1_000_000;

    fn duid(b: u8) -> Duid {
        Duid::new(&[0, 4, b]).unwrap()
    }

    fn lease(state: BindingState, cltt: u64, expires_at: u64, who: u8) -> Lease {
        Lease {
            resource: Resource::address("2001:db8::1".parse().unwrap()),
            ia_type: IaType::Na,
            duid: duid(who),
            iaid: 1,
            state,
            preferred_lifetime: 100,
            valid_lifetime: 200,
            cltt,
            expires_at,
            subnet: 0,
            partner_lifetime: 0,
            update_pending: false,
        }
    }

    fn rec_of(l: &Lease) -> (LeaseRecord, u32) {
        let base = to_wire(NOW);
        (record_of(l, 200, NOW, 50, 80), base)
    }

    #[test]
    fn figure_4_rows() {
        let p = Role::Primary;
        let local = lease(BindingState::Active, NOW - 100, NOW + 100, 1);
        // Same client, ACTIVE vs ACTIVE: accept(3) accepts, unless ours is clearly newer (D9).
        let (r, b) = rec_of(&lease(BindingState::Active, NOW - 98, NOW + 50, 1));
        assert_eq!(
            resolve(Some(&local), &duid(1), &r, b, p, NOW),
            Verdict::Accept
        );
        let (r, b) = rec_of(&lease(BindingState::Active, NOW - 200, NOW + 50, 1));
        assert_eq!(
            resolve(Some(&local), &duid(1), &r, b, p, NOW),
            Verdict::Reject(StatusCode::OutdatedBindingInformation)
        );
        // Different client, older: the primary says AddressInUse, the secondary accepts.
        let (r, b) = rec_of(&lease(BindingState::Active, NOW - 200, NOW + 50, 2));
        assert_eq!(
            resolve(Some(&local), &duid(2), &r, b, p, NOW),
            Verdict::Reject(StatusCode::AddressInUse)
        );
        assert_eq!(
            resolve(Some(&local), &duid(2), &r, b, Role::Secondary, NOW),
            Verdict::Accept
        );
        // Different client with a CLT clearly after the local start: time(2) accepts.
        let (r, b) = rec_of(&lease(BindingState::Active, NOW - 10, NOW + 50, 2));
        assert_eq!(
            resolve(Some(&local), &duid(2), &r, b, p, NOW),
            Verdict::Accept
        );
        // ACTIVE vs EXPIRED: time(1), the local lease has not ended → outdated.
        let mut e = lease(BindingState::Active, NOW - 300, NOW, 1);
        expire(&mut e);
        let (r, b) = rec_of(&e);
        assert_eq!(
            resolve(Some(&local), &duid(1), &r, b, p, NOW),
            Verdict::Reject(StatusCode::OutdatedBindingInformation)
        );
        assert_eq!(
            resolve(Some(&local), &duid(1), &r, b, p, NOW + 101),
            Verdict::Accept
        );
        // ACTIVE vs RELEASED: accept iff later; a release within ±5 s of the local grant
        // loses the tie to ACTIVE (D7), and the RELEASED side accepts the ACTIVE one.
        let mut rel = lease(BindingState::Active, NOW - 300, NOW, 1);
        release(&mut rel, NOW - 97);
        let (r, b) = rec_of(&rel);
        assert_eq!(
            resolve(Some(&local), &duid(1), &r, b, p, NOW),
            Verdict::Reject(StatusCode::OutdatedBindingInformation)
        );
        let (r2, b2) = rec_of(&local);
        assert_eq!(
            resolve(Some(&rel), &duid(1), &r2, b2, p, NOW),
            Verdict::Accept
        );
        release(&mut rel, NOW - 90);
        let (r, b) = rec_of(&rel);
        assert_eq!(
            resolve(Some(&local), &duid(1), &r, b, p, NOW),
            Verdict::Accept
        );
        // No local record: accept.
        assert_eq!(resolve(None, &duid(1), &r, b, p, NOW), Verdict::Accept);
    }

    #[test]
    fn store_follows_figure_5() {
        let mut sent = lease(BindingState::Active, NOW - 10, NOW + 200, 3);
        sent.partner_lifetime = NOW + 500;
        let (r, b) = rec_of(&sent);
        let Stored::Upsert(got) = store(None, &duid(3), &r, b, 0) else {
            panic!("active is stored");
        };
        assert_eq!(got.cltt, NOW - 10);
        assert_eq!(got.state, BindingState::Active);
        // The lease ends here at the later of the client's end (NOW + 200) and the partner
        // lifetime (cltt + desired + valid/2 = NOW + 290, §3); `partner_lifetime` is the
        // latest of that and the sender's expiration-time (its acknowledged lifetime).
        assert_eq!(got.expires_at, NOW + 290);
        assert_eq!(got.partner_lifetime, NOW + 500);
        let mut rel = sent;
        release(&mut rel, NOW);
        let (r, b) = rec_of(&rel);
        assert_eq!(store(Some(&got), &duid(3), &r, b, 0), Stored::Remove);
    }
}
