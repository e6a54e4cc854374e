//! `[io]`: which backend, which interfaces, how many shards.
