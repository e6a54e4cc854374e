//! Thin, safe wrappers over the few Linux system calls the I/O backends and the server wiring
//! need beyond `std`: UDP socket options for DHCPv6 (RFC 8415 §7.1 ports and groups, IPv6
//! packet info), multicast membership, interface discovery (`getifaddrs`), an eventfd used to
//! wake a shard from another thread, and termination signals.
//!
//! Each `unsafe` block is a single libc call with plain-old-data arguments; the invariants are
//! stated beside it.

use std::ffi::{CStr, CString};
use std::io;
use std::mem;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

/// `IPV6_MULTICAST_ALL` (linux/in6.h; missing from the libc crate for glibc targets). When 0,
/// a socket receives multicast only for groups it joined itself, instead of for every group any
/// socket on the host joined.
const IPV6_MULTICAST_ALL: libc::c_int = 29;

/// `UDP_SEGMENT` (linux/udp.h, Linux 4.18): as a cmsg on send, the segment size of a UDP GSO
/// send (one `sendmsg` carrying several equal-size datagrams).
pub const UDP_SEGMENT: libc::c_int = 103;
/// `UDP_GRO` (linux/udp.h, Linux 5.0): as a socket option, accept coalesced datagrams; as a
/// cmsg on receive, their segment size.
pub const UDP_GRO: libc::c_int = 104;

/// RFC 8415 §7.1: All_DHCP_Relay_Agents_and_Servers, link-scoped; direct clients send here.
pub const ALL_DHCP_RELAY_AGENTS_AND_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);
/// RFC 8415 §7.1: All_DHCP_Servers, site-scoped; relay agents may send here.
pub const ALL_DHCP_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff05, 0, 0, 0, 0, 0, 1, 3);

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn setsockopt<T: Copy>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: T,
) -> io::Result<()> {
    // SAFETY: `value` is a plain-old-data option value living on the stack for the duration of
    // the call and the length passed is exactly its size; the kernel copies it.
    let ret = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            std::ptr::from_ref(&value).cast::<libc::c_void>(),
            mem::size_of::<T>() as libc::socklen_t,
        )
    };
    cvt(ret).map(drop)
}

/// Converts a `SocketAddrV6` to the kernel's `sockaddr_in6`.
pub fn sockaddr_in6(addr: &SocketAddrV6) -> libc::sockaddr_in6 {
    libc::sockaddr_in6 {
        sin6_family: libc::AF_INET6 as libc::sa_family_t,
        sin6_port: addr.port().to_be(),
        sin6_flowinfo: addr.flowinfo(),
        sin6_addr: libc::in6_addr {
            s6_addr: addr.ip().octets(),
        },
        sin6_scope_id: addr.scope_id(),
    }
}

/// Reads a `sockaddr_in6` the kernel wrote as raw bytes (a multishot recvmsg's name field).
/// `None` when too short or not AF_INET6.
pub fn parse_sockaddr_in6(raw: &[u8]) -> Option<SocketAddrV6> {
    // Layout (linux/in6.h): family u16 (native), port u16 (network), flowinfo u32,
    // addr [u8; 16], scope_id u32 (native): 28 bytes.
    if raw.len() < 28 {
        return None;
    }
    let family = u16::from_ne_bytes([raw[0], raw[1]]);
    if i32::from(family) != libc::AF_INET6 {
        return None;
    }
    let port = u16::from_be_bytes([raw[2], raw[3]]);
    let flowinfo = u32::from_ne_bytes([raw[4], raw[5], raw[6], raw[7]]);
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&raw[8..24]);
    let scope_id = u32::from_ne_bytes([raw[24], raw[25], raw[26], raw[27]]);
    Some(SocketAddrV6::new(
        Ipv6Addr::from(octets),
        port,
        flowinfo,
        scope_id,
    ))
}

/// Options of the per-shard DHCPv6 UDP socket.
#[derive(Clone, Debug)]
pub struct UdpOptions {
    /// Address to bind (normally `[::]:547`).
    pub bind: SocketAddrV6,
    /// Join the SO_REUSEPORT group so that every shard can bind the same port.
    pub reuse_port: bool,
    /// Requested receive buffer in bytes (0: kernel default). Set with SO_RCVBUFFORCE when
    /// running as root so `net.core.rmem_max` does not silently cap it.
    pub recv_buffer: usize,
    /// Requested send buffer in bytes (0: kernel default).
    pub send_buffer: usize,
}

