//! The AF_XDP sockets themselves (xsk-rs) and the data plane that owns them: one socket per
//! queue of each interface, grouped into one [`XdpIo`] per shard, and the attached XDP
//! programs. Built with the `xdp` cargo feature (the default); without it tandem has no
//! AF_XDP backend and needs neither libxdp nor clang.

use std::io;
use std::net::{Ipv6Addr, UdpSocket};
use std::num::NonZeroU32;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use xsk_rs::config::{
    BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig,
};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem};

use super::frame::{self, FrameError};
use super::program::{XdpCounter, XdpCounters, XdpProgram};
use super::queue::{XskQueue, XskRings};
use super::{
    bump, full_chain, is_permission_code, os_errors, AttachedMode, InterfaceInfo, XdpError,
    XdpIoCounters,
};
use crate::config::xdp::{BindMode, XdpConfig};
use crate::io::sys::Waker;
use crate::io::{IoStats, PacketIo, RxMeta, TxMeta};

/// The UMEM and rings of one AF_XDP socket (xsk-rs), bound to one queue.
struct XskSocket {
    umem: Umem,
    fill: FillQueue,
    comp: CompQueue,
    rx: RxQueue,
    tx: TxQueue,
    /// Entries of each ring.
    ring_size: u32,
}

// SAFETY (all blocks below): xsk-rs marks ring and frame access unsafe because the caller
// must hand the kernel only descriptors of this socket's UMEM that user space holds, and
// touch a frame only while user space holds it. `queue::XskQueue` keeps every descriptor in
// exactly one place (see its module docs); these methods are its only way to the rings.
impl XskRings for XskSocket {
    type Desc = FrameDesc;

    fn consume_rx(&mut self, out: &mut [FrameDesc]) -> usize {
        // SAFETY: `out` is scratch owned by the caller; the kernel hands over frames of this
        // UMEM it has finished writing, held by user space until produced to the fill ring.
        unsafe { self.rx.consume(out) }
    }

    fn produce_fill(&mut self, descs: &[FrameDesc]) -> usize {
        // libxdp reserves all-or-nothing: offer only what fits, so a partial produce takes
        // what it can (the contract `XskQueue` relies on).
        let room = self.fill.nb_free(descs.len() as u32) as usize;
        let descs = &descs[..room.min(descs.len())];
        // SAFETY: frames of this UMEM held by user space and no longer referenced; the
        // kernel owns them from here until they come back on RX.
        unsafe { self.fill.produce(descs) }
    }

    fn fill_needs_wakeup(&self) -> bool {
        self.fill.needs_wakeup()
    }

    fn wake_fill(&mut self) -> io::Result<()> {
        self.fill.wakeup(self.rx.fd_mut(), 0)
    }

    fn produce_tx(&mut self, descs: &[FrameDesc]) -> usize {
        // All-or-nothing in libxdp, as on the fill ring: with more TX frames than TX ring
        // entries (frames_per_queue > 2 x ring_size) a full batch would never fit.
        let room = self.tx.nb_free(descs.len() as u32) as usize;
        let descs = &descs[..room.min(descs.len())];
        // SAFETY: framed frames of this UMEM held by user space and not referenced
        // elsewhere; the kernel owns them until the completion ring returns them.
        unsafe { self.tx.produce(descs) }
    }

    fn tx_unconsumed(&mut self) -> bool {
        self.tx.nb_free_exact() < self.ring_size
    }

    fn tx_needs_wakeup(&self) -> bool {
        self.tx.needs_wakeup()
    }

    fn kick_tx(&mut self) -> io::Result<()> {
        self.tx.wakeup()
    }

    fn consume_comp(&mut self, out: &mut [FrameDesc]) -> usize {
        // SAFETY: the completion ring returns frames of this UMEM the kernel has finished
        // sending; from now on user space holds them.
        unsafe { self.comp.consume(out) }
    }

    fn frame(&self, desc: &FrameDesc) -> &[u8] {
        // SAFETY: `desc` is held by user space (taken off RX), so the kernel no longer
        // writes its frame; the slice borrows `self`, so it ends before the frame can be
        // produced to a ring again.
        unsafe { self.umem.data(desc) }.contents()
    }

