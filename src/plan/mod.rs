//! Capacity planning: hardware and workload profiles (`tuning/`) and a machine calibration
//! (`tandem-bench calibrate`) turned into a plan (`tandem plan`).
//!
//! The model (docs/CAPACITY.md explains it with measured figures):
//! * Demand. A site with `S` subscribers (grown by `growth_per_year` over `plan_years`)
//!   renews every binding once per T1 (one Renew/Reply per CPE; NA and PD ride in the same
//!   message), plus a daily churn of Release + 4-message exchange. After an outage every CPE
//!   solicits within `avalanche_window_secs`: `S / window` 4-message exchanges per second.
//! * Supply. Calibration measured one server shard's 4-message and Renew rates on the
//!   calibration machine; a hardware profile scales them by its `core_speed` and multiplies
//!   by the shards it can run (cores minus `reserved_cores`, at most one per NIC queue).
//! * Each resource's utilisation at the avalanche peak (CPU, NIC packets and bits, memory,
//!   disk writes, the failover stream) is demand / supply; the largest binds first, and the
//!   plan is over capacity when it exceeds `target_utilization`.

pub mod calibration;
pub mod tune;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::lease::Lease;
use calibration::Calibration;

/// A machine to plan for (`tuning/hardware/*.toml`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Hardware {
    pub name: String,
    pub description: String,
    pub cores: u32,
    /// Cores not serving packets: the control core (failover, expiry) and the OS.
    pub reserved_cores: u32,
    /// Receive queues of the subscriber-facing NIC (one shard per queue).
    pub nic_queues: u32,
    pub nic_gbps: f64,
    /// Packets per second the NIC and driver move per queue (both directions together).
    pub nic_mpps_per_queue: f64,
    pub memory_gib: f64,
    /// write + fdatasync latency of the lease store's device, microseconds.
    pub fsync_latency_us: f64,
    /// Sustained write bandwidth of the lease store's device, MB/s.
    pub disk_write_mbps: f64,
    /// Single-core speed relative to the calibration machine (this VM = 1.0).
    pub core_speed: f64,
    /// Fraction of each resource a plan may use; the rest is headroom.
    pub target_utilization: f64,
}

/// A site to plan for (`tuning/workloads/*.toml`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    pub name: String,
    pub description: String,
    pub subscribers: u64,
    /// Fraction of subscribers holding an IA_NA.
    pub na_share: f64,
    /// Fraction of subscribers holding an IA_PD.
    pub pd_share: f64,
    pub valid_lifetime_secs: u64,
    /// Renew timer (RFC 8415 §21.4) the server hands out.
    pub t1_secs: u64,
    /// Every subscriber solicits within this window after a site outage.
    pub avalanche_window_secs: u64,
    /// Fraction of subscribers that release and re-bind per day (CPE reboots, moves).
    pub churn_per_day: f64,
    pub growth_per_year: f64,
    pub plan_years: u32,
    /// Whether a failover partner receives every binding update (RFC 8156 BNDUPD).
    pub failover: bool,
}

fn load<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

impl Hardware {
    pub fn from_file(path: &Path) -> Result<Hardware, String> {
        let h: Hardware = load(path)?;
        h.validate()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(h)
    }
    fn validate(&self) -> Result<(), String> {
        if self.cores <= self.reserved_cores {
            return Err(format!(
                "field `cores` ({}) must exceed `reserved_cores` ({})",
                self.cores, self.reserved_cores
            ));
        }
        for (field, v) in [
            ("nic_gbps", self.nic_gbps),
            ("nic_mpps_per_queue", self.nic_mpps_per_queue),
            ("memory_gib", self.memory_gib),
            ("fsync_latency_us", self.fsync_latency_us),
            ("disk_write_mbps", self.disk_write_mbps),
            ("core_speed", self.core_speed),
        ] {
            if v.is_nan() || v <= 0.0 {
                return Err(format!("field `{field}` must be positive, got {v}"));
            }
        }
        if self.nic_queues == 0 {
            return Err("field `nic_queues` must be at least 1".into());
        }
        if !(self.target_utilization > 0.0 && self.target_utilization <= 1.0) {
            return Err("field `target_utilization` must be in (0, 1]".into());
        }
        Ok(())
    }
}

