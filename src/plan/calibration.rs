//! The calibration file: what `tandem-bench calibrate` measured on a machine, read by
//! `tandem plan --calibration` to turn hardware profiles into rates.

use serde::{Deserialize, Serialize};

/// Everything measured on the calibration machine.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    pub machine: Machine,
    pub transport: Transport,
    pub storage: Storage,
    /// Absent when no server was measured (`calibrate` without `--target`).
    pub server: Option<Server>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    /// Online CPUs of the calibration machine.
    pub cores: u32,
    pub kernel: String,
    /// When the calibration ran (Unix seconds).
    pub measured_at: u64,
}

/// The transport ceiling: the rig against the null server (reflector) over loopback, one
/// core each. A server cannot exceed it on this machine.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Transport {
    /// 4-message exchanges per second (2 request/reply round trips each).
    pub exchanges_per_sec: f64,
    /// Datagrams per second in each direction.
    pub packets_per_sec: f64,
    /// CPU the rig spends per exchange, in microseconds.
    pub rig_cpu_us_per_exchange: f64,
}

/// Durable-write latency of the data directory's file system.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    pub path: String,
    /// write(4 KiB) + fdatasync, in microseconds.
    pub fsync_p50_us: f64,
    pub fsync_p99_us: f64,
}

/// A DHCPv6 server measured by the rig at `--rate max`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub name: String,
    /// Shards (cores serving packets) the server ran with.
    pub shards: u32,
    /// 4-message (Solicit..Reply) exchanges per second, new bindings.
    pub sarr_exchanges_per_sec: f64,
    /// Renew/Reply exchanges per second on existing bindings.
    pub renew_exchanges_per_sec: f64,
    pub sarr_latency_p99_us: u64,
    /// Exchanges dropped while measuring (a clean calibration has none).
    pub drops: u64,
}

impl Calibration {
    pub fn from_toml(text: &str, origin: &str) -> Result<Calibration, String> {
        toml::from_str(text).map_err(|e| format!("{origin}: {e}"))
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}
