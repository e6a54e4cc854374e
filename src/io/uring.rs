//! The portable backend: one UDP socket per shard driven through io_uring.
//!
//! * Receive: one multishot `recvmsg` (IORING_OP_RECVMSG with IORING_RECV_MULTISHOT) posts a
//!   completion per datagram into a buffer the kernel picks from a *provided-buffer ring*
//!   (IORING_REGISTER_PBUF_RING). Each buffer holds the kernel's `io_uring_recvmsg_out`
//!   header, the source address, the control messages (IPV6_PKTINFO: destination address and
//!   receiving interface; IPV6_HOPLIMIT) and the payload. The buffer goes back to the ring as
//!   soon as the shard's callback returns. When the kernel ends the multishot request (no
//!   buffer left: ENOBUFS, CQ overflow, error) it is re-armed on the next call.
//! * UDP GRO (receive offload, on by default when the kernel accepts `UDP_GRO`): relayed
//!   traffic is a handful of flows (relay:547 → server:547), and the kernel may hand several
//!   datagrams of one flow over in a single receive, with a `UDP_GRO` control message giving
//!   the segment size (all segments that size, the last one possibly shorter). This turns
//!   the per-datagram cost of the socket path (wake-up, socket lookup, queueing, copy-out
//!   bookkeeping, one completion) into a per-train cost. Each buffer is then large enough for
//!   a 64 KiB train, and [`datagrams`] splits it: every segment is handed to the shard as its
//!   own datagram (and parsed and bounded on its own by the engine); a train the buffer cut
//!   short loses its incomplete tail segment, which is counted as truncated. The kernel
//!   coalesces when the sender used UDP GSO (always visible on veth and loopback) or when the
//!   NIC's GRO merged packets of one flow arriving in one NAPI poll; everything else arrives
//!   one datagram per receive, as without the option.
//! * Transmit: `send` copies the reply into a slot of a fixed slab (message header, address,
//!   IPV6_PKTINFO control message with the source address and interface) and queues one
//!   IORING_OP_SENDMSG; `flush` submits the whole batch with one `io_uring_enter`. A slot is
//!   reused only after its completion arrived, which is what the kernel requires of buffers
//!   referenced by an in-flight SQE.
//! * UDP GSO (send offload, on by default when the kernel knows `UDP_SEGMENT`): replies to the
//!   same destination (a relay, or the rig) from the same source with the same size are
//!   appended to one slot ([`Coalescer`]) and leave in one `sendmsg` with a `UDP_SEGMENT`
//!   control message; the kernel (or the NIC) cuts them into datagrams. A batch also takes
//!   one shorter datagram as its last segment, which closes it. Segments are kept at most
//!   1232 bytes (fits the IPv6 minimum MTU: the kernel refuses GSO segments that would need
//!   fragmentation), at most 64 per send and 64 KiB in total. If the kernel refuses a
//!   segmented send (EIO before Linux 6.11 when the egress device cannot checksum;
//!   EINVAL/EOPNOTSUPP on paths that cannot segment) its datagrams are sent again one by one
//!   and the socket stops segmenting; no reply is lost.
//! * Wake-up: an optional eventfd ([`Waker`]) watched with a multishot poll, so a shard
//!   blocked in `recv_batch` returns at once when another shard hands it a packet.
//!
//! Multicast with SO_REUSEPORT: the kernel delivers a multicast datagram to *every* socket
//! of the port that is a member of the group (and, with the default IPV6_MULTICAST_ALL=1, to
//! every socket on the port once any socket joined). To answer each direct client exactly
//! once, all shard sockets set IPV6_MULTICAST_ALL=0 and only the socket configured with
//! `join_multicast` (shard 0) joins ff02::1:2 (and ff05::1:3); it receives every multicast
//! request and the shard loop hands each to its owner shard. As a second guard, a socket that
//! did not join drops (and counts) any multicast datagram it still receives. Unicast traffic
//! (relays, RFC 8415 §18.4 unicast) is spread across all sockets by the reuseport hash.

use std::collections::VecDeque;
use std::io;
use std::mem;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use io_uring::types::{BufRingEntry, CancelBuilder, Fd, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring};

use super::sys::{self, UdpOptions, Waker};
use super::{IoStats, PacketIo, RxMeta, TxMeta};

/// Tuning of one io_uring socket.
#[derive(Clone, Debug)]
pub struct UringOptions {
    pub socket: UdpOptions,
    /// Join the DHCPv6 multicast groups on these interface indexes (shard 0 only; see the
    /// module docs). Empty: receive no multicast.
    pub join_multicast: Vec<u32>,
    /// Provided receive buffers (power of two, at most 32768).
    pub rx_buffers: u16,
    /// Size of each receive buffer, including the ~110 bytes of header, address and control
    /// messages; longer datagrams are dropped and counted as truncated.
    pub rx_buffer_size: u32,
    /// Most datagrams handed to the callback per `recv_batch`.
    pub rx_batch: usize,
    /// Transmit slots: replies queued or in flight at once (with GSO a slot carries a whole
    /// batch of replies).
    pub tx_slots: u16,
    /// Accept coalesced receives (UDP GRO) when the kernel allows it; receive buffers are then
    /// at least [`GRO_RX_BUFFER_SIZE`] bytes.
    pub gro: bool,
    /// Send same-destination, same-size replies as one segmented send (UDP GSO) when the
    /// kernel knows it.
    pub gso: bool,
}

impl UringOptions {
    /// Defaults for a DHCPv6 server socket bound to `bind`.
    pub fn new(bind: SocketAddrV6) -> UringOptions {
        UringOptions {
            socket: UdpOptions {
                bind,
                reuse_port: true,
                recv_buffer: 8 << 20,
                send_buffer: 4 << 20,
            },
            join_multicast: Vec::new(),
            rx_buffers: 1024,
            rx_buffer_size: 2048,
            rx_batch: 256,
            tx_slots: 512,
            gro: true,
            gso: true,
        }
    }
}

/// Buffer group id of the provided-buffer ring (one ring per io_uring instance).
const BUF_GROUP: u16 = 0;

// user_data tags: the kind in the high 32 bits, a slot number in the low ones.
const UD_RECV: u64 = 1 << 32;
const UD_WAKE: u64 = 2 << 32;
const UD_SEND: u64 = 3 << 32;
const UD_KIND_MASK: u64 = 0xffff_ffff << 32;

/// Control-message space for IPV6_PKTINFO (20 bytes), IPV6_HOPLIMIT (4 bytes) and UDP_GRO
/// (4 bytes), each behind a 16-byte cmsghdr and padded to 8 bytes (88), with room to spare:
/// a cut-off control area (MSG_CTRUNC) would lose the packet info.
const RX_CONTROL_LEN: usize = 128;
/// The 16-byte `io_uring_recvmsg_out` header the kernel writes at the start of each buffer.
const RECVMSG_OUT_LEN: usize = 16;
const CMSG_HDR_LEN: usize = mem::size_of::<libc::cmsghdr>();
const PKTINFO_LEN: usize = 20;
/// Transmit control area: IPV6_PKTINFO, then (GSO) UDP_SEGMENT with its u16 segment size.
const TX_PKTINFO_SPACE: usize = CMSG_HDR_LEN + cmsg_align(PKTINFO_LEN);
const TX_CONTROL_LEN: usize = TX_PKTINFO_SPACE + CMSG_HDR_LEN + cmsg_align(2);

/// Smallest receive buffer with GRO: the recvmsg header, address and control area plus the
/// largest UDP payload (a coalesced train is at most 64 KiB).
pub const GRO_RX_BUFFER_SIZE: u32 =
    (RECVMSG_OUT_LEN + mem::size_of::<libc::sockaddr_in6>() + RX_CONTROL_LEN + 65_535) as u32;

