//! The DHCPv6 engine as a shard [`Service`]: the thin adapter between the shard loop's
//! datagram view (backend metadata) and the sans-IO engine's (RFC 8415 roles).

use std::fmt::Write as _;

use crate::engine::{owner_shard, Engine, Outcome, Received};
use crate::io::{RxMeta, TxMeta};
use crate::lease::LeaseTable;
use crate::time::Timestamp;
use crate::wire::MessageType;

use super::{Outgoing, Service};

impl Service for Engine {
    fn owner(&self, payload: &[u8], shards: usize) -> Option<usize> {
        // A packet without a usable CLIENTID is dropped (and counted by reason) by whichever
        // shard received it.
        owner_shard(payload, shards).ok()
    }

    fn handle<T: LeaseTable>(
        &mut self,
        rx: &RxMeta,
        payload: &[u8],
        now: Timestamp,
        table: &mut T,
        out: &mut Vec<u8>,
    ) -> Option<Outgoing> {
        let req = Received {
            src: rx.src,
            dst: rx.dst,
            ifindex: rx.ifindex,
        };
        match Engine::handle(self, &req, payload, now, table, out) {
            Outcome::Reply { dst, src, commits } => {
                let meta = TxMeta {
                    dst,
                    src,
                    ifindex: rx.ifindex,
                    l2: rx.l2,
                    queue: rx.queue,
                };
                Some(if commits {
                    Outgoing::durable(meta)
                } else {
                    Outgoing::immediate(meta)
                })
            }
            Outcome::Drop(_) => None,
        }
    }

    fn expire<T: LeaseTable>(&mut self, now: Timestamp, table: &mut T, budget: usize) -> usize {
        Engine::expire(self, now, table, budget)
    }

    fn log_counters(&self, shard: usize) {
        let c = self.counters();
        // Per-type and per-reason counters are dynamic, so they go into the message as
        // `name=value` pairs (zero counters omitted) after the fixed fields.
        let mut detail = String::new();
        for t in 1u8..=11 {
            let n = c.answered(MessageType::from(t));
            if n > 0 {
                let name = format!("{:?}", MessageType::from(t)).to_lowercase();
                let _ = write!(detail, " answered_{name}={n}");
            }
        }
        for (reason, n) in c.drops() {
            let _ = write!(detail, " dropped_{}={n}", reason.name());
        }
        tracing::info!(
            shard,
            received = c.received,
            answered = c.total_answered(),
            dropped = c.total_dropped(),
            use_multicast = c.use_multicast,
            store_full = c.store_full,
            leases_committed = c.leases_committed,
            leases_expired = c.leases_expired,
            "engine counters{detail}"
        );
    }
}
