//! The server's own DUID: generated once, kept in the data directory.
//!
//! RFC 8415 §11: a server's DUID must stay the same across restarts (clients use it to
//! address Request/Renew/Release to this server, and reject replies from a different one).
//! So it is created on first start and stored in `<data-dir>/server-duid` as one line of hex,
//! written atomically (temporary file, fsync, rename, fsync of the directory) so a crash
//! never leaves a half-written DUID behind.
//!
//! Which type: DUID-LLT (§11.2) from the first non-loopback interface with a link-layer
//! address, as §11.2 recommends for devices with stable storage; DUID-UUID (RFC 6355) from
//! the kernel's random source when there is no such interface (e.g. a host with only
//! tunnels).

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::io::sys::Interface;
use crate::lease::Duid;
use crate::time::Timestamp;

/// File name of the stored DUID inside the data directory.
pub const FILE_NAME: &str = "server-duid";

/// RFC 8415 §11.1 DUID types.
const DUID_LLT: u16 = 1;
const DUID_UUID: u16 = 4;

/// Why the DUID could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum DuidError {
    #[error("{path}: cannot read the server DUID: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: cannot store the server DUID (is the data directory writable?): {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("{path}: line 1: not a valid DUID ({reason}); fix or delete the file to generate a new one (clients holding leases will then see a new server)")]
    Invalid { path: PathBuf, reason: String },
}

/// Loads the DUID stored in `data_dir`, or creates and stores one. Returns it and whether it
/// was just created.
pub fn load_or_create(
    data_dir: &Path,
    interfaces: &[Interface],
    now: Timestamp,
) -> Result<(Duid, bool), DuidError> {
    let path = data_dir.join(FILE_NAME);
    match fs::read_to_string(&path) {
        Ok(text) => parse(text.trim())
            .map(|d| (d, false))
            .map_err(|reason| DuidError::Invalid { path, reason }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let duid = generate(interfaces, now).map_err(|source| DuidError::Read {
                path: PathBuf::from("/dev/urandom"),
                source,
            })?;
            store(&path, &duid).map_err(|source| DuidError::Write { path, source })?;
            Ok((duid, true))
        }
        Err(source) => Err(DuidError::Read { path, source }),
    }
}

fn parse(text: &str) -> Result<Duid, String> {
    let hex: String = text.chars().filter(|c| *c != ':').collect();
    if hex.is_empty() || hex.len() % 2 != 0 {
        return Err("expected an even number of hex digits".into());
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| "expected hex digits".to_string())?;
    if bytes.len() < 3 {
        return Err("a DUID has a 2-octet type and at least one octet of data".into());
    }
    Duid::new(&bytes).ok_or_else(|| "longer than 130 octets".to_string())
}

/// Builds a new DUID: LLT from a real link-layer address, else UUID.
pub fn generate(interfaces: &[Interface], now: Timestamp) -> io::Result<Duid> {
    let ll = interfaces
        .iter()
        .filter(|i| !i.loopback)
        .find_map(|i| i.link_layer.as_ref());
    let mut raw = Vec::with_capacity(18);
    match ll {
        Some((hw_type, addr)) => {
            // RFC 8415 §11.2: type, hardware type, time (seconds since 2000-01-01 UTC mod
            // 2^32), link-layer address.
            raw.extend_from_slice(&DUID_LLT.to_be_bytes());
            raw.extend_from_slice(&hw_type.to_be_bytes());
            raw.extend_from_slice(&now.secs_since_2000().to_be_bytes());
            raw.extend_from_slice(addr);
        }
        None => {
            // RFC 6355: a 16-octet UUID; version 4 (random), RFC 4122 variant.
            let mut uuid = [0u8; 16];
            fs::File::open("/dev/urandom")?.read_exact(&mut uuid)?;
            uuid[6] = (uuid[6] & 0x0f) | 0x40;
            uuid[8] = (uuid[8] & 0x3f) | 0x80;
            raw.extend_from_slice(&DUID_UUID.to_be_bytes());
            raw.extend_from_slice(&uuid);
        }
    }
    Duid::new(&raw).ok_or_else(|| io::Error::other("link-layer address too long for a DUID"))
}

fn store(path: &Path, duid: &Duid) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{FILE_NAME}.tmp"));
    {
        let mut f = fs::File::create(&tmp)?;
        writeln!(f, "{duid}")?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ether(name: &str, mac: [u8; 6]) -> Interface {
        Interface {
            name: name.into(),
            index: 2,
            up: true,
            loopback: false,
            multicast: true,
            addrs: Vec::new(),
            link_layer: Some((1, mac.to_vec())),
        }
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tandem-duid-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn llt_from_the_first_ethernet_interface() {
        let now = Timestamp::from_secs(crate::time::EPOCH_2000_UNIX_SECS + 0x0102_0304);
        let d = generate(&[ether("eth0", [2, 0, 0, 0, 0, 9])], now).unwrap();
        assert_eq!(
            d.as_bytes(),
            &[0, 1, 0, 1, 1, 2, 3, 4, 2, 0, 0, 0, 0, 9],
            "type 1, hw type 1, time, MAC"
        );
    }

    #[test]
    fn uuid_without_a_link_layer_address() {
        let d = generate(&[], Timestamp::from_secs(0)).unwrap();
        let b = d.as_bytes();
        assert_eq!(b.len(), 18);
        assert_eq!(&b[..2], &[0, 4]);
        assert_eq!(b[8] >> 4, 4, "UUID version 4");
        assert_ne!(generate(&[], Timestamp::from_secs(0)).unwrap(), d);
    }

    #[test]
    fn created_once_then_reloaded() {
        let dir = temp_dir("reload");
        let ifs = [ether("eth0", [2, 0, 0, 0, 0, 1])];
        let (a, created) = load_or_create(&dir, &ifs, Timestamp::from_secs(1_000_000_000)).unwrap();
        assert!(created);
        // A later start with other interfaces and time keeps the stored DUID.
        let (b, created) = load_or_create(&dir, &[], Timestamp::from_secs(2_000_000_000)).unwrap();
        assert!(!created);
        assert_eq!(a, b);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_a_new_identity() {
        let dir = temp_dir("corrupt");
        fs::write(dir.join(FILE_NAME), "00:01:zz\n").unwrap();
        let e = load_or_create(&dir, &[], Timestamp::from_secs(0)).unwrap_err();
        assert!(matches!(e, DuidError::Invalid { .. }), "{e}");
        assert!(e.to_string().contains("server-duid"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unwritable_directory_is_reported() {
        let e = load_or_create(
            Path::new("/proc/tandem-no-such-dir"),
            &[],
            Timestamp::from_secs(0),
        )
        .unwrap_err();
        assert!(matches!(e, DuidError::Write { .. }), "{e}");
    }
}