/// Most segments in one GSO send (UDP_MAX_SEGMENTS: 64 before Linux 6.10, 128 since).
const GSO_MAX_SEGMENTS: usize = 64;
/// Most payload bytes in one GSO send: the IPv6 payload length (16 bits) covers the
/// 8-byte UDP header too.
const GSO_MAX_BYTES: usize = 65_535 - 8;
/// Largest segment sent with GSO. The kernel refuses (EINVAL) a segment that does not fit
/// the route's MTU rather than fragmenting it, so only sizes that fit the IPv6 minimum link
/// MTU (1280 − 40 IPv6 − 8 UDP, RFC 8200 §5) are coalesced; larger replies go alone.
const GSO_MAX_SEGMENT: usize = 1232;
/// Open batches at once (distinct destination/size pairs); more closes the oldest.
const GSO_MAX_OPEN: usize = 16;

const fn cmsg_align(len: usize) -> usize {
    (len + mem::size_of::<usize>() - 1) & !(mem::size_of::<usize>() - 1)
}

/// The provided-buffer ring: a page-aligned array of `BufRingEntry` shared with the kernel
/// (whose tail we publish) plus the buffers it points into.
struct BufRing {
    entries: NonNull<BufRingEntry>,
    layout: std::alloc::Layout,
    mask: u16,
    /// Our copy of the tail; published to the kernel by [`BufRing::publish`].
    tail: u16,
    buf_size: u32,
    storage: Box<[u8]>,
}

impl BufRing {
    fn new(count: u16, buf_size: u32) -> io::Result<BufRing> {
        if !count.is_power_of_two() || count > 32768 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "rx_buffers must be a power of two no larger than 32768",
            ));
        }
        let layout = std::alloc::Layout::from_size_align(
            usize::from(count) * mem::size_of::<BufRingEntry>(),
            4096,
        )
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "buffer ring too large"))?;
        // SAFETY: the layout has a non-zero size (count >= 1) and a valid alignment.
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let entries = NonNull::new(raw.cast::<BufRingEntry>())
            .ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        let storage = vec![0u8; usize::from(count) * buf_size as usize].into_boxed_slice();
        let mut ring = BufRing {
            entries,
            layout,
            mask: count - 1,
            tail: 0,
            buf_size,
            storage,
        };
        for bid in 0..count {
            ring.recycle(bid);
        }
        ring.publish();
        Ok(ring)
    }

    /// Hands buffer `bid` back to the kernel (visible after [`publish`](BufRing::publish)).
    fn recycle(&mut self, bid: u16) {
        let addr = self.buffer_ptr(bid) as u64;
        let slot = usize::from(self.tail & self.mask);
        // SAFETY: `slot` < count, so the entry lies inside our allocation. The kernel only
        // reads entries between its head and the published tail; this one is past the
        // published tail, so we are its only user until `publish`.
        let entry = unsafe { &mut *self.entries.as_ptr().add(slot) };
        entry.set_addr(addr);
        entry.set_len(self.buf_size);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes the recycled entries to the kernel (release store of the ring tail).
    fn publish(&self) {
        // SAFETY: `entries` is the ring base; the tail field overlays entry 0's `resv`, a
        // naturally aligned u16 the kernel reads with acquire semantics. We only ever write it
        // through this atomic, so AtomicU16's layout and access rules hold.
        let tail = unsafe { &*BufRingEntry::tail(self.entries.as_ptr()).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }

    fn buffer_ptr(&self, bid: u16) -> *const u8 {
        self.buffer(bid).as_ptr()
    }

    fn buffer(&self, bid: u16) -> &[u8] {
        let start = usize::from(bid) * self.buf_size as usize;
        &self.storage[start..start + self.buf_size as usize]
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly this layout; the owning `UringIo` has
        // unregistered the ring (and cancelled every request) before dropping it.
        unsafe { std::alloc::dealloc(self.entries.as_ptr().cast::<u8>(), self.layout) };
    }
}

/// One transmit slot: everything an in-flight IORING_OP_SENDMSG points to.
struct TxSlot {
    msghdr: libc::msghdr,
    iov: libc::iovec,
    name: libc::sockaddr_in6,
    control: TxControl,
    /// One datagram, or (GSO) `segments` datagrams of `segment` bytes back to back, the last
    /// one possibly shorter. Only appended to before the send is queued, so the pointer the
    /// kernel holds stays valid.
    buf: Vec<u8>,
    meta: TxMeta,
    segment: usize,
    segments: usize,
}

#[repr(C, align(8))]
struct TxControl([u8; TX_CONTROL_LEN]);

/// What makes two replies share one GSO send: the same destination, source address and
/// outgoing interface (one `msghdr` name and IPV6_PKTINFO for all of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct GsoKey {
    dst: SocketAddrV6,
    src: Ipv6Addr,
    ifindex: u32,
}

impl GsoKey {
    fn of(meta: &TxMeta) -> GsoKey {
        GsoKey {
            dst: meta.dst,
            src: meta.src,
            ifindex: meta.ifindex,
        }
    }
}

/// A GSO batch being filled in transmit slot `slot`: `segments` datagrams of `segment` bytes,
/// the last one possibly shorter, `bytes` in all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Batch<K> {
    key: K,
    slot: u16,
    segment: usize,
    segments: usize,
    bytes: usize,
}

/// Where the next datagram goes, as decided by [`Coalescer::offer`].
#[derive(Debug, PartialEq, Eq)]
enum Offer<K> {
    /// Append it to `slot`'s buffer. With `closed`, that batch (now including the datagram)
    /// is complete and has left the table: send it.
    Append { slot: u16, closed: Option<Batch<K>> },
    /// Put it in a fresh slot and report that slot with [`Coalescer::opened`]. With `closed`,
    /// that batch was pushed out of the table to make room: send it.
    Start { closed: Option<Batch<K>> },
}

/// Groups a flush's replies into GSO batches: per destination key and segment size, at most
/// [`GSO_MAX_SEGMENTS`] datagrams and [`GSO_MAX_BYTES`] bytes per batch, each batch in one
/// transmit slot. Pure bookkeeping over slot numbers (the slots' bytes live in `UringIo`),
/// so the grouping rules are tested on their own.
struct Coalescer<K> {
    open: Vec<Batch<K>>,
    max_open: usize,
}

impl<K: Copy + PartialEq> Coalescer<K> {
    fn new(max_open: usize) -> Coalescer<K> {
        Coalescer {
            open: Vec::with_capacity(max_open.max(1)),
            max_open: max_open.max(1),
        }
    }

    /// Places a datagram of `len` bytes for `key`.
    fn offer(&mut self, key: &K, len: usize) -> Offer<K> {
        let fits = |b: &Batch<K>| b.segments < GSO_MAX_SEGMENTS && b.bytes + len <= GSO_MAX_BYTES;
        // Same size: one more segment.
        if let Some(i) = self
            .open
            .iter()
            .position(|b| b.key == *key && b.segment == len && fits(b))
        {
            let b = &mut self.open[i];
            b.segments += 1;
            b.bytes += len;
            let slot = b.slot;
            let full = b.segments == GSO_MAX_SEGMENTS || b.bytes + b.segment > GSO_MAX_BYTES;
            let closed = full.then(|| self.open.remove(i));
            return Offer::Append { slot, closed };
        }
        // Shorter: the kernel takes it as the last segment, which ends the batch.
        if let Some(i) = self
            .open
            .iter()
            .position(|b| b.key == *key && b.segment > len && len > 0 && fits(b))
        {
            let mut b = self.open.remove(i);
            b.segments += 1;
            b.bytes += len;
            return Offer::Append {
                slot: b.slot,
                closed: Some(b),
            };
        }
        // A batch of this size that is full was closed when it filled, so none is open:
        // start one, making room by closing the oldest open batch.
        let closed = (self.open.len() >= self.max_open).then(|| self.open.remove(0));
        Offer::Start { closed }
    }