/// Creates the DHCPv6 UDP socket: IPv6 only, packet info (receiving interface and destination
/// address, RFC 8415 §18.4 depends on unicast vs multicast) and hop limit delivered as control
/// messages, and multicast delivered only for groups this socket joins itself (see
/// [`IPV6_MULTICAST_ALL`]).
pub fn udp6_socket(opts: &UdpOptions) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; on success we own the returned descriptor.
    let raw = cvt(unsafe {
        libc::socket(
            libc::AF_INET6,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::IPPROTO_UDP,
        )
    })?;
    // SAFETY: `raw` is a fresh, valid descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let s = fd.as_raw_fd();
    let one: libc::c_int = 1;
    let zero: libc::c_int = 0;
    setsockopt(s, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, one)?;
    if opts.reuse_port {
        setsockopt(s, libc::SOL_SOCKET, libc::SO_REUSEPORT, one)?;
    }
    setsockopt(s, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, one)?;
    setsockopt(s, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, one)?;
    setsockopt(s, libc::IPPROTO_IPV6, IPV6_MULTICAST_ALL, zero)?;
    // Replies to direct clients go to link-local addresses on the link; never loop them back.
    setsockopt(s, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_LOOP, zero)?;
    if opts.recv_buffer > 0 {
        let size = libc::c_int::try_from(opts.recv_buffer).unwrap_or(libc::c_int::MAX);
        if setsockopt(s, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, size).is_err() {
            setsockopt(s, libc::SOL_SOCKET, libc::SO_RCVBUF, size)?;
        }
    }
    if opts.send_buffer > 0 {
        let size = libc::c_int::try_from(opts.send_buffer).unwrap_or(libc::c_int::MAX);
        if setsockopt(s, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, size).is_err() {
            setsockopt(s, libc::SOL_SOCKET, libc::SO_SNDBUF, size)?;
        }
    }
    let sa = sockaddr_in6(&opts.bind);
    // SAFETY: `sa` is a valid sockaddr_in6 on the stack and its exact size is passed.
    cvt(unsafe {
        libc::bind(
            s,
            std::ptr::from_ref(&sa).cast::<libc::sockaddr>(),
            mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
        )
    })?;
    Ok(fd)
}

/// Asks the kernel to hand over coalesced datagrams of one flow in a single receive (UDP GRO)
/// with a `UDP_GRO` control message giving the segment size. Fails on kernels without it.
pub fn enable_udp_gro(fd: &OwnedFd) -> io::Result<()> {
    let one: libc::c_int = 1;
    setsockopt(fd.as_raw_fd(), libc::SOL_UDP, UDP_GRO, one)
}

/// Whether the kernel knows UDP GSO (`UDP_SEGMENT`): reading the socket's default segment
/// size fails with ENOPROTOOPT on kernels without it.
pub fn udp_gso_supported(fd: &OwnedFd) -> bool {
    let mut value: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes and `len` holds the buffer's size.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_UDP,
            UDP_SEGMENT,
            std::ptr::from_mut(&mut value).cast::<libc::c_void>(),
            &mut len,
        )
    };
    ret == 0
}

/// Joins `group` on interface `ifindex` (IPV6_ADD_MEMBERSHIP).
pub fn join_group(fd: &OwnedFd, group: Ipv6Addr, ifindex: u32) -> io::Result<()> {
    let mreq = libc::ipv6_mreq {
        ipv6mr_multiaddr: libc::in6_addr {
            s6_addr: group.octets(),
        },
        ipv6mr_interface: ifindex,
    };
    setsockopt(
        fd.as_raw_fd(),
        libc::IPPROTO_IPV6,
        libc::IPV6_ADD_MEMBERSHIP,
        mreq,
    )
}

