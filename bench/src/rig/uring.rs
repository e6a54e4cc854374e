//! A UDP socket driven through io_uring: batches of `sendmsg`/`recvmsg` submitted with one
//! system call per loop iteration.
//!
//! The kernel reads and writes the slots' buffers, `msghdr`s and addresses asynchronously,
//! so every slot lives in a boxed slice that is allocated once and never moves or shrinks
//! while the ring exists; a slot is handed to the kernel only while it is not in flight
//! (tracked by `user_data`), and is reused only after its completion arrives. This is the
//! contract of io-uring's `unsafe fn push`.

use std::io;
use std::mem;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::time::Duration;

use io_uring::{opcode, types, IoUring};
use socket2::{Domain, Protocol, Socket, Type};

/// Largest datagram the rig handles without GSO (DHCPv6 over Ethernet fits in 1500 bytes;
/// relayed replies with many options stay below this).
pub const SLOT_BYTES: usize = 2048;

/// `user_data` tag bit: set for send slots, clear for receive slots.
const SEND_TAG: u64 = 1 << 32;

/// Where and how to open the socket.
#[derive(Clone, Debug)]
pub struct SocketSpec {
    pub bind: SocketAddrV6,
    /// SO_BINDTODEVICE, so a link-scoped client socket only sees its own link.
    pub device: Option<String>,
    /// Multicast groups to join: (group, interface index).
    pub join: Vec<(Ipv6Addr, u32)>,
    /// Interface for outgoing multicast.
    pub multicast_if: Option<u32>,
    /// Requested SO_RCVBUF/SO_SNDBUF (forced past rmem_max when running as root).
    pub buffer_bytes: usize,
    /// UDP segmentation offload: consecutive same-size datagrams to one destination leave
    /// in one `sendmsg` (UDP_SEGMENT), and the kernel may hand several received datagrams
    /// over in one buffer (UDP_GRO). Cuts the per-datagram cost of the socket path.
    pub gso: bool,
}

/// linux/udp.h socket options (not in every libc target).
const UDP_SEGMENT: libc::c_int = 103;
const UDP_GRO: libc::c_int = 104;
/// Most segments the kernel accepts in one UDP_SEGMENT send (UDP_MAX_SEGMENTS).
const MAX_SEGMENTS: usize = 64;
/// Slot size with GSO/GRO: one maximal UDP payload.
const GSO_SLOT_BYTES: usize = 65_535;

struct Slot {
    /// Heap buffer: its address is stable for the slot's life.
    buf: Box<[u8]>,
    addr: libc::sockaddr_in6,
    iov: libc::iovec,
    hdr: libc::msghdr,
    /// cmsg area (UDP_SEGMENT on send, UDP_GRO on receive), 8-byte aligned.
    control: [u64; 8],
}

impl Slot {
    fn boxed_slice(n: usize, bytes: usize) -> Box<[Slot]> {
        (0..n)
            .map(|_| Slot {
                buf: vec![0u8; bytes].into_boxed_slice(),
                control: [0; 8],
                // SAFETY: sockaddr_in6, iovec and msghdr are plain C structs for which all
                // zero bytes is a valid (empty) value.
                addr: unsafe { mem::zeroed() },
                // SAFETY: as above.
                iov: unsafe { mem::zeroed() },
                // SAFETY: as above.
                hdr: unsafe { mem::zeroed() },
            })
            .collect()
    }

    /// Points the slot's msghdr at its own buffer and address (the slot no longer moves).
    /// `control` is the cmsg length to expose (0 = none).
    fn arm(&mut self, len: usize, control: usize) {
        self.iov.iov_base = self.buf.as_mut_ptr().cast();
        self.iov.iov_len = len;
        self.hdr.msg_name = (&raw mut self.addr).cast();
        self.hdr.msg_namelen = mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        self.hdr.msg_iov = &raw mut self.iov;
        self.hdr.msg_iovlen = 1;
        if control == 0 {
            self.hdr.msg_control = std::ptr::null_mut();
        } else {
            self.hdr.msg_control = self.control.as_mut_ptr().cast();
        }
        self.hdr.msg_controllen = control;
        self.hdr.msg_flags = 0;
    }

