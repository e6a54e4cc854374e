//! `tandem-bench calibrate`: measure this machine for the capacity planner.
//!
//! Three measurements, each a real run on this machine:
//! 1. the transport ceiling: the rig against the reflector over loopback (one thread each);
//! 2. durable-write latency: write + fdatasync of 4 KiB blocks in the data directory, the
//!    cost the store's group commit pays once per batch;
//! 3. optionally a server (`--target`): the rig at `--rate max`, 4-message exchanges for
//!    new bindings, then Renew/Reply on them.
//!
//! The result is `tandem::plan::Calibration`, written as TOML.

use std::io::Write as _;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tandem::plan::calibration::{self, Calibration};

use super::driver::{Params, Path, Scenario};
use super::uring::SocketSpec;
use super::{reflect, run, Endpoint, LoopOptions};

#[derive(clap::Args, Debug)]
pub struct CalibrateArgs {
    /// Where to write the calibration file.
    #[arg(long, default_value = "calibration.toml")]
    pub out: PathBuf,
    /// Directory whose file system the lease store will use (fsync latency is measured here).
    #[arg(long, default_value = ".")]
    pub data_dir: PathBuf,
    /// Seconds for each rate measurement.
    #[arg(long, default_value_t = 3.0)]
    pub secs: f64,
    /// Also measure the DHCPv6 server answering relayed traffic at this address.
    #[arg(long)]
    pub target: Option<SocketAddrV6>,
    /// Name recorded for the measured server.
    #[arg(long, default_value = "tandem")]
    pub server_name: String,
    /// Shards (serving cores) the measured server runs with.
    #[arg(long, default_value_t = 1)]
    pub server_shards: u32,
    /// Subscribers emulated against the server.
    #[arg(long, default_value_t = 20_000)]
    pub subscribers: u32,
    /// Relay link-address base for the server measurement (a subnet the server serves).
    #[arg(long, default_value = "2001:db8:2::")]
    pub link_base: Ipv6Addr,
    /// Local address to send from when measuring the server (default [::]:547).
    #[arg(long)]
    pub bind: Option<SocketAddrV6>,
    /// DUID seed byte for the server measurement (use a fresh one against a server that
    /// still holds an earlier run's leases).
    #[arg(long, default_value_t = 200)]
    pub seed: u8,
}

fn params(scenario: Scenario, subscribers: u32, secs: f64, path: Path, seed: u8) -> Params {
    Params {
        scenario,
        subscribers,
        rate: None,
        renew_at_t1: false,
        window: 256,
        duration_us: (secs * 1e6) as u64,
        path,
        pd: false,
        seed,
        retransmit: false,
        timeout_us: 1_000_000,
        spread_us: 1_000_000,
        drain_us: 1_000_000,
    }
}

/// The transport ceiling: the rig against an in-process reflector on [::1].
pub fn transport(secs: f64) -> Result<calibration::Transport, String> {
    let spec = SocketSpec {
        bind: SocketAddrV6::new(Ipv6Addr::LOCALHOST, 0, 0, 0),
        device: None,
        join: vec![],
        multicast_if: None,
        buffer_bytes: 8 << 20,
        gso: false,
    };
    // Bind the reflector first to learn its port, then hand the socket's port to the rig.
    let probe = std::net::UdpSocket::bind("[::1]:0").map_err(|e| e.to_string())?;
    let port = probe.local_addr().map_err(|e| e.to_string())?.port();
    drop(probe);
    let spec = SocketSpec {
        bind: SocketAddrV6::new(Ipv6Addr::LOCALHOST, port, 0, 0),
        ..spec
    };
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let reflector = std::thread::spawn(move || {
        reflect::serve(
            &spec,
            Some(Duration::from_secs_f64(secs + 30.0)),
            256,
            &|| stop2.load(Ordering::Relaxed),
            |_| {},
        )
    });
    // Give the reflector its socket before the first Solicit.
    std::thread::sleep(Duration::from_millis(100));
    let ep = Endpoint::relayed(
        SocketAddrV6::new(Ipv6Addr::LOCALHOST, port, 0, 0),
        Some(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 0, 0, 0)),
        8 << 20,
        false,
    );
    let path = Path::Relayed {
        link_base: "2001:db8:2::".parse().expect("literal"),
        relays: 1,
    };
    let r = run(
        params(Scenario::Sarr, 100_000, secs, path, 1),
        &ep,
        &quiet(),
    );
    stop.store(true, Ordering::Relaxed);
    let st = reflector
        .join()
        .map_err(|_| "reflector thread panicked".to_string())?;
    let r = r.map_err(|e| format!("rig: {e}"))?;
    st.map_err(|e| format!("reflector: {e}"))?;
    if r.completed == 0 {
        return Err("no exchange completed against the loopback reflector".into());
    }
    Ok(calibration::Transport {
        exchanges_per_sec: r.exchanges_per_sec,
        packets_per_sec: r.packets_sent_per_sec,
        rig_cpu_us_per_exchange: r.rig.cpu_us_per_exchange,
    })
}

