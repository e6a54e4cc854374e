//! The portable backend: one UDP socket per shard driven through io_uring.
//!
//! * Receive: one multishot `recvmsg` (IORING_OP_RECVMSG with IORING_RECV_MULTISHOT) posts a
//!   completion per datagram into a buffer the kernel picks from a *provided-buffer ring*
//!   (IORING_REGISTER_PBUF_RING). Each buffer holds the kernel's `io_uring_recvmsg_out`
//!   header, the source address, the control messages (IPV6_PKTINFO: destination address and
//!   receiving interface; IPV6_HOPLIMIT) and the payload. The buffer goes back to the ring as
//!   soon as the shard's callback returns. When the kernel ends the multishot request (no
//!   buffer left: ENOBUFS, CQ overflow, error) it is re-armed on the next call.
//! * Transmit: `send` copies the reply into a slot of a fixed slab (message header, address,
//!   IPV6_PKTINFO control message with the source address and interface) and queues one
//!   IORING_OP_SENDMSG; `flush` submits the whole batch with one `io_uring_enter`. A slot is
//!   reused only after its completion arrived, which is what the kernel requires of buffers
//!   referenced by an in-flight SQE.
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
    /// Transmit slots: replies queued or in flight at once.
    pub tx_slots: u16,
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

/// Control-message space for IPV6_PKTINFO (20 bytes) and IPV6_HOPLIMIT (4 bytes), each
/// behind a 16-byte cmsghdr and padded to 8 bytes.
const RX_CONTROL_LEN: usize = 64;
/// The 16-byte `io_uring_recvmsg_out` header the kernel writes at the start of each buffer.
const RECVMSG_OUT_LEN: usize = 16;
const CMSG_HDR_LEN: usize = mem::size_of::<libc::cmsghdr>();
const PKTINFO_LEN: usize = 20;

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
    buf: Vec<u8>,
}

#[repr(C, align(8))]
struct TxControl([u8; CMSG_HDR_LEN + cmsg_align(PKTINFO_LEN)]);

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
        if opts.rx_buffer_size as usize
            <= RECVMSG_OUT_LEN + mem::size_of::<libc::sockaddr_in6>() + RX_CONTROL_LEN
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "rx_buffer_size leaves no room for a payload",
            ));
        }
        let bufs = BufRing::new(opts.rx_buffers, opts.rx_buffer_size)?;
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
                control: TxControl([0; CMSG_HDR_LEN + cmsg_align(PKTINFO_LEN)]),
                buf: Vec::with_capacity(1500),
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
            stats: IoStats::default(),
        })
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
        let slot = (c.user_data & !UD_KIND_MASK) as u16;
        if c.result < 0 {
            self.stats.tx_errors += 1;
            tracing::debug!(
                error = %io::Error::from_raw_os_error(-c.result),
                "sendmsg failed"
            );
        } else {
            self.stats.tx_packets += 1;
        }
        self.tx_free.push(slot);
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
        if out.is_payload_truncated() {
            self.stats.rx_truncated += 1;
            return 0;
        }
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
        if info.dst.is_multicast() && !self.accepts_multicast {
            self.stats.rx_foreign_multicast += 1;
            return 0;
        }
        let meta = RxMeta {
            src,
            dst: info.dst,
            ifindex: info.ifindex,
            hop_limit: info.hop_limit,
            l2: None,
            queue: 0,
        };
        self.stats.rx_packets += 1;
        f(&meta, out.payload_data());
        1
    }
}

/// What the receive control messages told us.
#[derive(Debug, PartialEq, Eq)]
struct ControlInfo {
    dst: Ipv6Addr,
    ifindex: u32,
    hop_limit: Option<u8>,
}

/// Walks the cmsg list as bytes (the kernel laid it out with native endianness and
/// `CMSG_ALIGN` padding); `None` without IPV6_PKTINFO.
fn parse_control(mut data: &[u8]) -> Option<ControlInfo> {
    let mut pktinfo = None;
    let mut hop_limit = None;
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
    })
}

/// Fills a transmit slot's headers for `meta` and points them at its buffer.
fn prepare_slot(slot: &mut TxSlot, meta: &TxMeta) {
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
    slot.iov = libc::iovec {
        iov_base: slot.buf.as_mut_ptr().cast::<libc::c_void>(),
        iov_len: slot.buf.len(),
    };
    slot.msghdr.msg_name = std::ptr::from_mut(&mut slot.name).cast::<libc::c_void>();
    slot.msghdr.msg_namelen = mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
    slot.msghdr.msg_iov = &mut slot.iov;
    slot.msghdr.msg_iovlen = 1;
    slot.msghdr.msg_control = slot.control.0.as_mut_ptr().cast::<libc::c_void>();
    slot.msghdr.msg_controllen = slot.control.0.len();
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
        if self.tx_free.is_empty() {
            self.reclaim_tx_slot()?;
        }
        let Some(index) = self.tx_free.pop() else {
            return Err(io::Error::other("no transmit slot"));
        };
        let slot = &mut self.tx[usize::from(index)];
        slot.buf.clear();
        slot.buf.extend_from_slice(payload);
        prepare_slot(slot, meta);
        let entry = opcode::SendMsg::new(Fd(self.socket.as_raw_fd()), &slot.msghdr)
            .build()
            .user_data(UD_SEND | u64::from(index));
        if let Err(e) = self.push(&entry) {
            self.tx_free.push(index);
            return Err(e);
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.ring.submit()?;
        // UDP sends usually complete during the submit: free their slots (and count them)
        // now rather than at the next receive. Receive completions wait in the stash.
        self.reap_without_delivering();
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
        let mut io = loopback_io();
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
                hop_limit: None
            })
        );
        // A cmsg_len past the end stops the walk instead of reading beyond it.
        c[..8].copy_from_slice(&(400usize).to_ne_bytes());
        assert_eq!(parse_control(&c), None);
    }
}
