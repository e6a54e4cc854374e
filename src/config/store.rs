//! `[store]`: where leases live and how durable they are.
//!
//! ```toml
//! [store]
//! data_dir = "/var/lib/tandem"     # default ./tandem-data; `serve --data-dir` overrides
//! durability = "fsync"             # "fsync" (default) | "write" | "memory"
//! compact_after_changes = 1000000  # background snapshot after this many changed leases
//! wal_chunk_bytes = 67108864       # WAL space reserved ahead (full-disk detection)
//! max_in_flight = 64               # commit batches in flight per shard
//! ```
//!
//! Values are checked by their types while the file is parsed, so a bad value is reported
//! with the file, line and column by the config loader.

use std::num::{NonZeroU32, NonZeroU64};
use std::path::PathBuf;

use serde::Deserialize;

/// How far a lease must get before its Reply may leave (RFC 8415 §18.3: "stable storage").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// One fdatasync per commit batch before the batch's replies are released: survives a
    /// power loss. The default, as the RFC requires.
    #[default]
    Fsync,
    /// The batch is written to the WAL (page cache) before replies are released: survives a
    /// crash of the server process, not of the machine.
    Write,
    /// No files at all: leases are lost when the process stops. For labs and load tests.
    Memory,
}

impl Durability {
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Fsync => "fsync",
            Durability::Write => "write",
            Durability::Memory => "memory",
        }
    }
}

pub const DEFAULT_DATA_DIR: &str = "tandem-data";

/// `[store]` as written in the file, and (all values being type-checked) as used.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    /// Directory holding the snapshots and WAL segments (one set per shard) and the lock.
    pub data_dir: PathBuf,
    pub durability: Durability,
    /// Changed leases held in memory (the delta over the snapshot) before a background
    /// compaction writes a new snapshot and trims the WAL.
    pub compact_after_changes: NonZeroU32,
    /// Bytes of WAL space reserved ahead with fallocate. When a reservation fails the disk is
    /// full: new leases are refused while renewals continue in the space already reserved.
    pub wal_chunk_bytes: NonZeroU64,
    /// Commit batches a shard keeps in flight (written, not yet synced) before it waits.
    pub max_in_flight: NonZeroU32,
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            durability: Durability::Fsync,
            compact_after_changes: NonZeroU32::new(1_000_000).unwrap_or(NonZeroU32::MIN),
            wal_chunk_bytes: NonZeroU64::new(64 << 20).unwrap_or(NonZeroU64::MIN),
            max_in_flight: NonZeroU32::new(64).unwrap_or(NonZeroU32::MIN),
        }
    }
}

impl StoreSection {
    /// Smallest WAL reservation honoured (smaller values are rounded up): one chunk must hold
    /// at least a few full-size batches.
    pub const MIN_WAL_CHUNK: u64 = 16 << 10;

    pub fn wal_chunk(&self) -> u64 {
        self.wal_chunk_bytes.get().max(Self::MIN_WAL_CHUNK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Wrap {
        store: StoreSection,
    }

    #[test]
    fn parses_and_defaults() {
        let w: Wrap = toml::from_str("[store]\ndurability = \"write\"\n").unwrap();
        assert_eq!(w.store.durability, Durability::Write);
        assert_eq!(w.store.data_dir, PathBuf::from("tandem-data"));
        let e = toml::from_str::<Wrap>("[store]\ndurability = \"sometimes\"\n")
            .err()
            .unwrap();
        assert!(e.to_string().contains("sometimes"), "{e}");
        assert!(toml::from_str::<Wrap>("[store]\ncompact_after_changes = 0\n").is_err());
        assert!(toml::from_str::<Wrap>("[store]\nfsync = true\n").is_err());
    }
}
