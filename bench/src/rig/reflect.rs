//! `tandem-bench reflect`: a null DHCPv6 server that answers every datagram with one of the
//! same size, as fast as the transport allows.
//!
//! It measures this machine's transport ceiling: the rig's rate against the reflector is
//! what the kernel, the veth pair and the rig can move with no server work at all, so a
//! server's rate is reported as a ratio of it. Each answer is the request with its message
//! type turned into the type a server would answer with ([`super::packet::reflect_in_place`]),
//! so clients (the rig, perfdhcp) match it to their transaction.

use std::net::SocketAddrV6;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::uring::{SocketSpec, UdpRing};
use super::{packet, INTERRUPTED};

/// What the reflector did.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct ReflectStats {
    pub received: u64,
    pub answered: u64,
    /// Datagrams that were not DHCPv6 client or relay messages (not answered).
    pub ignored: u64,
    pub send_errors: u64,
    pub overruns: u64,
    pub secs: f64,
}

/// Serves until `duration` passes, `stop()` returns true, or SIGINT/SIGTERM.
pub fn serve(
    spec: &SocketSpec,
    duration: Option<Duration>,
    slots: usize,
    stop: &dyn Fn() -> bool,
    mut on_second: impl FnMut(&ReflectStats),
) -> std::io::Result<ReflectStats> {
    let mut ring = UdpRing::open(spec, slots, slots)?;
    let start = Instant::now();
    let mut st = ReflectStats::default();
    let mut next_report = Duration::from_secs(1);
    loop {
        let el = start.elapsed();
        if INTERRUPTED.load(Ordering::Relaxed) || stop() || duration.is_some_and(|d| el >= d) {
            break;
        }
        let (mut rx, mut ans, mut ign) = (0u64, 0u64, 0u64);
        ring.submit_and_reap(
            Some(Duration::from_millis(50)),
            &mut |_src: &SocketAddrV6, d| {
                rx += 1;
                if packet::reflect_in_place(d) {
                    ans += 1;
                    true
                } else {
                    ign += 1;
                    false
                }
            },
        )?;
        st.received += rx;
        st.answered += ans;
        st.ignored += ign;
        st.send_errors = ring.counters.send_errors;
        st.overruns = ring.counters.reply_overruns;
        if el >= next_report {
            next_report += Duration::from_secs(1);
            st.secs = el.as_secs_f64();
            on_second(&st);
        }
    }
    st.secs = start.elapsed().as_secs_f64();
    Ok(st)
}
