//! `tandem leases ...`: offline tools over a data directory (count, get, export, import).
//!
//! They take the data directory's lock, so they refuse to run while a server uses it (the
//! server's view is the truth while it runs; reading files under it could show a WAL tail
//! being written). Nothing here changes a lease except `import`, which writes a new
//! generation of snapshots crash-safely (see `lease::store`).

use std::fs::File;
use std::io::{self, BufReader, BufWriter, IsTerminal, Write};
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::lease::store::{kea, Store};
use crate::lease::{Duid, IaType, Lease, LeaseTable, Resource};

#[derive(Debug, Args)]
pub struct LeasesArgs {
    /// The server's data directory.
    #[arg(long, global = true, value_name = "DIR", default_value = "tandem-data")]
    pub data_dir: PathBuf,
    #[command(subcommand)]
    pub command: LeasesCommand,
}

#[derive(Debug, Subcommand)]
pub enum LeasesCommand {
    /// Print how many leases there are, by type and state.
    Count,
    /// Print the leases on an address or prefix, or of a client, as JSON.
    #[command(after_help = "Examples:
  tandem leases get --address 2001:db8:1::1000
  tandem leases get --prefix 2001:db8:8000::/56
  tandem leases get --duid 00:01:00:01:32:95:6d:6a:00:0c:01:02:03:04")]
    Get(GetArgs),
    /// Write every lease as JSON (one array) or CSV.
    Export {
        #[arg(long, value_enum, default_value = "json")]
        format: ExportFormat,
        /// Output file (default: standard output).
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Import leases from another server.
    #[command(after_help = "Kea's memfile (lease-database type memfile, usually
/var/lib/kea/kea-leases6.csv) is read as a log: the last row per address wins and rows with
valid_lifetime 0 are deletions. Leases whose address or prefix is already in the store are
skipped and counted. Stop the server first: the data directory is locked while it runs.

Example:
  tandem leases import --kea-csv /var/lib/kea/kea-leases6.csv --config /etc/tandem.toml")]
    Import(ImportArgs),
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct GetArgs {
    #[arg(long, value_name = "ADDR")]
    pub address: Option<Ipv6Addr>,
    #[arg(long, value_name = "PREFIX/LEN")]
    pub prefix: Option<String>,
    /// Client DUID in hex (colons optional).
    #[arg(long, value_name = "HEX")]
    pub duid: Option<String>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Kea memfile lease6 CSV.
    #[arg(long, value_name = "FILE")]
    pub kea_csv: PathBuf,
    /// tandem configuration, to map each lease to its subnet by address (default:
    /// ./tandem.toml if present; without one, Kea subnet-id N maps to the Nth [[subnet]]).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Shard count to lay the store out for (default: the current layout, or 1); the server
    /// re-homes at start anyway if it runs with another count.
    #[arg(long, value_name = "N")]
    pub shards: Option<usize>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ExportFormat {
    Json,
    Csv,
}

/// Runs a `tandem leases` subcommand.
pub fn run(args: LeasesArgs) -> ExitCode {
    let result = match args.command {
        LeasesCommand::Count => count(&args.data_dir),
        LeasesCommand::Get(g) => get(&args.data_dir, &g),
        LeasesCommand::Export { format, output } => {
            export(&args.data_dir, format, output.as_deref())
        }
        LeasesCommand::Import(i) => import(&args.data_dir, &i),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tandem leases: {e}");
            ExitCode::FAILURE
        }
    }
}

type CliResult = Result<(), String>;

fn open(dir: &Path) -> Result<Store, String> {
    let store = Store::open_read_only(dir).map_err(|e| e.to_string())?;
    for (file, at, why) in &store.report.cut_tails {
        eprintln!(
            "warning: {}: torn or corrupt WAL tail ignored from offset {at} ({why})",
            file.display()
        );
    }
    Ok(store)
}

fn ia_name(t: IaType) -> &'static str {
    match t {
        IaType::Na => "na",
        IaType::Ta => "ta",
        IaType::Pd => "pd",
    }
}

