//! `tandem plan --hardware H --workload W [--calibration FILE] [--json]`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::plan::{self, calibration::Calibration, Hardware, Workload};

#[derive(Debug, Args)]
#[command(
    after_help = "Exit status 0 when the workload fits, 3 when it is over capacity, 1 on error.

Examples:
  tandem plan --hardware tuning/hardware/vm-2core.toml --workload tuning/workloads/small-site.toml
  tandem plan --hardware tuning/hardware/server-64core-100g.toml \\
              --workload tuning/workloads/national-10m.toml --calibration calibration.toml --json"
)]
pub struct PlanArgs {
    /// Hardware profile (tuning/hardware/*.toml).
    #[arg(long, value_name = "FILE")]
    pub hardware: PathBuf,
    /// Workload profile (tuning/workloads/*.toml).
    #[arg(long, value_name = "FILE")]
    pub workload: PathBuf,
    /// Calibration written by `tandem-bench calibrate` (default:
    /// tuning/calibration/vm-2core.toml, measured on the project's 2-core VM).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "tuning/calibration/vm-2core.toml"
    )]
    pub calibration: PathBuf,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: &PlanArgs) -> ExitCode {
    let result = (|| -> Result<plan::Plan, String> {
        let hw = Hardware::from_file(&a.hardware)?;
        let wl = Workload::from_file(&a.workload)?;
        let text = std::fs::read_to_string(&a.calibration)
            .map_err(|e| format!("{}: {e}", a.calibration.display()))?;
        let cal = Calibration::from_toml(&text, &a.calibration.display().to_string())?;
        plan::plan(&hw, &wl, &cal)
    })();
    match result {
        Ok(p) => {
            if a.json {
                match serde_json::to_string_pretty(&p) {
                    Ok(j) => println!("{j}"),
                    Err(e) => {
                        eprintln!("tandem plan: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", p.render());
            }
            if p.over_capacity {
                ExitCode::from(3)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("tandem plan: {e}");
            ExitCode::FAILURE
        }
    }
}
