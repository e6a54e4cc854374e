//! The Maximum Client Lead Time rule (RFC 8156 §4.4) and the PARTNER-DOWN waits (§4.2.2.1,
//! §8.4.1), as pure functions over absolute Unix seconds.
//!
//! The engine calls [`valid_lifetime`] whenever it sets a lifetime; the failover endpoint
//! calls [`partner_lifetime`] when it builds a BNDUPD and [`reuse_time`] before it frees a
//! resource in PARTNER-DOWN.

use crate::lease::Lease;

/// RFC 8415 §7.7: 0xffffffff means infinity.
pub const INFINITY: u32 = u32::MAX;

/// RFC 8156 §4.4 / Figure 1: the valid lifetime the engine may give a client.
///
/// "The fundamental requirement is that a client's lease expiration time MUST NOT be later
/// than MCLT plus the maximum of the acknowledged partner lifetime and the current time."
/// Outside PARTNER-DOWN: `min(desired, max(acked_partner_lifetime - now, 0) + MCLT)`.
/// In PARTNER-DOWN (§8.4.1) there is no partner to keep in step, so `desired` is returned.
/// `acked_partner_lifetime` is [`Lease::partner_lifetime`] (0 for a new lease).
pub fn valid_lifetime(
    desired: u32,
    acked_partner_lifetime: u64,
    now_secs: u64,
    mclt: u32,
    partner_down: bool,
) -> u32 {
    if partner_down {
        return desired;
    }
    let ahead = acked_partner_lifetime.saturating_sub(now_secs);
    let bound = ahead.saturating_add(u64::from(mclt));
    if desired == INFINITY {
        // An infinite lease can only be given once the partner acknowledged infinity.
        return if acked_partner_lifetime == u64::MAX {
            INFINITY
        } else {
            bound.min(u64::from(INFINITY - 1)) as u32
        };
    }
    u64::from(desired).min(bound) as u32
}

/// Preferred lifetime clamped to the (possibly shortened) valid lifetime (RFC 8415 §21.6:
/// preferred must not exceed valid).
pub fn preferred_lifetime(desired_preferred: u32, valid: u32) -> u32 {
    desired_preferred.min(valid)
}

/// The partner lifetime to send in a BNDUPD for a lease granted at `cltt` with `actual`
/// seconds given to the client and `desired` configured (RFC 8156 §4.4.1 example, with the
/// T1 fraction 1/2): `cltt + desired + actual / 2`. Any value keeps the MCLT rule (§8.8.1);
/// this one lets the next renewal at T1 get the full desired lifetime. Absolute Unix seconds.
pub fn partner_lifetime(cltt: u64, desired: u32, actual: u32) -> u64 {
    if desired == INFINITY || actual == INFINITY {
        return u64::MAX;
    }
    cltt.saturating_add(u64::from(desired))
        .saturating_add(u64::from(actual / 2))
}

/// Whether a lease's end respects the MCLT rule at grant time `now` (the simulation checks
/// this after every grant). `partner_down` grants are exempt (§8.4.1).
pub fn respects_mclt(lease: &Lease, now_secs: u64, mclt: u32, partner_down: bool) -> bool {
    partner_down
        || lease.valid_lifetime == INFINITY
        || lease.cltt + u64::from(lease.valid_lifetime)
            <= lease.partner_lifetime.max(now_secs) + u64::from(mclt)
}

/// RFC 8156 §8.4.1 / §4.2.2.1: earliest time a server in PARTNER-DOWN may give the resource
/// of `lease` (Expired or Released, never acknowledged by the partner) to another client:
/// MCLT after the latest of the client's end, the partner lifetimes acknowledged by and to
/// the partner (both kept in [`Lease::partner_lifetime`] by `binding::store`), "the most
/// recently transmitted partner-lifetime", and the PARTNER-DOWN entry time ("if this time
/// would be earlier than ... the time the server entered PARTNER-DOWN state plus the MCLT
/// is used").
///
/// The lease model does not record the partner lifetime last *transmitted* (the partner
/// may have stored it even if its BNDREPLY never arrived, and then renewed the client up
/// to MCLT past it). Every partner lifetime [`partner_lifetime`] produces for this lease is
/// at most `cltt + desired * 3/2` (valid ≤ desired, CLTT only grows), so that bound
/// stands in for it: PARTNER-DOWN reuse of an unacknowledged lease waits somewhat longer,
/// never too little (docs/FAILOVER.md D8).
pub fn reuse_time(
    lease: &Lease,
    client_end: u64,
    partner_down_entered: u64,
    mclt: u32,
    desired: u32,
) -> u64 {
    let transmitted_bound = if desired == INFINITY {
        u64::MAX
    } else {
        lease
            .cltt
            .saturating_add(u64::from(desired))
            .saturating_add(u64::from(desired / 2))
    };
    client_end
        .max(lease.partner_lifetime)
        .max(transmitted_bound)
        .max(partner_down_entered)
        .saturating_add(u64::from(mclt))
}