    /// Writes one SOL_UDP/UDP_SEGMENT cmsg with `segment` into the control area; returns its
    /// length.
    fn set_segment(&mut self, segment: u16) -> usize {
        // SAFETY: CMSG_SPACE/CMSG_LEN only compute sizes from a constant.
        let (space, len) = unsafe { (libc::CMSG_SPACE(2) as usize, libc::CMSG_LEN(2) as usize) };
        self.control = [0; 8];
        let base = self.control.as_mut_ptr().cast::<u8>();
        // SAFETY: the control area is 64 bytes, 8-byte aligned, larger than `space` (24):
        // the cmsghdr and its 2-byte payload fit, and CMSG_DATA points inside it.
        unsafe {
            let c = base.cast::<libc::cmsghdr>();
            (*c).cmsg_level = libc::SOL_UDP;
            (*c).cmsg_type = UDP_SEGMENT;
            (*c).cmsg_len = len as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), segment);
        }
        space
    }

    /// The UDP_GRO segment size the kernel reported for the last receive, if any.
    fn gro_segment(&self) -> Option<usize> {
        let used = self.hdr.msg_controllen;
        if used == 0 {
            return None;
        }
        let hdr = &self.hdr;
        // SAFETY: the kernel filled `msg_controllen` bytes of our control area with
        // well-formed cmsgs; CMSG_FIRSTHDR/CMSG_NXTHDR stay within `msg_controllen` and
        // return null past the end; the payload of UDP_GRO is one c_int.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(hdr);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == UDP_GRO {
                    let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                    return usize::try_from(v).ok().filter(|&v| v > 0);
                }
                c = libc::CMSG_NXTHDR(hdr, c);
            }
        }
        None
    }
}

/// A send slot being filled with same-size datagrams for one destination.
#[derive(Clone, Copy)]
struct OpenSend {
    slot: u32,
    segment: usize,
    used: usize,
    dst: SocketAddrV6,
}

fn to_sockaddr(a: &SocketAddrV6) -> libc::sockaddr_in6 {
    // SAFETY: all-zero is a valid sockaddr_in6; every field that matters is set below.
    let mut s: libc::sockaddr_in6 = unsafe { mem::zeroed() };
    s.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    s.sin6_port = a.port().to_be();
    s.sin6_flowinfo = a.flowinfo();
    s.sin6_addr.s6_addr = a.ip().octets();
    s.sin6_scope_id = a.scope_id();
    s
}

fn from_sockaddr(s: &libc::sockaddr_in6) -> SocketAddrV6 {
    SocketAddrV6::new(
        Ipv6Addr::from(s.sin6_addr.s6_addr),
        u16::from_be(s.sin6_port),
        s.sin6_flowinfo,
        s.sin6_scope_id,
    )
}

/// Per-socket counters of what the kernel reported.
#[derive(Clone, Copy, Debug, Default)]
pub struct IoCounters {
    pub send_errors: u64,
    pub recv_errors: u64,
    /// Datagrams a receive callback wanted answered while every send slot was busy.
    pub reply_overruns: u64,
}

/// One UDP socket with `recv_slots` receives always posted and up to `send_slots` sends in
/// flight.
pub struct UdpRing {
    ring: IoUring,
    socket: Socket,
    recv: Box<[Slot]>,
    send: Box<[Slot]>,
    free_send: Vec<u32>,
    /// SQEs pushed since the last submit.
    queued: usize,
    gso: bool,
    open: Option<OpenSend>,
    pub counters: IoCounters,
    pub last_error: Option<io::Error>,
}