/// The JSON object for one lease (field names are the documented export format).
pub fn lease_json(l: &Lease) -> serde_json::Value {
    let mut o = serde_json::Map::new();
    o.insert("duid".into(), l.duid.to_string().into());
    o.insert("iaid".into(), l.iaid.into());
    o.insert("type".into(), ia_name(l.ia_type).into());
    if l.resource.is_prefix() {
        o.insert("prefix".into(), l.resource.to_string().into());
    } else {
        o.insert("address".into(), l.resource.addr.to_string().into());
    }
    o.insert("preferred_lifetime".into(), l.preferred_lifetime.into());
    o.insert("valid_lifetime".into(), l.valid_lifetime.into());
    o.insert("cltt".into(), l.cltt.into());
    o.insert("expires_at".into(), l.expires_at.into());
    o.insert("state".into(), l.state.as_str().into());
    o.insert("subnet".into(), l.subnet.into());
    serde_json::Value::Object(o)
}

fn count(dir: &Path) -> CliResult {
    let store = open(dir)?;
    let mut by: std::collections::BTreeMap<(&'static str, &'static str), usize> =
        Default::default();
    let mut total = 0usize;
    for t in &store.tables {
        t.for_each(&mut |l| {
            *by.entry((ia_name(l.ia_type), l.state.as_str()))
                .or_default() += 1;
            total += 1;
        });
    }
    println!("{total}");
    for ((ty, state), n) in by {
        eprintln!("  {ty:>2} {state:<12} {n}");
    }
    eprintln!(
        "  ({} shard(s), generation {})",
        store.tables.len(),
        store.report.generation
    );
    Ok(())
}

