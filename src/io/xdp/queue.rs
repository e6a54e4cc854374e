//! The bookkeeping of one AF_XDP socket, apart from the socket itself: which UMEM frames
//! are where (fill ring, RX ring, free for TX, framed and pending, TX ring, completion
//! ring), receiving a batch, framing replies, and kicking copy-mode TX.
//!
//! [`XskQueue`] is generic over [`XskRings`], the four rings and the UMEM as this logic sees
//! them. The server uses the real rings (xsk-rs, `super::XskSocket`); the unit tests below
//! use an in-memory UMEM and rings with a simulated kernel side, so frame conservation,
//! fill/completion accounting, TX exhaustion and the copy-mode kick loop are tested without
//! a NIC or privileges.
//!
//! Frame ownership, the invariant the real rings' `unsafe` relies on: every descriptor of
//! the UMEM is in exactly one place at a time, either with the kernel (fill, RX, TX and
//! completion rings) or in one of this queue's lists (`rx_descs[..n]` during a receive,
//! `tx_free`, `tx_pending`). A frame is read or written only while user space holds it.

// Without the `xdp` feature only the tests below use this module.
#![cfg_attr(not(feature = "xdp"), allow(dead_code))]

use std::io;
use std::net::Ipv6Addr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::frame::{self, ReplyFraming};
use super::{bump, InterfaceInfo, XdpIoCounters};
use crate::io::{RxMeta, TxMeta};

/// The UMEM and rings of one AF_XDP socket, as seen by [`XskQueue`].
pub(crate) trait XskRings {
    /// A frame descriptor (UMEM address and length).
    type Desc: Copy + Default;

    /// Takes up to `out.len()` received frames off the RX ring.
    fn consume_rx(&mut self, out: &mut [Self::Desc]) -> usize;
    /// Gives frames to the kernel for receiving; returns how many the fill ring took.
    fn produce_fill(&mut self, descs: &[Self::Desc]) -> usize;
    /// need_wakeup on the fill ring: the driver waits for a syscall before using new frames.
    fn fill_needs_wakeup(&self) -> bool;
    fn wake_fill(&mut self) -> io::Result<()>;
    /// Queues framed frames for sending; returns how many the TX ring took.
    fn produce_tx(&mut self, descs: &[Self::Desc]) -> usize;
    /// Whether the TX ring holds entries the kernel has not consumed yet.
    fn tx_unconsumed(&mut self) -> bool;
    fn tx_needs_wakeup(&self) -> bool;
    /// sendto(): copy mode transmits only inside this call (a bounded number of frames).
    fn kick_tx(&mut self) -> io::Result<()>;
    /// Takes up to `out.len()` sent frames off the completion ring.
    fn consume_comp(&mut self, out: &mut [Self::Desc]) -> usize;
    /// The received bytes of a frame user space holds.
    fn frame(&self, desc: &Self::Desc) -> &[u8];
    /// Lets `write` fill the whole buffer of a frame user space holds; the length it
    /// returns becomes the frame's length.
    fn write_frame<E>(
        &mut self,
        desc: &mut Self::Desc,
        write: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<usize, E>;
}

/// One AF_XDP socket's frame bookkeeping on one queue of one interface.
pub(crate) struct XskQueue<R: XskRings> {
    pub(crate) interface: Arc<InterfaceInfo>,
    pub(crate) queue: u32,
    pub(crate) rings: R,
    /// Scratch for one receive batch (`batch` entries).
    rx_descs: Vec<R::Desc>,
    /// Scratch for completions (one ring's worth).
    comp_descs: Vec<R::Desc>,
    /// TX frames held by user space and free to carry a reply.
    tx_free: Vec<R::Desc>,
    /// Framed replies not yet on the TX ring.
    tx_pending: Vec<R::Desc>,
    /// Bound in zero-copy mode (the driver transmits on its own once woken).
    zero_copy: bool,
}

impl<R: XskRings> std::fmt::Debug for XskQueue<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskQueue")
            .field("interface", &self.interface.name)
            .field("queue", &self.queue)
            .field("tx_free", &self.tx_free.len())
            .field("tx_pending", &self.tx_pending.len())
            .finish()
    }
}

