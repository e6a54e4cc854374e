//! `tandem serve`: turns the configuration into running shards.
//!
//! Start-up order, and why:
//! 1. Block SIGTERM/SIGINT/SIGHUP before any thread exists, so every thread inherits the mask
//!    and the main thread alone receives them with `sigwait` (no signal handler, nothing
//!    async-signal-unsafe).
//! 2. Discover the local interfaces (getifaddrs): the embedded default config, binding
//!    subnets to receiving interfaces, the multicast joins and the DUID-LLT all need them.
//! 3. Configuration: `--config`, else `./tandem.toml` if present, else the embedded default.
//! 4. Data directory (created if missing) and the server DUID kept in it.
//! 5. One thread per shard, each pinned to a core, creating its own socket, lease table and
//!    engine (memory stays local to the core that uses it) and reporting readiness. Any
//!    shard failing to start stops the others and the error is returned.
//! 6. Wait for a signal (or a shard failing, which raises SIGTERM), then stop: every shard
//!    releases the replies whose leases are durable, logs its counters and exits.

pub mod duid;
mod xdp;

use std::net::{Ipv6Addr, SocketAddrV6};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::io::{Backend, IoSection};
use crate::config::{Config, ConfigError, LocalInterface};
use crate::engine::{Engine, ShardId};
use crate::io::sys::{self, Interface};
use crate::io::uring::{UringIo, UringOptions};
use crate::io::PacketIo;
use crate::lease::store::{self as lease_store, ShardTable, Store};
use crate::lease::{Duid, LeaseTable, Resource};
use crate::shard::{self, Reflector, Service, Shard, ShardOptions, ShardReport};
use crate::time::Timestamp;

/// The default data directory, relative to the working directory (like `./tandem.toml`).
pub const DEFAULT_DATA_DIR: &str = "tandem-data";
/// The configuration file used when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "tandem.toml";