fn parse_prefix(s: &str) -> Result<Resource, String> {
    let (a, l) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}`: expected PREFIX/LEN"))?;
    let addr: Ipv6Addr = a
        .parse()
        .map_err(|_| format!("`{a}` is not an IPv6 address"))?;
    let len: u8 = l
        .parse()
        .ok()
        .filter(|&n| n < 128)
        .ok_or_else(|| format!("`{l}` is not a prefix length below 128"))?;
    Ok(Resource::prefix(addr, len))
}

fn get(dir: &Path, g: &GetArgs) -> CliResult {
    let store = open(dir)?;
    let mut found: Vec<Lease> = Vec::new();
    if let Some(a) = g.address {
        found.extend(
            store
                .tables
                .iter()
                .filter_map(|t| t.by_resource(&Resource::address(a))),
        );
    } else if let Some(p) = &g.prefix {
        let r = parse_prefix(p)?;
        found.extend(store.tables.iter().filter_map(|t| t.by_resource(&r)));
    } else if let Some(h) = &g.duid {
        let bytes = kea::parse_hex(h).ok_or_else(|| format!("`{h}` is not hex"))?;
        let duid = Duid::new(&bytes).ok_or_else(|| "a DUID is 1 to 130 octets".to_string())?;
        // Any shard: after an import or re-home the owner is `shard_of`, but look everywhere
        // so a tool never misses a lease.
        for t in &store.tables {
            t.client_leases(&duid, &mut found);
        }
    }
    found.sort_by_key(|l| l.resource);
    let out = serde_json::Value::Array(found.iter().map(lease_json).collect());
    println!(
        "{}",
        serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
    );
    if found.is_empty() {
        return Err("no matching lease".into());
    }
    Ok(())
}

fn progress(len: u64, what: &str) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

fn export(dir: &Path, format: ExportFormat, output: Option<&Path>) -> CliResult {
    let store = open(dir)?;
    let total: usize = store.tables.iter().map(|t| t.len()).sum();
    let pb = progress(total as u64, "exporting");
    let sink: Box<dyn Write> = match output {
        Some(p) => Box::new(File::create(p).map_err(|e| format!("{}: {e}", p.display()))?),
        None => Box::new(io::stdout().lock()),
    };
    let mut w = BufWriter::with_capacity(1 << 20, sink);
    let mut err: Option<io::Error> = None;
    let mut n = 0u64;
    let mut put = |w: &mut BufWriter<Box<dyn Write>>, s: &[u8]| {
        if err.is_none() {
            if let Err(e) = w.write_all(s) {
                err = Some(e);
            }
        }
    };
    match format {
        ExportFormat::Json => {
            put(&mut w, b"[");
            for t in &store.tables {
                t.for_each(&mut |l| {
                    let sep: &[u8] = if n == 0 { b"\n" } else { b",\n" };
                    put(&mut w, sep);
                    put(&mut w, lease_json(l).to_string().as_bytes());
                    n += 1;
                    if n % 65536 == 0 {
                        pb.set_position(n);
                    }
                });
            }
            put(&mut w, b"\n]\n");
        }
        ExportFormat::Csv => {
            put(
                &mut w,
                b"duid,iaid,type,address,prefix,preferred_lifetime,valid_lifetime,cltt,expires_at,state,subnet\n",
            );
            for t in &store.tables {
                t.for_each(&mut |l| {
                    let (addr, prefix) = if l.resource.is_prefix() {
                        (String::new(), l.resource.to_string())
                    } else {
                        (l.resource.addr.to_string(), String::new())
                    };
                    let line = format!(
                        "{},{},{},{},{},{},{},{},{},{},{}\n",
                        l.duid,
                        l.iaid,
                        ia_name(l.ia_type),
                        addr,
                        prefix,
                        l.preferred_lifetime,
                        l.valid_lifetime,
                        l.cltt,
                        l.expires_at,
                        l.state.as_str(),
                        l.subnet
                    );
                    put(&mut w, line.as_bytes());
                    n += 1;
                    if n % 65536 == 0 {
                        pb.set_position(n);
                    }
                });
            }
        }
    }
    pb.finish_and_clear();
    if let Some(e) = err {
        return Err(format!("writing the export: {e}"));
    }
    w.flush().map_err(|e| format!("writing the export: {e}"))?;
    eprintln!("exported {n} lease(s)");
    Ok(())
}

fn import(dir: &Path, a: &ImportArgs) -> CliResult {
    let config_path = a.config.clone().or_else(|| {
        let p = PathBuf::from("tandem.toml");
        p.exists().then_some(p)
    });
    let config = match &config_path {
        Some(p) => Some(Config::from_file(p).map_err(|e| e.to_string())?),
        None => None,
    };
    let subnet_of = |r: &Resource, kea_id: u32| -> u32 {
        if let Some(c) = &config {
            let hit = c.subnets.iter().find(|s| {
                if r.is_prefix() {
                    s.pd_pools
                        .iter()
                        .any(|p| p.index_of(r.addr, r.prefix_len).is_some())
                } else {
                    s.on_link(r.addr)
                }
            });
            if let Some(s) = hit {
                return s.index;
            }
        }
        kea_id.saturating_sub(1)
    };
    let file = File::open(&a.kea_csv).map_err(|e| format!("{}: {e}", a.kea_csv.display()))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let pb = progress(len, "reading");
    let (leases, summary) = kea::read(
        BufReader::with_capacity(1 << 20, file),
        &subnet_of,
        &mut |bytes| pb.set_position(bytes),
    )
    .map_err(|e| format!("{}: {e}", a.kea_csv.display()))?;
    pb.finish_and_clear();
    let pb = progress(leases.len() as u64, "importing");
    let mut added = 0usize;
    let mut skipped = 0usize;
    let generation = Store::add_offline(dir, a.shards, |exists, push| {
        for (i, l) in leases.iter().enumerate() {
            if exists(&l.resource).is_some() {
                skipped += 1;
            } else {
                push(*l);
                added += 1;
            }
            if i % 65536 == 0 {
                pb.set_position(i as u64);
            }
        }
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    pb.finish_and_clear();
    println!(
        "imported {added} lease(s) from {} ({} rows, {} deleted in the file, {skipped} already \
         present and skipped) into {} (generation {generation})",
        a.kea_csv.display(),
        summary.rows,
        summary.deleted,
        dir.display()
    );
    if config.is_none() {
        eprintln!(
            "note: no --config given: Kea subnet-id N was mapped to the Nth [[subnet]] of the \
             configuration"
        );
    }
    Ok(())
}