impl Workload {
    pub fn from_file(path: &Path) -> Result<Workload, String> {
        let w: Workload = load(path)?;
        w.validate()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(w)
    }
    fn validate(&self) -> Result<(), String> {
        if self.subscribers == 0 {
            return Err("field `subscribers` must be at least 1".into());
        }
        for (field, v) in [("na_share", self.na_share), ("pd_share", self.pd_share)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("field `{field}` must be within 0..=1, got {v}"));
            }
        }
        if self.na_share + self.pd_share == 0.0 {
            return Err("fields `na_share` and `pd_share` are both 0: nothing to serve".into());
        }
        if self.t1_secs == 0 || self.avalanche_window_secs == 0 {
            return Err("fields `t1_secs` and `avalanche_window_secs` must be positive".into());
        }
        if self.t1_secs >= self.valid_lifetime_secs {
            return Err(format!(
                "field `t1_secs` ({}) must be below `valid_lifetime_secs` ({})",
                self.t1_secs, self.valid_lifetime_secs
            ));
        }
        if self.churn_per_day < 0.0 || self.growth_per_year < 0.0 {
            return Err("fields `churn_per_day` and `growth_per_year` must not be negative".into());
        }
        Ok(())
    }
}

/// Wire sizes used by the model (bytes), from the messages the rig and tandem exchange.
pub mod sizes {
    /// Ethernet + IPv6 + UDP headers (+ FCS and preamble/IFG on the wire).
    pub const FRAME_OVERHEAD: f64 = 14.0 + 40.0 + 8.0 + 4.0 + 20.0;
    /// A relayed client message with IA_NA + IA_PD (Relay-forw with Interface-ID,
    /// Remote-ID, Subscriber-ID: what `tandem-bench run --pd --relays K` sends).
    pub const REQUEST: f64 = 170.0;
    /// The Relay-reply carrying the Reply (server-id, IAs with lifetimes, DNS options).
    pub const REPLY: f64 = 230.0;
    /// One RFC 8156 BNDUPD for one lease (client-id, IA option, CLTT, state, lifetimes),
    /// plus its share of the BNDREPLY and of TLS record framing.
    pub const BNDUPD: f64 = 160.0;
    pub const BNDREPLY: f64 = 40.0;
    /// One lease record appended to the store's log (record header + archived lease).
    pub const STORE_RECORD_OVERHEAD: f64 = 16.0;
}

/// One resource's demand against its supply at the avalanche peak.
#[derive(Clone, Debug, Serialize)]
pub struct Resource {
    pub name: &'static str,
    pub demand: f64,
    pub supply: f64,
    pub unit: &'static str,
    pub utilization: f64,
}

/// The plan.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub hardware: String,
    pub workload: String,
    pub calibrated_on: String,
    pub planned_subscribers: u64,
    pub leases: u64,
    pub steady_exchanges_per_sec: f64,
    pub steady_packets_per_sec: f64,
    pub avalanche_exchanges_per_sec: f64,
    pub avalanche_packets_per_sec: f64,
    /// Shards (serving cores) needed to absorb the avalanche at `target_utilization`.
    pub shards_needed: u32,
    /// Cores needed: shards plus the hardware's reserved cores.
    pub cores_needed: u32,
    pub shards_available: u32,
    /// 4-message exchanges per second the hardware's shards can serve (at 100%).
    pub capacity_exchanges_per_sec: f64,
    pub memory_bytes: f64,
    pub disk_write_bytes_per_sec_steady: f64,
    pub disk_write_bytes_per_sec_avalanche: f64,
    /// Group commits per second each shard can make (1 / fsync latency) and the latency a
    /// commit adds to each reply.
    pub fsyncs_per_sec_per_shard: f64,
    pub commit_latency_us: f64,
    pub failover_bits_per_sec_steady: f64,
    pub failover_bits_per_sec_avalanche: f64,
    pub resources: Vec<Resource>,
    /// The resource with the highest utilisation.
    pub binding_resource: &'static str,
    /// `target_utilization / max utilisation - 1`: how much more load fits before the first
    /// resource reaches the target (0.5 = 50% more); negative when over capacity.
    pub headroom: f64,
    pub target_utilization: f64,
    /// Max utilisation exceeds `target_utilization`.
    pub over_capacity: bool,
}

/// Bytes one lease occupies in memory: the record plus its slot and index entry in the
/// shard's hash table (hashbrown keeps ≤ 87.5% load: ~1.15 slots per entry, 1 control byte).
pub fn lease_memory_bytes() -> f64 {
    std::mem::size_of::<Lease>() as f64 * 1.15 + 1.15 + 16.0
}

