//! `tandem-bench` as a user runs it: the rig against the reflector over loopback, the JSON
//! document and plots it writes, and its errors for bad arguments.

use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_tandem-bench");

fn scratch(name: &str) -> PathBuf {
    let p =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// A free UDP port on [::1] (bound then released).
fn free_port() -> u16 {
    UdpSocket::bind("[::1]:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Reflector(Child);

impl Reflector {
    fn start(port: u16) -> Reflector {
        let child = Command::new(BIN)
            .args([
                "reflect",
                "--listen",
                &format!("[::1]:{port}"),
                "--duration",
                "30",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting tandem-bench reflect");
        // Until the socket is bound the rig's first packets would be refused.
        for _ in 0..100 {
            if UdpSocket::bind(format!("[::1]:{port}")).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Reflector(child)
    }

    /// SIGTERM, then the JSON counters it prints on the way out.
    fn stop(mut self) -> serde_json::Value {
        let pid = self.0.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let out = std::mem::replace(&mut self.0, Command::new("true").spawn().unwrap())
            .wait_with_output()
            .unwrap();
        serde_json::from_slice(&out.stdout).expect("reflector prints JSON counters")
    }
}

impl Drop for Reflector {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn run_against_the_reflector_writes_json_and_plots() {
    let dir = scratch("rig-run");
    let port = free_port();
    let refl = Reflector::start(port);
    let json = dir.join("sarr.json");
    let out = Command::new(BIN)
        .args([
            "run",
            "--target",
            &format!("[::1]:{port}"),
            "--bind",
            "[::1]:0",
        ])
        .args([
            "--scenario",
            "sarr",
            "--subscribers",
            "2000",
            "--rate",
            "2000",
        ])
        .args([
            "--duration",
            "1",
            "--relays",
            "8",
            "--pd",
            "--quiet",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("exchanges/s") && stdout.contains("p99.9"),
        "{stdout}"
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let completed = r["completed"].as_u64().unwrap();
    // 1 s at 2000 exchanges/s on loopback: all of them unless the (debug-built) rig was
    // descheduled for long stretches on a busy machine.
    assert!((1600..=2010).contains(&completed), "{r}");
    assert_eq!(r["drops"].as_u64(), Some(0));
    let rate = r["exchanges_per_sec"].as_f64().unwrap();
    assert!(rate > 1500.0 && rate < 2100.0, "{rate}");
    for p in ["p50", "p90", "p99", "p999"] {
        assert!(r["latency_us"][p].as_u64().unwrap() > 0, "{p}");
    }
    // The reflector answers with what it got: no leases, so every reply is "empty".
    assert_eq!(r["counters"]["empty_replies"].as_u64(), Some(2 * completed));
    assert!(r["rig"]["bytes_per_subscriber"].as_u64().unwrap() <= 200);
    for f in ["sarr-rate.svg", "sarr-latency.svg"] {
        let svg = std::fs::read_to_string(dir.join(f)).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("polyline"), "{f}");
    }
    let st = refl.stop();
    // Relay-forw in, Relay-repl out, for both transactions of every exchange.
    assert!(st["answered"].as_u64().unwrap() >= 2 * completed, "{st}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_silent_server_gives_drops_not_a_hang() {
    let port = free_port();
    let out = Command::new(BIN)
        .args([
            "run",
            "--target",
            &format!("[::1]:{port}"),
            "--bind",
            "[::1]:0",
        ])
        .args([
            "--scenario",
            "rapid",
            "--subscribers",
            "100",
            "--rate",
            "200",
        ])
        .args(["--duration", "0.5", "--timeout-ms", "200", "--quiet"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let drops: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("drops"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap();
    assert!(drops >= 90, "{stdout}");
}

#[test]
fn bad_arguments_are_clear_errors() {
    let out = Command::new(BIN)
        .args(["run", "--target", "[::1]:547", "--rate", "fast"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`fast` is neither a positive number nor `max`"),
        "{err}"
    );
    let out = Command::new(BIN)
        .args(["run", "--scenario", "sarr"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--target <TARGET>"));
    let out = Command::new(BIN)
        .args(["run", "--interface", "no-such-if0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no interface no-such-if0"));
}