    /// Records that a datagram of `len` bytes for `key` was put in fresh slot `slot`. Returns
    /// the one-datagram batch to send at once when that size cannot be coalesced.
    fn opened(&mut self, key: &K, slot: u16, len: usize) -> Option<Batch<K>> {
        let b = Batch {
            key: *key,
            slot,
            segment: len,
            segments: 1,
            bytes: len,
        };
        if len == 0 || len > GSO_MAX_SEGMENT || self.open.len() >= self.max_open {
            return Some(b);
        }
        self.open.push(b);
        None
    }

    /// Takes the oldest open batch (the flush sends them all; a send short of slots sends
    /// one to free a slot).
    fn pop_oldest(&mut self) -> Option<Batch<K>> {
        (!self.open.is_empty()).then(|| self.open.remove(0))
    }

    fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

/// The datagrams in one receive buffer, as split by [`datagrams`].
#[derive(Debug)]
struct Datagrams<'a> {
    rest: &'a [u8],
    segment: usize,
    remaining: usize,
}

impl<'a> Iterator for Datagrams<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let (d, rest) = self.rest.split_at(self.segment.min(self.rest.len()));
        self.rest = rest;
        Some(d)
    }
}

/// Splits a receive buffer into datagrams: `payload` is what the kernel wrote, `incoming`
/// how long the datagram (or the coalesced train) was, `gro_segment` the UDP_GRO segment
/// size when the kernel reported one. Returns the intact datagrams and how many were lost
/// because the buffer cut the payload short (a single datagram is lost whole; a train loses
/// the segments from the first incomplete one on).
fn datagrams(payload: &[u8], incoming: usize, gro_segment: Option<usize>) -> (Datagrams<'_>, u64) {
    let complete = payload.len() >= incoming;
    match gro_segment.filter(|&s| s > 0 && s < incoming) {
        None => {
            let d = Datagrams {
                rest: payload,
                segment: payload.len(),
                remaining: usize::from(complete),
            };
            (d, u64::from(!complete))
        }
        Some(s) => {
            let total = incoming.div_ceil(s);
            let intact = if complete { total } else { payload.len() / s };
            let d = Datagrams {
                rest: payload,
                segment: s,
                remaining: intact,
            };
            (d, (total - intact) as u64)
        }
    }
}

/// A completion taken off the queue while waiting for a free transmit slot, kept for the next
/// `recv_batch`.
#[derive(Clone, Copy)]
struct Completion {
    user_data: u64,
    result: i32,
    flags: u32,
}

/// An io_uring-driven DHCPv6 UDP socket; see the module documentation.
pub struct UringIo {
    // Field order is drop order: the ring goes first (Drop below cancels everything and
    // unregisters the buffer ring before any memory a request points to is freed).
    ring: IoUring,
    socket: OwnedFd,
    bufs: BufRing,
    /// The msghdr template of the multishot recvmsg: only its name and control lengths are
    /// read, but the kernel keeps the pointer while the request is armed.
    rx_msghdr: Box<libc::msghdr>,
    recv_armed: bool,
    waker: Option<Waker>,
    wake_armed: bool,
    tx: Box<[TxSlot]>,
    tx_free: Vec<u16>,
    stash: VecDeque<Completion>,
    accepts_multicast: bool,
    rx_batch: usize,
    /// The kernel accepted UDP_GRO on the socket.
    gro: bool,
    /// Replies are coalesced into segmented sends (cleared if the kernel refuses one).
    gso: bool,
    coalescer: Coalescer<GsoKey>,
    /// Datagrams of a refused segmented send, sent again one by one at the next flush.
    retry: Vec<(TxMeta, Vec<u8>)>,
    stats: IoStats,
}

// SAFETY: the raw pointers inside (msghdr/iovec/ring entries) point only into memory owned by
// this value and are used only through `&mut self`; moving the whole value to another thread
// moves that ownership with it. The kernel side is bound to the ring fd, not the thread.
unsafe impl Send for UringIo {}

