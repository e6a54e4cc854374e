//! Shared harness for the integration tests: real `tandem` processes and real third-party
//! DHCPv6 clients (ISC dhclient, dhcpcd, ISC perfdhcp, scapy scripts) in network namespaces.
//!
//! * [`netns::NetnsPair`]: two namespaces joined by a veth pair, DAD off, torn down on drop.
//! * [`server::Server`]: `tandem serve` inside the server namespace, killed on drop.
//! * [`proc`]: run a command in a namespace with a timeout, capture its output; background
//!   processes that are killed (by pid) on drop.
//! * [`config`]: the test topology's server configuration and pool membership checks.
//! * [`require`]: the preconditions (root, tools). A missing precondition fails the test
//!   unless `TANDEM_ITEST_SKIP=1` is set, so CI can never pass by skipping.
//!
//! Every test binary includes this module with `mod common;` and uses a different subset of
//! it, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod capture;
pub mod config;
pub mod dhclient;
pub mod netns;
pub mod proc;
pub mod require;
pub mod scripts;
pub mod server;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// Tests in one binary run on parallel threads; the heavy ones (perfdhcp load, captures)
/// take this lock so that two of them never compete for the 2 cores of a CI machine and
/// turn a "zero drops at a moderate rate" check into a scheduling lottery.
pub fn heavy_lock() -> MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A scratch directory for one test under cargo's per-package test tmpdir. It is removed on
/// drop when the test passed and kept (its path printed) when the test failed, so the
/// server log, client logs and captures of a failure can be read afterwards.
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    pub fn new(test: &str) -> Scratch {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("itest")
            .join(format!("{}-{}", test, std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("creating scratch dir {}: {e}", path.display()));
        Scratch { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Copies one of the helper scripts from tests/scripts into the scratch dir (hook
    /// scripts write their event logs next to themselves) and makes it executable.
    pub fn script(&self, name: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let from = scripts_dir().join(name);
        let to = self.join(name);
        std::fs::copy(&from, &to)
            .unwrap_or_else(|e| panic!("copying {} to {}: {e}", from.display(), to.display()));
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", to.display()));
        to
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test failed: logs kept in {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// tests/scripts in the source tree.
pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("scripts")
}

/// The `tandem` binary cargo built for this test run.
pub fn tandem_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tandem")
}

/// The bench rig's `tandem-bench`, built beside `tandem` by a workspace test run.
pub fn bench_bin() -> PathBuf {
    let p = Path::new(tandem_bin()).with_file_name("tandem-bench");
    assert!(
        p.exists(),
        "{} is missing: run the workspace's tests (`cargo test --workspace`) or \
         `cargo build -p tandem-bench` first",
        p.display()
    );
    p
}
