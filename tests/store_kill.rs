//! Crash safety with real clients (issue 3, item 5a): clients get leases with Solicit +
//! Rapid Commit while the server is killed with SIGKILL several times mid-load and restarted
//! on the same data directory. Every lease a client received a Reply for must still be held
//! by the same DUID: the offline tools show it, a Renew returns it unchanged, and a new
//! client asking for it as a hint gets something else.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::config::ServerConfig;
use common::netns::{NetnsPair, CLIENT_IF};
use common::proc::{self, Background};
use common::require::{self, PYTHON};
use common::server::Server;
use common::Scratch;
use serde_json::Value;

fn clients_script() -> String {
    common::scripts_dir()
        .join("store_clients.py")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn leases_acknowledged_before_sigkill_survive_restarts() {
    if !require::ready("store_kill", &[]) {
        return;
    }
    let _heavy = common::heavy_lock();
    let scratch = Scratch::new("store-kill");
    let pair = NetnsPair::new("store-kill");
    let cfg = ServerConfig {
        rapid_commit: true,
        shards: 2,
        ..ServerConfig::default()
    };
    let mut server = Server::start(&pair, &scratch, &cfg);

    // Load for ~10 s, a window of 32 exchanges at a time, new DUIDs throughout.
    let grant_out = scratch.join("grant.json");
    let script = clients_script();
    let cmd = proc::command(
        Some(&pair.client),
        &[
            PYTHON,
            &script,
            "--interface",
            CLIENT_IF,
            "grant",
            "--duration",
            "10",
            "--seed",
            "7",
        ],
    );
    // Background sends stdout (the JSON) and stderr to the log file.
    let mut grant =
        Background::spawn_cmd(cmd, "store_clients.py grant", &scratch.join("grant.log"));

    // Kill it four times mid-load, restarting on the same data directory each time.
    let mut kills = 0;
    for delay_ms in [1500u64, 900, 2100, 1300] {
        std::thread::sleep(Duration::from_millis(delay_ms));
        proc::signal(server.pid(), "KILL");
        assert!(
            proc::wait_until(Duration::from_secs(5), || !server.alive()),
            "server survived SIGKILL"
        );
        kills += 1;
        drop(server);
        server = Server::start(&pair, &scratch, &cfg);
    }
    assert!(
        proc::wait_until(Duration::from_secs(40), || grant.exited().is_some()),
        "grant client did not finish"
    );
    let output = grant.output();
    let granted: Value = serde_json::from_str(output.trim()).unwrap_or_else(|e| {
        panic!(
            "grant output is not JSON ({e}): {}",
            &output[..output.len().min(2000)]
        )
    });
    std::fs::write(&grant_out, output.trim()).unwrap();
    let leases = granted["granted"].as_array().unwrap().clone();
    assert!(
        leases.len() > 200,
        "too few leases granted under load to test anything: {}",
        leases.len()
    );
    eprintln!(
        "{kills} SIGKILLs; {} of {} exchanges got a Reply",
        leases.len(),
        granted["asked"]
    );
    // One more kill right after the load, then restart and check.
    proc::signal(server.pid(), "KILL");
    assert!(proc::wait_until(Duration::from_secs(5), || !server.alive()));
    drop(server);
    let server = Server::start(&pair, &scratch, &cfg);

    // Renewals return the same address and prefix to the same DUID.
    let renew = common::scripts::run_json(
        &pair.client,
        &scratch,
        "store_clients.py",
        &[
            "--interface",
            CLIENT_IF,
            "renew",
            "--leases",
            grant_out.to_str().unwrap(),
        ],
        Duration::from_secs(120),
    );
    let mut lost = Vec::new();
    for r in renew["results"].as_array().unwrap() {
        let reply = &r["reply"];
        let same = !reply.is_null()
            && (r["want_address"].is_null() || reply["address"] == r["want_address"])
            && (r["want_prefix"].is_null() || reply["prefix"] == r["want_prefix"]);
        if !same {
            lost.push(r.clone());
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged leases not renewed unchanged, e.g. {}",
        lost.len(),
        leases.len(),
        lost[0]
    );

    // New clients hinting at granted resources get other ones.
    let hint = common::scripts::run_json(
        &pair.client,
        &scratch,
        "store_clients.py",
        &[
            "--interface",
            CLIENT_IF,
            "hint",
            "--leases",
            grant_out.to_str().unwrap(),
            "--count",
            "40",
        ],
        Duration::from_secs(120),
    );
    for r in hint["results"].as_array().unwrap() {
        let reply = &r["reply"];
        assert!(!reply.is_null(), "hinting client got no Reply: {r}");
        assert!(
            r["hint_address"].is_null() || reply["address"] != r["hint_address"],
            "a new client was given an address another client holds: {r}"
        );
        assert!(
            r["hint_prefix"].is_null() || reply["prefix"] != r["hint_prefix"],
            "a new client was given a prefix another client holds: {r}"
        );
    }

    // And offline, the data directory holds each of them for the same DUID.
    let data_dir = server.data_dir.clone();
    let stopped = server.stop();
    assert!(
        stopped.status.is_some_and(|s| s.success()),
        "{}",
        stopped.log
    );
    check_export(&data_dir, &leases);
}

fn check_export(data_dir: &Path, leases: &[Value]) {
    let out = std::process::Command::new(common::tandem_bin())
        .args(["leases", "--data-dir"])
        .arg(data_dir)
        .args(["export", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut holder: HashMap<String, String> = HashMap::new();
    for l in all.as_array().unwrap() {
        let key = l
            .get("address")
            .or_else(|| l.get("prefix"))
            .and_then(Value::as_str)
            .unwrap()
            .to_string();
        holder.insert(key, l["duid"].as_str().unwrap().to_string());
    }
    for l in leases {
        for key in [&l["address"], &l["prefix"]] {
            if let Some(k) = key.as_str() {
                assert_eq!(
                    holder.get(k).map(String::as_str),
                    l["duid"].as_str(),
                    "{k} is not held by the DUID it was granted to"
                );
            }
        }
    }
}