impl UringIo {
    /// Creates the socket (SO_REUSEPORT, packet info, multicast groups) and the ring.
    pub fn new(opts: &UringOptions) -> io::Result<UringIo> {
        let socket = sys::udp6_socket(&opts.socket)?;
        for &ifindex in &opts.join_multicast {
            sys::join_group(&socket, sys::ALL_DHCP_RELAY_AGENTS_AND_SERVERS, ifindex)?;
            sys::join_group(&socket, sys::ALL_DHCP_SERVERS, ifindex)?;
        }
        // Offloads are optional: a kernel without them serves exactly as before.
        let gro = opts.gro
            && match sys::enable_udp_gro(&socket) {
                Ok(()) => true,
                Err(e) => {
                    tracing::info!(error = %e, "UDP GRO not available; receiving one datagram at a time");
                    false
                }
            };
        let gso = opts.gso && sys::udp_gso_supported(&socket);
        if opts.gso && !gso {
            tracing::info!("UDP GSO not available; sending one datagram at a time");
        }
        let rx_buffer_size = if gro {
            opts.rx_buffer_size.max(GRO_RX_BUFFER_SIZE)
        } else {
            opts.rx_buffer_size
        };
        let tx_slots = opts.tx_slots.max(1);
        let sq_entries = u32::from(tx_slots).next_power_of_two().clamp(64, 4096);
        // The CQ must hold a completion per provided buffer plus the sends, or the kernel
        // stops the multishot receive on overflow.
        let cq_entries = (u32::from(opts.rx_buffers) + u32::from(tx_slots) + 16)
            .next_power_of_two()
            .max(2 * sq_entries);
        let ring = IoUring::builder()
            .setup_cqsize(cq_entries)
            .setup_coop_taskrun()
            .build(sq_entries)
            .or_else(|_| {
                IoUring::builder()
                    .setup_cqsize(cq_entries)
                    .build(sq_entries)
            })?;
        if rx_buffer_size as usize
            <= RECVMSG_OUT_LEN + mem::size_of::<libc::sockaddr_in6>() + RX_CONTROL_LEN
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "rx_buffer_size leaves no room for a payload",
            ));
        }
        let bufs = BufRing::new(opts.rx_buffers, rx_buffer_size)?;
        // SAFETY: the ring memory (entries × 16 bytes, page aligned) stays allocated until
        // `Drop` unregisters the group (BufRing is dropped after the ring: field order, and
        // Drop below unregisters explicitly first).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                bufs.entries.as_ptr() as u64,
                opts.rx_buffers,
                BUF_GROUP,
                0,
            )?;
        }
        // SAFETY: all-zero is a valid msghdr (null pointers, zero lengths).
        let mut rx_msghdr: Box<libc::msghdr> = Box::new(unsafe { mem::zeroed() });
        rx_msghdr.msg_namelen = mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        rx_msghdr.msg_controllen = RX_CONTROL_LEN;
        let tx = (0..tx_slots)
            .map(|_| TxSlot {
                // SAFETY: all-zero is a valid value for these plain C structs.
                msghdr: unsafe { mem::zeroed() },
                iov: libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                },
                // SAFETY: as above.
                name: unsafe { mem::zeroed() },
                control: TxControl([0; TX_CONTROL_LEN]),
                buf: Vec::with_capacity(1500),
                meta: TxMeta {
                    dst: SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0),
                    src: Ipv6Addr::UNSPECIFIED,
                    ifindex: 0,
                    l2: None,
                    queue: 0,
                },
                segment: 0,
                segments: 0,
            })
            .collect::<Vec<_>>()
            .into_boxed_slice();
        Ok(UringIo {
            ring,
            socket,
            bufs,
            rx_msghdr,
            recv_armed: false,
            waker: None,
            wake_armed: false,
            tx,
            tx_free: (0..tx_slots).rev().collect(),
            stash: VecDeque::new(),
            accepts_multicast: !opts.join_multicast.is_empty(),
            rx_batch: opts.rx_batch.max(1),
            gro,
            gso,
            coalescer: Coalescer::new(GSO_MAX_OPEN.min(usize::from(tx_slots))),
            retry: Vec::new(),
            stats: IoStats::default(),
        })
    }

    /// Whether UDP GRO (receive) and UDP GSO (send) are in use.
    pub fn offloads(&self) -> (bool, bool) {
        (self.gro, self.gso)
    }

    /// The bound address (tests bind port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddrV6> {
        sys::local_addr(&self.socket)
    }

    /// Pushes an SQE, submitting first if the submission queue is full.
    fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every SQE we build points only into memory owned by `self` (the rx
            // msghdr box, a tx slot reserved until its CQE, the buffer ring) that outlives the
            // request: slots are freed on completion and Drop cancels everything first.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    /// Arms the multishot receive and the wake poll if the kernel ended them.
    fn arm(&mut self) -> io::Result<()> {
        if !self.recv_armed {
            let entry = opcode::RecvMsgMulti::new(
                Fd(self.socket.as_raw_fd()),
                &*self.rx_msghdr as *const libc::msghdr,
                BUF_GROUP,
            )
            .build()
            .user_data(UD_RECV);
            self.push(&entry)?;
            self.recv_armed = true;
        }
        if let (Some(waker), false) = (&self.waker, self.wake_armed) {
            let entry = opcode::PollAdd::new(Fd(waker.raw_fd()), libc::POLLIN as u32)
                .multi(true)
                .build()
                .user_data(UD_WAKE);
            self.push(&entry)?;
            self.wake_armed = true;
        }
        Ok(())
    }

    /// Frees a transmit slot on its completion.
    fn complete_send(&mut self, c: Completion) {
        let index = (c.user_data & !UD_KIND_MASK) as u16;
        let slot = &mut self.tx[usize::from(index)];
        let segments = slot.segments.max(1) as u64;
        if c.result >= 0 {
            self.stats.tx_packets += segments;
            if segments > 1 {
                self.stats.tx_gso_sends += 1;
            }
        } else if segments > 1 {
            // A refused segmented send: send its datagrams again one by one at the next
            // flush. A device that cannot checksum (EIO) or a segment the route cannot take
            // (EINVAL, EOPNOTSUPP) will refuse every later batch too: stop segmenting.
            self.stats.tx_gso_fallbacks += 1;
            for d in slot.buf.chunks(slot.segment.max(1)) {
                self.retry.push((slot.meta, d.to_vec()));
            }
            let errno = -c.result;
            if self.gso && matches!(errno, libc::EIO | libc::EINVAL | libc::EOPNOTSUPP) {
                self.gso = false;
                tracing::warn!(
                    error = %io::Error::from_raw_os_error(errno),
                    "the kernel refused a UDP GSO send; sending one datagram at a time from now on"
                );
            }
        } else {
            self.stats.tx_errors += 1;
            tracing::debug!(
                error = %io::Error::from_raw_os_error(-c.result),
                "sendmsg failed"
            );
        }
        self.tx_free.push(index);
    }

    /// A free transmit slot, waiting for an in-flight send to complete if need be.
    fn take_slot(&mut self) -> io::Result<u16> {
        while self.tx_free.is_empty() {
            // Slots held by open GSO batches only free up once sent: send the oldest
            // rather than wait for a completion that may never come.
            if let Some(b) = self.coalescer.pop_oldest() {
                self.queue_batch(&b)?;
            }
            self.reclaim_tx_slot()?;
        }
        self.tx_free
            .pop()
            .ok_or_else(|| io::Error::other("no transmit slot"))
    }

    /// Queues the sendmsg of a filled slot: one datagram, or a GSO batch of them.
    fn queue_batch(&mut self, b: &Batch<GsoKey>) -> io::Result<()> {
        let slot = &mut self.tx[usize::from(b.slot)];
        slot.segment = b.segment;
        slot.segments = b.segments;
        let meta = slot.meta;
        let segment = (b.segments > 1).then_some(b.segment);
        prepare_slot(slot, &meta, segment);
        let entry = opcode::SendMsg::new(Fd(self.socket.as_raw_fd()), &slot.msghdr)
            .build()
            .user_data(UD_SEND | u64::from(b.slot));
        if let Err(e) = self.push(&entry) {
            self.tx_free.push(b.slot);
            return Err(e);
        }
        Ok(())
    }

    /// Copies one datagram into a fresh slot; returns the slot.
    fn fill_slot(&mut self, meta: &TxMeta, payload: &[u8]) -> io::Result<u16> {
        let index = self.take_slot()?;
        let slot = &mut self.tx[usize::from(index)];
        slot.buf.clear();
        slot.buf.extend_from_slice(payload);
        slot.meta = *meta;
        Ok(index)
    }

    /// Queues one datagram on its own.
    fn send_single(&mut self, meta: &TxMeta, payload: &[u8]) -> io::Result<()> {
        let slot = self.fill_slot(meta, payload)?;
        self.queue_batch(&Batch {
            key: GsoKey::of(meta),
            slot,
            segment: payload.len(),
            segments: 1,
            bytes: payload.len(),
        })
    }

    /// Adds one datagram to the GSO batch of its destination and size (see [`Coalescer`]).
    fn send_coalesced(&mut self, meta: &TxMeta, payload: &[u8]) -> io::Result<()> {
        let key = GsoKey::of(meta);
        match self.coalescer.offer(&key, payload.len()) {
            Offer::Append { slot, closed } => {
                self.tx[usize::from(slot)].buf.extend_from_slice(payload);
                if let Some(b) = closed {
                    self.queue_batch(&b)?;
                }
            }
            Offer::Start { closed } => {
                if let Some(b) = closed {
                    self.queue_batch(&b)?;
                }
                let slot = self.fill_slot(meta, payload)?;
                if let Some(b) = self.coalescer.opened(&key, slot, payload.len()) {
                    self.queue_batch(&b)?;
                }
            }
        }
        Ok(())
    }

    /// Waits until at least one transmit slot is free, stashing other completions.
    fn reclaim_tx_slot(&mut self) -> io::Result<()> {
        while self.tx_free.is_empty() {
            self.ring.submit_and_wait(1)?;
            self.reap_without_delivering();
        }
        Ok(())
    }

    /// Takes every completion off the queue: sends are completed, the rest (receives, wakes)
    /// is kept in order for the next `recv_batch`, which is the only place with a callback.
    fn reap_without_delivering(&mut self) {
        // In stack-sized chunks: this runs on every flush, so no allocation.
        loop {
            let mut chunk = [Completion {
                user_data: 0,
                result: 0,
                flags: 0,
            }; 32];
            let mut n = 0;
            for e in self.ring.completion().take(chunk.len()) {
                chunk[n] = Completion {
                    user_data: e.user_data(),
                    result: e.result(),
                    flags: e.flags(),
                };
                n += 1;
            }
            for c in &chunk[..n] {
                if c.user_data & UD_KIND_MASK == UD_SEND {
                    self.complete_send(*c);
                } else {
                    self.stash.push_back(*c);
                }
            }
            if n < chunk.len() {
                return;
            }
        }
    }

    /// Handles one completion; returns 1 if a datagram was passed to `f`.
    fn dispatch(&mut self, c: Completion, f: &mut dyn FnMut(&RxMeta, &[u8])) -> usize {
        match c.user_data & UD_KIND_MASK {
            UD_SEND => {
                self.complete_send(c);
                0
            }
            UD_WAKE => {
                if let Some(w) = &self.waker {
                    w.reset();
                }
                if !cqueue::more(c.flags) {
                    self.wake_armed = false;
                }
                0
            }
            UD_RECV => {
                if !cqueue::more(c.flags) {
                    // The kernel ended the multishot request (ENOBUFS when every buffer
                    // was in use, CQ overflow, or an error): re-arm on the next call.
                    self.recv_armed = false;
                    self.stats.rx_rearms += 1;
                }
                let bid = cqueue::buffer_select(c.flags);
                let delivered = if c.result < 0 {
                    if c.result != -libc::ENOBUFS {
                        self.stats.rx_errors += 1;
                        tracing::debug!(
                            error = %io::Error::from_raw_os_error(-c.result),
                            "multishot recvmsg ended"
                        );
                    }
                    0
                } else if let Some(bid) = bid {
                    self.deliver(bid, c.result as usize, f)
                } else {
                    0
                };
                if let Some(bid) = bid {
                    self.bufs.recycle(bid);
                }
                delivered
            }
            _ => 0,
        }
    }

    /// Parses buffer `bid` (`len` bytes written by the kernel) and calls `f`.
    fn deliver(&mut self, bid: u16, len: usize, f: &mut dyn FnMut(&RxMeta, &[u8])) -> usize {
        let buf = self.bufs.buffer(bid);
        let Some(buf) = buf.get(..len) else {
            self.stats.rx_errors += 1;
            return 0;
        };
        let Ok(out) = RecvMsgOut::parse(buf, &self.rx_msghdr) else {
            self.stats.rx_errors += 1;
            return 0;
        };
        let Some(src) = sys::parse_sockaddr_in6(out.name_data()) else {
            self.stats.rx_errors += 1;
            return 0;
        };
        let Some(info) = parse_control(out.control_data()) else {
            // Without IPV6_PKTINFO we cannot tell unicast from multicast (RFC 8415 §18.4)
            // nor the receiving link.
            self.stats.rx_errors += 1;
            return 0;
        };
        // MSG_TRUNC is the authority on a cut payload; the incoming length (when the kernel
        // reports it in full) tells how much of a train was lost.
        let payload = out.payload_data();
        let incoming = if out.is_payload_truncated() {
            (out.incoming_payload_len() as usize).max(payload.len() + 1)
        } else {
            payload.len()
        };
        let (datagrams, lost) = datagrams(payload, incoming, info.gro_segment);
        self.stats.rx_truncated += lost;
        if info.dst.is_multicast() && !self.accepts_multicast {
            self.stats.rx_foreign_multicast += datagrams.remaining as u64;
            return 0;
        }
        if datagrams.remaining > 1 {
            self.stats.rx_gro_buffers += 1;
        }
        let meta = RxMeta {
            src,
            dst: info.dst,
            ifindex: info.ifindex,
            hop_limit: info.hop_limit,
            l2: None,
            queue: 0,
        };
        let mut delivered = 0;
        for d in datagrams {
            f(&meta, d);
            delivered += 1;
        }
        self.stats.rx_packets += delivered as u64;
        delivered
    }
}