impl UdpRing {
    pub fn open(spec: &SocketSpec, recv_slots: usize, send_slots: usize) -> io::Result<UdpRing> {
        let socket = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_only_v6(true)?;
        socket.set_reuse_address(true)?;
        // Root may exceed net.core.{r,w}mem_max; otherwise the kernel clamps the request.
        set_buffer(
            &socket,
            libc::SO_RCVBUFFORCE,
            libc::SO_RCVBUF,
            spec.buffer_bytes,
        );
        set_buffer(
            &socket,
            libc::SO_SNDBUFFORCE,
            libc::SO_SNDBUF,
            spec.buffer_bytes,
        );
        if let Some(dev) = &spec.device {
            socket.bind_device(Some(dev.as_bytes()))?;
        }
        if let Some(ifindex) = spec.multicast_if {
            socket.set_multicast_if_v6(ifindex)?;
            socket.set_multicast_hops_v6(1)?;
            socket.set_multicast_loop_v6(false)?;
        }
        socket.bind(&std::net::SocketAddr::V6(spec.bind).into())?;
        for (group, ifindex) in &spec.join {
            socket.join_multicast_v6(group, *ifindex)?;
        }
        if spec.gso {
            set_int(&socket, libc::SOL_UDP, UDP_GRO, 1)?;
        }
        let slot_bytes = if spec.gso { GSO_SLOT_BYTES } else { SLOT_BYTES };
        let entries = (recv_slots + send_slots).next_power_of_two().max(64) as u32;
        let ring = IoUring::builder()
            .setup_cqsize(entries * 2)
            .build(entries)?;
        let mut r = UdpRing {
            ring,
            socket,
            recv: Slot::boxed_slice(recv_slots, slot_bytes),
            send: Slot::boxed_slice(send_slots, slot_bytes),
            free_send: (0..send_slots as u32).rev().collect(),
            queued: 0,
            gso: spec.gso,
            open: None,
            counters: IoCounters::default(),
            last_error: None,
        };
        for i in 0..recv_slots {
            r.post_recv(i)?;
        }
        Ok(r)
    }

    pub fn local_addr(&self) -> io::Result<SocketAddrV6> {
        match self.socket.local_addr()?.as_socket() {
            Some(std::net::SocketAddr::V6(a)) => Ok(a),
            _ => Err(io::Error::other("not an IPv6 socket")),
        }
    }

