//! The AF_XDP backend: DHCPv6 frames straight from each NIC queue's rings into the shard
//! that owns the queue, and replies framed in place in UMEM and sent back on the same rings.
//!
//! ```text
//!  NIC queue q ──► XDP program (bpf/tandem_xdp.c): UDP/547? ──► XSKMAP[q] ──► AF_XDP socket
//!                       └─ everything else (ND, ICMPv6, TCP, ...) ──► kernel stack
//!  AF_XDP socket (q) ──► XdpIo::recv_batch: parse Ethernet/VLAN/IPv6/UDP in the RX frame,
//!                        hand the payload slice to the shard loop, recycle to the fill ring
//!  shard loop ──► XdpIo::send: frame the reply in a free UMEM frame (MACs reflected, tags
//!                 kept, IPv6+UDP built, checksum), queue on TX ──► flush: sendto() kick
//! ```
//!
//! [`XdpDataPlane::open`] attaches the program to each interface, opens one socket per
//! queue and groups them into one [`XdpIo`] per shard (queue q → shard q mod shards). Each
//! `XdpIo` implements [`PacketIo`], so the shard loop, engine and store are the same as on
//! the io_uring path. The `XdpDataPlane` stays with the main thread: dropping it detaches the
//! programs (bpf_link; the kernel also detaches them if the process is killed).
//!
//! UMEM layout per socket: the first `ring_size` frames circulate through the fill and RX
//! rings (so the fill ring can always take every RX frame back), the rest carry replies
//! through the TX and completion rings.

pub mod frame;
#[cfg(feature = "xdp")]
mod plane;
#[cfg(feature = "xdp")]
pub mod program;
#[cfg(any(feature = "xdp", test))]
mod queue;

use std::io;
use std::net::{Ipv6Addr, UdpSocket};
use std::sync::atomic::AtomicU64;

use self::frame::FrameError;

#[cfg(feature = "xdp")]
pub use self::plane::{XdpDataPlane, XdpIo, XdpShard};
#[cfg(feature = "xdp")]
pub use self::program::{AttachedMode, XdpCounter};

/// Why the AF_XDP data plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error(
        "{what}: permission denied. The AF_XDP backend needs CAP_BPF and CAP_NET_ADMIN (and \
         CAP_NET_RAW for the sockets): run as root or `setcap cap_bpf,cap_net_admin,cap_net_raw+ep` \
         the tandem binary; or set [io.xdp] fallback = \"uring\""
    )]
    Permission { what: String },
    #[error("interface {0}: no such interface")]
    NoSuchInterface(String),
    #[error(
        "interface {interface}: the driver refused {mode} XDP ({reason}); use attach_mode = \
         \"auto\" or \"generic\", or fallback = \"uring\""
    )]
    AttachUnsupported {
        interface: String,
        mode: &'static str,
        reason: String,
    },
    #[error("interface {interface}: attaching the XDP program failed: {reason}")]
    Attach { interface: String, reason: String },
    #[error("loading the XDP program: {0}")]
    Program(String),
    #[error("interface {interface} queue {queue}: {reason}")]
    Socket {
        interface: String,
        queue: u32,
        reason: String,
    },
    #[error("{0}")]
    Config(String),
}

/// The OS error codes found along an error's source chain.
fn os_errors(error: &(dyn std::error::Error + 'static)) -> Vec<i32> {
    let mut codes = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(code) = e
            .downcast_ref::<io::Error>()
            .and_then(io::Error::raw_os_error)
        {
            codes.push(code);
        }
        next = e.source();
    }
    codes
}

fn full_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(e) = next {
        text.push_str(": ");
        text.push_str(&e.to_string());
        next = e.source();
    }
    text
}

fn is_permission_code(code: i32) -> bool {
    code == libc::EPERM || code == libc::EACCES
}