/// What the receive control messages told us.
#[derive(Debug, PartialEq, Eq)]
struct ControlInfo {
    dst: Ipv6Addr,
    ifindex: u32,
    hop_limit: Option<u8>,
    /// UDP_GRO: the buffer holds coalesced datagrams of this size (the last may be shorter).
    gro_segment: Option<usize>,
}

/// Walks the cmsg list as bytes (the kernel laid it out with native endianness and
/// `CMSG_ALIGN` padding); `None` without IPV6_PKTINFO.
fn parse_control(mut data: &[u8]) -> Option<ControlInfo> {
    let mut pktinfo = None;
    let mut hop_limit = None;
    let mut gro_segment = None;
    while data.len() >= CMSG_HDR_LEN {
        let mut len_bytes = [0u8; mem::size_of::<usize>()];
        len_bytes.copy_from_slice(&data[..mem::size_of::<usize>()]);
        let cmsg_len = usize::from_ne_bytes(len_bytes);
        let level = i32::from_ne_bytes(data[8..12].try_into().ok()?);
        let kind = i32::from_ne_bytes(data[12..16].try_into().ok()?);
        if cmsg_len < CMSG_HDR_LEN || cmsg_len > data.len() {
            break;
        }
        let body = &data[CMSG_HDR_LEN..cmsg_len];
        if level == libc::IPPROTO_IPV6 {
            if kind == libc::IPV6_PKTINFO && body.len() >= PKTINFO_LEN {
                let mut addr = [0u8; 16];
                addr.copy_from_slice(&body[..16]);
                let ifindex = u32::from_ne_bytes(body[16..20].try_into().ok()?);
                pktinfo = Some((Ipv6Addr::from(addr), ifindex));
            } else if kind == libc::IPV6_HOPLIMIT && body.len() >= 4 {
                let v = i32::from_ne_bytes(body[..4].try_into().ok()?);
                hop_limit = u8::try_from(v).ok();
            }
        } else if level == libc::SOL_UDP && kind == sys::UDP_GRO && body.len() >= 4 {
            let v = i32::from_ne_bytes(body[..4].try_into().ok()?);
            gro_segment = usize::try_from(v).ok().filter(|&v| v > 0);
        }
        let step = cmsg_align(cmsg_len);
        if step >= data.len() {
            break;
        }
        data = &data[step..];
    }
    pktinfo.map(|(dst, ifindex)| ControlInfo {
        dst,
        ifindex,
        hop_limit,
        gro_segment,
    })
}

/// Fills a transmit slot's headers for `meta` and points them at its buffer; with `segment`,
/// adds the UDP_SEGMENT control message that makes the kernel cut the buffer into datagrams
/// of that size.
fn prepare_slot(slot: &mut TxSlot, meta: &TxMeta, segment: Option<usize>) {
    let mut dst = meta.dst;
    // A link-local (or link-scoped multicast) destination needs the interface: take it from
    // the request's receiving interface. Global destinations (relays) follow the routing
    // table, so the interface is left to the kernel.
    let link_scoped = is_link_scoped(dst.ip());
    if link_scoped && dst.scope_id() == 0 {
        dst.set_scope_id(meta.ifindex);
    }
    slot.name = sys::sockaddr_in6(&dst);
    let ifindex = if link_scoped { meta.ifindex } else { 0 };
    let c = &mut slot.control.0;
    let cmsg_len = CMSG_HDR_LEN + PKTINFO_LEN;
    c[..mem::size_of::<usize>()].copy_from_slice(&cmsg_len.to_ne_bytes());
    c[8..12].copy_from_slice(&libc::IPPROTO_IPV6.to_ne_bytes());
    c[12..16].copy_from_slice(&libc::IPV6_PKTINFO.to_ne_bytes());
    // RFC 8415 §18.3.10: a reply to a unicast request comes from the address it was sent to;
    // unspecified lets the kernel choose (the link-local address for multicast requests).
    c[16..32].copy_from_slice(&meta.src.octets());
    c[32..36].copy_from_slice(&ifindex.to_ne_bytes());
    let mut control_len = TX_PKTINFO_SPACE;
    if let Some(segment) = segment {
        let gso = &mut c[TX_PKTINFO_SPACE..];
        let len = CMSG_HDR_LEN + 2;
        gso[..mem::size_of::<usize>()].copy_from_slice(&len.to_ne_bytes());
        gso[8..12].copy_from_slice(&libc::SOL_UDP.to_ne_bytes());
        gso[12..16].copy_from_slice(&sys::UDP_SEGMENT.to_ne_bytes());
        // Segment sizes are bounded by GSO_MAX_SEGMENT, far below u16::MAX.
        gso[16..18].copy_from_slice(&(segment as u16).to_ne_bytes());
        control_len = TX_CONTROL_LEN;
    }
    slot.iov = libc::iovec {
        iov_base: slot.buf.as_mut_ptr().cast::<libc::c_void>(),
        iov_len: slot.buf.len(),
    };
    slot.msghdr.msg_name = std::ptr::from_mut(&mut slot.name).cast::<libc::c_void>();
    slot.msghdr.msg_namelen = mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
    slot.msghdr.msg_iov = &mut slot.iov;
    slot.msghdr.msg_iovlen = 1;
    slot.msghdr.msg_control = slot.control.0.as_mut_ptr().cast::<libc::c_void>();
    slot.msghdr.msg_controllen = control_len;
    slot.msghdr.msg_flags = 0;
}

