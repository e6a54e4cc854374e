//! `xdp-rig`: the AF_XDP half of the bench rig, for measuring tandem's AF_XDP backend
//! (docs/benchmarks.md, "AF_XDP backend").
//!
//! * `xdp-rig reflect --interface srv0`: a **minimal AF_XDP reflector**, the baseline the
//!   issue asks for. tandem's XDP program (the same steering as the server) redirects UDP to
//!   port 547 into one AF_XDP socket per queue; each received frame is answered in place in
//!   its own UMEM frame (MACs, IPv6 addresses and UDP ports swapped, the DHCPv6 message type
//!   turned into the answer's with [`packet::reflect_in_place`], UDP checksum recomputed)
//!   and put straight on the TX ring. No shard loop, no engine, no copy of the payload.
//! * `xdp-rig run --interface cli0 --server-mac MAC --target [ADDR]:547 ...`: the rig's
//!   emulated relays and CPEs ([`driver::Driver`], the same state machine as
//!   `tandem-bench run`) over an AF_XDP socket instead of io_uring UDP sockets, so the load
//!   generator costs far less per exchange than the server it measures. Relay-forw frames
//!   are built straight into UMEM; the replies (Relay-repl to port 547) are steered to the
//!   socket by the same XDP program attached to the generator's interface, so the kernel
//!   still answers neighbour discovery for the generator's address.
//!
//! Both run in one thread (pin them with taskset) and need root (CAP_BPF, CAP_NET_ADMIN).

use std::io;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::num::NonZeroU32;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use tandem::config::xdp::AttachMode;
use tandem::io::xdp::frame::{self, ReplyFraming};
use tandem::io::xdp::program::XdpProgram;
use tandem::io::xdp::InterfaceInfo;
use tandem::io::L2Header;
use tandem_bench::rig::driver::{self, Driver, Phase};
use tandem_bench::rig::report::{self, Report};
use tandem_bench::rig::{packet, INTERRUPTED, SERVER_PORT};
use xsk_rs::config::{
    BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig,
};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem};

#[derive(Parser)]
#[command(name = "xdp-rig", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Minimal AF_XDP reflector: answer every DHCPv6 frame in place in UMEM.
    Reflect(ReflectArgs),
    /// The rig's emulated relays and subscribers over AF_XDP (load generator).
    Run(RunArgs),
}

#[derive(clap::Args)]
struct XskArgs {
    /// Interface to attach to (every RX queue gets a socket).
    #[arg(long)]
    interface: String,
    /// XDP attach mode: native or generic.
    #[arg(long, default_value = "native")]
    attach: String,
    /// Ring entries (RX, TX, fill, completion); UMEM has twice as many frames.
    #[arg(long, default_value_t = 2048)]
    ring: u32,
    /// Frames taken from the RX ring per batch.
    #[arg(long, default_value_t = 64)]
    batch: usize,
}

#[derive(clap::Args)]
struct ReflectArgs {
    #[command(flatten)]
    xsk: XskArgs,
    /// Stop after this many seconds (default: until SIGINT/SIGTERM).
    #[arg(long)]
    duration: Option<f64>,
}

#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    xsk: XskArgs,
    /// The server's MAC address on the link (frames are addressed to it).
    #[arg(long)]
    server_mac: String,
    /// The server's address and port; the emulated relays send Relay-forw to it.
    #[arg(long)]
    target: SocketAddrV6,
    /// Source address of the emulated relays (default: the interface's global address).
    #[arg(long)]
    source: Option<Ipv6Addr>,
    #[arg(long, value_enum, default_value = "sarr")]
    scenario: driver::Scenario,
    #[arg(long, default_value_t = 20_000)]
    subscribers: u32,
    /// Length of the measured phase in seconds.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Exchanges started per second (open loop); default: as fast as the server answers
    /// with at most --window outstanding (closed loop).
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, default_value_t = 1024)]
    window: u32,
    #[arg(long, default_value_t = 1)]
    relays: u32,
    #[arg(long, default_value = "2001:db8:2::")]
    link_base: Ipv6Addr,
    #[arg(long)]
    pd: bool,
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
    #[arg(long, default_value_t = 1000)]
    drain_ms: u64,
    #[arg(long, default_value_t = 1)]
    seed: u8,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tandem_bench::rig::install_signal_handlers();
    let result = match cli.cmd {
        Cmd::Reflect(a) => reflect(a),
        Cmd::Run(a) => run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xdp-rig: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = text.split(':').collect();
    let mut mac = [0u8; 6];
    if parts.len() != 6 {
        return Err(format!("`{text}` is not a MAC address (aa:bb:cc:dd:ee:ff)"));
    }
    for (byte, part) in mac.iter_mut().zip(parts) {
        *byte = u8::from_str_radix(part, 16)
            .map_err(|_| format!("`{text}` is not a MAC address (aa:bb:cc:dd:ee:ff)"))?;
    }
    Ok(mac)
}

