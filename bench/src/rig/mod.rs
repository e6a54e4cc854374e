//! The load-generator rig: emulated CPEs and relays ([`driver`]), their packets
//! ([`packet`]), io_uring sockets ([`uring`]), results ([`report`]), the null server
//! ([`reflect`]) and machine calibration ([`calibrate`]).
//!
//! The rig talks DHCPv6 to *any* server: it uses none of tandem's server code, so the same
//! run measures tandem, Kea or the reflector.

pub mod calibrate;
pub mod driver;
pub mod packet;
pub mod reflect;
pub mod report;
pub mod uring;

use std::net::{Ipv6Addr, SocketAddrV6};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use driver::{Driver, Params, Phase};
use report::Report;
use uring::{SocketSpec, UdpRing};

/// RFC 8415 §7.1: All_DHCP_Relay_Agents_and_Servers.
pub const ALL_DHCP_RELAY_AGENTS_AND_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);
pub const SERVER_PORT: u16 = 547;
pub const CLIENT_PORT: u16 = 546;

/// Set by SIGINT/SIGTERM: the run stops its measured phase early and still reports.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Installs the SIGINT/SIGTERM handler that sets [`INTERRUPTED`].
pub fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `on_signal` is async-signal-safe (one relaxed atomic store) and has the
        // `extern "C" fn(c_int)` signature `signal` expects.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
}

/// Where the rig's packets go.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub dst: SocketAddrV6,
    pub socket: SocketSpec,
    pub label: String,
}

impl Endpoint {
    /// Direct: from [::]:546 on `interface` to ff02::1:2%interface:547.
    pub fn direct(interface: &str, buffer_bytes: usize, gso: bool) -> std::io::Result<Endpoint> {
        let ifindex = uring::ifindex(interface)?;
        Ok(Endpoint {
            dst: SocketAddrV6::new(ALL_DHCP_RELAY_AGENTS_AND_SERVERS, SERVER_PORT, 0, ifindex),
            socket: SocketSpec {
                bind: SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, CLIENT_PORT, 0, 0),
                device: Some(interface.to_string()),
                join: vec![],
                multicast_if: Some(ifindex),
                buffer_bytes,
                gso,
            },
            label: format!("[ff02::1:2%{interface}]:547"),
        })
    }

    /// Relayed: from `bind` (default [::]:547, where servers answer relays, RFC 8415 §19.3)
    /// to the server's unicast address.
    pub fn relayed(
        target: SocketAddrV6,
        bind: Option<SocketAddrV6>,
        buffer_bytes: usize,
        gso: bool,
    ) -> Endpoint {
        Endpoint {
            dst: target,
            socket: SocketSpec {
                bind: bind.unwrap_or(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, SERVER_PORT, 0, 0)),
                device: None,
                join: vec![],
                multicast_if: None,
                buffer_bytes,
                gso,
            },
            label: target.to_string(),
        }
    }
}

/// Options of the I/O loop around the driver.
#[derive(Clone, Debug)]
pub struct LoopOptions {
    pub recv_slots: usize,
    pub send_slots: usize,
    /// Show the live progress line (indicatif hides it anyway when stderr is not a tty).
    pub progress: bool,
}

impl Default for LoopOptions {
    fn default() -> Self {
        LoopOptions {
            recv_slots: 256,
            send_slots: 256,
            progress: true,
        }
    }
}

/// Runs one scenario against `ep` and returns its report.
pub fn run(params: Params, ep: &Endpoint, opts: &LoopOptions) -> std::io::Result<Report> {
    let mut ring = UdpRing::open(&ep.socket, opts.recv_slots, opts.send_slots)?;
    let (cpu_u0, cpu_s0, _) = report::rusage();
    let mut d = Driver::new(params.clone());
    let bar = progress_bar(opts.progress);
    let start = Instant::now();
    let now_us = || start.elapsed().as_micros() as u64;
    let mut next_progress = 0u64;
    let mut prev = (0u64, 0u64, 0u64);
    let mut measure_cpu = None;
    loop {
        let now = now_us();
        if INTERRUPTED.load(Ordering::Relaxed) && d.phase() != Phase::Done {
            // Stop starting exchanges; the drain and the report still happen.
            d.interrupt(now);
        }
        d.handle_timeouts(now);
        if d.phase() == Phase::Done {
            break;
        }
        if measure_cpu.is_none() && d.phase() != Phase::Warmup {
            measure_cpu = Some(report::rusage());
        }
        // Fill every free send slot with what the driver wants to send now.
        while ring.try_send(&ep.dst, |buf| d.poll_transmit(now, buf))? {}
        let wake = d.next_wakeup(now);
        let wait = if ring.free_send_slots() == 0 || wake <= now {
            // Sends are blocked on completions, or more is due now: do not sleep.
            if ring.free_send_slots() == 0 {
                Some(Duration::from_micros(200))
            } else {
                None
            }
        } else {
            Some(Duration::from_micros((wake - now).min(1_000)))
        };
        ring.submit_and_reap(wait, &mut |_, bytes| {
            d.handle_datagram(now_us(), bytes);
            false
        })?;
        if now >= next_progress {
            next_progress = now + 250_000;
            if let Some(bar) = &bar {
                let c = &d.counters;
                let dt = 0.25f64;
                let msg = format!(
                    "{:?} {:>6.1}s  sent {:>8.0}/s  done {:>8.0}/s  outstanding {:>6}  drops {}  NoAddrs {}  io-errors {}",
                    d.phase(),
                    now as f64 / 1e6,
                    (c.sent.saturating_sub(prev.0)) as f64 / dt,
                    (c.completed.saturating_sub(prev.1)) as f64 / dt,
                    d.outstanding(),
                    c.drops,
                    c.no_addrs_avail,
                    ring.counters.send_errors + ring.counters.recv_errors,
                );
                prev = (c.sent, c.completed, 0);
                bar.set_message(msg);
                bar.tick();
            }
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let (cu, cs, _) = measure_cpu.unwrap_or((cpu_u0, cpu_s0, 0.0));
    Ok(Report::measured(
        "tandem-bench",
        ep.label.clone(),
        &d,
        (cu, cs),
        ring.counters.send_errors + ring.counters.recv_errors,
    ))
}

fn progress_bar(enabled: bool) -> Option<indicatif::ProgressBar> {
    if !enabled {
        return None;
    }
    let bar =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    bar.set_style(indicatif::ProgressStyle::with_template("{spinner} {msg}").ok()?);
    Some(bar)
}