fn is_link_scoped(addr: &Ipv6Addr) -> bool {
    let first = addr.segments()[0];
    (first & 0xffc0) == 0xfe80 || (addr.is_multicast() && (first & 0x000f) <= 2)
}

impl PacketIo for UringIo {
    fn recv_batch(
        &mut self,
        timeout: Option<Duration>,
        f: &mut dyn FnMut(&RxMeta, &[u8]),
    ) -> io::Result<usize> {
        self.arm()?;
        let ready = !self.stash.is_empty() || !self.ring.completion().is_empty();
        let waited = if ready || timeout == Some(Duration::ZERO) {
            self.ring.submit()
        } else if let Some(d) = timeout {
            let ts = Timespec::from(d);
            let args = SubmitArgs::new().timespec(&ts);
            self.ring.submitter().submit_with_args(1, &args)
        } else {
            self.ring.submit_and_wait(1)
        };
        match waited {
            Ok(_) => {}
            // Timeout, signal, or the kernel asking us to reap completions first (EBUSY/EAGAIN
            // with a backlog of overflowed CQEs): all transient, the drain below handles them.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN)
                ) => {}
            Err(e) => return Err(e),
        }
        let mut delivered = 0;
        while delivered < self.rx_batch {
            let Some(c) = self.stash.pop_front() else {
                break;
            };
            delivered += self.dispatch(c, f);
        }
        while delivered < self.rx_batch {
            // Take completions in small chunks: the callback must not run while the
            // completion queue is borrowed, and each consumed entry frees a CQ slot.
            let mut chunk = [Completion {
                user_data: 0,
                result: 0,
                flags: 0,
            }; 32];
            let want = chunk.len().min(self.rx_batch - delivered);
            let mut n = 0;
            for e in self.ring.completion().take(want) {
                chunk[n] = Completion {
                    user_data: e.user_data(),
                    result: e.result(),
                    flags: e.flags(),
                };
                n += 1;
            }
            if n == 0 {
                break;
            }
            for c in &chunk[..n] {
                delivered += self.dispatch(*c, f);
            }
        }
        self.bufs.publish();
        // Re-arm now so the request is in the SQ before the next submit.
        self.arm()?;
        Ok(delivered)
    }

    fn send(&mut self, meta: &TxMeta, payload: &[u8]) -> io::Result<()> {
        if self.gso {
            self.send_coalesced(meta, payload)
        } else {
            self.send_single(meta, payload)
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        while let Some(b) = self.coalescer.pop_oldest() {
            self.queue_batch(&b)?;
        }
        self.ring.submit()?;
        // UDP sends usually complete during the submit: free their slots (and count them)
        // now rather than at the next receive. Receive completions wait in the stash.
        self.reap_without_delivering();
        if !self.retry.is_empty() {
            for (meta, bytes) in std::mem::take(&mut self.retry) {
                self.send_single(&meta, &bytes)?;
            }
            self.ring.submit()?;
            self.reap_without_delivering();
        }
        debug_assert!(self.coalescer.is_empty());
        Ok(())
    }

    fn attach_waker(&mut self, waker: &Waker) -> io::Result<bool> {
        self.waker = Some(waker.clone());
        self.wake_armed = false;
        self.arm()?;
        Ok(true)
    }

    fn stats(&self) -> IoStats {
        self.stats
    }
}

impl Drop for UringIo {
    fn drop(&mut self) {
        // Cancel the multishot receive, the wake poll and any send still in flight, and wait
        // for the cancellations, so the kernel holds no pointer into our buffers; then give
        // the buffer ring back.
        let _ = self.ring.submit();
        let _ = self
            .ring
            .submitter()
            .register_sync_cancel(Some(Timespec::new().sec(1)), CancelBuilder::any());
        let _ = self.ring.submitter().unregister_buf_ring(BUF_GROUP);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    fn loopback_io() -> UringIo {
        let mut opts = UringOptions::new(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 0, 0, 0));
        opts.rx_buffers = 16;
        opts.tx_slots = 4;
        opts.rx_batch = 8;
        UringIo::new(&opts).expect("io_uring socket on [::1]")
    }

    fn client() -> UdpSocket {
        let c = UdpSocket::bind("[::1]:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        c
    }

    fn recv_all(io: &mut UringIo, want: usize) -> Vec<(RxMeta, Vec<u8>)> {
        let mut got = Vec::new();
        for _ in 0..50 {
            io.recv_batch(Some(Duration::from_millis(100)), &mut |m, p| {
                got.push((*m, p.to_vec()))
            })
            .unwrap();
            if got.len() >= want {
                break;
            }
        }
        got
    }

    #[test]
    fn receives_with_packet_info_and_replies_from_the_request_destination() {
        let mut io = loopback_io();
        let server = io.local_addr().unwrap();
        let c = client();
        c.send_to(b"solicit", server).unwrap();
        let got = recv_all(&mut io, 1);
        assert_eq!(got.len(), 1);
        let (meta, payload) = &got[0];
        assert_eq!(payload, b"solicit");
        assert_eq!(meta.dst, Ipv6Addr::LOCALHOST);
        assert_eq!(
            SocketAddr::V6(meta.src),
            c.local_addr().unwrap(),
            "source address and port"
        );
        assert_eq!(meta.ifindex, sys::if_nametoindex("lo").unwrap());
        assert!(meta.hop_limit.is_some());

        let tx = TxMeta::reply_to(meta, meta.src);
        assert_eq!(tx.src, Ipv6Addr::LOCALHOST);
        io.send(&tx, b"advertise").unwrap();
        io.flush().unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = c.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"advertise");
        assert_eq!(from, SocketAddr::V6(server));
    }

    use std::net::SocketAddr;

    #[test]
    fn batches_more_datagrams_than_buffers_and_slots() {
        // 16 provided buffers, 4 transmit slots, batches of 8: 100 datagrams force buffer
        // recycling, multishot re-arming when the kernel runs out, and slot reclaiming.
        let mut io = loopback_io();
        let server = io.local_addr().unwrap();
        let c = client();
        let mut received = Vec::new();
        let mut sent = 0u32;
        while received.len() < 100 {
            while sent < 100 && sent < received.len() as u32 + 12 {
                c.send_to(&sent.to_be_bytes(), server).unwrap();
                sent += 1;
            }
            let mut batch = Vec::new();
            let n = io
                .recv_batch(Some(Duration::from_millis(200)), &mut |m, p| {
                    batch.push((*m, p.to_vec()))
                })
                .unwrap();
            assert!(n <= 8, "batch bound");
            assert_eq!(n, batch.len());
            for (m, p) in batch {
                io.send(&TxMeta::reply_to(&m, m.src), &p).unwrap();
                received.push(p);
            }
            io.flush().unwrap();
            assert!(n > 0, "nothing received after {} datagrams", received.len());
        }
        let mut echoed = Vec::new();
        let mut buf = [0u8; 16];
        while echoed.len() < 100 {
            let (n, _) = c.recv_from(&mut buf).unwrap();
            echoed.push(u32::from_be_bytes(buf[..n].try_into().unwrap()));
        }
        echoed.sort_unstable();
        assert_eq!(echoed, (0..100).collect::<Vec<_>>());
        assert_eq!(io.stats().tx_errors, 0);
        assert_eq!(io.stats().rx_packets, 100);
    }