/// One AF_XDP socket with its own UMEM. Frames `0..ring` start on the fill ring (RX); the
/// rest are free for TX.
struct Xsk {
    umem: Umem,
    fill: FillQueue,
    comp: CompQueue,
    rx: RxQueue,
    tx: TxQueue,
    ring: u32,
    rx_descs: Vec<FrameDesc>,
    comp_descs: Vec<FrameDesc>,
    /// User-space-owned frames (TX frames for the generator, spare RX frames for the
    /// reflector).
    free: Vec<FrameDesc>,
    pending: Vec<FrameDesc>,
    /// Frames on the TX ring or sent but not yet back on the completion ring.
    in_flight: usize,
}

impl Xsk {
    fn open(interface: &str, queue: u32, ring: u32, batch: usize) -> Result<Xsk, String> {
        let size = QueueSize::new(ring).map_err(|e| e.to_string())?;
        let umem_config = UmemConfig::builder()
            .frame_size(FrameSize::new(2048).map_err(|e| e.to_string())?)
            .fill_queue_size(size)
            .comp_queue_size(size)
            .build()
            .map_err(|e| e.to_string())?;
        let socket_config = SocketConfig::builder()
            .rx_queue_size(size)
            .tx_queue_size(size)
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .bind_flags(BindFlags::XDP_COPY | BindFlags::XDP_USE_NEED_WAKEUP)
            .build();
        let name: Interface = interface
            .parse()
            .map_err(|_| format!("bad interface name {interface}"))?;
        let frames = NonZeroU32::new(ring * 2).ok_or("ring must be positive")?;
        // The previous run's socket on this queue may linger for ~100 ms (EBUSY): retry.
        let mut last = String::new();
        for _ in 0..50 {
            let (umem, mut descs) = Umem::new(umem_config, frames, false)
                .map_err(|e| format!("creating the UMEM: {e}"))?;
            // SAFETY: the UMEM is new and bound by this socket only; its descriptors go
            // once each to the fill ring or the free list below.
            match unsafe { Socket::new(socket_config, &umem, &name, queue) } {
                Ok((tx, rx, Some((mut fill, comp)))) => {
                    let free = descs.split_off(ring as usize);
                    // SAFETY: frames of this UMEM owned by user space (just created); the
                    // kernel owns them until they come back on the RX ring.
                    let filled = unsafe { fill.produce(&descs) };
                    if filled != descs.len() {
                        return Err(format!("fill ring took {filled} of {}", descs.len()));
                    }
                    return Ok(Xsk {
                        umem,
                        fill,
                        comp,
                        rx,
                        tx,
                        ring,
                        rx_descs: vec![FrameDesc::default(); batch.max(1)],
                        comp_descs: vec![FrameDesc::default(); ring as usize],
                        pending: Vec::with_capacity(free.len()),
                        free,
                        in_flight: 0,
                    });
                }
                Ok(_) => return Err("UMEM rings already taken".into()),
                Err(e) => {
                    last = format!("{e}: {:?}", std::error::Error::source(&e));
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        Err(format!(
            "{interface} queue {queue}: binding the AF_XDP socket: {last}"
        ))
    }

    /// Completed TX frames, back to user space.
    fn reclaim(&mut self) -> usize {
        // SAFETY: the completion ring returns frames of this UMEM the kernel has sent.
        let n = unsafe { self.comp.consume(&mut self.comp_descs) };
        self.free.extend_from_slice(&self.comp_descs[..n]);
        self.in_flight -= n;
        n
    }

    /// Puts pending frames on the TX ring and kicks the kernel (copy mode sends only
    /// inside sendto(), at most 32 frames per call) until it has taken them all.
    fn transmit(&mut self) -> io::Result<u64> {
        let mut sent = 0u64;
        for _ in 0..256 {
            if !self.pending.is_empty() {
                // libxdp reserves all-or-nothing: offer what fits.
                let room = self.tx.nb_free(self.pending.len() as u32) as usize;
                let take = room.min(self.pending.len());
                // SAFETY: the pending frames are this UMEM's, hold complete frames and are
                // not referenced elsewhere; the kernel owns them until they complete.
                let n = unsafe { self.tx.produce(&self.pending[..take]) };
                self.pending.drain(..n);
                self.in_flight += n;
                sent += n as u64;
            }
            let unconsumed = self.tx.nb_free_exact() < self.ring;
            if unconsumed {
                match self.tx.wakeup() {
                    Ok(()) => {}
                    // The TX ring is momentarily full in the kernel: retry on the next kick.
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EBUSY)) => {}
                    Err(e) => return Err(e),
                }
            }
            self.reclaim();
            if self.pending.is_empty() && !unconsumed {
                break;
            }
        }
        Ok(sent)
    }

    /// Returns frames to the fill ring (and wakes the driver if it asks to be).
    fn refill(&mut self, descs: &[FrameDesc]) -> io::Result<usize> {
        // libxdp reserves all-or-nothing: offer only what fits.
        let room = self.fill.nb_free(descs.len() as u32) as usize;
        let descs = &descs[..room.min(descs.len())];
        // SAFETY: user-space-owned frames of this UMEM, no longer referenced.
        let n = unsafe { self.fill.produce(descs) };
        if n > 0 && self.fill.needs_wakeup() {
            self.fill.wakeup(self.rx.fd_mut(), 0)?;
        }
        Ok(n)
    }

    fn fd(&self) -> i32 {
        self.rx.fd().as_raw_fd()
    }
}

fn attach(args: &XskArgs) -> Result<(InterfaceInfo, XdpProgram, Vec<Xsk>), String> {
    let mode = match args.attach.as_str() {
        "native" => AttachMode::Native,
        "generic" => AttachMode::Generic,
        other => return Err(format!("--attach {other}: native or generic")),
    };
    let info = InterfaceInfo::discover(&args.interface).map_err(|e| e.to_string())?;
    let mut program =
        XdpProgram::attach(&args.interface, mode, SERVER_PORT).map_err(|e| e.to_string())?;
    let mut sockets = Vec::new();
    for queue in 0..info.queues {
        let xsk = Xsk::open(&args.interface, queue, args.ring, args.batch)?;
        program
            .register_socket(queue, xsk.fd())
            .map_err(|e| e.to_string())?;
        sockets.push(xsk);
    }
    Ok((info, program, sockets))
}

/// Waits up to `timeout` for any socket to become readable.
fn wait_readable(sockets: &[Xsk], timeout: Duration) -> io::Result<()> {
    let mut fds: Vec<libc::pollfd> = sockets
        .iter()
        .map(|s| libc::pollfd {
            fd: s.fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = i32::try_from(timeout.as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
    // SAFETY: `fds` is a valid array of `len` pollfds, exclusively borrowed for the call;
    // the descriptors stay open (owned by `sockets`).
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Reflector

const IPV6_HEADER: usize = 40;
const UDP_HEADER: usize = 8;

/// Answers one frame in place: returns its length if it is a DHCPv6 client or relay
/// message to port 547 (now a reply), None if it is to be dropped.
fn reflect_frame(frame: &mut [u8], own_mac: &[u8; 6], own_ll: Option<Ipv6Addr>) -> Option<usize> {
    let mut at = 12;
    let mut tags = 0;
    loop {
        let ethertype = u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]);
        match ethertype {
            frame::TPID_8021Q | frame::TPID_8021AD if tags < 2 => {
                tags += 1;
                at += 4;
            }
            frame::ETHERTYPE_IPV6 => break,
            _ => return None,
        }
    }
    let ip_at = at + 2;
    let ip = frame.get(ip_at..ip_at + IPV6_HEADER)?;
    if ip[0] >> 4 != 6 || ip[6] != frame::IPPROTO_UDP {
        return None;
    }
    let payload_length = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    let udp_at = ip_at + IPV6_HEADER;
    let end = udp_at.checked_add(payload_length)?;
    if end > frame.len() || payload_length < UDP_HEADER {
        return None;
    }
    let udp_len = usize::from(u16::from_be_bytes([frame[udp_at + 4], frame[udp_at + 5]]));
    if udp_len < UDP_HEADER || udp_len > payload_length {
        return None;
    }
    if u16::from_be_bytes([frame[udp_at + 2], frame[udp_at + 3]]) != SERVER_PORT {
        return None;
    }
    if !packet::reflect_in_place(&mut frame[udp_at + UDP_HEADER..udp_at + udp_len]) {
        return None;
    }
    // L2: back to the sender, from us (the request may have gone to a multicast MAC).
    let (dst_mac, src_mac) = frame[..12].split_at_mut(6);
    dst_mac.copy_from_slice(src_mac);
    src_mac.copy_from_slice(own_mac);
    // L3: swap the addresses; a multicast destination cannot be a source, answer from the
    // link-local address instead.
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&frame[ip_at + 8..ip_at + 24]);
    dst.copy_from_slice(&frame[ip_at + 24..ip_at + 40]);
    let reply_src = if dst[0] == 0xff {
        own_ll?.octets()
    } else {
        dst
    };
    frame[ip_at + 8..ip_at + 24].copy_from_slice(&reply_src);
    frame[ip_at + 24..ip_at + 40].copy_from_slice(&src);
    frame[ip_at + 7] = 64;
    // Trailing bytes after the datagram (padding) are not sent back.
    frame[ip_at + 4..ip_at + 6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    // L4: swap the ports, recompute the checksum (the message type changed).
    let (sport, dport) = frame[udp_at..udp_at + 4].split_at_mut(2);
    sport.swap_with_slice(dport);
    frame::fill_udp_checksum(
        &Ipv6Addr::from(reply_src),
        &Ipv6Addr::from(src),
        &mut frame[udp_at..udp_at + udp_len],
    );
    Some(udp_at + udp_len)
}

fn reflect(a: ReflectArgs) -> Result<(), String> {
    let (info, program, mut sockets) = attach(&a.xsk)?;
    let own_ll = info.link_local;
    println!(
        "READY reflecting on {} ({} queues, {:?} XDP, copy mode)",
        info.name,
        sockets.len(),
        program.mode()
    );
    let start = Instant::now();
    let (mut received, mut answered, mut ignored) = (0u64, 0u64, 0u64);
    let mut drop_back: Vec<FrameDesc> = Vec::new();
    loop {
        if INTERRUPTED.load(Ordering::Relaxed)
            || a.duration
                .is_some_and(|d| start.elapsed().as_secs_f64() >= d)
        {
            break;
        }
        let mut got = 0;
        for xsk in &mut sockets {
            // SAFETY: scratch descriptors; the kernel hands over frames it finished
            // writing, owned by user space until they go to the TX or fill ring.
            let n = unsafe { xsk.rx.consume(&mut xsk.rx_descs) };
            got += n;
            for i in 0..n {
                let mut desc = xsk.rx_descs[i];
                // SAFETY: `desc` came from this socket's RX ring: a frame of this UMEM no
                // longer written by the kernel, referenced only here until produced below.
                let mut data = unsafe { xsk.umem.data_mut(&mut desc) };
                match reflect_frame(data.contents_mut(), &info.mac, own_ll) {
                    Some(len) => {
                        data.cursor().set_pos(len);
                        xsk.pending.push(desc);
                        answered += 1;
                    }
                    None => {
                        drop_back.push(desc);
                        ignored += 1;
                    }
                }
            }
            received += n as u64;
            xsk.transmit().map_err(|e| format!("TX: {e}"))?;
            // Completed TX frames (and unanswered ones) become RX buffers again; what the
            // fill ring cannot take now waits in the free list.
            drop_back.append(&mut xsk.free);
            let refilled = xsk.refill(&drop_back).map_err(|e| format!("fill: {e}"))?;
            xsk.free.extend_from_slice(&drop_back[refilled..]);
            drop_back.clear();
        }
        if got == 0 {
            // Frames still in flight complete in the peer's softirq, possibly after the
            // kick returned: come back soon to take them back (they are RX buffers here).
            let in_flight = sockets
                .iter()
                .any(|x| x.in_flight > 0 || !x.pending.is_empty());
            let timeout = if in_flight {
                Duration::from_micros(200)
            } else {
                Duration::from_millis(100)
            };
            wait_readable(&sockets, timeout).map_err(|e| e.to_string())?;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"received\":{received},\"answered\":{answered},\"ignored\":{ignored},\"secs\":{secs:.3}}}"
    );
    drop(program);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Load generator

fn run(a: RunArgs) -> Result<(), String> {
    if a.subscribers == 0 || a.duration.is_nan() || a.duration <= 0.0 {
        return Err("--subscribers and --duration must be positive".into());
    }
    let server_mac = parse_mac(&a.server_mac)?;
    let (info, program, mut sockets) = attach(&a.xsk)?;
    let source = a
        .source
        .or(info.global)
        .ok_or_else(|| format!("{} has no global address; give --source", info.name))?;
    // Frames to the server: from our MAC (reflected L2 of a frame "from" the server).
    let server_l2 = L2Header {
        src_mac: server_mac,
        ..L2Header::default()
    };
    let framing = ReplyFraming {
        own_mac: info.mac,
        request_l2: &server_l2,
        src: source,
        dst: a.target,
        src_port: SERVER_PORT,
        hop_limit: 64,
    };
    let params = driver::Params {
        scenario: a.scenario,
        subscribers: a.subscribers,
        rate: a.rate,
        renew_at_t1: a.rate.is_none(),
        window: a.window.max(1),
        duration_us: (a.duration * 1e6) as u64,
        path: driver::Path::Relayed {
            link_base: a.link_base,
            relays: a.relays.max(1),
        },
        pd: a.pd,
        seed: a.seed,
        retransmit: false,
        timeout_us: a.timeout_ms.max(1) * 1000,
        spread_us: 5_000_000,
        drain_us: a.drain_ms * 1000,
    };
    let mut d = Driver::new(params.clone());
    let mut payload = vec![0u8; 1500];
    let (cpu_u0, cpu_s0, _) = report::rusage();
    let mut measure_cpu = None;
    let mut io_errors = 0u64;
    let start = Instant::now();
    let now_us = || start.elapsed().as_micros() as u64;
    // Single-queue links (the bench's) use socket 0 for TX; replies arrive on any queue.
    loop {
        let now = now_us();
        if INTERRUPTED.load(Ordering::Relaxed) && d.phase() != Phase::Done {
            d.interrupt(now);
        }
        d.handle_timeouts(now);
        if d.phase() == Phase::Done {
            break;
        }
        if measure_cpu.is_none() && d.phase() != Phase::Warmup {
            measure_cpu = Some(report::rusage());
        }
        // TX: frame everything due now into free UMEM frames, then one batch of kicks.
        let tx = &mut sockets[0];
        if tx.free.is_empty() {
            tx.reclaim();
        }
        while let Some(mut desc) = tx.free.pop() {
            let Some(len) = d.poll_transmit(now, &mut payload) else {
                tx.free.push(desc);
                break;
            };
            // SAFETY: a free TX frame of this UMEM, owned by user space until produced.
            let mut data = unsafe { tx.umem.data_mut(&mut desc) };
            let capacity = data.cursor().buf_len();
            data.cursor().set_pos(capacity);
            match frame::write_reply(data.contents_mut(), &framing, &payload[..len]) {
                Ok(n) => {
                    data.cursor().set_pos(n);
                    tx.pending.push(desc);
                }
                Err(_) => {
                    io_errors += 1;
                    tx.free.push(desc);
                }
            }
        }
        if let Err(e) = tx.transmit() {
            io_errors += 1;
            if io_errors < 4 {
                eprintln!("xdp-rig: TX: {e}");
            }
        }
        // RX: every reply to the driver, frames straight back to the fill ring.
        let mut got = 0;
        for xsk in &mut sockets {
            // SAFETY: as in the reflector: frames the kernel finished writing.
            let n = unsafe { xsk.rx.consume(&mut xsk.rx_descs) };
            got += n;
            let at = now_us();
            for desc in &xsk.rx_descs[..n] {
                // SAFETY: a frame from this socket's RX ring, read before it is refilled.
                let data = unsafe { xsk.umem.data(desc) };
                if let Ok(rx) =
                    frame::parse_for_port(data.contents(), info.ifindex, true, SERVER_PORT)
                {
                    d.handle_datagram(at, rx.payload);
                }
            }
            if n > 0 {
                let descs = std::mem::take(&mut xsk.rx_descs);
                let refilled = xsk.refill(&descs[..n]);
                xsk.rx_descs = descs;
                refilled.map_err(|e| format!("fill: {e}"))?;
            }
        }
        if got == 0 {
            let now = now_us();
            let wake = d.next_wakeup(now);
            if wake > now {
                wait_readable(&sockets, Duration::from_micros((wake - now).min(1000)))
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    let (cu, cs, _) = measure_cpu.unwrap_or((cpu_u0, cpu_s0, 0.0));
    let report = Report::measured(
        "xdp-rig",
        format!("{} via AF_XDP on {}", a.target, info.name),
        &d,
        (cu, cs),
        io_errors,
    );
    drop(program);
    print!("{}", report.table());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A relayed Solicit frame as the generator builds it, reflected as the reflector
    /// answers it: addressed back to the sender, a Relay-repl around an Advertise, and a
    /// checksum that tandem's own frame parser accepts.
    #[test]
    fn reflects_a_relayed_solicit() {
        let client_mac = [2, 0, 0, 0, 0, 2];
        let server_mac = [2, 0, 0, 0, 0, 1];
        let relay: Ipv6Addr = "2001:db8:1::2".parse().unwrap();
        let server: Ipv6Addr = "2001:db8:1::1".parse().unwrap();
        // Relay-forw (12) hop 0, link-address, peer-address, Relay Message option with a
        // Solicit (1) inside.
        let mut msg = vec![12u8, 0];
        msg.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        msg.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
        msg.extend_from_slice(&[0, 9, 0, 4, 1, 0xaa, 0xbb, 0xcc]);
        let l2 = L2Header {
            src_mac: server_mac,
            ..L2Header::default()
        };
        let mut buf = vec![0u8; 2048];
        let n = frame::write_reply(
            &mut buf,
            &ReplyFraming {
                own_mac: client_mac,
                request_l2: &l2,
                src: relay,
                dst: SocketAddrV6::new(server, 547, 0, 0),
                src_port: 547,
                hop_limit: 64,
            },
            &msg,
        )
        .unwrap();
        let len = reflect_frame(&mut buf[..n], &server_mac, None).expect("reflected");
        assert_eq!(len, n);
        assert_eq!(&buf[0..6], &client_mac);
        assert_eq!(&buf[6..12], &server_mac);
        let rx = frame::parse_for_port(&buf[..n], 1, true, 547).expect("valid reply frame");
        assert_eq!(*rx.src.ip(), server);
        assert_eq!(rx.dst, relay);
        assert_eq!(rx.payload[0], 13, "Relay-repl");
        assert_eq!(rx.payload[38], 2, "Advertise inside");
        // Not DHCPv6 to port 547: left alone.
        let mut other = buf[..n].to_vec();
        other[14 + IPV6_HEADER + 3] = 0x24;
        assert_eq!(reflect_frame(&mut other, &server_mac, None), None);
        assert_eq!(reflect_frame(&mut buf[..20], &server_mac, None), None);
    }

    #[test]
    fn mac_parsing() {
        assert_eq!(parse_mac("02:00:0a:ff:00:01"), Ok([2, 0, 10, 255, 0, 1]));
        assert!(parse_mac("02:00:0a:ff:00").is_err());
        assert!(parse_mac("zz:00:0a:ff:00:01").is_err());
    }
}
