//! `tandem-bench`: load-test any DHCPv6 server with emulated CPEs and relays (`run`), measure
//! the transport ceiling with a null server (`reflect`), and calibrate the capacity planner
//! (`calibrate`).
use std::net::SocketAddrV6;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tandem_bench::rig::{self, driver, reflect, uring};

#[derive(Parser)]
#[command(name = "tandem-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Emulate subscribers against a DHCPv6 server and report rate, drops and latency.
    Run(RunArgs),
    /// Null server: answer every DHCPv6 datagram with one of the same size.
    Reflect(ReflectArgs),
    /// Measure this machine (transport ceiling, fsync latency, optionally a server) and write
    /// the calibration file `tandem plan --calibration` reads.
    Calibrate(rig::calibrate::CalibrateArgs),
}

/// Rate: exchanges started per second, or `max` (closed loop).
#[derive(Clone, Copy, Debug)]
struct Rate(Option<f64>);

fn parse_rate(s: &str) -> Result<Rate, String> {
    if s.eq_ignore_ascii_case("max") {
        return Ok(Rate(None));
    }
    match s.parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(Rate(Some(r))),
        _ => Err(format!("`{s}` is neither a positive number nor `max`")),
    }
}

#[derive(clap::Args)]
struct RunArgs {
    /// Server address for relayed traffic, e.g. [2001:db8:1::1]:547 (emulated relays send
    /// Relay-forw to it).
    #[arg(
        long,
        conflicts_with = "interface",
        required_unless_present = "interface"
    )]
    target: Option<SocketAddrV6>,
    /// Link for direct traffic: client messages to ff02::1:2 on this interface.
    #[arg(long)]
    interface: Option<String>,
    #[arg(long, value_enum, default_value = "sarr")]
    scenario: driver::Scenario,
    /// Emulated subscriber CPEs (each its own DUID, an IA_NA, optionally an IA_PD).
    #[arg(long, default_value_t = 10_000)]
    subscribers: u32,
    /// New exchanges per second (open loop), or `max` to go as fast as the server answers.
    /// Default: `max`, except renew, which renews every subscriber once per T1 (the T1 the
    /// server granted in the warm-up): subscribers / T1 per second.
    #[arg(long, value_parser = parse_rate)]
    rate: Option<Rate>,
    /// Length of the measured phase in seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Emulated relays (relayed mode); subscriber i sits behind relay i mod K.
    #[arg(long, default_value_t = 1)]
    relays: u32,
    /// Relay k's link-address is this plus k+1 (pick a prefix the server has a subnet for).
    #[arg(long, default_value = "2001:db8:2::")]
    link_base: std::net::Ipv6Addr,
    /// Also ask for an IA_PD.
    #[arg(long)]
    pd: bool,
    /// RFC 8415 §15 retransmission (default for avalanche); otherwise a transaction is
    /// dropped after --timeout-ms.
    #[arg(long)]
    retransmit: bool,
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
    /// Most transactions outstanding at once with `--rate max` and during warm-up.
    #[arg(long, default_value_t = 512)]
    window: u32,
    /// Avalanche: every subscriber sends its first Solicit within this many seconds.
    #[arg(long, default_value_t = 5.0)]
    spread: f64,
    /// Wait this long for outstanding transactions after the measured phase.
    #[arg(long, default_value_t = 2000)]
    drain_ms: u64,
    /// Seed byte in every DUID: runs with different seeds are different subscribers.
    #[arg(long, default_value_t = 1)]
    seed: u8,
    /// Local address to send from (relayed mode; default [::]:547).
    #[arg(long)]
    bind: Option<SocketAddrV6>,
    /// Socket buffer size in bytes.
    #[arg(long, default_value_t = 8 << 20)]
    socket_buffer: usize,
    /// Write the results (exchanges_per_sec, completed, drops, latency_us, series...) here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write SVG plots of rate and latency over time into this folder (default: next to
    /// --json).
    #[arg(long)]
    plots: Option<PathBuf>,
    /// No live progress line.
    #[arg(long)]
    quiet: bool,
    /// UDP GSO/GRO: send runs of same-size datagrams in one segmented sendmsg and accept
    /// coalesced receives (lower cost per datagram; the server sees ordinary datagrams).
    #[arg(long)]
    gso: bool,
}

