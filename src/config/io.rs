//! `[io]`: which backend, which interfaces, how many shards, and the batch and buffer sizes
//! of the io_uring backend. The AF_XDP backend's own settings live in `[io.xdp]`.
//!
//! ```toml
//! [io]
//! backend = "uring"          # "uring" (portable default) | "xdp"
//! shards = 4                 # shard threads; default: one per available core
//! interfaces = ["eth1"]      # where direct clients are (ff02::1:2 joined); default: every
//!                            # up, non-loopback, multicast-capable interface
//! pin_cores = true           # pin shard i to core i (core_affinity)
//! rx_batch = 256             # datagrams per receive batch
//! rx_buffers = 1024          # provided receive buffers per shard (power of two)
//! rx_buffer_size = 2048      # bytes per receive buffer (longer datagrams are dropped)
//! tx_slots = 512             # replies in flight per shard
//! udp_gro = true             # accept coalesced receives (UDP GRO) when the kernel allows it
//! udp_gso = true             # send same-size replies to one peer as one segmented send (GSO)
//! socket_recv_buffer = 8388608
//! handoff_queue = 4096       # datagrams waiting for another shard, per shard
//! counters_interval = 60     # seconds between counter logs (0: only at exit)
//! ```
//!
//! Values are checked while the file is read, so a bad one is reported with its line and
//! column like every other configuration error.

use serde::{Deserialize, Deserializer};

/// Which packet I/O backend the shards use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// One UDP socket per shard driven through io_uring (SO_REUSEPORT).
    #[default]
    Uring,
    /// AF_XDP rings fed by the XDP program in bpf/ (one shard per NIC queue).
    Xdp,
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "uring" => Ok(Backend::Uring),
            "xdp" => Ok(Backend::Xdp),
            _ => Err(format!(
                "unknown backend `{s}` (expected \"uring\" or \"xdp\")"
            )),
        }
    }
}

/// Most shards a server runs (far above any core count it will meet; bounds thread and
/// memory use when the value is a typo).
pub const MAX_SHARDS: usize = 1024;

/// `[io]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IoSection {
    pub backend: Backend,
    /// Shard threads; `None`: one per available core.
    #[serde(deserialize_with = "de_shards")]
    pub shards: Option<usize>,
    /// Interfaces serving direct clients (multicast joined there). Empty: every up,
    /// non-loopback, multicast-capable interface.
    pub interfaces: Vec<String>,
    /// UDP port to listen on: 547 (RFC 8415 §7.2); other values are for labs and tests.
    #[serde(deserialize_with = "de_port")]
    pub port: u16,
    pub pin_cores: bool,
    #[serde(deserialize_with = "de_rx_batch")]
    pub rx_batch: usize,
    #[serde(deserialize_with = "de_rx_buffers")]
    pub rx_buffers: u16,
    #[serde(deserialize_with = "de_rx_buffer_size")]
    pub rx_buffer_size: u32,
    #[serde(deserialize_with = "de_tx_slots")]
    pub tx_slots: u16,
    /// UDP GRO on the io_uring sockets (used only when the kernel accepts it; receive
    /// buffers then grow to hold a 64 KiB train).
    pub udp_gro: bool,
    /// UDP GSO for replies on the io_uring sockets (used only when the kernel knows it).
    pub udp_gso: bool,
    /// SO_RCVBUF in bytes (0: kernel default).
    pub socket_recv_buffer: usize,
    #[serde(deserialize_with = "de_handoff_queue")]
    pub handoff_queue: usize,
    /// Seconds between periodic counter logs; 0 logs only at exit.
    pub counters_interval: u64,
    /// `[io.xdp]`: the AF_XDP backend's settings (src/config/xdp.rs).
    #[serde(deserialize_with = "crate::config::xdp::deserialize_validated")]
    pub xdp: crate::config::xdp::XdpConfig,
}

impl Default for IoSection {
    fn default() -> Self {
        IoSection {
            backend: Backend::Uring,
            shards: None,
            interfaces: Vec::new(),
            port: 547,
            pin_cores: true,
            rx_batch: 256,
            rx_buffers: 1024,
            rx_buffer_size: 2048,
            tx_slots: 512,
            udp_gro: true,
            udp_gso: true,
            socket_recv_buffer: 8 << 20,
            handoff_queue: 4096,
            counters_interval: 60,
            xdp: crate::config::xdp::XdpConfig::default(),
        }
    }
}