/// The address a socket is bound to (tests bind port 0 and read the port back).
pub fn local_addr(fd: &OwnedFd) -> io::Result<SocketAddrV6> {
    // SAFETY: sockaddr_in6 is plain old data; all-zero is a valid value.
    let mut sa: libc::sockaddr_in6 = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
    // SAFETY: `sa` and `len` are valid for writes and `len` holds the buffer's size.
    cvt(unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            std::ptr::from_mut(&mut sa).cast::<libc::sockaddr>(),
            &mut len,
        )
    })?;
    Ok(SocketAddrV6::new(
        Ipv6Addr::from(sa.sin6_addr.s6_addr),
        u16::from_be(sa.sin6_port),
        sa.sin6_flowinfo,
        sa.sin6_scope_id,
    ))
}

/// The index of the interface named `name`, if it exists.
pub fn if_nametoindex(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (index != 0).then_some(index)
}

/// One local network interface as the server sees it at startup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    pub up: bool,
    pub loopback: bool,
    pub multicast: bool,
    /// IPv6 addresses with their prefix lengths.
    pub addrs: Vec<(Ipv6Addr, u8)>,
    /// ARP hardware type (`ARPHRD_*`) and link-layer address, when the interface has one
    /// (DUID-LLT, RFC 8415 §11.2, is built from it).
    pub link_layer: Option<(u16, Vec<u8>)>,
}

/// Lists the local interfaces and their IPv6 addresses (getifaddrs(3)), in index order.
pub fn interfaces() -> io::Result<Vec<Interface>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head we free below with freeifaddrs.
    cvt(unsafe { libc::getifaddrs(&mut head) })?;
    let mut out: Vec<Interface> = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a non-null node of the list getifaddrs returned, valid until
        // freeifaddrs; we only read it.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        let flags = ifa.ifa_flags;
        let entry = match out.iter_mut().position(|i| i.name == name) {
            Some(pos) => &mut out[pos],
            None => {
                let index = if_nametoindex(&name).unwrap_or(0);
                out.push(Interface {
                    name: name.clone(),
                    index,
                    up: flags & libc::IFF_UP as libc::c_uint != 0,
                    loopback: flags & libc::IFF_LOOPBACK as libc::c_uint != 0,
                    multicast: flags & libc::IFF_MULTICAST as libc::c_uint != 0,
                    addrs: Vec::new(),
                    link_layer: None,
                });
                out.last_mut().expect("just pushed")
            }
        };
        if ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_addr is non-null and points to at least a sockaddr header.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        if family == libc::AF_PACKET {
            // SAFETY: for AF_PACKET entries getifaddrs stores a sockaddr_ll.
            let ll = unsafe { ifa.ifa_addr.cast::<libc::sockaddr_ll>().read_unaligned() };
            let len = usize::from(ll.sll_halen).min(ll.sll_addr.len());
            if len > 0 && ll.sll_addr[..len].iter().any(|&b| b != 0) {
                entry.link_layer = Some((ll.sll_hatype, ll.sll_addr[..len].to_vec()));
            }
            continue;
        }
        if family != libc::AF_INET6 {
            continue;
        }
        // SAFETY: the family is AF_INET6, so the kernel stored a full sockaddr_in6 (and the
        // netmask, when present, is a sockaddr_in6 too). read_unaligned: no alignment promise.
        let addr = unsafe { ifa.ifa_addr.cast::<libc::sockaddr_in6>().read_unaligned() };
        let prefix_len = if ifa.ifa_netmask.is_null() {
            128
        } else {
            // SAFETY: as above, a sockaddr_in6 netmask for an AF_INET6 entry.
            let mask = unsafe {
                ifa.ifa_netmask
                    .cast::<libc::sockaddr_in6>()
                    .read_unaligned()
            };
            u128::from_be_bytes(mask.sin6_addr.s6_addr).count_ones() as u8
        };
        entry
            .addrs
            .push((Ipv6Addr::from(addr.sin6_addr.s6_addr), prefix_len));
    }
    // SAFETY: `head` came from getifaddrs and is freed exactly once; no reference into the
    // list outlives this point (everything was copied into `out`).
    unsafe { libc::freeifaddrs(head) };
    out.sort_by_key(|i| i.index);
    Ok(out)
}

/// A cross-thread wake-up for a shard blocked in [`PacketIo::recv_batch`]: an eventfd the
/// backend watches. Another shard (after a handoff) or the signal thread (stop) calls
/// [`wake`](Waker::wake); the backend returns from its wait and resets it.
///
/// [`PacketIo::recv_batch`]: super::PacketIo::recv_batch
#[derive(Clone, Debug)]
pub struct Waker {
    fd: Arc<OwnedFd>,
}