/// How long an EXPIRED/RELEASED resource stays held when one server of the pair has lost
/// its stable storage and is rebuilding it with UPDREQALL (§8.5.2): on the recovering side
/// for the records it receives, on the answering side for the acknowledgements it gets.
///
/// Before the loss, the lost server may have renewed the lease's client without the other
/// server knowing (e.g. from an ACTIVE copy while the pair was apart and the client
/// released the lease at the other server). That grant is gone from its storage, not from
/// the client, and ends at most MCLT past the partner lifetime the lost server held (§4.4).
/// That partner lifetime is one the other server sent, at most `cltt + desired * 3/2` of
/// the other server's latest CLTT for the lease (see [`reuse_time`]), or one the other
/// server acknowledged for a grant of the lost server, at most its CLTT (before `now`)
/// `+ desired * 3/2`. §8.6.2's RECOVER-WAIT (MCLT after the failure) covers allocations
/// the lost server made alone, not these renewals, so the resource is held until
/// `max(reuse_time(lease, ..., now), now + desired * 3/2) + MCLT`.
pub fn recovery_hold(lease: &Lease, now_secs: u64, mclt: u32, desired: u32) -> u64 {
    let client_end = lease
        .cltt
        .saturating_add(u64::from(lease.valid_lifetime))
        .max(lease.cltt);
    let lost_grant_bound = if desired == INFINITY {
        u64::MAX
    } else {
        now_secs
            .saturating_add(u64::from(desired))
            .saturating_add(u64::from(desired / 2))
            .saturating_add(u64::from(mclt))
    };
    reuse_time(lease, client_end, now_secs, mclt, desired).max(lost_grant_bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 8156 §4.4.1 example: MCLT 1 h, desired 3 d, T1 = 1/2.
    const H: u64 = 3600;
    const D: u32 = 3 * 24 * 3600;

    #[test]
    fn rfc_example_lifetimes() {
        let now = 1_000_000;
        // First Reply: nothing acknowledged yet → MCLT.
        let first = valid_lifetime(D, 0, now, H as u32, false);
        assert_eq!(first, 3600);
        // BNDUPD partner lifetime = now + 1/2 h + 3 d.
        let p = partner_lifetime(now, D, first);
        assert_eq!(p, now + H / 2 + u64::from(D));
        // Renew at T1 (1/2 h): min(3 d, 3 d + 1 h) = 3 d.
        let renew = valid_lifetime(D, p, now + H / 2, H as u32, false);
        assert_eq!(renew, D);
        // Next partner lifetime = now' + 3 d + 1.5 d.
        assert_eq!(
            partner_lifetime(now + H / 2, D, renew),
            now + H / 2 + u64::from(D) + u64::from(D / 2)
        );
    }

    #[test]
    fn partner_down_is_unclamped_and_infinity_needs_ack() {
        assert_eq!(valid_lifetime(D, 0, 5, 60, true), D);
        assert_eq!(valid_lifetime(INFINITY, 0, 5, 60, false), 60);
        assert_eq!(valid_lifetime(INFINITY, u64::MAX, 5, 60, false), INFINITY);
    }

    proptest::proptest! {
        /// A grant the lost server made before losing its storage (at `g`, no later than
        /// the recovery at `now`), clamped by a partner lifetime it may have held — one the
        /// other server sent for a CLTT up to the record's, or one the other server
        /// acknowledged for the lost server's own grant — never outlasts the hold.
        #[test]
        fn recovery_hold_outlasts_every_lost_grant(
            cltt in 1_000_000u64..2_000_000,
            valid in 1u32..10_000,
            desired in 1u32..10_000,
            mclt in 0u32..5_000,
            g_back in 0u64..50_000,
            now_ahead in 0u64..50_000,
            own_sent in proptest::bool::ANY,
        ) {
            let valid = valid.min(desired);
            let now = cltt + now_ahead;
            let g = now.saturating_sub(g_back);
            let lease = Lease {
                resource: crate::lease::Resource::address("2001:db8::1".parse().unwrap()),
                ia_type: crate::lease::IaType::Na,
                duid: crate::lease::Duid::new(&[0, 4, 1]).unwrap(),
                iaid: 1,
                state: crate::lease::BindingState::Released,
                preferred_lifetime: valid,
                valid_lifetime: valid,
                cltt,
                expires_at: u64::MAX,
                subnet: 0,
                partner_lifetime: 0,
                update_pending: false,
            };
            // The partner lifetime the lost server held: sent by us for our latest CLTT,
            // or acknowledged by us for its own earlier grant.
            let held = if own_sent { partner_lifetime(g, desired, desired) } else { partner_lifetime(cltt, desired, valid) };
            let lost = valid_lifetime(desired, held, g, mclt, false);
            proptest::prop_assert!(g + u64::from(lost) <= recovery_hold(&lease, now, mclt, desired));
        }

        #[test]
        fn clamp_never_breaks_the_rule(desired in 0u32..u32::MAX, acked in 0u64..2_000_000, now in 0u64..2_000_000, mclt in 0u32..100_000) {
            let v = valid_lifetime(desired, acked, now, mclt, false);
            proptest::prop_assert!(v <= desired);
            proptest::prop_assert!(now + u64::from(v) <= acked.max(now) + u64::from(mclt));
        }
    }
}