impl XdpError {
    #[cfg_attr(not(feature = "xdp"), allow(dead_code))]
    fn from_load(interface: &str, error: &(dyn std::error::Error + 'static)) -> XdpError {
        if os_errors(error).into_iter().any(is_permission_code) {
            XdpError::Permission {
                what: format!("loading the XDP program for {interface}"),
            }
        } else {
            XdpError::Program(full_chain(error))
        }
    }

    #[cfg_attr(not(feature = "xdp"), allow(dead_code))]
    fn from_attach(
        interface: &str,
        mode: &'static str,
        error: &(dyn std::error::Error + 'static),
    ) -> XdpError {
        let codes = os_errors(error);
        if codes.iter().copied().any(is_permission_code) {
            XdpError::Permission {
                what: format!("attaching the XDP program to {interface}"),
            }
        } else if codes
            .iter()
            .any(|&c| c == libc::EOPNOTSUPP || c == libc::EINVAL)
        {
            XdpError::AttachUnsupported {
                interface: interface.to_owned(),
                mode,
                reason: full_chain(error),
            }
        } else if error.to_string().contains("unknown network interface") {
            XdpError::NoSuchInterface(interface.to_owned())
        } else {
            XdpError::Attach {
                interface: interface.to_owned(),
                reason: full_chain(error),
            }
        }
    }

    /// Permission problems are never worked around by trying another mode.
    pub fn is_permission(&self) -> bool {
        matches!(self, XdpError::Permission { .. })
    }

    /// Whether `fallback = "uring"` applies: the environment (privileges, driver) rather
    /// than the configuration is at fault.
    pub fn allows_fallback(&self) -> bool {
        !matches!(self, XdpError::NoSuchInterface(_) | XdpError::Config(_))
    }
}

/// What the data plane needs to know about an interface, read once at start.
#[derive(Clone, Debug)]
pub struct InterfaceInfo {
    pub name: String,
    pub ifindex: u32,
    pub mac: [u8; 6],
    /// Number of RX queues (combined + RX-only channels).
    pub queues: u32,
    /// Reply source when the destination is link-local (RFC 8415 §18.3.10 lets the server
    /// use any of its addresses; clients on the link expect the link-local one).
    pub link_local: Option<Ipv6Addr>,
    /// Reply source towards global destinations (relays) when the request did not name one.
    pub global: Option<Ipv6Addr>,
}

impl InterfaceInfo {
    /// Reads the interface's index, MAC, queue count and IPv6 addresses in the calling
    /// thread's network namespace (ioctls and /proc/thread-self, not /sys, which shows the
    /// namespace sysfs was mounted in).
    pub fn discover(name: &str) -> Result<InterfaceInfo, XdpError> {
        let ifindex =
            sys::ifindex(name).ok_or_else(|| XdpError::NoSuchInterface(name.to_owned()))?;
        let control = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0))
            .map_err(|e| XdpError::Config(format!("interface {name}: control socket: {e}")))?;
        let mac = sys::hardware_address(&control, name)
            .map_err(|e| XdpError::Config(format!("interface {name}: reading its MAC: {e}")))?;
        let queues = match sys::rx_queue_count(&control, name) {
            Ok(n) if n > 0 => n,
            // Drivers without ETHTOOL_GCHANNELS have a single queue.
            _ => 1,
        };
        let (link_local, global) = sys::ipv6_addresses(ifindex);
        Ok(InterfaceInfo {
            name: name.to_owned(),
            ifindex,
            mac,
            queues,
            link_local,
            global,
        })
    }
}

/// Per-shard counters of the AF_XDP path, updated by the shard thread, read by the main
/// thread (relaxed atomics: monotonic counters, no ordering with other data).
#[derive(Debug, Default)]
pub struct XdpIoCounters {
    pub rx_frames: AtomicU64,
    pub rx_dropped: [AtomicU64; FrameError::ALL.len()],
    pub tx_frames: AtomicU64,
    /// Replies dropped because every TX frame was in flight.
    pub tx_no_frame: AtomicU64,
    /// Replies without the request's L2 header (not received through AF_XDP).
    pub tx_no_l2: AtomicU64,
    /// Replies for an interface this shard has no socket on.
    pub tx_no_socket: AtomicU64,
    /// Replies whose source address could not be chosen (no IPv6 address on the interface).
    pub tx_no_source: AtomicU64,
}

#[cfg(any(feature = "xdp", test))]
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Interface queries through the calling thread's network namespace.
mod sys {
    use std::ffi::CString;
    use std::io;
    use std::net::{Ipv6Addr, UdpSocket};
    use std::os::fd::AsRawFd;

    pub fn ifindex(name: &str) -> Option<u32> {
        let name = CString::new(name).ok()?;
        // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        (index != 0).then_some(index)
    }

