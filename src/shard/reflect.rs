//! The null reflector: a [`Service`] that answers every datagram with its own bytes, doing no
//! DHCPv6 work and touching no lease. Run through the same shard loop and backend as the
//! engine, it measures the ceiling of the I/O path alone, the baseline of the "one shard
//! answers at ≥ 0.8 of a null reflector" benchmark (issue 2, item 13).

use crate::io::{RxMeta, TxMeta};
use crate::lease::LeaseTable;
use crate::time::Timestamp;

use super::Service;

/// Echoes each datagram back to its source from the address it was sent to.
#[derive(Clone, Copy, Debug, Default)]
pub struct Reflector {
    pub reflected: u64,
}

impl Service for Reflector {
    fn owner(&self, _payload: &[u8], _shards: usize) -> Option<usize> {
        // Any shard may answer: no client state.
        None
    }

    fn handle<T: LeaseTable>(
        &mut self,
        rx: &RxMeta,
        payload: &[u8],
        _now: Timestamp,
        _table: &mut T,
        out: &mut Vec<u8>,
    ) -> Option<TxMeta> {
        out.extend_from_slice(payload);
        self.reflected += 1;
        Some(TxMeta::reply_to(rx, rx.src))
    }

    fn expire<T: LeaseTable>(&mut self, _now: Timestamp, _table: &mut T, _budget: usize) -> usize {
        0
    }

    fn log_counters(&self, shard: usize) {
        tracing::info!(shard, reflected = self.reflected, "reflector counters");
    }
}
