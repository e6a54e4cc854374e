//! Running processes inside a namespace: one-shot commands with a timeout and background
//! processes that are stopped (by their own pid, never by name) when dropped.
//!
//! Output goes to files in the test's scratch dir rather than pipes: some clients (dhclient
//! after binding) fork a daemon that inherits stdout, and a pipe would then never reach EOF.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Result of [`run`]: `status` is `None` when the command hit its timeout and was killed.
#[derive(Debug)]
pub struct Run {
    pub status: Option<ExitStatus>,
    pub output: String,
    pub log: PathBuf,
}

impl Run {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Exit code, or `None` for a timeout or a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    /// Panics with the command's output unless it exited 0.
    pub fn expect_success(&self, what: &str) -> &Run {
        assert!(
            self.success(),
            "{what} failed ({}), output ({}):\n{}",
            self.describe_status(),
            self.log.display(),
            self.output
        );
        self
    }

    pub fn describe_status(&self) -> String {
        match self.status {
            None => "timed out".to_string(),
            Some(s) => s.to_string(),
        }
    }
}

/// The command line that runs `argv` in namespace `ns` (or in the current one for `None`).
/// `ip netns exec` execs the program, so the spawned pid is the program's pid.
pub fn command(ns: Option<&str>, argv: &[&str]) -> Command {
    assert!(!argv.is_empty(), "empty command line");
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).args(argv);
            c
        }
        None => {
            let mut c = Command::new(argv[0]);
            c.args(&argv[1..]);
            c
        }
    };
    cmd.stdin(Stdio::null());
    cmd
}

fn log_file(log: &Path) -> (File, File) {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("opening {}: {e}", log.display()));
    let err = out.try_clone().expect("dup log fd");
    (out, err)
}

/// Runs `argv` in `ns`, appending stdout and stderr to `log`, killing it after `timeout`.
pub fn run(ns: Option<&str>, argv: &[&str], timeout: Duration, log: &Path) -> Run {
    let start_len = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
    let (out, err) = log_file(log);
    let mut child = command(ns, argv)
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {argv:?}: {e}"));
    let status = wait_timeout(&mut child, timeout);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let all = std::fs::read(log).unwrap_or_default();
    let output = String::from_utf8_lossy(&all[(start_len as usize).min(all.len())..]).into_owned();
    Run {
        status,
        output,
        log: log.to_path_buf(),
    }
}

/// Runs a short helper command (ip, sysctl, ss...) and returns its stdout; panics with its
/// stderr when it fails, since the harness cannot go on without it.
pub fn check_output(ns: Option<&str>, argv: &[&str]) -> String {
    let out = command(ns, argv)
        .output()
        .unwrap_or_else(|e| panic!("spawning {argv:?}: {e}"));
    assert!(
        out.status.success(),
        "{} {argv:?} failed ({}): {}",
        ns.map(|n| format!("[netns {n}]")).unwrap_or_default(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `child` until it exits or `timeout` passes.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() >= deadline => return None,
            Ok(None) => sleep(Duration::from_millis(20)),
            Err(e) => panic!("waiting for child: {e}"),
        }
    }
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(Duration::from_millis(50));
    }
}

/// Sends `signal` (e.g. "TERM") to one pid through kill(1): the tests deny `unsafe`, so no
/// libc::kill. Errors (process already gone) are ignored.
pub fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

pub fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// A long-running process (dhcpcd, dumpcap, the server) started in a namespace. Dropping it
/// sends SIGTERM, waits, then SIGKILLs: nothing outlives the test.
pub struct Background {
    child: Option<Child>,
    pub log: PathBuf,
    what: String,
}

impl Background {
    pub fn spawn(ns: Option<&str>, argv: &[&str], log: &Path) -> Background {
        Background::spawn_cmd(command(ns, argv), &argv.join(" "), log)
    }

    pub fn spawn_cmd(mut cmd: Command, what: &str, log: &Path) -> Background {
        let (out, err) = log_file(log);
        let child = cmd
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {what}: {e}"));
        Background {
            child: Some(child),
            log: log.to_path_buf(),
            what: what.to_string(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn output(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit status (`None` if it had
    /// to be killed).
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        signal(child.id(), "TERM");
        let status = wait_timeout(&mut child, grace);
        if status.is_none() {
            eprintln!(
                "{} did not stop within {grace:?} of SIGTERM; killing",
                self.what
            );
            let _ = child.kill();
            let _ = child.wait();
        }
        status
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}