fn bounded<'de, D: Deserializer<'de>>(
    d: D,
    min: u64,
    max: u64,
    what: &str,
) -> Result<u64, D::Error> {
    let v = u64::deserialize(d)?;
    if v < min || v > max {
        return Err(serde::de::Error::custom(format!(
            "{what} must be between {min} and {max}, not {v}"
        )));
    }
    Ok(v)
}

fn de_shards<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    bounded(d, 1, MAX_SHARDS as u64, "shards").map(|v| Some(v as usize))
}

fn de_port<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    bounded(d, 1, 65535, "port").map(|v| v as u16)
}

fn de_rx_batch<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    bounded(d, 1, 4096, "rx_batch").map(|v| v as usize)
}

fn de_rx_buffers<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let v = bounded(d, 8, 32768, "rx_buffers")?;
    if !v.is_power_of_two() {
        return Err(serde::de::Error::custom(format!(
            "rx_buffers must be a power of two (the kernel's buffer ring), not {v}"
        )));
    }
    Ok(v as u16)
}

fn de_rx_buffer_size<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    // Room for the recvmsg header, address and control messages plus a useful payload;
    // 65600 fits the largest UDP payload.
    bounded(d, 512, 65600, "rx_buffer_size").map(|v| v as u32)
}

fn de_tx_slots<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    bounded(d, 1, 32768, "tx_slots").map(|v| v as u16)
}

fn de_handoff_queue<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    bounded(d, 1, 1 << 20, "handoff_queue").map(|v| v as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Wrapper {
        #[serde(default)]
        io: IoSection,
    }

    fn parse(text: &str) -> Result<IoSection, toml::de::Error> {
        toml::from_str::<Wrapper>(text).map(|w| w.io)
    }

    #[test]
    fn defaults_when_absent() {
        assert_eq!(parse("").unwrap(), IoSection::default());
        assert_eq!(parse("[io]\n").unwrap(), IoSection::default());
    }

    #[test]
    fn reads_every_field() {
        let io = parse(
            "[io]\nbackend = \"xdp\"\nshards = 3\ninterfaces = [\"eth1\"]\nport = 10547\n\
             pin_cores = false\nrx_batch = 64\nrx_buffers = 256\nrx_buffer_size = 4096\n\
             tx_slots = 128\nsocket_recv_buffer = 0\nhandoff_queue = 16\ncounters_interval = 0\n\
             udp_gro = false\nudp_gso = false\n",
        )
        .unwrap();
        assert_eq!(io.backend, Backend::Xdp);
        assert_eq!(io.shards, Some(3));
        assert_eq!(io.interfaces, vec!["eth1".to_string()]);
        assert_eq!(io.port, 10547);
        assert!(!io.pin_cores);
        assert_eq!(
            (io.rx_batch, io.rx_buffers, io.rx_buffer_size, io.tx_slots),
            (64, 256, 4096, 128)
        );
        assert_eq!((io.handoff_queue, io.counters_interval), (16, 0));
        assert_eq!((io.udp_gro, io.udp_gso), (false, false));
    }

    #[test]
    fn bad_values_are_reported_at_their_line() {
        let e = parse("[io]\nbackend = \"uring\"\nrx_buffers = 1000\n").unwrap_err();
        assert!(e.message().contains("power of two"), "{e}");
        let span = e.span().expect("a position");
        let text = "[io]\nbackend = \"uring\"\nrx_buffers = 1000\n";
        assert_eq!(&text[span], "1000");

        let e = parse("[io]\nshards = 0\n").unwrap_err();
        assert!(e.message().contains("between 1 and 1024"), "{e}");
        let e = parse("[io]\nbackend = \"dpdk\"\n").unwrap_err();
        assert!(e.message().contains("dpdk"), "{e}");
        let e = parse("[io]\nshard = 2\n").unwrap_err();
        assert!(e.message().contains("unknown field"), "{e}");
    }

    #[test]
    fn backend_from_cli_text() {
        assert_eq!("uring".parse::<Backend>(), Ok(Backend::Uring));
        assert_eq!("xdp".parse::<Backend>(), Ok(Backend::Xdp));
        assert!("af_xdp".parse::<Backend>().is_err());
    }
}