    fn write_frame<E>(
        &mut self,
        desc: &mut FrameDesc,
        write: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<usize, E> {
        // SAFETY: `desc` is a frame of this UMEM held by user space (a free TX frame), so
        // nothing else reads or writes it until it is produced on the TX ring.
        let mut data = unsafe { self.umem.data_mut(desc) };
        let capacity = data.cursor().buf_len();
        data.cursor().set_pos(capacity);
        let len = write(data.contents_mut())?;
        data.cursor().set_pos(len);
        Ok(len)
    }
}

fn socket_errno(error: &xsk_rs::socket::SocketCreateError) -> Option<i32> {
    os_errors(error).into_iter().next()
}

/// Opens the AF_XDP socket of `queue` on `interface` (zero-copy first unless the config
/// forces copy mode); returns it with whether it is zero-copy.
fn open_queue(
    interface: Arc<InterfaceInfo>,
    queue: u32,
    config: &XdpConfig,
) -> Result<(XskQueue<XskSocket>, bool), XdpError> {
    let socket_error = |reason: String| XdpError::Socket {
        interface: interface.name.clone(),
        queue,
        reason,
    };
    let ring = QueueSize::new(config.ring_size).map_err(|e| socket_error(e.to_string()))?;
    let umem_config = UmemConfig::builder()
        .frame_size(FrameSize::new(config.frame_size).map_err(|e| socket_error(e.to_string()))?)
        .fill_queue_size(ring)
        .comp_queue_size(ring)
        .build()
        .map_err(|e| socket_error(e.to_string()))?;
    let frames = NonZeroU32::new(config.frames_per_queue)
        .ok_or_else(|| socket_error("frames_per_queue is zero".into()))?;
    let name: Interface = interface
        .name
        .parse()
        .map_err(|_| socket_error("interface name contains a NUL byte".into()))?;

    let attempts: &[(BindFlags, bool)] = match config.bind_mode {
        BindMode::Auto => &[
            (BindFlags::XDP_ZEROCOPY, true),
            (BindFlags::XDP_COPY, false),
        ],
        BindMode::ZeroCopy => &[(BindFlags::XDP_ZEROCOPY, true)],
        BindMode::Copy => &[(BindFlags::XDP_COPY, false)],
    };
    let mut last_error = None;
    for &(mode, zero_copy) in attempts {
        let socket_config = SocketConfig::builder()
            .rx_queue_size(ring)
            .tx_queue_size(ring)
            // Our own program is attached already; libxdp must not load its default one.
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .bind_flags(mode | BindFlags::XDP_USE_NEED_WAKEUP)
            .build();
        // The kernel may still hold the queue of a process that just exited (EBUSY for
        // ~100 ms): retry for up to a second.
        for _ in 0..50 {
            // A fresh UMEM per attempt: a failed bind may leave the first one's fill and
            // completion rings half set up.
            let (umem, mut descs) = Umem::new(umem_config, frames, false)
                .map_err(|e| socket_error(format!("creating the UMEM: {}", full_chain(&e))))?;
            // SAFETY: `umem` is new and used by this socket only, so no other socket is
            // bound to it; the descriptors from `Umem::new` are handed out below once
            // each, to the fill ring or to the TX free list, never both.
            let created = unsafe { Socket::new(socket_config, &umem, &name, queue) };
            match created {
                Ok((tx, rx, Some((fill, comp)))) => {
                    // The first `ring_size` frames circulate through fill and RX (so the
                    // fill ring can always take back every RX frame); the rest carry
                    // replies.
                    let tx_frames = descs.split_off(config.ring_size as usize);
                    let socket = XskSocket {
                        umem,
                        fill,
                        comp,
                        rx,
                        tx,
                        ring_size: config.ring_size,
                    };
                    let queue = XskQueue::new(
                        interface.clone(),
                        queue,
                        socket,
                        &descs,
                        tx_frames,
                        config.batch,
                        zero_copy,
                    )
                    .map_err(socket_error)?;
                    return Ok((queue, zero_copy));
                }
                Ok((_, _, None)) => {
                    return Err(socket_error(
                        "the UMEM's fill and completion rings were already taken".into(),
                    ))
                }
                Err(e) if socket_errno(&e) == Some(libc::EBUSY) => {
                    last_error = Some(full_chain(&e));
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    if socket_errno(&e).is_some_and(is_permission_code) {
                        return Err(XdpError::Permission {
                            what: format!(
                                "opening the AF_XDP socket on {} queue {queue}",
                                interface.name
                            ),
                        });
                    }
                    if zero_copy && config.bind_mode == BindMode::Auto {
                        tracing::info!(
                            interface = %interface.name,
                            queue,
                            error = %full_chain(&e),
                            "zero-copy AF_XDP refused by the driver; using copy mode"
                        );
                    }
                    last_error = Some(full_chain(&e));
                    break;
                }
            }
        }
    }
    Err(socket_error(format!(
        "binding the AF_XDP socket failed: {}",
        last_error.unwrap_or_default()
    )))
}

impl XskQueue<XskSocket> {
    fn raw_fd(&self) -> i32 {
        self.rings.rx.fd().as_raw_fd()
    }
}

/// The AF_XDP sockets one shard drives (queue q of each interface for shard q mod shards).
#[derive(Debug)]
pub struct XdpIo {
    queues: Vec<XskQueue<XskSocket>>,
    verify_checksum: bool,
    /// The server's UDP port (547 unless `[io] port` says otherwise).
    port: u16,
    counters: Arc<XdpIoCounters>,
    pollfds: Vec<libc::pollfd>,
    /// Woken by other shards (handoff) and at stop; watched next to the sockets.
    waker: Option<Waker>,
}

impl XdpIo {
    /// The queues this shard drives, as (interface, queue id).
    pub fn queues(&self) -> Vec<(String, u32)> {
        self.queues
            .iter()
            .map(|q| (q.interface.name.clone(), q.queue))
            .collect()
    }

