//! The shard loop: one pinned thread per NIC queue running io → engine → lease table → io.
