//! `tandem tune --hardware H [--interface IF] [--apply]`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::plan::{tune, Hardware};

#[derive(Debug, Args)]
#[command(
    after_help = "Without --apply only prints the settings, their current values and the
commands that set them. With --apply (root) writes every setting that differs and reports
each failure; exit status 1 if any failed.

Examples:
  tandem tune --hardware tuning/hardware/server-16core-25g.toml --interface ens1f0
  sudo tandem tune --hardware tuning/hardware/server-16core-25g.toml --interface ens1f0 --apply"
)]
pub struct TuneArgs {
    /// Hardware profile (tuning/hardware/*.toml).
    #[arg(long, value_name = "FILE")]
    pub hardware: PathBuf,
    /// Subscriber-facing interface (queue count and IRQ affinity are set on it).
    #[arg(long, value_name = "IF")]
    pub interface: Option<String>,
    /// Apply the settings that differ.
    #[arg(long)]
    pub apply: bool,
}

pub fn run(a: &TuneArgs) -> ExitCode {
    let hw = match Hardware::from_file(&a.hardware) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("tandem tune: {e}");
            return ExitCode::FAILURE;
        }
    };
    let settings = tune::settings(&hw, a.interface.as_deref());
    print!("{}", tune::render(&settings));
    if !a.apply {
        return ExitCode::SUCCESS;
    }
    let mut failed = 0;
    for s in settings.iter().filter(|s| s.needs_change()) {
        match s.apply() {
            Ok(()) => println!("applied  {}", s.command()),
            Err(e) => {
                failed += 1;
                eprintln!("failed   {}: {e}", s.command());
            }
        }
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
