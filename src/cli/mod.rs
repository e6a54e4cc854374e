//! The `tandem` command line (clap derive). Each subcommand's work lives in its module;
//! `main.rs` only calls [`main`].

pub mod leases;
pub mod plan;
pub mod tune;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::io::Backend;
use crate::config::Config;
use crate::server::{self, ServeOptions};

#[derive(Debug, Parser)]
#[command(
    name = "tandem",
    version,
    about = "DHCPv6 server for ISP access sites (RFC 8415), built for failover pairs (RFC 8156)",
    after_help = "Examples:
  tandem serve                              serve ./tandem.toml, or the embedded default
  tandem serve --config /etc/tandem.toml --data-dir /var/lib/tandem
  tandem check-config /etc/tandem.toml      validate a file and print a summary"
)]
pub struct Cli {
    /// Log level or filter (e.g. `info`, `debug`, `tandem::shard=debug`); RUST_LOG overrides.
    #[arg(long, global = true, default_value = "info", value_name = "FILTER")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve DHCPv6 until SIGTERM or SIGINT.
    #[command(
        after_help = "Without --config, ./tandem.toml is used if it exists; otherwise the
embedded default serves, on every up, non-loopback interface, the /64 of each global or ULA
address there (or a stable ULA /64), plus IA_PD /56s from a stable ULA /48.

Examples:
  tandem serve
  tandem serve --config site.toml --data-dir /var/lib/tandem --shards 4
  tandem serve --interface eth1 --interface eth2"
    )]
    Serve(ServeArgs),
    /// Validate a configuration file: print a summary, or the error with file:line:column.
    #[command(after_help = "Exit status 0 when valid, 1 when not.

Example:
  tandem check-config /etc/tandem.toml")]
    CheckConfig {
        /// The configuration file.
        file: PathBuf,
    },
    /// Inspect, export or import the leases of a data directory (server stopped).
    Leases(leases::LeasesArgs),
    /// Size a site: shards, memory, disk and failover bandwidth for a workload on a machine.
    Plan(plan::PlanArgs),
    /// Print (and with --apply set) the system settings a hardware profile needs.
    Tune(tune::TuneArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (default: ./tandem.toml if present, else the embedded default).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where state lives (server DUID, leases); created if missing
    /// (default: [store] data_dir, else ./tandem-data).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Shard threads (default: [io] shards, else one per core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub shards: Option<u16>,
    /// Packet I/O backend (default: [io] backend, else uring).
    #[arg(long, value_name = "uring|xdp")]
    pub backend: Option<Backend>,
    /// Interface with direct clients (repeatable; default: [io] interfaces, else all).
    #[arg(long = "interface", short = 'i', value_name = "IF")]
    pub interfaces: Vec<String>,
    /// UDP port (default 547; other ports are for labs and tests).
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// Answer each DHCPv6 message with itself, only its type turned into the server's (no
    /// engine, no leases): the I/O baseline for benchmarks.
    #[arg(long)]
    pub null_reflector: bool,
}

/// Parses the command line, sets up logging and runs the subcommand.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_level);
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::CheckConfig { file } => check_config(&file),
        Command::Leases(args) => leases::run(args),
        Command::Plan(args) => plan::run(&args),
        Command::Tune(args) => tune::run(&args),
    }
}

fn init_logging(level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn serve(args: ServeArgs) -> ExitCode {
    let opts = ServeOptions {
        config: args.config,
        data_dir: args.data_dir,
        shards: args.shards.map(usize::from),
        backend: args.backend,
        interfaces: args.interfaces,
        port: args.port,
        null_reflector: args.null_reflector,
    };
    match server::serve(&opts) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("tandem: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match Config::from_file(file) {
        Ok(config) => {
            println!("{}: OK", file.display());
            print!("{}", config.summary());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_flags_parse() {
        let cli = Cli::try_parse_from([
            "tandem",
            "serve",
            "--config",
            "a.toml",
            "--data-dir",
            "/tmp/x",
            "--shards",
            "3",
            "--backend",
            "uring",
            "-i",
            "eth1",
            "-i",
            "eth2",
            "--port",
            "10547",
        ])
        .unwrap();
        let Command::Serve(a) = cli.command else {
            panic!("serve expected")
        };
        assert_eq!(a.config, Some(PathBuf::from("a.toml")));
        assert_eq!(a.shards, Some(3));
        assert_eq!(a.backend, Some(Backend::Uring));
        assert_eq!(a.interfaces, vec!["eth1", "eth2"]);
        assert!(Cli::try_parse_from(["tandem", "serve", "--shards", "0"]).is_err());
        assert!(Cli::try_parse_from(["tandem", "serve", "--backend", "dpdk"]).is_err());
    }
}
