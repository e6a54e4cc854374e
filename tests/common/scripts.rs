//! Running the python3-scapy helper scripts of tests/scripts in the client namespace and
//! reading the JSON they print.

use std::time::Duration;

use serde_json::Value;

use super::proc;
use super::require::PYTHON;
use super::Scratch;

/// Runs `tests/scripts/<script> <args>` with Debian's /usr/bin/python3 in `ns` and parses
/// its stdout as JSON (stderr goes to the log next to it).
pub fn run_json(
    ns: &str,
    scratch: &Scratch,
    script: &str,
    args: &[&str],
    timeout: Duration,
) -> Value {
    let path = super::scripts_dir().join(script);
    let stdout = scratch.join(&format!("{script}.json"));
    let stderr = scratch.join(&format!("{script}.log"));
    let mut cmd = proc::command(Some(ns), &[PYTHON, path.to_str().unwrap()]);
    cmd.args(args)
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {script}: {e}"));
    let status = proc::wait_timeout(&mut child, timeout);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let out = std::fs::read_to_string(&stdout).unwrap_or_default();
    let err = std::fs::read_to_string(&stderr).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "{script} {args:?} failed ({status:?}):\n{err}\n{out}"
    );
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("{script} printed no JSON ({e}):\n{out}\n{err}"))
}