impl Waker {
    pub fn new() -> io::Result<Waker> {
        // SAFETY: plain eventfd(2) call; on success we own the descriptor.
        let raw = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        // SAFETY: fresh descriptor, owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Waker { fd: Arc::new(fd) })
    }

    /// Wakes the watcher. Never blocks: the counter saturating (EAGAIN) still leaves it
    /// readable, which is all a wake needs.
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd.
        let _ = unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                std::ptr::from_ref(&one).cast::<libc::c_void>(),
                8,
            )
        };
    }

    /// Clears pending wakes; returns true if there was one.
    pub fn reset(&self) -> bool {
        let mut value: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64; the fd is non-blocking.
        let n = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                std::ptr::from_mut(&mut value).cast::<libc::c_void>(),
                8,
            )
        };
        n == 8 && value > 0
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn termination_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before any use.
    let mut set: libc::sigset_t = unsafe { mem::zeroed() };
    // SAFETY: `set` is a valid, exclusively borrowed sigset_t.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
    }
    set
}

/// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread and every thread it spawns later,
/// so that [`wait_termination_signal`] on one dedicated thread receives them synchronously
/// (no async-signal-safety concerns, no handler). Call before spawning any thread.
pub fn block_termination_signals() -> io::Result<()> {
    let set = termination_set();
    // SAFETY: `set` is initialised; the old mask is not requested.
    let ret = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if ret != 0 {
        return Err(io::Error::from_raw_os_error(ret));
    }
    Ok(())
}

/// Waits for one of the signals blocked by [`block_termination_signals`]; returns its number.
pub fn wait_termination_signal() -> io::Result<libc::c_int> {
    let set = termination_set();
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` is initialised and `sig` is valid for writes.
    let ret = unsafe { libc::sigwait(&set, &mut sig) };
    if ret != 0 {
        return Err(io::Error::from_raw_os_error(ret));
    }
    Ok(sig)
}

/// Sends `sig` to this process (the stop path of tests and of fatal shard errors).
pub fn raise_in_process(sig: libc::c_int) -> io::Result<()> {
    // SAFETY: kill(2) on our own pid with a valid signal number.
    cvt(unsafe { libc::kill(libc::getpid(), sig) }).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_round_trip() {
        let sa = SocketAddrV6::new("fe80::1".parse().unwrap(), 546, 0, 7);
        let raw = sockaddr_in6(&sa);
        // SAFETY: sockaddr_in6 is 28 bytes of plain data without padding; viewing it as bytes
        // feeds the byte parser exactly what the kernel would write.
        let bytes: [u8; 28] = unsafe { mem::transmute(raw) };
        assert_eq!(parse_sockaddr_in6(&bytes), Some(sa));
        assert_eq!(parse_sockaddr_in6(&bytes[..27]), None);
    }

    #[test]
    fn loopback_interface_is_listed() {
        let ifs = interfaces().unwrap();
        let lo = ifs
            .iter()
            .find(|i| i.loopback)
            .expect("a loopback interface");
        assert_eq!(if_nametoindex(&lo.name), Some(lo.index));
        assert_eq!(if_nametoindex("tandem-no-such-if"), None);
    }

    #[test]
    fn waker_wakes_once() {
        let w = Waker::new().unwrap();
        assert!(!w.reset());
        w.wake();
        w.clone().wake();
        assert!(w.reset());
        assert!(!w.reset());
    }

    #[test]
    fn reuse_port_sockets_share_a_port() {
        let mut opts = UdpOptions {
            bind: SocketAddrV6::new(Ipv6Addr::LOCALHOST, 0, 0, 0),
            reuse_port: true,
            recv_buffer: 1 << 20,
            send_buffer: 0,
        };
        let a = udp6_socket(&opts).unwrap();
        let port = local_addr(&a).unwrap().port();
        assert_ne!(port, 0);
        opts.bind.set_port(port);
        let b = udp6_socket(&opts).unwrap();
        assert_eq!(local_addr(&b).unwrap().port(), port);
    }
}
