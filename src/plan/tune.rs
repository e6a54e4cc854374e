//! `tandem tune`: the system settings a hardware profile needs, read from the running system
//! and optionally applied.
//!
//! * NIC queues: one combined channel per shard (`ethtool -L IF combined N`), so RSS spreads
//!   subscribers over exactly the queues the shards poll.
//! * IRQ affinity: queue q's interrupt on shard q's core (`/proc/irq/N/smp_affinity_list`),
//!   shards on the cores after the reserved ones, so a packet is received, served and sent
//!   on one core.
//! * Socket buffers: io_uring sockets absorb bursts (an avalanche) in their receive buffer;
//!   `net.core.rmem_max`/`wmem_max` cap what the server may ask for.
//! * `net.core.netdev_max_backlog`: packets queued per core between the driver and the stack.
//! * Busy polling (`net.core.busy_poll`/`busy_read`, µs): the shard spins on the queue instead
//!   of sleeping on an interrupt while it is loaded, trading CPU for latency.
//! * Hugepages (`vm.nr_hugepages`): AF_XDP UMEM areas (16 MiB per shard) on 2 MiB pages.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::Hardware;

/// AF_XDP UMEM per shard: 4096 frames of 4 KiB.
const UMEM_BYTES_PER_SHARD: u64 = 4096 * 4096;
const HUGEPAGE_BYTES: u64 = 2 << 20;

/// How a setting is read and written.
#[derive(Clone, Debug, PartialEq)]
pub enum Knob {
    /// A file under /proc/sys (or /proc/irq), holding one value.
    File(PathBuf),
    /// `ethtool -L IF combined N` or `rx N tx N` (read with `ethtool -l IF`).
    Channels(String, ChannelKind),
}

/// One setting: what it is, its current value, the value the profile wants.
#[derive(Clone, Debug)]
pub struct Setting {
    pub name: String,
    pub knob: Knob,
    pub current: Option<String>,
    pub wanted: String,
    pub why: &'static str,
}

impl Setting {
    pub fn needs_change(&self) -> bool {
        self.current.as_deref().map(str::trim) != Some(self.wanted.as_str())
    }

    /// The shell command an operator would run.
    pub fn command(&self) -> String {
        match &self.knob {
            Knob::File(p) => {
                if let Ok(rest) = p.strip_prefix("/proc/sys") {
                    format!(
                        "sysctl -w {}={}",
                        rest.display().to_string().replace('/', "."),
                        self.wanted
                    )
                } else {
                    format!("echo {} > {}", self.wanted, p.display())
                }
            }
            Knob::Channels(ifname, kind) => format!(
                "ethtool -L {ifname} {}",
                channel_args(*kind, &self.wanted).join(" ")
            ),
        }
    }

    /// Applies the setting; returns what went wrong.
    pub fn apply(&self) -> Result<(), String> {
        match &self.knob {
            Knob::File(p) => std::fs::write(p, format!("{}\n", self.wanted))
                .map_err(|e| format!("{}: {e}", p.display())),
            Knob::Channels(ifname, kind) => {
                let out = Command::new("ethtool")
                    .args(["-L", ifname])
                    .args(channel_args(*kind, &self.wanted))
                    .output()
                    .map_err(|e| format!("ethtool: {e}"))?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(format!(
                        "ethtool -L {ifname}: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ))
                }
            }
        }
    }
}

fn channel_args(kind: ChannelKind, n: &str) -> Vec<String> {
    match kind {
        ChannelKind::Combined => vec!["combined".into(), n.into()],
        ChannelKind::RxTx => vec!["rx".into(), n.into(), "tx".into(), n.into()],
    }
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Current channel count from `ethtool -l` output ("Current hardware settings"): the
/// combined count, or for drivers without combined channels (veth, some virtio) the RX
/// count, with which of the two it is.
pub fn parse_channels(ethtool_l: &str) -> Option<(ChannelKind, u32)> {
    let current = ethtool_l.split("Current hardware settings:").nth(1)?;
    let field = |name: &str| {
        current
            .lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    };
    field("Combined:")
        .map(|n| (ChannelKind::Combined, n))
        .or_else(|| field("RX:").map(|n| (ChannelKind::RxTx, n)))
}

/// Which `ethtool -L` parameters set the queue count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelKind {
    Combined,
    RxTx,
}

/// IRQ numbers of `ifname`'s queues, in /proc/interrupts order.
pub fn parse_irqs(proc_interrupts: &str, ifname: &str) -> Vec<u32> {
    proc_interrupts
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .last()
                .is_some_and(|name| name == ifname || name.starts_with(&format!("{ifname}-")))
        })
        .filter_map(|l| l.split(':').next()?.trim().parse().ok())
        .collect()
}

