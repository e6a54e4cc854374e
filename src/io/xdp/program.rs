//! The XDP program (bpf/tandem_xdp.c, compiled by build.rs and embedded in the binary):
//! loading it with aya, attaching it to an interface through a bpf_link, registering the
//! AF_XDP sockets in its XSKMAP, and reading its per-CPU counters.
//!
//! The attachment is a bpf_link owned by this process, never pinned: the kernel detaches
//! the program when the last file descriptor of the link closes, which happens on a clean
//! exit, on a panic and on SIGKILL alike. No stale program is left steering DHCPv6 into
//! sockets that no longer exist.

use std::os::fd::RawFd;

use aya::maps::{PerCpuArray, XskMap};
use aya::programs::{Xdp, XdpFlags};
use aya::{Ebpf, EbpfLoader};

use super::XdpError;
use crate::config::xdp::AttachMode;

/// The object file built by build.rs, aligned as the ELF parser requires.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tandem_xdp.o"));

const PROGRAM: &str = "tandem_xdp";
const XSK_MAP: &str = "tandem_xsks";
const COUNTER_MAP: &str = "tandem_counters";

/// The program's counters, in the order of `enum tandem_counter` in bpf/tandem_xdp.c.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpCounter {
    Redirected = 0,
    PassNotIpv6 = 1,
    PassNotUdp = 2,
    PassOtherPort = 3,
    PassNoSocket = 4,
    PassTruncated = 5,
    PassTooManyVlans = 6,
}

impl XdpCounter {
    pub const ALL: [XdpCounter; 7] = [
        XdpCounter::Redirected,
        XdpCounter::PassNotIpv6,
        XdpCounter::PassNotUdp,
        XdpCounter::PassOtherPort,
        XdpCounter::PassNoSocket,
        XdpCounter::PassTruncated,
        XdpCounter::PassTooManyVlans,
    ];

    pub fn name(self) -> &'static str {
        match self {
            XdpCounter::Redirected => "redirected",
            XdpCounter::PassNotIpv6 => "pass_not_ipv6",
            XdpCounter::PassNotUdp => "pass_not_udp",
            XdpCounter::PassOtherPort => "pass_other_port",
            XdpCounter::PassNoSocket => "pass_no_socket",
            XdpCounter::PassTruncated => "pass_truncated",
            XdpCounter::PassTooManyVlans => "pass_too_many_vlans",
        }
    }
}

/// Totals over all CPUs, indexed by [`XdpCounter`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpCounters(pub [u64; 7]);

impl XdpCounters {
    pub fn get(&self, counter: XdpCounter) -> u64 {
        self.0[counter as usize]
    }
}

/// Which attach mode was used, for the log and for tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachedMode {
    Native,
    Generic,
}

/// The program attached to one interface. Dropping it detaches the program.
pub struct XdpProgram {
    ebpf: Ebpf,
    interface: String,
    mode: AttachedMode,
}

impl std::fmt::Debug for XdpProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpProgram")
            .field("interface", &self.interface)
            .field("mode", &self.mode)
            .finish()
    }
}

impl XdpProgram {
    /// Loads a fresh copy of the program (its own XSKMAP: queue ids are per interface),
    /// redirecting UDP to `port`, and attaches it to `interface` in `mode`.
    pub fn attach(interface: &str, mode: AttachMode, port: u16) -> Result<XdpProgram, XdpError> {
        let mut ebpf = EbpfLoader::new()
            .set_global("tandem_server_port", &port, true)
            .load(OBJECT)
            .map_err(|e| XdpError::from_load(interface, &e))?;
        let program: &mut Xdp = ebpf
            .program_mut(PROGRAM)
            .ok_or_else(|| XdpError::Program(format!("program {PROGRAM} missing from the object")))?
            .try_into()
            .map_err(|e| XdpError::Program(format!("program {PROGRAM}: {e}")))?;
        program
            .load()
            .map_err(|e| XdpError::from_load(interface, &e))?;

        let attached = match mode {
            AttachMode::Native => program
                .attach(interface, XdpFlags::DRV_MODE)
                .map(|_| AttachedMode::Native)
                .map_err(|e| XdpError::from_attach(interface, "native", &e)),
            AttachMode::Generic => program
                .attach(interface, XdpFlags::SKB_MODE)
                .map(|_| AttachedMode::Generic)
                .map_err(|e| XdpError::from_attach(interface, "generic", &e)),
            AttachMode::Auto => match program.attach(interface, XdpFlags::DRV_MODE) {
                Ok(_) => Ok(AttachedMode::Native),
                Err(native) => {
                    let native = XdpError::from_attach(interface, "native", &native);
                    if native.is_permission() {
                        Err(native)
                    } else {
                        tracing::warn!(
                            interface,
                            error = %native,
                            "native XDP attach failed; using generic (SKB) mode"
                        );
                        program
                            .attach(interface, XdpFlags::SKB_MODE)
                            .map(|_| AttachedMode::Generic)
                            .map_err(|e| XdpError::from_attach(interface, "generic", &e))
                    }
                }
            },
        }?;
        tracing::info!(interface, mode = ?attached, "XDP program attached (bpf_link)");
        Ok(XdpProgram {
            ebpf,
            interface: interface.to_owned(),
            mode: attached,
        })
    }

    pub fn mode(&self) -> AttachedMode {
        self.mode
    }

    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// Points the program's XSKMAP slot `queue` at an AF_XDP socket: from now on the
    /// program redirects DHCPv6 arriving on that queue into the socket.
    pub fn register_socket(&mut self, queue: u32, socket: RawFd) -> Result<(), XdpError> {
        let map = self
            .ebpf
            .map_mut(XSK_MAP)
            .ok_or_else(|| XdpError::Program(format!("map {XSK_MAP} missing from the object")))?;
        let mut xsks: XskMap<_> =
            XskMap::try_from(map).map_err(|e| XdpError::Program(format!("map {XSK_MAP}: {e}")))?;
        xsks.set(queue, socket, 0).map_err(|e| {
            XdpError::Program(format!(
                "registering the AF_XDP socket of {} queue {queue}: {e} (queue ids above {} are not supported)",
                self.interface,
                xsks.len().saturating_sub(1)
            ))
        })
    }

    /// Sums the per-CPU counters.
    pub fn counters(&self) -> Result<XdpCounters, XdpError> {
        let map = self
            .ebpf
            .map(COUNTER_MAP)
            .ok_or_else(|| XdpError::Program(format!("map {COUNTER_MAP} missing")))?;
        let counters: PerCpuArray<_, u64> = PerCpuArray::try_from(map)
            .map_err(|e| XdpError::Program(format!("map {COUNTER_MAP}: {e}")))?;
        let mut totals = XdpCounters::default();
        for counter in XdpCounter::ALL {
            let per_cpu = counters
                .get(&(counter as u32), 0)
                .map_err(|e| XdpError::Program(format!("reading {COUNTER_MAP}: {e}")))?;
            totals.0[counter as usize] = per_cpu.iter().sum();
        }
        Ok(totals)
    }
}