fn quiet() -> LoopOptions {
    LoopOptions {
        progress: false,
        ..Default::default()
    }
}

/// write(4 KiB) + fdatasync latency percentiles in `dir`.
pub fn fsync_latency(dir: &std::path::Path, rounds: usize) -> Result<calibration::Storage, String> {
    let file = dir.join(format!(".tandem-calibrate-{}", std::process::id()));
    let err = |e: std::io::Error| format!("{}: {e}", file.display());
    let mut f = std::fs::File::create(&file).map_err(err)?;
    let block = [0x5au8; 4096];
    let mut us = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        f.write_all(&block).map_err(err)?;
        f.sync_data().map_err(err)?;
        us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    drop(f);
    let _ = std::fs::remove_file(&file);
    us.sort_by(f64::total_cmp);
    let q = |p: f64| us[((us.len() - 1) as f64 * p) as usize];
    Ok(calibration::Storage {
        path: dir.display().to_string(),
        fsync_p50_us: q(0.5),
        fsync_p99_us: q(0.99),
    })
}

/// The server at `target`: 4-message exchanges for new bindings, then renewals.
pub fn server(a: &CalibrateArgs, target: SocketAddrV6) -> Result<calibration::Server, String> {
    let ep = Endpoint::relayed(target, a.bind, 8 << 20, false);
    let path = Path::Relayed {
        link_base: a.link_base,
        relays: 16,
    };
    let sarr = run(
        params(Scenario::Sarr, a.subscribers, a.secs, path, a.seed),
        &ep,
        &quiet(),
    )
    .map_err(|e| format!("{target}: {e}"))?;
    if sarr.completed == 0 {
        return Err(format!(
            "{target}: no exchange completed; is the server up?"
        ));
    }
    // Renew needs bound subscribers: warm-up binds them (a fresh seed, not counted), then
    // the measured phase renews them as fast as the server answers.
    let mut rp = params(
        Scenario::Renew,
        a.subscribers,
        a.secs,
        path,
        a.seed.wrapping_add(1),
    );
    rp.rate = None;
    let renew = run(rp, &ep, &quiet()).map_err(|e| format!("{target}: {e}"))?;
    Ok(calibration::Server {
        name: a.server_name.clone(),
        shards: a.server_shards.max(1),
        sarr_exchanges_per_sec: sarr.exchanges_per_sec,
        renew_exchanges_per_sec: renew.exchanges_per_sec,
        sarr_latency_p99_us: sarr.latency_us.p99,
        drops: sarr.drops + renew.drops,
    })
}

pub fn calibrate(a: &CalibrateArgs) -> Result<(), String> {
    if a.secs.is_nan() || a.secs <= 0.0 {
        return Err("--secs must be positive".into());
    }
    eprintln!(
        "calibrate: transport ceiling (rig ↔ reflector over loopback, {:.0} s)",
        a.secs
    );
    let transport = transport(a.secs)?;
    eprintln!("calibrate: fsync latency in {}", a.data_dir.display());
    let storage = fsync_latency(&a.data_dir, 200)?;
    let server = match a.target {
        Some(t) => {
            eprintln!("calibrate: server at {t} ({} subscribers)", a.subscribers);
            Some(server(a, t)?)
        }
        None => None,
    };
    let cal = Calibration {
        machine: calibration::Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            measured_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        },
        transport,
        storage,
        server,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let text = format!(
        "# Written by `tandem-bench {}`.\n# Read by `tandem plan --calibration`.\n\n{}",
        args.join(" "),
        cal.to_toml()
    );
    std::fs::write(&a.out, &text).map_err(|e| format!("{}: {e}", a.out.display()))?;
    print!("{text}");
    eprintln!("calibrate: wrote {}", a.out.display());
    Ok(())
}