    pub fn counters(&self) -> &Arc<XdpIoCounters> {
        &self.counters
    }

    fn receive_all(&mut self, f: &mut dyn FnMut(&RxMeta, &[u8])) -> io::Result<usize> {
        let mut total = 0;
        for queue in &mut self.queues {
            total += queue.receive(self.verify_checksum, self.port, &self.counters, f)?;
        }
        Ok(total)
    }

    /// Waits until a socket is readable or `timeout` passes.
    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let timeout_ms = match timeout {
            None => -1,
            // Round up so a sub-millisecond timeout still sleeps rather than spins.
            Some(d) => i32::try_from(d.as_micros().div_ceil(1000)).unwrap_or(i32::MAX),
        };
        self.pollfds.clear();
        self.pollfds
            .extend(self.queues.iter().map(|q| libc::pollfd {
                fd: q.raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }));
        // SAFETY: `pollfds` is a valid, exclusively borrowed array of `len` pollfd structs
        // for the duration of the call; the descriptors stay open (owned by `self.queues`).
        let ready = unsafe {
            libc::poll(
                self.pollfds.as_mut_ptr(),
                self.pollfds.len() as libc::nfds_t,
                timeout_ms,
            )
        };
        if ready < 0 {
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
        if let Some(waker) = &self.waker {
            waker.reset();
        }
        Ok(())
    }
}

impl PacketIo for XdpIo {
    fn recv_batch(
        &mut self,
        timeout: Option<Duration>,
        f: &mut dyn FnMut(&RxMeta, &[u8]),
    ) -> io::Result<usize> {
        let got = self.receive_all(f)?;
        if got > 0 || timeout == Some(Duration::ZERO) {
            return Ok(got);
        }
        self.wait(timeout)?;
        self.receive_all(f)
    }

    fn attach_waker(&mut self, waker: &Waker) -> io::Result<bool> {
        self.waker = Some(waker.clone());
        Ok(true)
    }

    fn stats(&self) -> IoStats {
        let c = &*self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        // Reply framing failures share the FrameError counters but are TX-side.
        let too_large = load(&c.rx_dropped[FrameError::ReplyTooLarge.index()]);
        let rx_dropped = c.rx_dropped.iter().map(load).sum::<u64>() - too_large;
        IoStats {
            rx_packets: load(&c.rx_frames).saturating_sub(rx_dropped),
            rx_errors: rx_dropped,
            tx_packets: load(&c.tx_frames),
            tx_errors: load(&c.tx_no_frame)
                + load(&c.tx_no_l2)
                + load(&c.tx_no_socket)
                + load(&c.tx_no_source)
                + too_large,
            ..IoStats::default()
        }
    }