/// What `tandem serve` was asked for on the command line (each overrides the file).
#[derive(Clone, Debug, Default)]
pub struct ServeOptions {
    pub config: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub shards: Option<usize>,
    pub backend: Option<Backend>,
    pub interfaces: Vec<String>,
    pub port: Option<u16>,
    /// Answer every datagram with its own bytes instead of running DHCPv6: the baseline of
    /// the I/O benchmark (same sockets, same shard loop, no engine).
    pub null_reflector: bool,
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{path}: cannot create the data directory: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Duid(#[from] duid::DuidError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("interface `{name}` (io.interfaces / --interface) does not exist; local interfaces: {known}")]
    UnknownInterface { name: String, known: String },
    #[error("the {0:?} backend is not part of this build yet")]
    BackendUnavailable(Backend),
    #[error("AF_XDP backend: {0}")]
    Xdp(#[from] crate::io::xdp::XdpError),
    #[error("shard {index}: {message}")]
    Shard { index: usize, message: String },
    #[error("lease store: {0}")]
    Store(#[from] lease_store::StoreError),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServeError {
    let what = what.into();
    move |source| ServeError::Io { what, source }
}

/// Which table each shard keeps its leases in: the durable store (`[store]`), which also
/// serves durability `memory` without touching the disk.
pub type Table = ShardTable;

/// Opens the lease store for all shards at once (it locks the data directory, and re-homes
/// leases when the shard count changed), and finds each shard's foreign resources: those in
/// its allocation partition held by another shard's client (SEAMS.md, "Ownership").
pub fn open_tables(p: &Prepared) -> Result<(Vec<Table>, Vec<Vec<Resource>>), ServeError> {
    let mut section = p.config.store.clone();
    section.data_dir = p.data_dir.clone();
    let store = Store::open(&section, p.shards)?;
    let r = &store.report;
    tracing::info!(
        durability = section.durability.as_str(),
        leases = r.leases,
        generation = r.generation,
        wal_batches_replayed = r.wal_batches_replayed,
        rehomed_from = ?r.rehomed_from,
        "lease store open"
    );
    let scan = std::time::Instant::now();
    let foreign = lease_store::foreign_resources(
        &store.tables,
        &lease_store::partition_of(&p.config, p.shards),
    );
    tracing::info!(
        foreign = foreign.iter().map(Vec::len).sum::<usize>(),
        took_ms = scan.elapsed().as_millis() as u64,
        "foreign resources found (leases of other shards' clients in a shard's partition)"
    );
    Ok((store.tables, foreign))
}

/// Converts discovered interfaces to the configuration's view of them.
pub fn local_interfaces(ifs: &[Interface]) -> Vec<LocalInterface> {
    ifs.iter()
        .map(|i| LocalInterface {
            name: i.name.clone(),
            ifindex: i.index,
            addrs: i.addrs.iter().map(|(a, _)| *a).collect(),
            up: i.up,
            loopback: i.loopback,
        })
        .collect()
}

/// Everything resolved before the shards start.
pub struct Prepared {
    pub config: Arc<Config>,
    pub data_dir: PathBuf,
    pub server_duid: Duid,
    pub shards: usize,
    /// Interfaces (index, name) where the multicast groups are joined.
    pub multicast: Vec<(u32, String)>,
    /// Core of each shard when it is not the default (shard i on core i mod cores): the
    /// AF_XDP backend's `[io.xdp] queue_cores`.
    pub shard_cores: Vec<usize>,
}

/// Steps 2–4 of the start-up: interfaces, configuration, data directory, DUID.
pub fn prepare(opts: &ServeOptions) -> Result<Prepared, ServeError> {
    let ifs = sys::interfaces().map_err(io_err("listing network interfaces"))?;
    let locals = local_interfaces(&ifs);
    let file = match &opts.config {
        Some(p) => Some(p.clone()),
        None => {
            let p = PathBuf::from(DEFAULT_CONFIG_FILE);
            p.exists().then_some(p)
        }
    };
    let file_config = match &file {
        Some(p) => Some(Config::from_file(p)?),
        None => None,
    };
    // --data-dir, else `[store] data_dir` of the file, else ./tandem-data.
    let data_dir = opts.data_dir.clone().unwrap_or_else(|| {
        file_config
            .as_ref()
            .map(|c| c.store.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
    });
    std::fs::create_dir_all(&data_dir).map_err(|source| ServeError::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    let (stored_duid, created) = duid::load_or_create(&data_dir, &ifs, Timestamp::now())?;
    if created {
        tracing::info!(duid = %stored_duid, dir = %data_dir.display(), "generated the server DUID");
    }
    let mut config = match file_config {
        Some(c) => c,
        // Seeded by the DUID so the ULA ranges stay the same across restarts.
        None => Config::embedded_default(&locals, stored_duid.as_bytes()),
    };
    apply_overrides(&mut config.io, opts);
    config.bind_interfaces(&locals);
    for name in config.unknown_interfaces(&locals) {
        tracing::warn!(
            interface = name,
            "a subnet names an interface that does not exist"
        );
    }
    let server_duid = config.server.duid.unwrap_or(stored_duid);
    let multicast = multicast_interfaces(&config.io, &ifs)?;
    let shards = config.io.shards.unwrap_or_else(default_shards);
    Ok(Prepared {
        config: Arc::new(config),
        data_dir,
        server_duid,
        shards,
        multicast,
        shard_cores: Vec::new(),
    })
}

fn apply_overrides(io: &mut IoSection, opts: &ServeOptions) {
    if let Some(n) = opts.shards {
        io.shards = Some(n);
    }
    if let Some(b) = opts.backend {
        io.backend = b;
    }
    if !opts.interfaces.is_empty() {
        io.interfaces = opts.interfaces.clone();
    }
    if let Some(p) = opts.port {
        io.port = p;
    }
}

/// One shard per core the process may run on.
fn default_shards() -> usize {
    core_affinity::get_core_ids()
        .map(|c| c.len())
        .filter(|&n| n > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
}

/// Where direct clients are: the configured interfaces (each must exist), else every up,
/// non-loopback, multicast-capable interface with IPv6.
fn multicast_interfaces(
    io: &IoSection,
    ifs: &[Interface],
) -> Result<Vec<(u32, String)>, ServeError> {
    if io.interfaces.is_empty() {
        return Ok(ifs
            .iter()
            .filter(|i| i.up && !i.loopback && i.multicast && !i.addrs.is_empty())
            .map(|i| (i.index, i.name.clone()))
            .collect());
    }
    io.interfaces
        .iter()
        .map(|name| {
            ifs.iter()
                .find(|i| &i.name == name)
                .map(|i| (i.index, i.name.clone()))
                .ok_or_else(|| ServeError::UnknownInterface {
                    name: name.clone(),
                    known: ifs
                        .iter()
                        .map(|i| i.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
        })
        .collect()
}

/// Runs `tandem serve` until SIGTERM/SIGINT/SIGHUP; returns the shards' final reports.
pub fn serve(opts: &ServeOptions) -> Result<Vec<ShardReport>, ServeError> {
    sys::block_termination_signals().map_err(io_err("blocking termination signals"))?;
    let p = prepare(opts)?;
    tracing::info!(
        config = %p.config.origin,
        data_dir = %p.data_dir.display(),
        duid = %p.server_duid,
        shards = p.shards,
        port = p.config.io.port,
        multicast_on = ?p.multicast.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>(),
        subnets = p.config.subnets.len(),
        "starting"
    );
    for s in &p.config.subnets {
        tracing::info!(subnet = %s.prefix, interfaces = ?s.interfaces, "serving");
    }
    if p.config.subnets.is_empty() {
        tracing::warn!(
            "no subnet configured (and no up, non-loopback interface for the embedded \
             default): every request will be dropped as no_link"
        );
    }
    if p.config.io.backend == Backend::Xdp {
        return xdp::serve_xdp(p, opts.null_reflector);
    }
    serve_uring(&p, opts.null_reflector)
}

/// Runs the shards on io_uring sockets (the default backend, and the AF_XDP fallback).
fn serve_uring(p: &Prepared, null_reflector: bool) -> Result<Vec<ShardReport>, ServeError> {
    if null_reflector {
        tracing::warn!("null reflector mode: echoing datagrams, not serving DHCPv6");
        return run_shards(p, uring_io, |_, _, _| Ok(Reflector::default()));
    }
    run_shards(p, uring_io, engine_service)
}

/// Builds shard `index`'s io_uring socket on `[::]:<port>`.
pub fn uring_io(ctx: &ServeContext, index: usize) -> Result<UringIo, String> {
    let io = &ctx.config.io;
    let mut uring = UringOptions::new(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, io.port, 0, 0));
    uring.socket.recv_buffer = io.socket_recv_buffer;
    uring.rx_batch = io.rx_batch;
    uring.rx_buffers = io.rx_buffers;
    uring.rx_buffer_size = io.rx_buffer_size;
    uring.tx_slots = io.tx_slots;
    uring.gro = io.udp_gro;
    uring.gso = io.udp_gso;
    // Only shard 0 receives multicast (see io::uring on SO_REUSEPORT and multicast); the
    // shard loop hands each request to its owner.
    if index == 0 {
        uring.join_multicast = ctx.multicast.iter().map(|(i, _)| *i).collect();
    }
    UringIo::new(&uring).map_err(|e| format!("io_uring socket on [::]:{}: {e}", io.port))
}

/// Builds shard `index`'s DHCPv6 engine over its freshly built table.
fn engine_service(ctx: &ServeContext, index: usize, table: &Table) -> Result<Engine, ServeError> {
    let mut engine = Engine::new(
        ctx.config.clone(),
        ctx.server_duid,
        ShardId {
            index,
            count: ctx.shards,
        },
    );
    // Rebuild the allocators' view (taken addresses, prefix bitmaps) from the table.
    let started = std::time::Instant::now();
    engine.load(table);
    if let Some(foreign) = ctx.foreign.get(index) {
        engine.mark_foreign(foreign);
    }
    tracing::info!(
        shard = index,
        leases = table.len(),
        took_ms = started.elapsed().as_millis() as u64,
        "allocator state rebuilt from the lease table"
    );
    Ok(engine)
}

/// What a shard thread needs to build its service.
pub struct ServeContext {
    pub config: Arc<Config>,
    pub server_duid: Duid,
    pub shards: usize,
    /// Interfaces (index, name) where direct clients are (multicast groups joined).
    pub multicast: Vec<(u32, String)>,
    /// Per shard: leases of other shards' clients on resources of its partition.
    pub foreign: Vec<Vec<Resource>>,
}

/// Stops the server if its shard thread unwinds.
struct StopOnPanic {
    index: usize,
    stop: Arc<AtomicBool>,
}

impl Drop for StopOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!(shard = self.index, "shard panicked; stopping the server");
            self.stop.store(true, Ordering::SeqCst);
            let _ = sys::raise_in_process(libc::SIGTERM);
        }
    }
}

/// Spawns the shards, waits for a termination signal, stops them and collects reports.
///
/// Each shard thread builds its own backend (`make_io`), table ([`build_table`]) and service
/// (`make_service`) after pinning itself, so every backend (io_uring, AF_XDP) and service
/// (engine, null reflector) runs through this same path.
pub fn run_shards<P, S, FI, FS>(
    p: &Prepared,
    make_io: FI,
    make_service: FS,
) -> Result<Vec<ShardReport>, ServeError>
where
    P: PacketIo,
    S: Service,
    FI: Fn(&ServeContext, usize) -> Result<P, String> + Send + Sync + 'static,
    FS: Fn(&ServeContext, usize, &Table) -> Result<S, ServeError> + Send + Sync + 'static,
{
    let io = &p.config.io;
    let (links, wakers) = shard::mesh(p.shards, io.handoff_queue)
        .map_err(io_err("creating the shard wake-up eventfds"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let cores = if io.pin_cores {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        Vec::new()
    };
    let (tables, foreign) = open_tables(p)?;
    let mut tables = tables.into_iter();
    let ctx = Arc::new(ServeContext {
        config: p.config.clone(),
        server_duid: p.server_duid,
        shards: p.shards,
        multicast: p.multicast.clone(),
        foreign,
    });
    let make_service = Arc::new(make_service);
    let make_io = Arc::new(make_io);
    let shard_opts = ShardOptions {
        log_interval: match io.counters_interval {
            0 => Duration::from_secs(u64::from(u32::MAX)),
            s => Duration::from_secs(s),
        },
        ..ShardOptions::default()
    };
    let (ready_tx, ready_rx) = mpsc::channel::<(usize, Result<(), String>)>();
    let mut handles: Vec<JoinHandle<Result<ShardReport, String>>> = Vec::new();
    for links in links {
        let index = links.index();
        let core = match p.shard_cores.get(index) {
            Some(&id) if io.pin_cores => Some(core_affinity::CoreId { id }),
            _ => (!cores.is_empty()).then(|| cores[index % cores.len()]),
        };
        let ctx = ctx.clone();
        let make_service = make_service.clone();
        let make_io = make_io.clone();
        let stop = stop.clone();
        let ready = ready_tx.clone();
        let table = tables.next();
        let opts = shard_opts.clone();
        let handle = std::thread::Builder::new()
            .name(format!("tandem-shard-{index}"))
            .spawn(move || {
                if let Some(core) = core {
                    if !core_affinity::set_for_current(core) {
                        tracing::warn!(shard = index, core = core.id, "could not pin to core");
                    }
                }
                let built = (|| {
                    let socket = make_io(&ctx, index)?;
                    let table = table.ok_or("no lease table for this shard")?;
                    let service = make_service(&ctx, index, &table).map_err(|e| e.to_string())?;
                    Shard::new(socket, table, service, links, stop.clone(), opts)
                        .map_err(|e| format!("starting the shard loop: {e}"))
                })();
                let shard = match built {
                    Ok(s) => {
                        let _ = ready.send((index, Ok(())));
                        s
                    }
                    Err(e) => {
                        let _ = ready.send((index, Err(e.clone())));
                        return Err(e);
                    }
                };
                // A shard that dies (error or panic) must not leave the server half-running
                // with its clients unanswered: stop everything and let the operator see why.
                let _guard = StopOnPanic {
                    index,
                    stop: stop.clone(),
                };
                let result = shard.run().map_err(|e| format!("I/O error: {e}"));
                if let Err(e) = &result {
                    tracing::error!(shard = index, error = %e, "shard failed; stopping the server");
                    stop.store(true, Ordering::SeqCst);
                    let _ = sys::raise_in_process(libc::SIGTERM);
                }
                result
            })
            .map_err(io_err(format!("spawning shard {index}")))?;
        handles.push(handle);
    }
    drop(ready_tx);

    let mut startup_error = None;
    for _ in 0..handles.len() {
        match ready_rx.recv() {
            Ok((_, Ok(()))) => {}
            Ok((index, Err(message))) => {
                startup_error.get_or_insert(ServeError::Shard { index, message });
            }
            Err(_) => break,
        }
    }
    if startup_error.is_none() {
        tracing::info!(shards = handles.len(), "ready");
        match sys::wait_termination_signal() {
            Ok(sig) => tracing::info!(signal = sig, "stopping"),
            Err(e) => tracing::error!(error = %e, "waiting for signals failed; stopping"),
        }
    }
    stop.store(true, Ordering::SeqCst);
    for w in &wakers {
        w.wake();
    }
    let mut reports = Vec::new();
    let mut failure = startup_error;
    for (index, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(Ok(r)) => reports.push(r),
            Ok(Err(message)) => {
                failure.get_or_insert(ServeError::Shard { index, message });
            }
            Err(_) => {
                failure.get_or_insert(ServeError::Shard {
                    index,
                    message: "panicked".into(),
                });
            }
        }
    }
    let total = reports.iter().fold((0u64, 0u64), |acc, r| {
        (acc.0 + r.counters.received, acc.1 + r.counters.answered)
    });
    tracing::info!(received = total.0, answered = total.1, "stopped");
    match failure {
        Some(e) => Err(e),
        None => Ok(reports),
    }
}