/// Computes the plan. `cal.server` must be present (the per-shard rates come from it).
pub fn plan(h: &Hardware, w: &Workload, cal: &Calibration) -> Result<Plan, String> {
    let server = cal.server.as_ref().ok_or(
        "the calibration file has no [server] section: run `tandem-bench calibrate --target \
         ADDR:547` against a running tandem",
    )?;
    // Rounded up, after dropping floating-point noise (1000 × 1.1² is 1210, not 1211).
    let s =
        (w.subscribers as f64 * (1.0 + w.growth_per_year).powi(w.plan_years as i32) - 1e-6).ceil();
    let leases_per_sub = w.na_share + w.pd_share;
    let leases = s * leases_per_sub;
    let day = 86_400.0;

    // Demand. Steady: one Renew/Reply per subscriber per T1, plus churn (Release/Reply
    // and a 4-message exchange).
    let renew_rate = s / w.t1_secs as f64;
    let churn_rate = s * w.churn_per_day / day;
    let steady_exchanges = renew_rate + churn_rate;
    let steady_packets = renew_rate * 2.0 + churn_rate * 6.0;
    let avalanche_exchanges = s / w.avalanche_window_secs as f64;
    let avalanche_packets = avalanche_exchanges * 4.0 + steady_packets;

    // Supply per shard on this hardware.
    let per_shard_sarr =
        server.sarr_exchanges_per_sec / f64::from(server.shards.max(1)) * h.core_speed;
    let per_shard_renew =
        server.renew_exchanges_per_sec / f64::from(server.shards.max(1)) * h.core_speed;
    if per_shard_sarr <= 0.0 || per_shard_renew <= 0.0 {
        return Err("the calibration's server rates are zero: recalibrate".into());
    }
    let shards_available = (h.cores - h.reserved_cores).min(h.nic_queues);
    // CPU seconds per second at the avalanche peak (in shard units).
    let cpu_demand = avalanche_exchanges / per_shard_sarr + steady_exchanges / per_shard_renew;
    let shards_needed = (cpu_demand / h.target_utilization).ceil().max(1.0) as u32;
    let capacity = per_shard_sarr * f64::from(shards_available);

    // Memory: leases, plus the store's mapped file of the same records (page cache).
    let lease_bytes = lease_memory_bytes();
    let record = std::mem::size_of::<Lease>() as f64 + sizes::STORE_RECORD_OVERHEAD;
    let memory = leases * (lease_bytes + record);

    // Disk: every granted or renewed lease is one record; one fsync per group commit.
    let disk_steady = steady_exchanges * leases_per_sub * record;
    let disk_avalanche = avalanche_exchanges * leases_per_sub * record + disk_steady;
    let fsyncs_per_shard = 1e6 / h.fsync_latency_us;

    // Failover: one BNDUPD per changed lease, one BNDREPLY back (RFC 8156 §5.2).
    let fo = |exchanges: f64| {
        if w.failover {
            exchanges * leases_per_sub * (sizes::BNDUPD + sizes::BNDREPLY) * 8.0
        } else {
            0.0
        }
    };
    let failover_steady = fo(steady_exchanges);
    let failover_avalanche = fo(avalanche_exchanges + steady_exchanges);

    // NIC: both directions share the queues' packet budget; bits are per direction (the
    // reply direction is the larger).
    let nic_pps = h.nic_mpps_per_queue * 1e6 * f64::from(h.nic_queues);
    let nic_bits = avalanche_exchanges * 2.0 * (sizes::REPLY + sizes::FRAME_OVERHEAD) * 8.0
        + renew_rate * (sizes::REPLY + sizes::FRAME_OVERHEAD) * 8.0
        + failover_avalanche / 2.0;

    let r = |name, demand: f64, supply: f64, unit| Resource {
        name,
        demand,
        supply,
        unit,
        utilization: demand / supply,
    };
    let resources = vec![
        r(
            "cpu (shards)",
            cpu_demand,
            f64::from(shards_available),
            "shards",
        ),
        r("nic packets", avalanche_packets, nic_pps, "packets/s"),
        r("nic bandwidth", nic_bits, h.nic_gbps * 1e9, "bits/s"),
        r(
            "memory",
            memory,
            h.memory_gib * (1u64 << 30) as f64,
            "bytes",
        ),
        r(
            "disk writes",
            disk_avalanche,
            h.disk_write_mbps * 1e6,
            "bytes/s",
        ),
    ];
    let worst = resources
        .iter()
        .max_by(|a, b| a.utilization.total_cmp(&b.utilization))
        .expect("non-empty");
    let max_util = worst.utilization;
    Ok(Plan {
        hardware: h.name.clone(),
        workload: w.name.clone(),
        calibrated_on: format!(
            "{} cores, kernel {}, server {} ({} shard(s))",
            cal.machine.cores, cal.machine.kernel, server.name, server.shards
        ),
        planned_subscribers: s as u64,
        leases: leases.ceil() as u64,
        steady_exchanges_per_sec: steady_exchanges,
        steady_packets_per_sec: steady_packets,
        avalanche_exchanges_per_sec: avalanche_exchanges,
        avalanche_packets_per_sec: avalanche_packets,
        shards_needed,
        cores_needed: shards_needed + h.reserved_cores,
        shards_available,
        capacity_exchanges_per_sec: capacity,
        memory_bytes: memory,
        disk_write_bytes_per_sec_steady: disk_steady,
        disk_write_bytes_per_sec_avalanche: disk_avalanche,
        fsyncs_per_sec_per_shard: fsyncs_per_shard,
        commit_latency_us: h.fsync_latency_us,
        failover_bits_per_sec_steady: failover_steady,
        failover_bits_per_sec_avalanche: failover_avalanche,
        binding_resource: worst.name,
        headroom: h.target_utilization / max_util - 1.0,
        target_utilization: h.target_utilization,
        over_capacity: max_util > h.target_utilization,
        resources,
    })
}