impl<R: XskRings> XskQueue<R> {
    /// Takes over `rings`: `rx_frames` go on the fill ring (it must take them all, so it
    /// can always take back every RX frame), `tx_frames` carry replies.
    pub(crate) fn new(
        interface: Arc<InterfaceInfo>,
        queue: u32,
        mut rings: R,
        rx_frames: &[R::Desc],
        tx_frames: Vec<R::Desc>,
        batch: usize,
        zero_copy: bool,
    ) -> Result<XskQueue<R>, String> {
        let filled = rings.produce_fill(rx_frames);
        if filled != rx_frames.len() {
            return Err(format!(
                "fill ring took {filled} of {} frames",
                rx_frames.len()
            ));
        }
        Ok(XskQueue {
            interface,
            queue,
            rings,
            rx_descs: vec![R::Desc::default(); batch.max(1)],
            comp_descs: vec![R::Desc::default(); rx_frames.len().max(1)],
            tx_pending: Vec::with_capacity(tx_frames.len()),
            tx_free: tx_frames,
            zero_copy,
        })
    }

    /// Replies framed and waiting for [`XskQueue::transmit`].
    pub(crate) fn pending(&self) -> usize {
        self.tx_pending.len()
    }

    /// The receive batch size.
    pub(crate) fn batch(&self) -> usize {
        self.rx_descs.len()
    }

    /// Takes completed TX frames back into the free list.
    fn reclaim(&mut self) -> usize {
        let n = self.rings.consume_comp(&mut self.comp_descs);
        self.tx_free.extend_from_slice(&self.comp_descs[..n]);
        n
    }

    /// Receives up to one batch and hands each DHCPv6 payload to `f`; every frame goes
    /// straight back to the fill ring.
    pub(crate) fn receive(
        &mut self,
        verify_checksum: bool,
        port: u16,
        counters: &XdpIoCounters,
        f: &mut dyn FnMut(&RxMeta, &[u8]),
    ) -> io::Result<usize> {
        let n = self.rings.consume_rx(&mut self.rx_descs);
        if n == 0 {
            return Ok(0);
        }
        counters.rx_frames.fetch_add(n as u64, Ordering::Relaxed);
        let mut delivered = 0;
        // The kernel copied these frames on whichever core ran its receive path: touching
        // one costs a cache miss per line. Start loading every frame of the batch now, so
        // the misses overlap instead of stalling each frame's parse (checksum) in turn.
        for desc in &self.rx_descs[..n] {
            prefetch_frame(self.rings.frame(desc));
        }
        for desc in &self.rx_descs[..n] {
            match frame::parse_for_port(
                self.rings.frame(desc),
                self.interface.ifindex,
                verify_checksum,
                port,
            ) {
                Ok(rx) => {
                    let meta = RxMeta {
                        src: rx.src,
                        dst: rx.dst,
                        ifindex: self.interface.ifindex,
                        hop_limit: Some(rx.hop_limit),
                        l2: Some(rx.l2),
                        queue: self.queue,
                    };
                    f(&meta, rx.payload);
                    delivered += 1;
                }
                Err(error) => bump(&counters.rx_dropped[error.index()]),
            }
        }
        // The fill ring holds as many entries as there are RX frames, so it always has room
        // for the frames just taken off RX.
        let refilled = self.rings.produce_fill(&self.rx_descs[..n]);
        debug_assert_eq!(refilled, n, "fill ring sized for every RX frame");
        if self.rings.fill_needs_wakeup() {
            self.rings.wake_fill()?;
        }
        Ok(delivered)
    }

    /// Frames one reply into a free TX frame and queues it (counted, not sent, when no
    /// frame is free or the reply cannot be framed).
    pub(crate) fn frame_reply(
        &mut self,
        meta: &TxMeta,
        payload: &[u8],
        port: u16,
        counters: &XdpIoCounters,
    ) {
        let Some(l2) = meta.l2.as_ref() else {
            bump(&counters.tx_no_l2);
            return;
        };
        let src = if !meta.src.is_unspecified() {
            Some(meta.src)
        } else if is_link_local(meta.dst.ip()) || self.interface.global.is_none() {
            // RFC 8415 §18.3.10: any of the server's addresses may be the source; clients on
            // the link expect the link-local one.
            self.interface.link_local
        } else {
            self.interface.global
        };
        let Some(src) = src else {
            bump(&counters.tx_no_source);
            return;
        };
        if self.tx_free.is_empty() {
            self.reclaim();
        }
        let Some(mut desc) = self.tx_free.pop() else {
            bump(&counters.tx_no_frame);
            return;
        };
        let framing = ReplyFraming {
            own_mac: self.interface.mac,
            request_l2: l2,
            src,
            dst: meta.dst,
            src_port: port,
            hop_limit: 64,
        };
        match self
            .rings
            .write_frame(&mut desc, |buf| frame::write_reply(buf, &framing, payload))
        {
            Ok(_) => self.tx_pending.push(desc),
            Err(error) => {
                bump(&counters.rx_dropped[error.index()]);
                self.tx_free.push(desc);
            }
        }
    }

