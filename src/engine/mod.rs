//! The sans-IO DHCPv6 server engine (RFC 8415 §18.3).
//!
//! Planned API (the shard loop codes against this; see the engine work item):
//!
//! ```text
//! pub struct Engine;                      // one per shard, owns allocator state
//! Engine::new(config: Arc<Config>, server_duid: Duid, shard: ShardId) -> Engine
//! Engine::load(&mut self, table: &dyn LeaseTable)          // rebuild allocators at start
//! Engine::handle(&mut self, req: &Received, payload: &[u8], now: Timestamp,
//!                table: &mut dyn LeaseTable, out: &mut Vec<u8>) -> Outcome
//! Engine::expire(&mut self, now: Timestamp, table: &mut dyn LeaseTable, budget: usize) -> usize
//! Engine::counters(&self) -> &Counters
//! pub fn owner_shard(payload: &[u8], shards: usize) -> Result<usize, DropReason>
//! ```