    fn send(&mut self, meta: &TxMeta, payload: &[u8]) -> io::Result<()> {
        // The receiving queue when this shard owns it, else any socket on the interface
        // (a reply for a request handed over from another shard).
        let index = self
            .queues
            .iter()
            .position(|q| q.interface.ifindex == meta.ifindex && q.queue == meta.queue)
            .or_else(|| {
                self.queues
                    .iter()
                    .position(|q| q.interface.ifindex == meta.ifindex)
            });
        let Some(index) = index else {
            bump(&self.counters.tx_no_socket);
            return Ok(());
        };
        let queue = &mut self.queues[index];
        queue.frame_reply(meta, payload, self.port, &self.counters);
        if queue.pending() >= queue.batch() {
            queue.transmit(&self.counters)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        for queue in &mut self.queues {
            queue.transmit(&self.counters)?;
        }
        Ok(())
    }
}

/// One shard's share of the data plane: its sockets and the core to pin it to.
#[derive(Debug)]
pub struct XdpShard {
    pub index: usize,
    pub core: usize,
    pub io: XdpIo,
}

/// The attached programs and per-interface state; owned by the main thread for the life of
/// the server. Dropping it detaches the XDP programs.
pub struct XdpDataPlane {
    programs: Vec<XdpProgram>,
    interfaces: Vec<Arc<InterfaceInfo>>,
    /// A UDP socket bound to the server port and joined to ff02::1:2 and ff05::1:3 on each
    /// interface: the kernel then programs the NIC's multicast filter and answers MLD
    /// queries (switches with MLD snooping keep forwarding client multicast to us), and no
    /// other DHCPv6 server on this host can take the port. It is never read: the XDP program
    /// takes the port's traffic on the served interfaces before the stack.
    _port_socket: UdpSocket,
    shard_counters: Vec<Arc<XdpIoCounters>>,
    zero_copy: bool,
}

impl std::fmt::Debug for XdpDataPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpDataPlane")
            .field("programs", &self.programs)
            .field("zero_copy", &self.zero_copy)
            .finish()
    }
}