    /// Puts pending replies on the TX ring and kicks the kernel until it has taken them.
    ///
    /// In copy mode the kernel transmits only inside sendto(), at most 32 frames per call
    /// (its TX budget), so one kick is not enough for a batch: keep kicking while the ring
    /// holds frames the kernel has not consumed. Bounded, so a stalled device cannot hold
    /// the shard; what is left goes out on the next flush.
    pub(crate) fn transmit(&mut self, counters: &XdpIoCounters) -> io::Result<()> {
        const MAX_KICKS: usize = 256;
        for _ in 0..MAX_KICKS {
            if !self.tx_pending.is_empty() {
                let sent = self.rings.produce_tx(&self.tx_pending);
                self.tx_pending.drain(..sent);
                counters.tx_frames.fetch_add(sent as u64, Ordering::Relaxed);
            }
            let unconsumed = self.rings.tx_unconsumed();
            // Copy mode transmits only inside a syscall whatever the need_wakeup flag says
            // (the kernel does not set it there): kick whenever frames wait.
            let kick = unconsumed && (!self.zero_copy || self.rings.tx_needs_wakeup());
            if kick {
                self.rings.kick_tx()?;
            }
            self.reclaim();
            if self.tx_pending.is_empty() && !kick {
                break;
            }
        }
        Ok(())
    }
}