/// The settings for `hw`, with current values read from this system.
pub fn settings(hw: &Hardware, interface: Option<&str>) -> Vec<Setting> {
    let shards = (hw.cores - hw.reserved_cores).min(hw.nic_queues);
    let mut v = Vec::new();
    if let Some(ifname) = interface {
        let current = Command::new("ethtool")
            .args(["-l", ifname])
            .output()
            .ok()
            .and_then(|o| parse_channels(&String::from_utf8_lossy(&o.stdout)));
        let kind = current.map_or(ChannelKind::Combined, |c| c.0);
        v.push(Setting {
            name: format!("{ifname} queues"),
            knob: Knob::Channels(ifname.to_string(), kind),
            current: current.map(|c| c.1.to_string()),
            wanted: shards.to_string(),
            why: "one NIC queue per shard",
        });
        let irqs = std::fs::read_to_string("/proc/interrupts")
            .map(|t| parse_irqs(&t, ifname))
            .unwrap_or_default();
        for (q, irq) in irqs.iter().enumerate().take(shards as usize) {
            let p = PathBuf::from(format!("/proc/irq/{irq}/smp_affinity_list"));
            v.push(Setting {
                name: format!("{ifname} queue {q} IRQ {irq} → core"),
                current: read(&p),
                knob: Knob::File(p),
                wanted: (hw.reserved_cores + q as u32).to_string(),
                why: "queue q's interrupt on shard q's core",
            });
        }
    }
    // Buffers scale with the link: ~5 ms of line rate, at least 16 MiB.
    let buf = ((hw.nic_gbps * 1e9 / 8.0 * 0.005) as u64).max(16 << 20);
    let backlog = ((hw.nic_gbps * 10_000.0) as u64).max(10_000);
    let hugepages = u64::from(shards) * UMEM_BYTES_PER_SHARD / HUGEPAGE_BYTES;
    let sysctl = |name: &str| PathBuf::from(format!("/proc/sys/{}", name.replace('.', "/")));
    let sysctls: [(&str, String, &'static str); 6] = [
        (
            "net.core.rmem_max",
            buf.to_string(),
            "receive buffers absorb avalanche bursts",
        ),
        (
            "net.core.wmem_max",
            buf.to_string(),
            "send buffers for reply batches",
        ),
        (
            "net.core.netdev_max_backlog",
            backlog.to_string(),
            "per-core queue before the stack",
        ),
        (
            "net.core.busy_poll",
            "50".into(),
            "busy-poll 50 µs before sleeping (latency)",
        ),
        (
            "net.core.busy_read",
            "50".into(),
            "busy-read 50 µs on blocking socket reads",
        ),
        (
            "vm.nr_hugepages",
            hugepages.to_string(),
            "AF_XDP UMEM (16 MiB per shard) on 2 MiB pages",
        ),
    ];
    for (name, wanted, why) in sysctls {
        let p = sysctl(name);
        v.push(Setting {
            name: name.to_string(),
            current: read(&p),
            knob: Knob::File(p),
            wanted,
            why,
        });
    }
    v
}

/// The `tandem tune` table.
pub fn render(settings: &[Setting]) -> String {
    let mut o = format!(
        "{:<36} {:>12} {:>12}  {}\n",
        "setting", "current", "wanted", "command"
    );
    for s in settings {
        o.push_str(&format!(
            "{:<36} {:>12} {:>12}  {}{}\n",
            s.name,
            s.current.as_deref().unwrap_or("?"),
            s.wanted,
            if s.needs_change() { "" } else { "(ok) " },
            s.command()
        ));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    const ETHTOOL_L: &str = "Channel parameters for eth0:\nPre-set maximums:\nRX:\t\tn/a\nTX:\t\tn/a\nOther:\t\t1\nCombined:\t63\nCurrent hardware settings:\nRX:\t\tn/a\nTX:\t\tn/a\nOther:\t\t1\nCombined:\t8\n";

    #[test]
    fn channels_are_read_from_current_settings_not_maximums() {
        assert_eq!(parse_channels(ETHTOOL_L), Some((ChannelKind::Combined, 8)));
        assert_eq!(parse_channels("garbage"), None);
        // veth: no combined channels, separate RX/TX.
        let veth = "Channel parameters for v0:\nPre-set maximums:\nRX:\t\t2\nTX:\t\t2\nOther:\t\tn/a\nCombined:\tn/a\nCurrent hardware settings:\nRX:\t\t1\nTX:\t\t1\nOther:\t\tn/a\nCombined:\tn/a\n";
        assert_eq!(parse_channels(veth), Some((ChannelKind::RxTx, 1)));
        let s = Setting {
            name: "q".into(),
            knob: Knob::Channels("v0".into(), ChannelKind::RxTx),
            current: Some("1".into()),
            wanted: "2".into(),
            why: "",
        };
        assert_eq!(s.command(), "ethtool -L v0 rx 2 tx 2");
    }

    #[test]
    fn irqs_of_the_interface_only() {
        let pi = "           CPU0       CPU1\n 24:  1 2 IR-PCI-MSI 1-edge eth0\n 25:  3 4 IR-PCI-MSI 2-edge eth0-TxRx-0\n 26:  3 4 IR-PCI-MSI 3-edge eth0-TxRx-1\n 27:  0 0 IR-PCI-MSI 4-edge eth10-TxRx-0\n";
        assert_eq!(parse_irqs(pi, "eth0"), vec![24, 25, 26]);
    }

    #[test]
    fn settings_follow_the_profile() {
        let hw = Hardware {
            name: "x".into(),
            description: String::new(),
            cores: 16,
            reserved_cores: 2,
            nic_queues: 16,
            nic_gbps: 25.0,
            nic_mpps_per_queue: 1.0,
            memory_gib: 64.0,
            fsync_latency_us: 50.0,
            disk_write_mbps: 1000.0,
            core_speed: 1.0,
            target_utilization: 0.7,
        };
        let s = settings(&hw, None);
        let get = |n: &str| s.iter().find(|x| x.name == n).unwrap();
        // 14 shards × 16 MiB UMEM / 2 MiB pages.
        assert_eq!(get("vm.nr_hugepages").wanted, "112");
        // 5 ms of 25 Gbit/s is 15.6 MB: the 16 MiB floor applies.
        assert_eq!(
            get("net.core.rmem_max").command(),
            "sysctl -w net.core.rmem_max=16777216"
        );
        assert_eq!(get("net.core.busy_poll").wanted, "50");
    }
}