    fn ifreq_for(name: &str) -> io::Result<libc::ifreq> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "bad interface name",
            ));
        }
        // SAFETY: `ifreq` is a plain C struct for which all-zero bytes are a valid value.
        let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, &src) in request.ifr_name.iter_mut().zip(bytes) {
            *dst = src as libc::c_char;
        }
        Ok(request)
    }

    pub fn hardware_address(control: &UdpSocket, name: &str) -> io::Result<[u8; 6]> {
        let mut request = ifreq_for(name)?;
        // SAFETY: SIOCGIFHWADDR reads `ifr_name` and writes `ifr_hwaddr` of the ifreq we pass
        // by exclusive pointer; the socket is open for the whole call.
        let rc = unsafe { libc::ioctl(control.as_raw_fd(), libc::SIOCGIFHWADDR, &mut request) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel filled the `ifru_hwaddr` member of the union for this request.
        let sockaddr = unsafe { request.ifr_ifru.ifru_hwaddr };
        let mut mac = [0u8; 6];
        for (dst, &src) in mac.iter_mut().zip(&sockaddr.sa_data[..6]) {
            *dst = src as u8;
        }
        Ok(mac)
    }

    /// `struct ethtool_channels` from linux/ethtool.h.
    #[repr(C)]
    #[derive(Default)]
    struct EthtoolChannels {
        cmd: u32,
        max_rx: u32,
        max_tx: u32,
        max_other: u32,
        max_combined: u32,
        rx_count: u32,
        tx_count: u32,
        other_count: u32,
        combined_count: u32,
    }

    const ETHTOOL_GCHANNELS: u32 = 0x3c;

    /// RX queues: combined channels plus RX-only channels (ETHTOOL_GCHANNELS).
    pub fn rx_queue_count(control: &UdpSocket, name: &str) -> io::Result<u32> {
        let mut channels = EthtoolChannels {
            cmd: ETHTOOL_GCHANNELS,
            ..EthtoolChannels::default()
        };
        let mut request = ifreq_for(name)?;
        request.ifr_ifru.ifru_data = (&mut channels as *mut EthtoolChannels).cast();
        // SAFETY: SIOCETHTOOL with ETHTOOL_GCHANNELS writes one `ethtool_channels` through
        // `ifru_data`, which points at `channels`, alive and exclusively borrowed here.
        let rc = unsafe { libc::ioctl(control.as_raw_fd(), libc::SIOCETHTOOL, &mut request) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(channels.combined_count + channels.rx_count)
    }

    /// The first link-local and the first global IPv6 address of `ifindex`, from
    /// /proc/thread-self/net/if_inet6 (the calling thread's namespace).
    pub fn ipv6_addresses(ifindex: u32) -> (Option<Ipv6Addr>, Option<Ipv6Addr>) {
        let text = std::fs::read_to_string("/proc/thread-self/net/if_inet6").unwrap_or_default();
        parse_if_inet6(&text, ifindex)
    }

    /// Lines: address (32 hex digits), ifindex, prefix length, scope, flags (all hex), name.
    pub fn parse_if_inet6(text: &str, ifindex: u32) -> (Option<Ipv6Addr>, Option<Ipv6Addr>) {
        const IFA_F_TENTATIVE: u32 = 0x40;
        const IFA_F_DADFAILED: u32 = 0x08;
        let mut link_local = None;
        let mut global = None;
        for line in text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [addr, index, _prefix, scope, flags, _name] = fields[..] else {
                continue;
            };
            let (Ok(bits), Ok(index), Ok(scope), Ok(flags)) = (
                u128::from_str_radix(addr, 16),
                u32::from_str_radix(index, 16),
                u32::from_str_radix(scope, 16),
                u32::from_str_radix(flags, 16),
            ) else {
                continue;
            };
            if index != ifindex || flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED) != 0 {
                continue;
            }
            let addr = Ipv6Addr::from(bits);
            match scope {
                0x20 => {
                    link_local.get_or_insert(addr);
                }
                0x00 => {
                    global.get_or_insert(addr);
                }
                _ => {}
            }
        }
        (link_local, global)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn if_inet6_lines() {
            let text = "\
00000000000000000000000000000001 01 80 10 80       lo
fe800000000000000000000000000002 03 40 20 80    veth0
20010db8000000000000000000000001 03 40 00 40    veth0
20010db8000000000000000000000009 03 40 00 80    veth0
fe800000000000000000000000000003 04 40 20 80    veth1
";
            let (ll, global) = super::parse_if_inet6(text, 3);
            assert_eq!(ll, Some("fe80::2".parse().unwrap()));
            // The tentative ::1 (flag 0x40) is skipped.
            assert_eq!(global, Some("2001:db8::9".parse().unwrap()));
            assert_eq!(super::parse_if_inet6(text, 9), (None, None));
        }
    }
}
