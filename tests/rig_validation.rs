//! Capacity-plan validation (issue "bench rig and capacity planning", item 6): calibrate on
//! this machine against a real `tandem serve`, plan a small site, run the rig at the planned
//! avalanche rate and check tandem keeps up, then check the planner flags a site twice that
//! size as over capacity.
//!
//! Needs root (network namespaces) and the `tandem-bench` binary, which `cargo test
//! --workspace` builds (the bench package's own integration tests need it).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::config::ServerConfig;
use common::netns::{NetnsPair, SERVER_GUA};
use common::proc::run;
use common::server::Server;
use common::{bench_bin, require, Scratch};
use tandem::plan::calibration::Calibration;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The avalanche window of the planned site: the rig runs for exactly this long.
const WINDOW_SECS: u64 = 4;

fn workload(subscribers: u64) -> String {
    format!(
        "name = \"validation-{subscribers}\"
description = \"small site sized from this machine's calibration\"
subscribers = {subscribers}
na_share = 1.0
pd_share = 0.0
valid_lifetime_secs = 4000
t1_secs = 1000
avalanche_window_secs = {WINDOW_SECS}
churn_per_day = 0.0
growth_per_year = 0.0
plan_years = 0
failover = false
"
    )
}

fn plan(scratch: &Scratch, name: &str, subscribers: u64, cal: &Path) -> (i32, serde_json::Value) {
    let w = scratch.join(name);
    std::fs::write(&w, workload(subscribers)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("plan")
        .arg("--hardware")
        .arg(repo("tuning/hardware/vm-2core.toml"))
        .arg("--workload")
        .arg(&w)
        .arg("--calibration")
        .arg(cal)
        .arg("--json")
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "tandem plan: {e}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), json)
}

#[test]
fn planned_rate_is_served_and_twice_the_plan_is_over_capacity() {
    if !require::ready("rig_validation", &[]) {
        return;
    }
    let _heavy = common::heavy_lock();
    let bench = bench_bin();
    let scratch = Scratch::new("rig-validation");
    let pair = NetnsPair::new("rig-val");
    let cfg = ServerConfig {
        shards: 1,
        ..ServerConfig::default()
    };
    let _server = Server::start(&pair, &scratch, &cfg);
    let target = format!("[{SERVER_GUA}]:547");

    // 1. Calibrate: transport ceiling, fsync latency, and this tandem's per-shard rates.
    let cal_path = scratch.join("calibration.toml");
    let argv = [
        bench.to_str().unwrap(),
        "calibrate",
        "--out",
        cal_path.to_str().unwrap(),
        "--data-dir",
        scratch.path().to_str().unwrap(),
        "--secs",
        "2",
        "--target",
        &target,
        "--server-shards",
        "1",
        "--subscribers",
        "4000",
        "--seed",
        "60",
    ];
    run(
        Some(&pair.client),
        &argv,
        Duration::from_secs(120),
        &scratch.join("calibrate.log"),
    )
    .expect_success("tandem-bench calibrate");
    let cal = Calibration::from_toml(&std::fs::read_to_string(&cal_path).unwrap(), "cal").unwrap();
    let server = cal.server.as_ref().expect("server measured");
    assert!(server.sarr_exchanges_per_sec > 100.0, "{cal:?}");

    // 2. Plan a site whose avalanche needs half of one shard: the VM profile runs one shard
    //    at core_speed 1.0, so the capacity is the calibrated per-shard rate.
    let capacity = server.sarr_exchanges_per_sec;
    let subscribers = (capacity * 0.5 * WINDOW_SECS as f64) as u64;
    let (code, p) = plan(&scratch, "half.toml", subscribers, &cal_path);
    assert_eq!(code, 0, "{p:#}");
    assert_eq!(p["over_capacity"], false, "{p:#}");
    assert_eq!(p["shards_needed"], 1, "{p:#}");
    let planned_rate = p["avalanche_exchanges_per_sec"].as_f64().unwrap();
    assert!((planned_rate - subscribers as f64 / WINDOW_SECS as f64).abs() < 1.0);

    // 3. Offer the planned avalanche rate: every subscriber solicits once within the window
    //    (fresh DUIDs), and tandem must answer them all, on time.
    let json = scratch.join("planned.json");
    let rate = format!("{planned_rate:.1}");
    let subs = subscribers.to_string();
    let argv = [
        bench.to_str().unwrap(),
        "run",
        "--target",
        &target,
        "--relays",
        "16",
        "--scenario",
        "sarr",
        "--subscribers",
        &subs,
        "--rate",
        &rate,
        "--duration",
        "4",
        "--seed",
        "70",
        "--quiet",
        "--json",
        json.to_str().unwrap(),
    ];
    run(
        Some(&pair.client),
        &argv,
        Duration::from_secs(60),
        &scratch.join("planned.log"),
    )
    .expect_success("tandem-bench run at the planned rate");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let served = r["exchanges_per_sec"].as_f64().unwrap();
    let completed = r["completed"].as_u64().unwrap();
    let drops = r["drops"].as_u64().unwrap();
    eprintln!(
        "rig_validation: calibrated {capacity:.0} exchanges/s per shard; planned \
         {planned_rate:.0}/s for {subscribers} subscribers; served {served:.0}/s \
         ({:+.1}%), {completed} completed, {drops} drops, p99 {} µs",
        (served / planned_rate - 1.0) * 100.0,
        r["latency_us"]["p99"]
    );
    assert!(
        served >= planned_rate * 0.9,
        "tandem fell behind the plan: {r:#}"
    );
    assert!(drops * 100 <= completed, "more than 1% dropped: {r:#}");
    assert_eq!(r["no_addrs_avail"], 0, "{r:#}");

    // 4. Twice the planned site needs the whole shard: past the 70% target, over capacity,
    //    and the CPU binds first.
    let (code, p2) = plan(&scratch, "double.toml", subscribers * 2, &cal_path);
    assert_eq!(code, 3, "{p2:#}");
    assert_eq!(p2["over_capacity"], true);
    assert_eq!(p2["binding_resource"], "cpu (shards)");
    assert!(p2["headroom"].as_f64().unwrap() < 0.0);
}
