//! The batch I/O interface the shard loop drives, and its backends.
//!
//! Both backends (io_uring UDP sockets and AF_XDP rings) implement [`PacketIo`]: receive a
//! batch of DHCPv6 payloads with their metadata, then queue replies and flush them in one
//! batch. The shard loop is written once against this trait.
//!
//! This is one of the two places `unsafe` is allowed (kernel ring contracts); each block
//! carries a `// SAFETY:` comment.
#![allow(unsafe_code)]

pub mod sys;
pub mod uring;
pub mod xdp;

pub use sys::Waker;

use std::io;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::time::Duration;

/// The layer-2 header of a frame received on a raw backend (AF_XDP), kept so the reply can
/// reflect it: MACs swapped, VLAN tags kept (no neighbour table in the data plane).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L2Header {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// Up to two VLAN tags (802.1Q, or QinQ outer then inner), TPID and TCI each.
    pub vlans: [(u16, u16); 2],
    pub vlan_count: u8,
}

/// Where a datagram came from and how it arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxMeta {
    /// Source address and UDP port (a client on 546, or a relay on 547 or its own port,
    /// RFC 8357).
    pub src: SocketAddrV6,
    /// Destination address (IPV6_PKTINFO): ff02::1:2 for direct clients, a unicast address
    /// for relays or unicasting clients (RFC 8415 §18.4 UseMulticast depends on it).
    pub dst: Ipv6Addr,
    /// Receiving interface index; the fallback for link selection (RFC 8415 §13.1).
    pub ifindex: u32,
    /// Hop limit of the received packet, when known.
    pub hop_limit: Option<u8>,
    /// Set by raw backends: the frame's L2 header and receive queue.
    pub l2: Option<L2Header>,
    pub queue: u32,
}

/// Where a reply goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxMeta {
    pub dst: SocketAddrV6,
    /// Source address to use: the request's destination when it was unicast, otherwise the
    /// interface's link-local address (chosen by the kernel when unspecified).
    pub src: Ipv6Addr,
    /// Outgoing interface (needed for link-local destinations).
    pub ifindex: u32,
    /// The request's L2 header, reflected by raw backends.
    pub l2: Option<L2Header>,
    pub queue: u32,
}

impl TxMeta {
    /// The reply metadata for a request received with `rx`, sent to `dst`.
    pub fn reply_to(rx: &RxMeta, dst: SocketAddrV6) -> TxMeta {
        TxMeta {
            dst,
            src: if rx.dst.is_multicast() {
                Ipv6Addr::UNSPECIFIED
            } else {
                rx.dst
            },
            ifindex: rx.ifindex,
            l2: rx.l2,
            queue: rx.queue,
        }
    }
}

/// A batch packet interface (one instance per shard).
pub trait PacketIo {
    /// Waits up to `timeout` (`None`: forever, `Some(ZERO)`: poll) for at least one datagram
    /// and calls `f` once per datagram received, up to the backend's batch size. The payload
    /// is the UDP payload (the DHCPv6 message); its buffer is recycled after `f` returns.
    fn recv_batch(
        &mut self,
        timeout: Option<Duration>,
        f: &mut dyn FnMut(&RxMeta, &[u8]),
    ) -> io::Result<usize>;

    /// Queues one datagram for transmission. May flush internally when its queue is full.
    fn send(&mut self, meta: &TxMeta, payload: &[u8]) -> io::Result<()>;

    /// Transmits everything queued by [`send`](PacketIo::send).
    fn flush(&mut self) -> io::Result<()>;

    /// Makes [`recv_batch`](PacketIo::recv_batch) return early whenever `waker` is woken
    /// (another shard handed this one a packet, or the server is stopping). Returns false if
    /// the backend cannot watch it; the shard loop then polls its handoff queue on a short tick.
    fn attach_waker(&mut self, waker: &Waker) -> io::Result<bool> {
        let _ = waker;
        Ok(false)
    }

    /// Backend counters since creation.
    fn stats(&self) -> IoStats {
        IoStats::default()
    }
}

/// What a backend counts below the DHCPv6 layer (the engine counts everything above).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoStats {
    /// Datagrams handed to the shard.
    pub rx_packets: u64,
    /// Datagrams longer than a receive buffer (or cut off the end of a coalesced UDP GRO
    /// buffer), dropped.
    pub rx_truncated: u64,
    /// Receive completions with an error or unusable metadata, dropped.
    pub rx_errors: u64,
    /// Times the receive request had to be re-armed (kernel out of buffers, CQ overflow).
    pub rx_rearms: u64,
    /// Multicast datagrams seen by a queue that does not serve multicast, dropped (see
    /// [`uring`] on SO_REUSEPORT and multicast).
    pub rx_foreign_multicast: u64,
    /// Receive buffers that held several coalesced datagrams (UDP GRO), each split and
    /// handed over one by one.
    pub rx_gro_buffers: u64,
    /// Datagrams the kernel accepted for transmission.
    pub tx_packets: u64,
    /// Sends that carried several datagrams in one segmented `sendmsg` (UDP GSO).
    pub tx_gso_sends: u64,
    /// Segmented sends the kernel refused, whose datagrams were sent again one by one.
    pub tx_gso_fallbacks: u64,
    /// Datagrams the kernel refused (no route, no source address, buffer full).
    pub tx_errors: u64,
}
