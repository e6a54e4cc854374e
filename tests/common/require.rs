//! Preconditions of the integration tests: root (namespaces, raw sockets, port 547) and the
//! third-party tools each test drives.
//!
//! A missing precondition FAILS the test by default: CI installs every tool, so a missing one
//! there is a broken CI script, not a reason to go green. Developers without root or without
//! the Debian packages can opt in to skipping with `TANDEM_ITEST_SKIP=1`; a skipped test then
//! says so loudly on stderr ("SKIPPED ...") instead of passing silently.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Python with Debian's python3-scapy (the `python3` on PATH may be another build).
pub const PYTHON: &str = "/usr/bin/python3";

/// Environment variable that turns a missing precondition into a skip.
pub const SKIP_ENV: &str = "TANDEM_ITEST_SKIP";

/// Checks that the test runs as root and that every tool in `tools` is installed. Returns
/// `true` when the test should run; `false` (after printing why) only when skipping is opted
/// in; panics otherwise. `"scapy"` names the python3-scapy module rather than a program.
pub fn ready(test: &str, tools: &[&str]) -> bool {
    let mut missing = Vec::new();
    if !is_root() {
        missing.push("root privileges (network namespaces, port 547)".to_string());
    }
    for tool in ["ip", "ethtool", "ss"].iter().chain(tools) {
        let present = match *tool {
            "scapy" => has_scapy(),
            other => find_program(other).is_some(),
        };
        if !present {
            missing.push(format!("`{tool}` ({})", debian_package(tool)));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let why = missing.join(", ");
    if std::env::var_os(SKIP_ENV).is_some_and(|v| v != "0" && !v.is_empty()) {
        eprintln!("SKIPPED {test}: missing {why} ({SKIP_ENV} is set)");
        false
    } else {
        panic!(
            "{test}: missing {why}. Run the integration tests as root with the packages of \
             .ci/deps.sh installed (`make deps`), or set {SKIP_ENV}=1 to skip tests whose \
             preconditions are missing"
        );
    }
}

/// Root check without `unsafe` (no geteuid): the owner of /proc/self is our effective uid.
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Looks a program up on PATH and in the sbin directories (cargo may run tests with a PATH
/// that lacks /usr/sbin, where dhclient, dhcpcd and perfdhcp live).
pub fn find_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Path::new(name).is_file().then(|| PathBuf::from(name));
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(name))
        .find(|candidate| candidate.is_file());
    found
}

/// Like [`find_program`], for a tool the test already checked with [`ready`].
pub fn program(name: &str) -> String {
    find_program(name)
        .unwrap_or_else(|| panic!("`{name}` not found"))
        .to_string_lossy()
        .into_owned()
}

fn has_scapy() -> bool {
    Command::new(PYTHON)
        .args(["-c", "import scapy.layers.dhcp6"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn debian_package(tool: &str) -> &'static str {
    match tool {
        "dhclient" => "isc-dhcp-client",
        "dhcpcd" => "dhcpcd-base",
        "perfdhcp" => "kea-admin",
        "tshark" | "dumpcap" => "tshark",
        "scapy" => "python3-scapy",
        "ethtool" => "ethtool",
        "ip" | "ss" => "iproute2",
        "unshare" | "mount" => "util-linux / mount",
        _ => "see .ci/deps.sh",
    }
}
