//! Packet captures with Wireshark's dumpcap/tshark (Debian package `tshark`): start a capture
//! in a namespace, stop it, and read DHCPv6 fields or Wireshark's verdicts back.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::proc::{self, wait_until, Background};
use super::require;

pub struct Capture {
    process: Background,
    pub file: PathBuf,
}

impl Capture {
    /// Starts `dumpcap` on `iface` in `ns` with a capture filter; returns once it captures.
    pub fn start(ns: &str, iface: &str, filter: &str, file: &Path, log: &Path) -> Capture {
        let dumpcap = require::program("dumpcap");
        let process = Background::spawn(
            Some(ns),
            &[
                &dumpcap,
                "-q",
                "-i",
                iface,
                "-f",
                filter,
                "-w",
                file.to_str().unwrap(),
            ],
            log,
        );
        let started = wait_until(Duration::from_secs(10), || {
            process.output().contains("Capturing on") || file.exists()
        });
        assert!(started, "dumpcap did not start: {}", process.output());
        // dumpcap reports "Capturing on" as soon as the pcap handle is open.
        std::thread::sleep(Duration::from_millis(300));
        Capture {
            process,
            file: file.to_path_buf(),
        }
    }

    /// Stops the capture (SIGTERM makes dumpcap flush and close the file).
    pub fn stop(mut self) -> PathBuf {
        std::thread::sleep(Duration::from_millis(300));
        self.process.stop(Duration::from_secs(10));
        self.file.clone()
    }
}

/// `tshark -r FILE -Y FILTER -T fields -e F...`: one row per matching frame, one column per
/// field, each column a list (a field occurs several times in a frame, e.g. the DUIDs of
/// CLIENTID and SERVERID, or relay layers).
pub fn fields(
    file: &Path,
    display_filter: &str,
    names: &[&str],
    log: &Path,
) -> Vec<Vec<Vec<String>>> {
    let tshark = require::program("tshark");
    let mut argv = vec![
        tshark.as_str(),
        "-n",
        "-r",
        file.to_str().unwrap(),
        "-Y",
        display_filter,
        "-T",
        "fields",
        "-E",
        "separator=\t",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
    ];
    for name in names {
        argv.push("-e");
        argv.push(name);
    }
    let out = tshark_stdout(&argv, log);
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            line.split('\t')
                .map(|col| {
                    col.split(',')
                        .filter(|v| !v.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .collect()
        })
        .collect()
}

/// Number of frames matching `display_filter`.
pub fn count(file: &Path, display_filter: &str, log: &Path) -> usize {
    fields(file, display_filter, &["frame.number"], log).len()
}

fn tshark_stdout(argv: &[&str], log: &Path) -> String {
    // stdout must be separate from tshark's stderr chatter ("Running as user root...").
    let out = proc::command(None, argv)
        .output()
        .unwrap_or_else(|e| panic!("running tshark: {e}"));
    let _ = std::fs::write(log, &out.stderr);
    assert!(
        out.status.success(),
        "tshark {argv:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Capture filter for what the server sends on the test link (from either of its addresses),
/// excluding the client side's own port-547 traffic (simulated relays send from 547 too).
pub const SERVER_REPLIES: &str =
    "udp and src port 547 and (src host fe80::1 or src host 2001:db8:1::1)";
