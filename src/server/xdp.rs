//! `tandem serve` with `backend = "xdp"`: the AF_XDP data plane feeding the same shard loop,
//! engine and store as the io_uring backend.
//!
//! The sockets are opened here, in the main thread, before the shards start: the XDP program
//! must be attached and every queue's socket registered in its XSKMAP by one owner, and the
//! shard count follows the queue count. Each shard thread then takes its own `XdpIo` (the
//! sockets of its queues). The `XdpDataPlane` stays in this thread until the shards have
//! stopped; dropping it detaches the program (and a killed process detaches it too: the
//! attachment is a bpf_link owned by the process).

#[cfg(feature = "xdp")]
use std::sync::Mutex;

#[cfg(feature = "xdp")]
use super::{engine_service, run_shards};
use super::{serve_uring, Prepared, ServeError};
use crate::config::xdp::Fallback;
#[cfg(feature = "xdp")]
use crate::io::xdp::{XdpDataPlane, XdpIo};
#[cfg(feature = "xdp")]
use crate::shard::Reflector;
use crate::shard::ShardReport;

/// A tandem built without the `xdp` cargo feature has no AF_XDP backend: the error says
/// so, and `fallback = "uring"` still applies.
#[cfg(not(feature = "xdp"))]
pub(super) fn serve_xdp(p: Prepared, null_reflector: bool) -> Result<Vec<ShardReport>, ServeError> {
    let error = crate::io::xdp::XdpError::Config(
        "this tandem was built without the AF_XDP backend (cargo feature \"xdp\"); rebuild \
         with default features or use backend = \"uring\""
            .into(),
    );
    if p.config.io.xdp.fallback == Fallback::Uring {
        tracing::error!(error = %error, "serving through io_uring instead ([io.xdp] fallback = \"uring\")");
        return serve_uring(&p, null_reflector);
    }
    Err(error.into())
}

#[cfg(feature = "xdp")]
pub(super) fn serve_xdp(
    mut p: Prepared,
    null_reflector: bool,
) -> Result<Vec<ShardReport>, ServeError> {
    let io = &p.config.io;
    let interfaces = io.interfaces.clone();
    let opened = if interfaces.is_empty() {
        Err(crate::io::xdp::XdpError::Config(
            "backend \"xdp\" needs the interfaces to attach to: [io] interfaces = [\"eth1\"] or \
             --interface eth1"
                .into(),
        ))
    } else {
        XdpDataPlane::open(&interfaces, &io.xdp, io.shards, io.port)
    };
    let (plane, shards) = match opened {
        Ok(opened) => opened,
        Err(e) if io.xdp.fallback == Fallback::Uring && e.allows_fallback() => {
            tracing::error!(
                error = %e,
                "the AF_XDP data plane cannot start; serving through io_uring instead \
                 ([io.xdp] fallback = \"uring\")"
            );
            return serve_uring(&p, null_reflector);
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(
        shards = shards.len(),
        zero_copy = plane.zero_copy(),
        attach = ?plane.attach_modes(),
        "AF_XDP data plane ready"
    );
    p.shards = shards.len();
    p.shard_cores = shards.iter().map(|s| s.core).collect();
    let slots: Mutex<Vec<Option<XdpIo>>> =
        Mutex::new(shards.into_iter().map(|s| Some(s.io)).collect());
    let take = move |_: &super::ServeContext, index: usize| -> Result<XdpIo, String> {
        slots
            .lock()
            .map_err(|_| "AF_XDP socket table poisoned".to_owned())?
            .get_mut(index)
            .and_then(Option::take)
            .ok_or_else(|| format!("no AF_XDP sockets for shard {index}"))
    };
    let result = if null_reflector {
        tracing::warn!("null reflector mode: echoing datagrams, not serving DHCPv6");
        run_shards(&p, take, |_, _, _| Ok(Reflector::default()))
    } else {
        run_shards(&p, take, engine_service)
    };
    plane.log_counters();
    drop(plane);
    result
}