    #[test]
    fn rearms_after_the_kernel_runs_out_of_buffers() {
        // 40 datagrams queued before the first receive, 16 provided buffers: the multishot
        // request fills every buffer, ends with ENOBUFS, and must be re-armed to get the rest.
        let mut io = loopback_io();
        let server = io.local_addr().unwrap();
        let c = client();
        for i in 0u32..40 {
            c.send_to(&i.to_be_bytes(), server).unwrap();
        }
        let mut got = Vec::new();
        for _ in 0..100 {
            io.recv_batch(Some(Duration::from_millis(100)), &mut |_, p| {
                got.push(u32::from_be_bytes(p.try_into().unwrap()))
            })
            .unwrap();
            if got.len() == 40 {
                break;
            }
        }
        got.sort_unstable();
        assert_eq!(got, (0..40).collect::<Vec<_>>());
        assert!(io.stats().rx_rearms >= 1, "{:?}", io.stats());
        assert_eq!(io.stats().rx_errors, 0);
    }

    #[test]
    fn oversized_datagram_is_dropped_and_counted() {
        // Without GRO the buffers are 2 KiB (with it they hold any UDP payload).
        let mut opts = UringOptions::new(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 0, 0, 0));
        opts.rx_buffers = 16;
        opts.gro = false;
        let mut io = UringIo::new(&opts).unwrap();
        let server = io.local_addr().unwrap();
        let c = client();
        c.send_to(&[0u8; 4000], server).unwrap();
        c.send_to(b"ok", server).unwrap();
        let got = recv_all(&mut io, 1);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, b"ok");
        assert_eq!(io.stats().rx_truncated, 1);
    }

    #[test]
    fn waker_interrupts_a_blocking_wait() {
        let mut io = loopback_io();
        let waker = Waker::new().unwrap();
        assert!(io.attach_waker(&waker).unwrap());
        let w = waker.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            w.wake();
        });
        let start = std::time::Instant::now();
        let n = io.recv_batch(None, &mut |_, _| {}).unwrap();
        assert_eq!(n, 0);
        assert!(start.elapsed() < Duration::from_secs(5));
        t.join().unwrap();
        // The wake was consumed: a short wait now times out.
        assert_eq!(
            io.recv_batch(Some(Duration::from_millis(20)), &mut |_, _| {})
                .unwrap(),
            0
        );
    }

    /// A loopback socket with both offloads, asserting the kernel took them (lo accepts GSO
    /// sends and loops them back as one coalesced skb, which UDP_GRO hands over whole).
    fn offload_io(tx_slots: u16) -> UringIo {
        let mut opts = UringOptions::new(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 0, 0, 0));
        opts.rx_buffers = 16;
        opts.tx_slots = tx_slots;
        opts.rx_batch = 1024;
        let io = UringIo::new(&opts).unwrap();
        assert_eq!(
            io.offloads(),
            (true, true),
            "kernel 5.0+ has UDP GRO and GSO"
        );
        io
    }

    #[test]
    fn gso_sends_are_received_as_gro_trains_and_split_into_every_datagram() {
        let mut server = offload_io(8);
        let mut client = offload_io(8);
        let server_addr = server.local_addr().unwrap();
        let to_server = TxMeta {
            dst: server_addr,
            src: Ipv6Addr::UNSPECIFIED,
            ifindex: 0,
            l2: None,
            queue: 0,
        };
        // 150 datagrams of 40 bytes (64 + 64 + 22 per send), then 7 of 41 bytes and one
        // of 9 (a shorter last segment), each tagged with its number.
        let mut sent = Vec::new();
        for i in 0u32..158 {
            let len = match i {
                0..150 => 40,
                150..157 => 41,
                _ => 9,
            };
            let mut d = vec![i as u8; len];
            d[..4].copy_from_slice(&i.to_be_bytes());
            client.send(&to_server, &d).unwrap();
            sent.push(d);
        }
        client.flush().unwrap();
        assert_eq!(client.stats().tx_packets, 158);
        assert!(client.stats().tx_gso_sends >= 3, "{:?}", client.stats());
        assert_eq!(client.stats().tx_errors, 0);

        let got = recv_all(&mut server, 158);
        let mut payloads: Vec<Vec<u8>> = got.iter().map(|(_, p)| p.clone()).collect();
        assert!(got.iter().all(|(m, _)| m.dst == Ipv6Addr::LOCALHOST));
        payloads.sort();
        sent.sort();
        assert_eq!(payloads, sent, "every datagram once, with its own length");
        let st = server.stats();
        assert_eq!(st.rx_packets, 158);
        assert!(st.rx_gro_buffers >= 2, "{st:?}");
        assert_eq!(st.rx_truncated + st.rx_errors, 0, "{st:?}");

        // Answer every one (through 8 slots: batches must close to free slots) and check the
        // client gets each answer back, split again.
        for (m, p) in &got {
            server.send(&TxMeta::reply_to(m, m.src), p).unwrap();
        }
        server.flush().unwrap();
        assert_eq!(server.stats().tx_packets, 158);
        assert!(server.stats().tx_gso_sends >= 3, "{:?}", server.stats());
        let mut echoed: Vec<Vec<u8>> = recv_all(&mut client, 158)
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        echoed.sort();
        assert_eq!(echoed, sent);
    }

    #[test]
    fn plain_clients_still_get_one_reply_per_request_with_offloads_on() {
        // A direct client without GSO: ordinary datagrams in, ordinary datagrams out.
        let mut io = offload_io(4);
        let server = io.local_addr().unwrap();
        let c = client();
        for i in 0u8..10 {
            c.send_to(&[i; 30], server).unwrap();
        }
        let got = recv_all(&mut io, 10);
        assert_eq!(got.len(), 10);
        assert_eq!(io.stats().rx_gro_buffers, 0);
        for (m, p) in &got {
            io.send(&TxMeta::reply_to(m, m.src), p).unwrap();
        }
        io.flush().unwrap();
        let mut buf = [0u8; 64];
        let mut seen = Vec::new();
        for _ in 0..10 {
            let (n, _) = c.recv_from(&mut buf).unwrap();
            assert_eq!(n, 30);
            seen.push(buf[0]);
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn refused_segmented_send_is_resent_one_datagram_at_a_time() {
        let mut io = offload_io(8);
        let c = client();
        let SocketAddr::V6(dst) = c.local_addr().unwrap() else {
            unreachable!("an IPv6 socket")
        };
        let meta = TxMeta {
            dst,
            src: Ipv6Addr::UNSPECIFIED,
            ifindex: 0,
            l2: None,
            queue: 0,
        };
        for i in 0u8..5 {
            io.send(&meta, &[i; 20]).unwrap();
        }
        // The five replies wait in one open batch. Complete it the way the kernel completes a
        // segmented send it refuses (before Linux 6.11, EIO when the device cannot checksum)
        // instead of submitting it.
        let b = io.coalescer.pop_oldest().expect("an open batch");
        assert_eq!((b.segments, b.segment, b.bytes), (5, 20, 100));
        io.tx[usize::from(b.slot)].segment = b.segment;
        io.tx[usize::from(b.slot)].segments = b.segments;
        io.complete_send(Completion {
            user_data: UD_SEND | u64::from(b.slot),
            result: -libc::EIO,
            flags: 0,
        });
        assert!(!io.offloads().1, "segmenting stops");
        io.flush().unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        for _ in 0..5 {
            let (n, _) = c.recv_from(&mut buf).unwrap();
            assert_eq!(n, 20, "one datagram per reply");
            got.push(buf[0]);
        }
        got.sort_unstable();
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
        let st = io.stats();
        assert_eq!(
            (st.tx_gso_fallbacks, st.tx_packets, st.tx_errors),
            (1, 5, 0)
        );
        // Later replies go one by one.
        io.send(&meta, &[9; 20]).unwrap();
        io.send(&meta, &[9; 20]).unwrap();
        io.flush().unwrap();
        assert_eq!(io.stats().tx_gso_sends, 0);
        assert_eq!(io.stats().tx_packets, 7);
    }

    #[test]
    fn gro_segment_is_read_from_the_control_messages() {
        let mut c = [0u8; 80];
        c[..8].copy_from_slice(&(36usize).to_ne_bytes());
        c[8..12].copy_from_slice(&libc::IPPROTO_IPV6.to_ne_bytes());
        c[12..16].copy_from_slice(&libc::IPV6_PKTINFO.to_ne_bytes());
        c[16..32].copy_from_slice(&Ipv6Addr::LOCALHOST.octets());
        c[32..36].copy_from_slice(&1u32.to_ne_bytes());
        c[40..48].copy_from_slice(&(20usize).to_ne_bytes());
        c[48..52].copy_from_slice(&libc::SOL_UDP.to_ne_bytes());
        c[52..56].copy_from_slice(&sys::UDP_GRO.to_ne_bytes());
        c[56..60].copy_from_slice(&120i32.to_ne_bytes());
        assert_eq!(parse_control(&c).unwrap().gro_segment, Some(120));
        // A zero or negative segment size means no train.
        c[56..60].copy_from_slice(&(-1i32).to_ne_bytes());
        assert_eq!(parse_control(&c).unwrap().gro_segment, None);
    }

    #[test]
    fn truncated_train_loses_only_its_incomplete_tail() {
        let train: Vec<u8> = (0..250u8).collect();
        // 100-byte segments: 100 + 100 + 50. The buffer held 230 bytes.
        let (d, lost) = datagrams(&train[..230], 250, Some(100));
        assert_eq!(d.map(<[u8]>::len).collect::<Vec<_>>(), vec![100, 100]);
        assert_eq!(lost, 1);
        // A single datagram cut short is lost whole; one that fits is delivered.
        let (d, lost) = datagrams(&train[..230], 250, None);
        assert_eq!((d.count(), lost), (0, 1));
        let (d, lost) = datagrams(&train, 250, Some(250));
        assert_eq!((d.collect::<Vec<_>>(), lost), (vec![&train[..]], 0));
        // An empty datagram is still one datagram (the engine drops it as malformed).
        let (d, lost) = datagrams(&[], 0, None);
        assert_eq!((d.collect::<Vec<_>>(), lost), (vec![&[][..]], 0));
    }

    mod prop {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            /// Segments in = segments out: a train of `n` datagrams of `seg` bytes (the last
            /// `last` bytes), cut at `cut`, yields exactly the datagrams that fit whole, in
            /// order and with their sizes, and counts the others as lost.
            #[test]
            fn gro_split_honours_segments(seg in 1usize..1500, n in 1usize..64,
                                          last_frac in 0.0f64..1.0, cut_frac in 0.0f64..1.2) {
                let last = 1 + ((seg - 1) as f64 * last_frac) as usize;
                let mut train = Vec::new();
                let mut want = Vec::new();
                for i in 0..n {
                    let len = if i + 1 == n { last } else { seg };
                    let d: Vec<u8> = (0..len).map(|k| (i * 7 + k) as u8).collect();
                    train.extend_from_slice(&d);
                    want.push(d);
                }
                let total = train.len();
                let cut = ((total as f64 * cut_frac) as usize).min(total);
                let gro = (n > 1).then_some(seg);
                let (d, lost) = datagrams(&train[..cut], total, gro);
                let got: Vec<&[u8]> = d.collect();
                let whole = if cut == total { n } else if n > 1 { cut / seg } else { 0 };
                prop_assert_eq!(got.len(), whole);
                prop_assert_eq!(lost as usize, n - whole);
                for (g, w) in got.iter().zip(&want) {
                    prop_assert_eq!(*g, &w[..]);
                }
            }

            /// GSO grouping: every datagram lands in exactly one batch, in order per
            /// destination; a batch has one key, equal segments but possibly a shorter last
            /// one, and stays within the kernel's segment, byte and count limits.
            #[test]
            fn gso_batches_lose_nothing_and_respect_limits(
                replies in proptest::collection::vec((0u8..4, 1usize..1400), 0..600),
                max_open in 1usize..6,
            ) {
                let mut c: Coalescer<u8> = Coalescer::new(max_open);
                // Slot contents: (key, lengths, reply indexes).
                let mut slots: Vec<(u8, Vec<usize>, Vec<usize>)> = Vec::new();
                let mut sent: Vec<(Batch<u8>, Vec<usize>, Vec<usize>)> = Vec::new();
                let mut send = |b: Batch<u8>, slots: &mut Vec<(u8, Vec<usize>, Vec<usize>)>| {
                    let (key, lens, ids) = std::mem::take(&mut slots[usize::from(b.slot)]);
                    assert_eq!(key, b.key);
                    sent.push((b, lens, ids));
                };
                for (i, &(key, len)) in replies.iter().enumerate() {
                    match c.offer(&key, len) {
                        Offer::Append { slot, closed } => {
                            let s = &mut slots[usize::from(slot)];
                            prop_assert_eq!(s.0, key);
                            s.1.push(len);
                            s.2.push(i);
                            if let Some(b) = closed {
                                prop_assert_eq!(b.slot, slot);
                                send(b, &mut slots);
                            }
                        }
                        Offer::Start { closed } => {
                            if let Some(b) = closed {
                                send(b, &mut slots);
                            }
                            let slot = slots.len() as u16;
                            slots.push((key, vec![len], vec![i]));
                            if let Some(b) = c.opened(&key, slot, len) {
                                send(b, &mut slots);
                            }
                        }
                    }
                    prop_assert!(c.open.len() <= max_open);
                }
                while let Some(b) = c.pop_oldest() {
                    send(b, &mut slots);
                }
                let mut all: Vec<usize> = Vec::new();
                for (b, lens, ids) in &sent {
                    prop_assert_eq!(b.segments, lens.len());
                    prop_assert_eq!(b.bytes, lens.iter().sum::<usize>());
                    prop_assert_eq!(b.segment, lens[0]);
                    prop_assert!(b.segments <= GSO_MAX_SEGMENTS);
                    prop_assert!(b.bytes <= GSO_MAX_BYTES);
                    if b.segments > 1 {
                        prop_assert!(b.segment <= GSO_MAX_SEGMENT);
                        let (last, body) = lens.split_last().unwrap();
                        prop_assert!(body.iter().all(|&l| l == b.segment));
                        prop_assert!(*last <= b.segment);
                    }
                    for &i in ids {
                        prop_assert_eq!(replies[i].0, b.key);
                    }
                    all.extend(ids);
                }
                all.sort_unstable();
                prop_assert_eq!(all, (0..replies.len()).collect::<Vec<_>>());
                // Per key, the batches' contents keep send order within each batch.
                for (_, _, ids) in &sent {
                    prop_assert!(ids.windows(2).all(|w| w[0] < w[1]));
                }
            }
        }
    }

    #[test]
    fn control_parser_rejects_garbage() {
        assert_eq!(parse_control(&[]), None);
        assert_eq!(parse_control(&[0xff; 64]), None);
        let mut c = [0u8; 40];
        c[..8].copy_from_slice(&(36usize).to_ne_bytes());
        c[8..12].copy_from_slice(&libc::IPPROTO_IPV6.to_ne_bytes());
        c[12..16].copy_from_slice(&libc::IPV6_PKTINFO.to_ne_bytes());
        c[16..32].copy_from_slice(&Ipv6Addr::LOCALHOST.octets());
        c[32..36].copy_from_slice(&7u32.to_ne_bytes());
        assert_eq!(
            parse_control(&c),
            Some(ControlInfo {
                dst: Ipv6Addr::LOCALHOST,
                ifindex: 7,
                hop_limit: None,
                gro_segment: None,
            })
        );
        // A cmsg_len past the end stops the walk instead of reading beyond it.
        c[..8].copy_from_slice(&(400usize).to_ne_bytes());
        assert_eq!(parse_control(&c), None);
    }
}