    fn push(&mut self, e: &io_uring::squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every entry pushed here points into a slot of `self.recv` or
            // `self.send`; those boxed slices are never reallocated while the ring lives, and
            // a slot is not reused before its completion is reaped (recv slots are re-posted
            // only from their own CQE, send slots return to `free_send` only from theirs).
            let pushed = unsafe { self.ring.submission().push(e) };
            if pushed.is_ok() {
                self.queued += 1;
                return Ok(());
            }
            // Submission queue full: hand what is queued to the kernel and retry.
            self.ring.submit()?;
            self.queued = 0;
        }
    }

    fn post_recv(&mut self, i: usize) -> io::Result<()> {
        let gso = self.gso;
        let slot = &mut self.recv[i];
        let n = slot.buf.len();
        slot.arm(
            n,
            if gso {
                mem::size_of_val(&slot.control)
            } else {
                0
            },
        );
        let e = opcode::RecvMsg::new(types::Fd(self.socket.as_raw_fd()), &raw mut slot.hdr)
            .build()
            .user_data(i as u64);
        self.push(&e)
    }

    /// Queues one datagram to `dst`, written by `fill` into a free send slot (with GSO,
    /// appended to the slot being filled when it has the same size and destination).
    /// Returns Ok(false) when no slot is free or `fill` had nothing to send.
    pub fn try_send(
        &mut self,
        dst: &SocketAddrV6,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> io::Result<bool> {
        if let Some(mut o) = self.open.filter(|o| o.dst == *dst) {
            let slot = &mut self.send[o.slot as usize];
            let room = slot.buf.len() - o.used;
            if room >= SLOT_BYTES && o.used / o.segment < MAX_SEGMENTS {
                let Some(len) = fill(&mut slot.buf[o.used..o.used + SLOT_BYTES]) else {
                    return Ok(false);
                };
                if len == o.segment {
                    o.used += len;
                    self.open = Some(o);
                    if o.used / o.segment >= MAX_SEGMENTS {
                        self.flush_open()?;
                    }
                    return Ok(true);
                }
                // A different size ends the batch: move the datagram to a slot of its own.
                let moved = slot.buf[o.used..o.used + len].to_vec();
                self.flush_open()?;
                return self.start_send(dst, |b| {
                    b[..moved.len()].copy_from_slice(&moved);
                    Some(moved.len())
                });
            }
            self.flush_open()?;
        } else if self.open.is_some() {
            self.flush_open()?;
        }
        self.start_send(dst, fill)
    }

    fn start_send(
        &mut self,
        dst: &SocketAddrV6,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> io::Result<bool> {
        let Some(&i) = self.free_send.last() else {
            return Ok(false);
        };
        let slot = &mut self.send[i as usize];
        let Some(len) = fill(&mut slot.buf[..SLOT_BYTES]) else {
            return Ok(false);
        };
        self.free_send.pop();
        let o = OpenSend {
            slot: i,
            segment: len.clamp(1, SLOT_BYTES),
            used: len,
            dst: *dst,
        };
        self.open = Some(o);
        if !self.gso {
            self.flush_open()?;
        }
        Ok(true)
    }

    /// Hands the slot being filled to the kernel.
    fn flush_open(&mut self) -> io::Result<()> {
        let Some(o) = self.open.take() else {
            return Ok(());
        };
        let slot = &mut self.send[o.slot as usize];
        slot.addr = to_sockaddr(&o.dst);
        let control = if o.used > o.segment {
            slot.set_segment(o.segment as u16)
        } else {
            0
        };
        slot.arm(o.used, control);
        let e = opcode::SendMsg::new(types::Fd(self.socket.as_raw_fd()), &raw const slot.hdr)
            .build()
            .user_data(SEND_TAG | u64::from(o.slot));
        self.push(&e)
    }

    pub fn free_send_slots(&self) -> usize {
        self.free_send.len()
    }

    /// Submits everything queued, waits up to `wait` for at least one completion (not at all
    /// with `None`), then handles all completions. `on_recv(src, datagram)` may rewrite the
    /// datagram and return true to send it back to `src`.
    pub fn submit_and_reap(
        &mut self,
        wait: Option<Duration>,
        on_recv: &mut dyn FnMut(&SocketAddrV6, &mut [u8]) -> bool,
    ) -> io::Result<usize> {
        self.flush_open()?;
        match wait {
            Some(d) if self.ring.completion().is_empty() => {
                let ts = types::Timespec::new()
                    .sec(d.as_secs())
                    .nsec(d.subsec_nanos());
                let args = types::SubmitArgs::new().timespec(&ts);
                match self.ring.submitter().submit_with_args(1, &args) {
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                    Err(e) => return Err(e),
                }
            }
            _ => {
                if self.queued != 0 {
                    self.ring.submit()?;
                }
            }
        }
        self.queued = 0;
        let mut handled = 0;
        loop {
            let batch: Vec<(u64, i32)> = self
                .ring
                .completion()
                .map(|c| (c.user_data(), c.result()))
                .collect();
            if batch.is_empty() {
                break;
            }
            for (ud, res) in batch {
                handled += 1;
                if ud & SEND_TAG != 0 {
                    if res < 0 {
                        self.counters.send_errors += 1;
                        self.last_error = Some(io::Error::from_raw_os_error(-res));
                    }
                    self.free_send.push((ud & !SEND_TAG) as u32);
                    continue;
                }
                let i = ud as usize;
                if res < 0 {
                    self.counters.recv_errors += 1;
                    self.last_error = Some(io::Error::from_raw_os_error(-res));
                } else {
                    let slot = &mut self.recv[i];
                    let len = (res as usize).min(slot.buf.len());
                    let src = from_sockaddr(&slot.addr);
                    // UDP_GRO: several datagrams of `segment` bytes (the last may be shorter).
                    let segment = slot.gro_segment().unwrap_or(len).max(1);
                    let mut all = true;
                    let mut answered = Vec::new();
                    for (k, d) in slot.buf[..len].chunks_mut(segment).enumerate() {
                        if on_recv(&src, d) {
                            answered.push(k);
                        } else {
                            all = false;
                        }
                    }
                    // Answers go back in one segmented send when every datagram is answered,
                    // else one by one.
                    let chunks: Vec<(usize, usize)> = if all && !answered.is_empty() {
                        vec![(0, len)]
                    } else {
                        answered
                            .iter()
                            .map(|&k| (k * segment, (len - k * segment).min(segment)))
                            .collect()
                    };
                    for (off, n) in chunks {
                        let Some(k) = self.free_send.pop() else {
                            self.counters.reply_overruns += 1;
                            continue;
                        };
                        let (recv, send) = (&self.recv, &mut self.send);
                        let slot = &mut send[k as usize];
                        slot.buf[..n].copy_from_slice(&recv[i].buf[off..off + n]);
                        slot.addr = to_sockaddr(&src);
                        let control = if n > segment {
                            slot.set_segment(segment as u16)
                        } else {
                            0
                        };
                        slot.arm(n, control);
                        let e = opcode::SendMsg::new(
                            types::Fd(self.socket.as_raw_fd()),
                            &raw const slot.hdr,
                        )
                        .build()
                        .user_data(SEND_TAG | u64::from(k));
                        self.push(&e)?;
                    }
                }
                self.post_recv(i)?;
            }
            // Replies and re-posted receives go to the kernel before more completions.
            if self.queued != 0 {
                self.ring.submit()?;
                self.queued = 0;
            }
        }
        Ok(handled)
    }
}

fn set_buffer(socket: &Socket, forced: libc::c_int, plain: libc::c_int, bytes: usize) {
    if bytes == 0 {
        return;
    }
    let v = bytes.min(i32::MAX as usize) as libc::c_int;
    let fd = socket.as_raw_fd();
    for opt in [forced, plain] {
        // SAFETY: `fd` is an open socket owned by `socket`; the option value is a c_int that
        // outlives the call and its size is passed alongside.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&raw const v).cast(),
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return;
        }
    }
}

