//! Time as the sans-IO cores see it: always passed in, never read from a clock inside them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in wall-clock time, in milliseconds since the Unix epoch.
///
/// Leases are stored with absolute expiry times that must survive a restart, and RFC 8156
/// exchanges absolute times with the partner, so the cores use wall-clock time rather than
/// `Instant`. Drivers read the clock once per batch with [`Timestamp::now`]; tests and the
/// failover simulation make their own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

/// Seconds between 1970-01-01 and 2000-01-01 UTC: the epoch of DUID-LLT (RFC 8415 §11.2)
/// and of every absolute time in RFC 8156 (§3, §5.2 "sent-time").
pub const EPOCH_2000_UNIX_SECS: u64 = 946_684_800;

impl Timestamp {
    /// Reads the system clock. Only I/O drivers call this.
    pub fn now() -> Self {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Timestamp(d.as_millis() as u64)
    }

    pub const fn from_secs(secs: u64) -> Self {
        Timestamp(secs.saturating_mul(1000))
    }

    pub const fn from_millis(ms: u64) -> Self {
        Timestamp(ms)
    }

    /// Whole seconds since the Unix epoch.
    pub const fn secs(self) -> u64 {
        self.0 / 1000
    }

    pub const fn millis(self) -> u64 {
        self.0
    }

    /// Seconds since 2000-01-01 UTC modulo 2^32, the wire form of RFC 8156 absolute times.
    pub const fn secs_since_2000(self) -> u32 {
        (self.secs().saturating_sub(EPOCH_2000_UNIX_SECS) & 0xffff_ffff) as u32
    }

    pub fn saturating_add(self, d: Duration) -> Self {
        Timestamp(self.0.saturating_add(d.as_millis() as u64))
    }

    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}