fn si(v: f64) -> String {
    let (d, u) = if v >= 1e9 {
        (1e9, "G")
    } else if v >= 1e6 {
        (1e6, "M")
    } else if v >= 1e3 {
        (1e3, "k")
    } else {
        (1.0, "")
    };
    format!("{:.2}{u}", v / d)
}

impl Plan {
    /// The human-readable plan.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let mut line = |k: &str, v: String| o.push_str(&format!("{k:<30} {v}\n"));
        line(
            "hardware / workload",
            format!("{} / {}", self.hardware, self.workload),
        );
        line("calibrated on", self.calibrated_on.clone());
        line(
            "subscribers (planned)",
            format!("{} ({} leases)", self.planned_subscribers, self.leases),
        );
        line(
            "steady rate",
            format!(
                "{}/s exchanges, {} packets/s",
                si(self.steady_exchanges_per_sec),
                si(self.steady_packets_per_sec)
            ),
        );
        line(
            "avalanche rate",
            format!(
                "{}/s exchanges, {} packets/s",
                si(self.avalanche_exchanges_per_sec),
                si(self.avalanche_packets_per_sec)
            ),
        );
        line(
            "shards / cores needed",
            format!(
                "{} shards, {} cores (hardware runs {} shards: {}/s exchanges)",
                self.shards_needed,
                self.cores_needed,
                self.shards_available,
                si(self.capacity_exchanges_per_sec)
            ),
        );
        line("memory", format!("{}B", si(self.memory_bytes)));
        line(
            "disk writes",
            format!(
                "{}B/s steady, {}B/s avalanche; {} fsync/s per shard, +{:.0} µs per reply",
                si(self.disk_write_bytes_per_sec_steady),
                si(self.disk_write_bytes_per_sec_avalanche),
                si(self.fsyncs_per_sec_per_shard),
                self.commit_latency_us
            ),
        );
        line(
            "failover stream",
            format!(
                "{}bit/s steady, {}bit/s avalanche",
                si(self.failover_bits_per_sec_steady),
                si(self.failover_bits_per_sec_avalanche)
            ),
        );
        o.push_str("\nresource utilisation at the avalanche peak:\n");
        for r in &self.resources {
            o.push_str(&format!(
                "  {:<16} {:>7.1}%   {} of {} {}\n",
                r.name,
                r.utilization * 100.0,
                si(r.demand),
                si(r.supply),
                r.unit
            ));
        }
        o.push_str(&format!(
            "\nbinds first: {}; headroom {:.0}% (target utilisation {:.0}%)\n",
            self.binding_resource,
            self.headroom * 100.0,
            self.target_utilization * 100.0
        ));
        if self.over_capacity {
            o.push_str("OVER CAPACITY: this hardware cannot serve this workload at the target utilisation\n");
        } else {
            o.push_str("fits\n");
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hw() -> Hardware {
        Hardware {
            name: "h".into(),
            description: String::new(),
            cores: 9,
            reserved_cores: 1,
            nic_queues: 8,
            nic_gbps: 25.0,
            nic_mpps_per_queue: 1.0,
            memory_gib: 64.0,
            fsync_latency_us: 100.0,
            disk_write_mbps: 1000.0,
            core_speed: 1.0,
            target_utilization: 0.7,
        }
    }
    fn wl(subscribers: u64) -> Workload {
        Workload {
            name: "w".into(),
            description: String::new(),
            subscribers,
            na_share: 1.0,
            pd_share: 1.0,
            valid_lifetime_secs: 7200,
            t1_secs: 3600,
            avalanche_window_secs: 100,
            churn_per_day: 0.0,
            growth_per_year: 0.0,
            plan_years: 0,
            failover: true,
        }
    }
    fn cal(sarr: f64) -> Calibration {
        Calibration {
            machine: calibration::Machine {
                cores: 2,
                kernel: "k".into(),
                measured_at: 0,
            },
            transport: calibration::Transport {
                exchanges_per_sec: 1e5,
                packets_per_sec: 2e5,
                rig_cpu_us_per_exchange: 5.0,
            },
            storage: calibration::Storage {
                path: ".".into(),
                fsync_p50_us: 100.0,
                fsync_p99_us: 200.0,
            },
            server: Some(calibration::Server {
                name: "tandem".into(),
                shards: 1,
                sarr_exchanges_per_sec: sarr,
                renew_exchanges_per_sec: sarr * 2.0,
                sarr_latency_p99_us: 100,
                drops: 0,
            }),
        }
    }

    #[test]
    fn rates_follow_the_model() {
        let p = plan(&hw(), &wl(100_000), &cal(10_000.0)).unwrap();
        assert_eq!(p.planned_subscribers, 100_000);
        assert!((p.avalanche_exchanges_per_sec - 1000.0).abs() < 1e-9);
        assert!((p.steady_exchanges_per_sec - 100_000.0 / 3600.0).abs() < 1e-9);
        // 1000/10000 + 27.8/20000 shard-seconds, at 70% → 1 shard.
        assert_eq!(p.shards_needed, 1);
        assert_eq!(p.cores_needed, 2);
        assert_eq!(p.capacity_exchanges_per_sec, 80_000.0);
        assert!(!p.over_capacity);
    }

    #[test]
    fn doubling_past_the_capacity_is_flagged_and_names_the_cpu() {
        // Capacity 80k/s over 100 s = 8M subscribers at 100%; 5.6M at 70%.
        let fits = plan(&hw(), &wl(5_000_000), &cal(10_000.0)).unwrap();
        assert!(!fits.over_capacity, "{}", fits.render());
        let over = plan(&hw(), &wl(10_000_000), &cal(10_000.0)).unwrap();
        assert!(over.over_capacity);
        assert_eq!(over.binding_resource, "cpu (shards)");
        assert!(over.headroom < 0.0);
    }

    #[test]
    fn growth_compounds_and_memory_scales_with_leases() {
        let mut w = wl(1000);
        w.growth_per_year = 0.1;
        w.plan_years = 2;
        let p = plan(&hw(), &w, &cal(10_000.0)).unwrap();
        assert_eq!(p.planned_subscribers, 1210);
        assert_eq!(p.leases, 2420);
        let w1 = wl(1000);
        let p1 = plan(&hw(), &w1, &cal(10_000.0)).unwrap();
        assert!((p.memory_bytes / p1.memory_bytes - 1.21).abs() < 1e-9);
    }

    #[test]
    fn bad_profiles_say_which_field() {
        let mut h = hw();
        h.reserved_cores = 9;
        assert!(h.validate().unwrap_err().contains("reserved_cores"));
        let mut w = wl(10);
        w.t1_secs = 9000;
        assert!(w.validate().unwrap_err().contains("t1_secs"));
        let err = toml::from_str::<Hardware>("name = 1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn uncalibrated_server_is_an_error() {
        let mut c = cal(1.0);
        c.server = None;
        assert!(plan(&hw(), &wl(10), &c).unwrap_err().contains("calibrate"));
    }
}