fn set_int(
    socket: &Socket,
    level: libc::c_int,
    opt: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `socket` owns an open fd; the value is a c_int living across the call and its
    // size is passed alongside.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            opt,
            (&raw const v).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Index of a network interface by name.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name).map_err(|_| io::Error::other("interface name has NUL"))?;
    // SAFETY: `c` is a valid NUL-terminated string that lives across the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface {name}"),
        ))
    } else {
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_echo_through_two_rings() {
        let spec = |port| SocketSpec {
            bind: SocketAddrV6::new(Ipv6Addr::LOCALHOST, port, 0, 0),
            device: None,
            join: vec![],
            multicast_if: None,
            buffer_bytes: 1 << 20,
            gso: false,
        };
        let mut server = UdpRing::open(&spec(0), 8, 8).unwrap();
        let mut client = UdpRing::open(&spec(0), 8, 8).unwrap();
        let dst = server.local_addr().unwrap();
        for k in 0..5u8 {
            assert!(client
                .try_send(&dst, |b| {
                    b[..3].copy_from_slice(&[k, k, k]);
                    Some(3)
                })
                .unwrap());
        }
        let mut answered = 0;
        let mut got = Vec::new();
        for _ in 0..100 {
            client
                .submit_and_reap(None, &mut |_, d| {
                    got.push(d.to_vec());
                    false
                })
                .unwrap();
            server
                .submit_and_reap(Some(Duration::from_millis(5)), &mut |_, d| {
                    d[0] += 100;
                    answered += 1;
                    true
                })
                .unwrap();
            if got.len() == 5 {
                break;
            }
        }
        assert_eq!(answered, 5);
        got.sort();
        assert_eq!(
            got,
            (0..5u8).map(|k| vec![k + 100, k, k]).collect::<Vec<_>>()
        );
    }

    #[test]
    fn gso_batches_round_trip_every_datagram() {
        let spec = |gso| SocketSpec {
            bind: SocketAddrV6::new(Ipv6Addr::LOCALHOST, 0, 0, 0),
            device: None,
            join: vec![],
            multicast_if: None,
            buffer_bytes: 4 << 20,
            gso,
        };
        let mut server = UdpRing::open(&spec(true), 8, 8).unwrap();
        let mut client = UdpRing::open(&spec(true), 8, 8).unwrap();
        let dst = server.local_addr().unwrap();
        // 100 datagrams of 40 bytes (two GSO batches of 64 and 36), then 3 of other sizes.
        let mut sent = Vec::new();
        for k in 0..103u32 {
            let len = if k < 100 { 40 } else { 41 + k as usize };
            let d: Vec<u8> = (0..len).map(|j| (k as usize + j) as u8).collect();
            sent.push(d.clone());
            assert!(client
                .try_send(&dst, |b| {
                    b[..len].copy_from_slice(&d);
                    Some(len)
                })
                .unwrap());
        }
        let mut got = Vec::new();
        for _ in 0..200 {
            client
                .submit_and_reap(None, &mut |_, d| {
                    got.push(d.to_vec());
                    false
                })
                .unwrap();
            server
                .submit_and_reap(Some(Duration::from_millis(5)), &mut |_, _| true)
                .unwrap();
            if got.len() == sent.len() {
                break;
            }
        }
        got.sort();
        sent.sort();
        assert_eq!(got, sent);
        assert_eq!(server.counters.reply_overruns, 0);
    }
}