/// Hints the CPU to load the first bytes of a frame (Ethernet, IPv6 and UDP headers and
/// the start of the DHCPv6 message: 256 bytes, four cache lines).
#[inline]
fn prefetch_frame(frame: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        for offset in (0..frame.len().min(256)).step_by(64) {
            // SAFETY: `offset < frame.len()`, so the pointer is inside the frame; a prefetch
            // only hints the cache and never faults or reads into the program.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(frame.as_ptr().add(offset).cast::<i8>()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = frame;
}

fn is_link_local(addr: &Ipv6Addr) -> bool {
    addr.segments()[0] & 0xffc0 == 0xfe80
}

#[cfg(test)]
mod tests {
    //! The queue logic against an in-memory UMEM whose "kernel" side is simulated: frames
    //! injected as if from the wire land in fill-ring frames and appear on RX; each TX kick
    //! moves at most 32 frames (copy mode's budget) from the TX ring to the wire and the
    //! completion ring.

    use super::*;
    use crate::io::xdp::frame::{FrameError, ALL_DHCP_RELAY_AGENTS_AND_SERVERS, SERVER_PORT};
    use crate::io::L2Header;
    use proptest::prelude::*;
    use std::collections::VecDeque;
    use std::net::SocketAddrV6;

    const FRAME_SIZE: usize = 2048;
    /// Copy-mode TX budget per sendto() (net/xdp/xsk.c, TX_BATCH_SIZE).
    const KICK_BUDGET: usize = 32;

    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
    struct Desc {
        addr: usize,
        len: usize,
    }

    struct FakeRings {
        umem: Vec<u8>,
        ring: usize,
        fill: VecDeque<Desc>,
        rx: VecDeque<Desc>,
        tx: VecDeque<Desc>,
        comp: VecDeque<Desc>,
        /// Frames that left through TX, as the peer would see them.
        wire: Vec<Vec<u8>>,
        /// The kernel dropped a frame because the fill ring was empty.
        rx_no_buffer: u64,
        /// While set, kicks transmit nothing (a stalled device).
        stalled: bool,
        kicks: u64,
        fill_wakeups: u64,
        fill_needs_wakeup: bool,
    }

    impl FakeRings {
        /// A UMEM of `2 * ring` frames; returns the RX half and the TX half.
        fn new(ring: usize) -> (FakeRings, Vec<Desc>, Vec<Desc>) {
            let descs: Vec<Desc> = (0..2 * ring)
                .map(|i| Desc {
                    addr: i * FRAME_SIZE,
                    len: 0,
                })
                .collect();
            let rings = FakeRings {
                umem: vec![0; 2 * ring * FRAME_SIZE],
                ring,
                fill: VecDeque::new(),
                rx: VecDeque::new(),
                tx: VecDeque::new(),
                comp: VecDeque::new(),
                wire: Vec::new(),
                rx_no_buffer: 0,
                stalled: false,
                kicks: 0,
                fill_wakeups: 0,
                fill_needs_wakeup: false,
            };
            (rings, descs[..ring].to_vec(), descs[ring..].to_vec())
        }

        /// The kernel side of receiving: a frame off the wire into a fill-ring frame.
        fn inject(&mut self, bytes: &[u8]) -> bool {
            if self.rx.len() == self.ring {
                self.rx_no_buffer += 1;
                return false;
            }
            let Some(mut desc) = self.fill.pop_front() else {
                self.rx_no_buffer += 1;
                return false;
            };
            self.umem[desc.addr..desc.addr + bytes.len()].copy_from_slice(bytes);
            desc.len = bytes.len();
            self.rx.push_back(desc);
            true
        }

        /// Every descriptor the kernel side holds.
        fn kernel_held(&self) -> Vec<Desc> {
            self.fill
                .iter()
                .chain(&self.rx)
                .chain(&self.tx)
                .chain(&self.comp)
                .copied()
                .collect()
        }
    }

    fn take_into(queue: &mut VecDeque<Desc>, out: &mut [Desc]) -> usize {
        let n = out.len().min(queue.len());
        for slot in &mut out[..n] {
            *slot = queue.pop_front().expect("counted");
        }
        n
    }

    impl XskRings for FakeRings {
        type Desc = Desc;

        fn consume_rx(&mut self, out: &mut [Desc]) -> usize {
            take_into(&mut self.rx, out)
        }
        fn produce_fill(&mut self, descs: &[Desc]) -> usize {
            let n = descs.len().min(self.ring - self.fill.len());
            self.fill.extend(&descs[..n]);
            n
        }
        fn fill_needs_wakeup(&self) -> bool {
            self.fill_needs_wakeup
        }
        fn wake_fill(&mut self) -> io::Result<()> {
            self.fill_wakeups += 1;
            Ok(())
        }
        fn produce_tx(&mut self, descs: &[Desc]) -> usize {
            let n = descs.len().min(self.ring - self.tx.len());
            self.tx.extend(&descs[..n]);
            n
        }
        fn tx_unconsumed(&mut self) -> bool {
            !self.tx.is_empty()
        }
        fn tx_needs_wakeup(&self) -> bool {
            false
        }
        fn kick_tx(&mut self) -> io::Result<()> {
            self.kicks += 1;
            if self.stalled {
                return Ok(());
            }
            for _ in 0..KICK_BUDGET {
                if self.comp.len() == self.ring {
                    break;
                }
                let Some(desc) = self.tx.pop_front() else {
                    break;
                };
                self.wire
                    .push(self.umem[desc.addr..desc.addr + desc.len].to_vec());
                self.comp.push_back(desc);
            }
            Ok(())
        }
        fn consume_comp(&mut self, out: &mut [Desc]) -> usize {
            take_into(&mut self.comp, out)
        }
        fn frame(&self, desc: &Desc) -> &[u8] {
            &self.umem[desc.addr..desc.addr + desc.len]
        }
        fn write_frame<E>(
            &mut self,
            desc: &mut Desc,
            write: impl FnOnce(&mut [u8]) -> Result<usize, E>,
        ) -> Result<usize, E> {
            let len = write(&mut self.umem[desc.addr..desc.addr + FRAME_SIZE])?;
            desc.len = len;
            Ok(len)
        }
    }

    const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x22];
    const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x11];

    fn server_ll() -> Ipv6Addr {
        "fe80::1".parse().unwrap()
    }

    fn interface() -> Arc<InterfaceInfo> {
        Arc::new(InterfaceInfo {
            name: "fake0".into(),
            ifindex: 7,
            mac: SERVER_MAC,
            queues: 1,
            link_local: Some(server_ll()),
            global: Some("2001:db8:1::1".parse().unwrap()),
        })
    }

    fn queue(ring: usize, batch: usize) -> XskQueue<FakeRings> {
        let (rings, rx, tx) = FakeRings::new(ring);
        XskQueue::new(interface(), 0, rings, &rx, tx, batch, false).unwrap()
    }

    /// A client's frame to ff02::1:2 port 547 from fe80::<n> port 546, built with the
    /// frame builder (its bytes are pinned against a hand-written frame in frame.rs).
    fn client_frame(n: u16, payload: &[u8]) -> Vec<u8> {
        let to_server = L2Header {
            src_mac: [0x33, 0x33, 0, 1, 0, 2],
            ..L2Header::default()
        };
        let mut buf = vec![0u8; FRAME_SIZE];
        let len = frame::write_reply(
            &mut buf,
            &ReplyFraming {
                own_mac: CLIENT_MAC,
                request_l2: &to_server,
                src: Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, n),
                dst: SocketAddrV6::new(ALL_DHCP_RELAY_AGENTS_AND_SERVERS, SERVER_PORT, 0, 0),
                src_port: 546,
                hop_limit: 1,
            },
            payload,
        )
        .unwrap();
        buf.truncate(len);
        buf
    }

    /// Receives everything on RX and answers each datagram with "re:" + payload.
    fn serve_once(q: &mut XskQueue<FakeRings>, counters: &XdpIoCounters) -> usize {
        let mut replies = Vec::new();
        let n = q
            .receive(true, SERVER_PORT, counters, &mut |meta, payload| {
                let mut reply = b"re:".to_vec();
                reply.extend_from_slice(payload);
                replies.push((TxMeta::reply_to(meta, meta.src), reply));
            })
            .unwrap();
        for (meta, reply) in &replies {
            q.frame_reply(meta, reply, SERVER_PORT, counters);
        }
        n
    }

    /// Every frame of the UMEM is in exactly one place.
    fn assert_conserved(q: &XskQueue<FakeRings>) {
        let mut all: Vec<usize> = q
            .rings
            .kernel_held()
            .iter()
            .chain(&q.tx_free)
            .chain(&q.tx_pending)
            .map(|d| d.addr)
            .collect();
        all.sort_unstable();
        let expected: Vec<usize> = (0..2 * q.rings.ring).map(|i| i * FRAME_SIZE).collect();
        assert_eq!(all, expected, "a frame was lost or is in two places");
    }

    #[test]
    fn receive_delivers_payloads_and_refills_every_frame() {
        let mut q = queue(16, 8);
        let counters = XdpIoCounters::default();
        for n in 0..5 {
            assert!(q.rings.inject(&client_frame(n, b"solicit")));
        }
        let mut seen = Vec::new();
        let got = q
            .receive(true, SERVER_PORT, &counters, &mut |meta, payload| {
                seen.push((*meta.src.ip(), meta.src.scope_id(), payload.to_vec()));
                assert_eq!(meta.ifindex, 7);
                assert_eq!(meta.dst, ALL_DHCP_RELAY_AGENTS_AND_SERVERS);
                assert_eq!(meta.l2.unwrap().src_mac, CLIENT_MAC);
            })
            .unwrap();
        assert_eq!(got, 5);
        assert_eq!(seen.len(), 5);
        assert_eq!(seen[3].0, Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 3));
        assert_eq!(seen[3].1, 7, "link-local source scoped to the interface");
        assert!(seen.iter().all(|(_, _, p)| p == b"solicit"));
        assert_eq!(counters.rx_frames.load(Ordering::Relaxed), 5);
        assert_eq!(
            q.rings.fill.len(),
            16,
            "every RX frame back on the fill ring"
        );
        assert_conserved(&q);
    }

    #[test]
    fn receive_takes_one_batch_at_a_time_and_wakes_the_fill_ring_when_asked() {
        let mut q = queue(16, 4);
        let counters = XdpIoCounters::default();
        q.rings.fill_needs_wakeup = true;
        for n in 0..10 {
            q.rings.inject(&client_frame(n, b"x"));
        }
        let mut rounds = Vec::new();
        loop {
            let got = q
                .receive(true, SERVER_PORT, &counters, &mut |_, _| {})
                .unwrap();
            if got == 0 {
                break;
            }
            rounds.push(got);
        }
        assert_eq!(rounds, [4, 4, 2]);
        assert_eq!(q.rings.fill_wakeups, 3);
        assert_conserved(&q);
    }

    #[test]
    fn bad_frames_are_counted_by_reason_and_still_recycled() {
        let mut q = queue(8, 8);
        let counters = XdpIoCounters::default();
        let good = client_frame(1, b"ok");
        let mut bad_checksum = good.clone();
        *bad_checksum.last_mut().unwrap() ^= 0xff;
        let mut other_port = client_frame(2, b"ok");
        other_port[14 + 40 + 3] = 0x24;
        q.rings.inject(&good);
        q.rings.inject(&bad_checksum);
        q.rings.inject(&other_port);
        q.rings.inject(&good[..30]);
        let got = q
            .receive(true, SERVER_PORT, &counters, &mut |_, _| {})
            .unwrap();
        assert_eq!(got, 1);
        let dropped = |e: FrameError| counters.rx_dropped[e.index()].load(Ordering::Relaxed);
        assert_eq!(dropped(FrameError::BadChecksum), 1);
        assert_eq!(dropped(FrameError::NotServerPort), 1);
        assert_eq!(dropped(FrameError::Truncated), 1);
        assert_eq!(counters.rx_frames.load(Ordering::Relaxed), 4);
        assert_eq!(q.rings.fill.len(), 8);
        assert_conserved(&q);
    }

    #[test]
    fn replies_are_framed_reflected_and_sent_in_several_kicks() {
        // 100 replies: more than three copy-mode kick budgets.
        let mut q = queue(128, 128);
        let counters = XdpIoCounters::default();
        for n in 0..100 {
            q.rings.inject(&client_frame(n, format!("m{n}").as_bytes()));
        }
        assert_eq!(serve_once(&mut q, &counters), 100);
        assert_eq!(q.pending(), 100);
        q.transmit(&counters).unwrap();
        assert_eq!(q.pending(), 0);
        assert_eq!(q.rings.wire.len(), 100);
        assert_eq!(q.rings.kicks, 4, "ceil(100 / 32) kicks");
        assert_eq!(counters.tx_frames.load(Ordering::Relaxed), 100);
        for (n, sent) in q.rings.wire.iter().enumerate() {
            // Parse the reply as a frame to the client's port: checksum verified.
            let rx = frame::parse_for_port(sent, 7, true, 546).unwrap();
            assert_eq!(rx.l2.dst_mac, CLIENT_MAC);
            assert_eq!(rx.l2.src_mac, SERVER_MAC);
            assert_eq!(
                *rx.src.ip(),
                server_ll(),
                "multicast request: link-local source"
            );
            assert_eq!(rx.src.port(), SERVER_PORT);
            assert_eq!(rx.dst, Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, n as u16));
            assert_eq!(rx.payload, format!("re:m{n}").as_bytes());
        }
        // Completions were reclaimed: every TX frame is free again.
        assert_eq!(q.tx_free.len(), 128);
        assert_conserved(&q);
    }

    #[test]
    fn tx_exhaustion_is_counted_and_recovers_when_the_device_drains() {
        let mut q = queue(8, 8);
        let counters = XdpIoCounters::default();
        q.rings.stalled = true;
        // Three rounds of 8 requests against 8 TX frames: the first round takes them all.
        for round in 0..3u16 {
            for n in 0..8 {
                q.rings.inject(&client_frame(round * 8 + n, b"x"));
            }
            serve_once(&mut q, &counters);
            q.transmit(&counters).unwrap();
            assert_conserved(&q);
        }
        assert_eq!(counters.tx_frames.load(Ordering::Relaxed), 8);
        assert_eq!(counters.tx_no_frame.load(Ordering::Relaxed), 16);
        assert!(q.rings.wire.is_empty());
        // The device drains: the frames complete and carry new replies.
        q.rings.stalled = false;
        q.transmit(&counters).unwrap();
        assert_eq!(q.rings.wire.len(), 8);
        for n in 0..8 {
            q.rings.inject(&client_frame(100 + n, b"y"));
        }
        serve_once(&mut q, &counters);
        q.transmit(&counters).unwrap();
        assert_eq!(q.rings.wire.len(), 16);
        assert_eq!(counters.tx_no_frame.load(Ordering::Relaxed), 16);
        assert_conserved(&q);
    }

    #[test]
    fn replies_without_l2_or_source_or_room_are_counted_not_sent() {
        let counters = XdpIoCounters::default();
        let mut q = queue(4, 4);
        let dst = SocketAddrV6::new("2001:db8:9::1".parse().unwrap(), 547, 0, 0);
        let meta = TxMeta {
            dst,
            src: Ipv6Addr::UNSPECIFIED,
            ifindex: 7,
            l2: None,
            queue: 0,
        };
        q.frame_reply(&meta, b"x", SERVER_PORT, &counters);
        assert_eq!(counters.tx_no_l2.load(Ordering::Relaxed), 1);
        // A global destination without a global address falls back to the link-local one;
        // with no address at all the reply is counted.
        let bare = Arc::new(InterfaceInfo {
            link_local: None,
            global: None,
            ..(*interface()).clone()
        });
        let (rings, rx, tx) = FakeRings::new(4);
        let mut no_addr = XskQueue::new(bare, 0, rings, &rx, tx, 4, false).unwrap();
        let with_l2 = TxMeta {
            l2: Some(L2Header::default()),
            ..meta
        };
        no_addr.frame_reply(&with_l2, b"x", SERVER_PORT, &counters);
        assert_eq!(counters.tx_no_source.load(Ordering::Relaxed), 1);
        // A reply larger than a frame is counted as reply_too_large; its frame stays free.
        q.frame_reply(&with_l2, &vec![0u8; FRAME_SIZE], SERVER_PORT, &counters);
        assert_eq!(
            counters.rx_dropped[FrameError::ReplyTooLarge.index()].load(Ordering::Relaxed),
            1
        );
        assert_eq!(q.pending(), 0);
        assert_conserved(&q);
        assert_conserved(&no_addr);
    }

    #[test]
    fn fill_ring_must_take_every_rx_frame() {
        let (mut rings, rx, tx) = FakeRings::new(4);
        rings.ring = 3; // a fill ring smaller than the RX frames
        let err = XskQueue::new(interface(), 0, rings, &rx, tx, 4, false).expect_err("refused");
        assert!(err.contains("fill ring took 3 of 4"), "{err}");
    }

    #[derive(Clone, Debug)]
    enum Op {
        Inject(u8),
        Serve,
        Transmit,
        Stall(bool),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1u8..40).prop_map(Op::Inject),
            Just(Op::Serve),
            Just(Op::Transmit),
            any::<bool>().prop_map(Op::Stall),
        ]
    }

    proptest! {
        /// Whatever the interleaving of arrivals, service, flushes and device stalls, no
        /// frame is lost or duplicated, and every request is either answered, counted as
        /// unanswerable for lack of a TX frame, dropped by the kernel for lack of a fill
        /// frame, or still waiting on the RX ring.
        #[test]
        fn frames_are_conserved_and_every_request_accounted(
            ring in 2usize..24,
            batch in 1usize..24,
            ops in prop::collection::vec(op(), 1..60),
        ) {
            let mut q = queue(ring, batch.min(ring));
            let counters = XdpIoCounters::default();
            let mut injected = 0u64;
            let mut next = 0u16;
            for op in ops {
                match op {
                    Op::Inject(k) => {
                        for _ in 0..k {
                            next = next.wrapping_add(1);
                            if q.rings.inject(&client_frame(next, b"p")) {
                                injected += 1;
                            }
                        }
                    }
                    Op::Serve => {
                        serve_once(&mut q, &counters);
                    }
                    Op::Transmit => q.transmit(&counters).unwrap(),
                    Op::Stall(s) => q.rings.stalled = s,
                }
                assert_conserved(&q);
            }
            q.rings.stalled = false;
            while !q.rings.rx.is_empty() {
                serve_once(&mut q, &counters);
                q.transmit(&counters).unwrap();
            }
            q.transmit(&counters).unwrap();
            assert_conserved(&q);
            let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
            prop_assert_eq!(load(&counters.rx_frames), injected);
            prop_assert_eq!(
                q.rings.wire.len() as u64 + load(&counters.tx_no_frame),
                injected
            );
            prop_assert_eq!(q.pending(), 0);
            prop_assert_eq!(q.tx_free.len(), ring, "every TX frame back after the drain");
        }
    }
}