impl XdpDataPlane {
    /// Attaches the XDP program to each interface and opens one AF_XDP socket per queue.
    /// `shards`: the requested shard count (`None`: one per queue). It is capped at the
    /// largest queue count, since a shard without a queue could not send its replies.
    /// `port`: the UDP port served (547 in production).
    pub fn open(
        interfaces: &[String],
        config: &XdpConfig,
        shards: Option<usize>,
        port: u16,
    ) -> Result<(XdpDataPlane, Vec<XdpShard>), XdpError> {
        config
            .validate()
            .map_err(|e| XdpError::Config(e.to_string()))?;
        if interfaces.is_empty() {
            return Err(XdpError::Config(
                "the AF_XDP backend needs at least one interface ([io] interfaces or --interface)"
                    .into(),
            ));
        }
        let infos = interfaces
            .iter()
            .map(|name| InterfaceInfo::discover(name).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let max_queues = infos.iter().map(|i| i.queues as usize).max().unwrap_or(1);
        let shard_count = match shards {
            Some(0) | None => max_queues,
            Some(n) if n > max_queues => {
                tracing::warn!(
                    requested = n,
                    queues = max_queues,
                    "more shards than NIC queues; using one shard per queue"
                );
                max_queues
            }
            Some(n) => n,
        };
        for info in &infos {
            if (info.queues as usize) < shard_count {
                tracing::warn!(
                    interface = %info.name,
                    queues = info.queues,
                    shards = shard_count,
                    "interface has fewer queues than shards: shards without a socket on it \
                     drop their replies there (tx_no_socket); give every interface the same \
                     queue count (ethtool -L)"
                );
            }
        }

        let mut programs = Vec::with_capacity(infos.len());
        for info in &infos {
            programs.push(XdpProgram::attach(&info.name, config.attach_mode, port)?);
        }

        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let counters: Vec<Arc<XdpIoCounters>> = (0..shard_count)
            .map(|_| Arc::new(XdpIoCounters::default()))
            .collect();
        let mut shard_queues: Vec<Vec<XskQueue<XskSocket>>> =
            (0..shard_count).map(|_| Vec::new()).collect();
        let mut zero_copy = true;
        for (info, program) in infos.iter().zip(&mut programs) {
            for queue in 0..info.queues {
                let (xsk, zc) = open_queue(info.clone(), queue, config)?;
                zero_copy &= zc;
                program.register_socket(queue, xsk.raw_fd())?;
                tracing::info!(
                    interface = %info.name,
                    queue,
                    shard = queue as usize % shard_count,
                    zero_copy = zc,
                    "AF_XDP socket bound"
                );
                shard_queues[queue as usize % shard_count].push(xsk);
            }
        }
        // Last: once the port is bound and the groups joined, the data plane is serving (and
        // an observer sees the server as ready only then).
        let port_socket = hold_port(port, &infos)?;
        let shards = shard_queues
            .into_iter()
            .enumerate()
            .map(|(index, queues)| XdpShard {
                index,
                core: config.core_of_queue(index, cores),
                io: XdpIo {
                    pollfds: Vec::with_capacity(queues.len()),
                    queues,
                    verify_checksum: config.verify_udp_checksum,
                    port,
                    counters: counters[index].clone(),
                    waker: None,
                },
            })
            .collect();
        Ok((
            XdpDataPlane {
                programs,
                interfaces: infos,
                _port_socket: port_socket,
                shard_counters: counters,
                zero_copy,
            },
            shards,
        ))
    }

    pub fn interfaces(&self) -> &[Arc<InterfaceInfo>] {
        &self.interfaces
    }

    /// Attach mode used on each interface.
    pub fn attach_modes(&self) -> Vec<(String, AttachedMode)> {
        self.programs
            .iter()
            .map(|p| (p.interface().to_owned(), p.mode()))
            .collect()
    }

    /// Whether every socket runs in zero-copy mode.
    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// The XDP program's counters per interface.
    pub fn program_counters(&self) -> Vec<(String, XdpCounters)> {
        self.programs
            .iter()
            .filter_map(|p| p.counters().ok().map(|c| (p.interface().to_owned(), c)))
            .collect()
    }

    /// Totals of the shards' AF_XDP counters, as (name, value).
    pub fn io_counters(&self) -> Vec<(&'static str, u64)> {
        let sum = |f: &dyn Fn(&XdpIoCounters) -> &AtomicU64| -> u64 {
            self.shard_counters
                .iter()
                .map(|c| f(c).load(Ordering::Relaxed))
                .sum()
        };
        let mut out = vec![
            ("rx_frames", sum(&|c| &c.rx_frames)),
            ("tx_frames", sum(&|c| &c.tx_frames)),
            ("tx_no_frame", sum(&|c| &c.tx_no_frame)),
            ("tx_no_l2", sum(&|c| &c.tx_no_l2)),
            ("tx_no_socket", sum(&|c| &c.tx_no_socket)),
            ("tx_no_source", sum(&|c| &c.tx_no_source)),
        ];
        for error in FrameError::ALL {
            out.push((error.name(), sum(&|c| &c.rx_dropped[error.index()])));
        }
        out
    }

    /// Logs the program and socket counters (called periodically by the server).
    pub fn log_counters(&self) {
        for (interface, counters) in self.program_counters() {
            let fields: Vec<String> = XdpCounter::ALL
                .iter()
                .map(|c| format!("{}={}", c.name(), counters.get(*c)))
                .collect();
            tracing::info!(interface, "xdp program: {}", fields.join(" "));
        }
        let fields: Vec<String> = self
            .io_counters()
            .into_iter()
            .filter(|(_, v)| *v > 0)
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        tracing::info!("af_xdp sockets: {}", fields.join(" "));
    }
}

fn hold_port(port: u16, interfaces: &[Arc<InterfaceInfo>]) -> Result<UdpSocket, XdpError> {
    let socket = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, port)).map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            XdpError::Config(format!(
                "UDP port {port} is in use by another process (another DHCPv6 server on this host?)"
            ))
        } else {
            XdpError::Config(format!("binding [::]:{port}: {e}"))
        }
    })?;
    for info in interfaces {
        for group in [
            frame::ALL_DHCP_RELAY_AGENTS_AND_SERVERS,
            frame::ALL_DHCP_SERVERS,
        ] {
            socket
                .join_multicast_v6(&group, info.ifindex)
                .map_err(|e| {
                    XdpError::Config(format!("interface {}: joining {group}: {e}", info.name))
                })?;
        }
    }
    Ok(socket)
}