#[derive(clap::Args)]
struct ReflectArgs {
    /// Address and port to answer on.
    #[arg(long, default_value = "[::]:547")]
    listen: SocketAddrV6,
    /// Join ff02::1:2 on these links, to answer direct (multicast) client traffic too.
    #[arg(long)]
    interface: Vec<String>,
    /// Stop after this many seconds (default: until SIGINT/SIGTERM).
    #[arg(long)]
    duration: Option<f64>,
    #[arg(long, default_value_t = 256)]
    slots: usize,
    #[arg(long, default_value_t = 8 << 20)]
    socket_buffer: usize,
    /// Print per-second counters on stderr.
    #[arg(long)]
    verbose: bool,
    /// UDP GRO/GSO: take coalesced datagrams and answer them with one segmented send.
    #[arg(long)]
    gso: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    rig::install_signal_handlers();
    let r = match cli.cmd {
        Cmd::Run(a) => run(a),
        Cmd::Reflect(a) => run_reflect(a),
        Cmd::Calibrate(a) => rig::calibrate::calibrate(&a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tandem-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(a: RunArgs) -> Result<(), String> {
    if a.subscribers == 0 {
        return Err("--subscribers must be at least 1".into());
    }
    if a.duration.is_nan() || a.duration <= 0.0 || a.spread.is_nan() || a.spread <= 0.0 {
        return Err("--duration and --spread must be positive".into());
    }
    let (ep, path) = match (&a.target, &a.interface) {
        (Some(t), _) => (
            rig::Endpoint::relayed(*t, a.bind, a.socket_buffer, a.gso),
            driver::Path::Relayed {
                link_base: a.link_base,
                relays: a.relays.max(1),
            },
        ),
        (None, Some(ifname)) => (
            rig::Endpoint::direct(ifname, a.socket_buffer, a.gso).map_err(|e| e.to_string())?,
            driver::Path::Direct,
        ),
        (None, None) => return Err("give --target ADDR:547 or --interface IF".into()),
    };
    let avalanche = a.scenario == driver::Scenario::Avalanche;
    let params = driver::Params {
        scenario: a.scenario,
        subscribers: a.subscribers,
        rate: a.rate.and_then(|r| r.0),
        renew_at_t1: a.rate.is_none(),
        window: a.window.max(1),
        duration_us: (a.duration * 1e6) as u64,
        path,
        pd: a.pd,
        seed: a.seed,
        retransmit: a.retransmit || avalanche,
        timeout_us: a.timeout_ms.max(1) * 1000,
        spread_us: (a.spread * 1e6) as u64,
        drain_us: a.drain_ms * 1000,
    };
    let opts = rig::LoopOptions {
        progress: !a.quiet,
        ..Default::default()
    };
    let report = rig::run(params, &ep, &opts).map_err(|e| format!("{}: {e}", ep.label))?;
    print!("{}", report.table());
    if let Some(json) = &a.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(json, text).map_err(|e| format!("{}: {e}", json.display()))?;
    }
    let plot_dir = a.plots.clone().or_else(|| {
        a.json
            .as_ref()
            .map(|j| j.parent().map(PathBuf::from).unwrap_or_default())
    });
    if let Some(dir) = plot_dir {
        let stem = a
            .json
            .as_ref()
            .and_then(|j| j.file_stem())
            .map_or_else(|| "run".to_string(), |s| s.to_string_lossy().into_owned());
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        for f in report.plot(&dir, &stem)? {
            println!("plot           {}", f.display());
        }
    }
    Ok(())
}

fn run_reflect(a: ReflectArgs) -> Result<(), String> {
    let mut join = Vec::new();
    for ifname in &a.interface {
        let ix = uring::ifindex(ifname).map_err(|e| e.to_string())?;
        join.push((rig::ALL_DHCP_RELAY_AGENTS_AND_SERVERS, ix));
    }
    let spec = uring::SocketSpec {
        bind: a.listen,
        device: None,
        join,
        multicast_if: None,
        buffer_bytes: a.socket_buffer,
        gso: a.gso,
    };
    let verbose = a.verbose;
    let mut last = 0u64;
    let st = reflect::serve(
        &spec,
        a.duration.map(Duration::from_secs_f64),
        a.slots.max(1),
        &|| false,
        |s| {
            if verbose {
                eprintln!(
                    "reflect {:>6.1}s  answered {:>9}  ({:>8}/s)  ignored {}  overruns {}  send-errors {}",
                    s.secs,
                    s.answered,
                    s.answered - last,
                    s.ignored,
                    s.overruns,
                    s.send_errors
                );
            }
            last = s.answered;
        },
    )
    .map_err(|e| format!("{}: {e}", a.listen))?;
    println!("{}", serde_json::to_string(&st).map_err(|e| e.to_string())?);
    Ok(())
}
