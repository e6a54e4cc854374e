//! Snapshot files: one shard's table as an rkyv archive, memory-mapped for zero-copy lookups.
//!
//! ```text
//! offset 0   header (64 bytes, little endian):
//!            magic "TNDMSNAP" | format version u32 | shard u32 | shards u32 | reserved u32
//!            generation u64 | covers_segment u64 | record count u64 | body length u64
//!            body crc32 u32 | header crc32 u32 (over bytes 0..60)
//! offset 64  body: rkyv archive of `SnapBody`
//! ```
//!
//! The body holds fixed-size records sorted by resource (binary search), one DUID arena
//! (deduplicated per client), and two index arrays of record numbers: by client (sorted by
//! the DUID's stable hash, then bytes) and by expiry time. About 90 bytes per lease with
//! realistic DUIDs; only the pages a lookup touches become resident.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};

use rkyv::{Archive, Serialize};

use crate::lease::mmap::{MappedFile, ValidatedSnapshot};
use crate::lease::{stable_hash, BindingState, Duid, IaType, Lease, Resource};

pub const MAGIC: &[u8; 8] = b"TNDMSNAP";
/// Bump when the body layout changes; a snapshot of another version is refused.
pub const FORMAT_VERSION: u32 = 1;
pub const HEADER_LEN: usize = 64;

/// One lease as stored in a snapshot (fixed size; the DUID lives in the arena).
#[derive(Archive, Serialize, Clone, Copy, Debug)]
pub struct SnapRecord {
    pub addr: [u8; 16],
    pub cltt: u64,
    pub expires_at: u64,
    pub partner_lifetime: u64,
    pub iaid: u32,
    pub preferred_lifetime: u32,
    pub valid_lifetime: u32,
    pub subnet: u32,
    pub duid_off: u32,
    pub prefix_len: u8,
    pub ia_type: u8,
    pub state: u8,
    pub update_pending: u8,
    pub duid_len: u8,
}

#[derive(Archive, Serialize, Default)]
pub struct SnapBody {
    /// Sorted by (addr, prefix_len), unique.
    pub records: Vec<SnapRecord>,
    pub duids: Vec<u8>,
    /// Record numbers sorted by (stable_hash(duid), duid, resource).
    pub by_client: Vec<u32>,
    /// Record numbers sorted by expires_at.
    pub by_expiry: Vec<u32>,
}

/// What the header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub shard: u32,
    pub shards: u32,
    pub generation: u64,
    /// Every WAL segment numbered <= this is contained in the snapshot.
    pub covers_segment: u64,
    pub records: u64,
    pub body_len: u64,
    pub body_crc: u32,
}

/// Why a snapshot file was refused. The caller adds the file name.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("not a tandem snapshot (bad magic)")]
    BadMagic,
    #[error("header checksum mismatch (corrupt header)")]
    HeaderCrc,
    #[error("format version {found} is not supported (this build reads version {FORMAT_VERSION})")]
    Version { found: u32 },
    #[error("file is {file} bytes but the header describes {expected}")]
    Length { file: u64, expected: u64 },
    #[error("body checksum mismatch (corrupt snapshot)")]
    BodyCrc,
    #[error("archive validation failed: {0}")]
    Archive(String),
    #[error("header says {header} records, archive holds {body}")]
    Count { header: u64, body: u64 },
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..8].copy_from_slice(MAGIC);
        h[8..12].copy_from_slice(&self.version.to_le_bytes());
        h[12..16].copy_from_slice(&self.shard.to_le_bytes());
        h[16..20].copy_from_slice(&self.shards.to_le_bytes());
        h[24..32].copy_from_slice(&self.generation.to_le_bytes());
        h[32..40].copy_from_slice(&self.covers_segment.to_le_bytes());
        h[40..48].copy_from_slice(&self.records.to_le_bytes());
        h[48..56].copy_from_slice(&self.body_len.to_le_bytes());
        h[56..60].copy_from_slice(&self.body_crc.to_le_bytes());
        let crc = crc32fast::hash(&h[..60]);
        h[60..64].copy_from_slice(&crc.to_le_bytes());
        h
    }

    pub fn decode(h: &[u8]) -> Result<Header, SnapshotError> {
        let h: &[u8; HEADER_LEN] =
            h.get(..HEADER_LEN)
                .and_then(|b| b.try_into().ok())
                .ok_or(SnapshotError::Length {
                    file: h.len() as u64,
                    expected: HEADER_LEN as u64,
                })?;
        if &h[0..8] != MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let u32_at = |o: usize| u32::from_le_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[o..o + 8]);
            u64::from_le_bytes(b)
        };
        if crc32fast::hash(&h[..60]) != u32_at(60) {
            return Err(SnapshotError::HeaderCrc);
        }
        let version = u32_at(8);
        if version != FORMAT_VERSION {
            return Err(SnapshotError::Version { found: version });
        }
        Ok(Header {
            version,
            shard: u32_at(12),
            shards: u32_at(16),
            generation: u64_at(24),
            covers_segment: u64_at(32),
            records: u64_at(40),
            body_len: u64_at(48),
            body_crc: u32_at(56),
        })
    }

    /// Reads and checks only the header of the snapshot at `path` (cheap; used to pick the
    /// current set of files at startup).
    pub fn read(path: &Path) -> Result<Header, SnapshotError> {
        let mut f = File::open(path)?;
        let mut h = [0u8; HEADER_LEN];
        f.read_exact(&mut h).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                SnapshotError::Length {
                    file: f.metadata().map(|m| m.len()).unwrap_or(0),
                    expected: HEADER_LEN as u64,
                }
            } else {
                SnapshotError::Io(e)
            }
        })?;
        Header::decode(&h)
    }
}

impl SnapRecord {
    pub fn from_lease(l: &Lease, duid_off: u32) -> SnapRecord {
        SnapRecord {
            addr: l.resource.addr.octets(),
            cltt: l.cltt,
            expires_at: l.expires_at,
            partner_lifetime: l.partner_lifetime,
            iaid: l.iaid,
            preferred_lifetime: l.preferred_lifetime,
            valid_lifetime: l.valid_lifetime,
            subnet: l.subnet,
            duid_off,
            prefix_len: l.resource.prefix_len,
            ia_type: l.ia_type as u8,
            state: l.state as u8,
            update_pending: u8::from(l.update_pending),
            duid_len: l.duid.as_bytes().len() as u8,
        }
    }
}

/// Accumulates leases (any order, unique resources) and produces a sorted, indexed body.
#[derive(Default)]
pub struct Builder {
    records: Vec<SnapRecord>,
    arena: Vec<u8>,
}

impl Builder {
    pub fn with_capacity(n: usize) -> Builder {
        Builder {
            records: Vec::with_capacity(n),
            arena: Vec::with_capacity(n * 16),
        }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn push(&mut self, lease: &Lease) {
        let off = self.arena.len() as u32;
        self.arena.extend_from_slice(lease.duid.as_bytes());
        self.records.push(SnapRecord::from_lease(lease, off));
    }

    /// Sorts, deduplicates DUIDs per client and builds the indexes.
    pub fn finish(self) -> SnapBody {
        let Builder { mut records, arena } = self;
        records.sort_unstable_by_key(|r| (r.addr, r.prefix_len));
        // Later pushes of the same resource are not expected; keep the first if they happen.
        records.dedup_by_key(|r| (r.addr, r.prefix_len));
        let duid_of = |r: &SnapRecord| {
            let s = r.duid_off as usize;
            &arena[s..s + usize::from(r.duid_len)]
        };
        let mut by_client: Vec<u32> = (0..records.len() as u32).collect();
        let hashes: Vec<u64> = records.iter().map(|r| stable_hash(duid_of(r))).collect();
        by_client.sort_unstable_by(|&a, &b| {
            let (ra, rb) = (&records[a as usize], &records[b as usize]);
            (hashes[a as usize], duid_of(ra), a).cmp(&(hashes[b as usize], duid_of(rb), b))
        });
        drop(hashes);
        // Rewrite the arena in client order so each client's DUID is stored once.
        let mut duids = Vec::with_capacity(arena.len() / 2);
        let mut prev: Option<(usize, u32)> = None; // (record of previous client, its offset)
        let mut new_off = vec![0u32; records.len()];
        for &i in &by_client {
            let d = duid_of(&records[i as usize]);
            match prev {
                Some((p, off)) if duid_of(&records[p]) == d => new_off[i as usize] = off,
                _ => {
                    let off = duids.len() as u32;
                    duids.extend_from_slice(d);
                    new_off[i as usize] = off;
                    prev = Some((i as usize, off));
                }
            }
        }
        for (r, off) in records.iter_mut().zip(new_off) {
            r.duid_off = off;
        }
        let mut by_expiry: Vec<u32> = (0..records.len() as u32).collect();
        by_expiry.sort_unstable_by_key(|&i| (records[i as usize].expires_at, i));
        SnapBody {
            records,
            duids,
            by_client,
            by_expiry,
        }
    }
}

/// Counts bytes and checksums them on their way to the file.
struct CrcWriter<W> {
    inner: W,
    crc: crc32fast::Hasher,
    len: u64,
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Identity of a snapshot being written.
#[derive(Clone, Copy, Debug)]
pub struct SnapMeta {
    pub shard: u32,
    pub shards: u32,
    pub generation: u64,
    pub covers_segment: u64,
}

/// Writes `body` to `path` crash-safely: `path.tmp` is written and fsynced, renamed over
/// `path`, and the directory is fsynced, so after a crash `path` is either the old or the
/// complete new snapshot. Returns the header written.
pub fn write(path: &Path, meta: SnapMeta, body: &SnapBody) -> io::Result<Header> {
    let tmp = tmp_path(path);
    let result = write_tmp(&tmp, meta, body);
    let header = match result {
        Ok(h) => h,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))?;
    Ok(header)
}

pub fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

fn write_tmp(tmp: &Path, meta: SnapMeta, body: &SnapBody) -> io::Result<Header> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(tmp)?;
    file.write_all(&[0u8; HEADER_LEN])?;
    let mut w = CrcWriter {
        inner: BufWriter::with_capacity(1 << 20, &mut file),
        crc: crc32fast::Hasher::new(),
        len: 0,
    };
    rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(
        body,
        rkyv::ser::writer::IoWriter::new(&mut w),
    )
    .map_err(io::Error::other)?;
    w.flush()?;
    let header = Header {
        version: FORMAT_VERSION,
        shard: meta.shard,
        shards: meta.shards,
        generation: meta.generation,
        covers_segment: meta.covers_segment,
        records: body.records.len() as u64,
        body_len: w.len,
        body_crc: w.crc.clone().finalize(),
    };
    drop(w);
    use std::os::unix::fs::FileExt;
    file.write_all_at(&header.encode(), 0)?;
    file.sync_all()?;
    Ok(header)
}

/// fsyncs a directory so a rename or unlink in it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Entries between two fence keys: a lookup binary-searches the small in-memory fence, then
/// one block of this many entries (a page or two of the mapping) instead of ~23 pages.
const FENCE_STEP: usize = 64;

/// An open, verified snapshot.
pub struct Snapshot {
    pub header: Header,
    view: ValidatedSnapshot,
    /// Key of every FENCE_STEP-th record (by resource): ~0.3 bytes per lease, in RAM.
    fence_resource: Vec<([u8; 16], u8)>,
    /// DUID hash of every FENCE_STEP-th entry of the by-client index.
    fence_client: Vec<u64>,
}

impl Snapshot {
    /// Maps the snapshot at `path` and verifies the header, the body checksum and the archive
    /// layout before anything is served from it.
    pub fn open(path: &Path) -> Result<Snapshot, SnapshotError> {
        let file = File::open(path)?;
        let map = MappedFile::map(&file)?;
        map.will_need();
        let header = Header::decode(map.bytes())?;
        let expected = HEADER_LEN as u64 + header.body_len;
        if map.len() as u64 != expected {
            return Err(SnapshotError::Length {
                file: map.len() as u64,
                expected,
            });
        }
        let body = &map.bytes()[HEADER_LEN..];
        if crc32fast::hash(body) != header.body_crc {
            return Err(SnapshotError::BodyCrc);
        }
        let end = map.len();
        let view = ValidatedSnapshot::new(map, HEADER_LEN, end)
            .map_err(|e| SnapshotError::Archive(e.to_string()))?;
        let n = view.body().records.len() as u64;
        if n != header.records
            || view.body().by_client.len() as u64 != n
            || view.body().by_expiry.len() as u64 != n
        {
            return Err(SnapshotError::Count {
                header: header.records,
                body: n,
            });
        }
        let body = view.body();
        let fence_resource = body
            .records
            .iter()
            .step_by(FENCE_STEP)
            .map(|r| (r.addr, r.prefix_len))
            .collect();
        let mut snap = Snapshot {
            header,
            view,
            fence_resource,
            fence_client: Vec::new(),
        };
        let recs = snap.body().records.as_slice();
        snap.fence_client = snap
            .body()
            .by_client
            .iter()
            .step_by(FENCE_STEP)
            .map(|i| {
                recs.get(i.to_native() as usize)
                    .map_or(u64::MAX, |r| stable_hash(snap.duid_bytes(r)))
            })
            .collect();
        Ok(snap)
    }

    pub fn len(&self) -> usize {
        self.view.body().records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn file_len(&self) -> usize {
        self.view.file_len()
    }

    fn body(&self) -> &ArchivedSnapBody {
        self.view.body()
    }

    fn duid_bytes(&self, r: &ArchivedSnapRecord) -> &[u8] {
        let s = r.duid_off.to_native() as usize;
        self.body()
            .duids
            .as_slice()
            .get(s..s + usize::from(r.duid_len))
            .unwrap_or(&[])
    }

    /// Record number `i` as a lease; `None` if the record is malformed (never served).
    pub fn lease(&self, i: usize) -> Option<Lease> {
        let r = self.body().records.get(i)?;
        Some(Lease {
            resource: Resource {
                addr: Ipv6Addr::from(r.addr),
                prefix_len: r.prefix_len,
            },
            ia_type: IaType::from_u8(r.ia_type)?,
            duid: Duid::new(self.duid_bytes(r))?,
            iaid: r.iaid.to_native(),
            state: BindingState::from_u8(r.state)?,
            preferred_lifetime: r.preferred_lifetime.to_native(),
            valid_lifetime: r.valid_lifetime.to_native(),
            cltt: r.cltt.to_native(),
            expires_at: r.expires_at.to_native(),
            subnet: r.subnet.to_native(),
            partner_lifetime: r.partner_lifetime.to_native(),
            update_pending: r.update_pending != 0,
        })
    }

    /// Binary search by resource: the fence picks the block, the block is searched.
    pub fn find(&self, res: &Resource) -> Option<Lease> {
        self.lease(self.position(res)?)
    }

    /// Record number of `res`, if the snapshot holds it (no lease is built).
    pub fn position(&self, res: &Resource) -> Option<usize> {
        let key = (res.addr.octets(), res.prefix_len);
        let recs = self.body().records.as_slice();
        let j = self.fence_resource.partition_point(|f| *f <= key);
        let start = j.checked_sub(1)? * FENCE_STEP;
        let block = recs.get(start..recs.len().min(start + FENCE_STEP))?;
        let i = block
            .binary_search_by(|r| (r.addr, r.prefix_len).cmp(&key))
            .ok()?;
        Some(start + i)
    }

    /// Calls `f` with every record number belonging to `duid`.
    pub fn client_records(&self, duid: &Duid, f: &mut dyn FnMut(usize)) {
        let want = duid.as_bytes();
        let h = stable_hash(want);
        let idx = self.body().by_client.as_slice();
        let recs = self.body().records.as_slice();
        let key_of = |i: &rkyv::rend::u32_le| {
            let r = recs.get(i.to_native() as usize);
            r.map(|r| {
                let d = self.duid_bytes(r);
                (stable_hash(d), d)
            })
        };
        // fence[j-1] < h <= fence[j]: the first entry with hash >= h is in block j-1.
        let j = self.fence_client.partition_point(|&f| f < h);
        let lo = j.saturating_sub(1) * FENCE_STEP;
        let hi = idx.len().min(j * FENCE_STEP + 1);
        let window = idx.get(lo..hi.max(lo)).unwrap_or(&[]);
        let start = lo + window.partition_point(|i| key_of(i).is_some_and(|k| k < (h, want)));
        for i in idx.get(start..).unwrap_or(&[]) {
            if key_of(i) != Some((h, want)) {
                break;
            }
            f(i.to_native() as usize);
        }
    }

    /// The record number at position `pos` of the expiry order, with its expiry time.
    pub fn expiry_at(&self, pos: usize) -> Option<(u64, usize)> {
        let i = self.body().by_expiry.get(pos)?.to_native() as usize;
        let r = self.body().records.get(i)?;
        Some((r.expires_at.to_native(), i))
    }

    /// Calls `f(record number, resource, state, expires_at)` for every record, in resource
    /// order, reading the archived records in place: a sequential pass over the mapped
    /// records array with no DUID copy (the startup scans). Records with an unknown state
    /// are skipped, as `lease` would refuse them.
    pub fn for_each_resource(&self, f: &mut dyn FnMut(usize, Resource, BindingState, u64)) {
        self.scan(0, usize::MAX, None, f);
    }

    /// [`Snapshot::for_each_resource`] over the records in `first..=last`: a binary search
    /// for the start, then the same sequential walk, stopping after `last`.
    pub fn for_each_resource_in(
        &self,
        first: &Resource,
        last: &Resource,
        f: &mut dyn FnMut(usize, Resource, BindingState, u64),
    ) {
        let key = (first.addr.octets(), first.prefix_len);
        let start = self
            .body()
            .records
            .as_slice()
            .partition_point(|r| (r.addr, r.prefix_len) < key);
        self.scan(
            start,
            usize::MAX,
            Some((last.addr.octets(), last.prefix_len)),
            f,
        );
    }

    fn scan(
        &self,
        start: usize,
        end: usize,
        until: Option<([u8; 16], u8)>,
        f: &mut dyn FnMut(usize, Resource, BindingState, u64),
    ) {
        let recs = self.body().records.as_slice();
        let recs = recs.get(start..end.min(recs.len())).unwrap_or(&[]);
        for (i, r) in recs.iter().enumerate() {
            if until.is_some_and(|last| (r.addr, r.prefix_len) > last) {
                break;
            }
            let i = start + i;
            let Some(state) = BindingState::from_u8(r.state) else {
                continue;
            };
            let res = Resource {
                addr: Ipv6Addr::from(r.addr),
                prefix_len: r.prefix_len,
            };
            f(i, res, state, r.expires_at.to_native());
        }
    }

    pub fn resource_of(&self, i: usize) -> Option<Resource> {
        let r = self.body().records.get(i)?;
        Some(Resource {
            addr: Ipv6Addr::from(r.addr),
            prefix_len: r.prefix_len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::store::record::tests::arb_lease;
    use proptest::prelude::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tandem-snap-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    const META: SnapMeta = SnapMeta {
        shard: 0,
        shards: 1,
        generation: 1,
        covers_segment: 0,
    };

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn written_snapshot_answers_every_lookup(leases in prop::collection::vec(arb_lease(), 0..60)) {
            let dir = tmpdir("prop");
            let mut uniq = std::collections::HashMap::new();
            for l in &leases { uniq.entry(l.resource).or_insert(*l); }
            let mut b = Builder::default();
            for l in uniq.values() { b.push(l); }
            let path = dir.join("s.snap");
            write(&path, META, &b.finish()).unwrap();
            let s = Snapshot::open(&path).unwrap();
            prop_assert_eq!(s.len(), uniq.len());
            for l in uniq.values() {
                prop_assert_eq!(s.find(&l.resource), Some(*l));
                let mut found = Vec::new();
                s.client_records(&l.duid, &mut |i| found.push(s.lease(i).unwrap()));
                prop_assert!(found.contains(l));
                prop_assert!(found.iter().all(|f| f.duid == l.duid));
            }
            let mut last = 0;
            for p in 0..s.len() {
                let (at, _) = s.expiry_at(p).unwrap();
                prop_assert!(at >= last);
                last = at;
            }
            fs::remove_dir_all(&dir).unwrap();
        }
    }

    /// Many fence blocks, clients spanning block edges, misses below, between and above.
    #[test]
    fn fenced_lookups_find_everything_in_a_large_snapshot() {
        let dir = tmpdir("fence");
        let mut b = Builder::default();
        let mut all = Vec::new();
        for i in 0..5000u32 {
            let client = i / 3; // 3 leases per client, often across a block edge
            let mut d = vec![0u8, 3, 0, 1];
            d.extend_from_slice(&client.to_be_bytes());
            let l = Lease {
                resource: Resource::address(Ipv6Addr::from(u128::from(i) * 2 + 1000)),
                ia_type: IaType::Na,
                duid: Duid::new(&d).unwrap(),
                iaid: i % 3,
                state: BindingState::Active,
                preferred_lifetime: 1,
                valid_lifetime: 2,
                cltt: 3,
                expires_at: u64::from(i),
                subnet: 0,
                partner_lifetime: 0,
                update_pending: false,
            };
            b.push(&l);
            all.push(l);
        }
        let path = dir.join("s.snap");
        write(&path, META, &b.finish()).unwrap();
        let s = Snapshot::open(&path).unwrap();
        for l in &all {
            assert_eq!(s.find(&l.resource), Some(*l));
            let miss = Resource::address(Ipv6Addr::from(u128::from(l.resource.addr) + 1));
            assert_eq!(s.find(&miss), None);
            let mut n = 0;
            s.client_records(&l.duid, &mut |i| {
                assert_eq!(s.lease(i).unwrap().duid, l.duid);
                n += 1;
            });
            let expect = all.iter().filter(|m| m.duid == l.duid).count();
            assert_eq!(n, expect);
        }
        assert_eq!(s.find(&Resource::address(Ipv6Addr::from(5u128))), None);
        assert_eq!(s.find(&Resource::address(Ipv6Addr::from(u128::MAX))), None);
        let mut n = 0;
        s.client_records(&Duid::new(&[9, 9, 9]).unwrap(), &mut |_| n += 1);
        assert_eq!(n, 0);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corruption_and_foreign_versions_are_refused() {
        let dir = tmpdir("corrupt");
        let mut b = Builder::default();
        let lease = Lease {
            resource: Resource::address("2001:db8::5".parse().unwrap()),
            ia_type: IaType::Na,
            duid: Duid::new(&[0, 3, 0, 1, 2, 3, 4, 5, 6, 7]).unwrap(),
            iaid: 1,
            state: BindingState::Active,
            preferred_lifetime: 300,
            valid_lifetime: 600,
            cltt: 1000,
            expires_at: 1600,
            subnet: 0,
            partner_lifetime: 0,
            update_pending: false,
        };
        b.push(&lease);
        let path = dir.join("s.snap");
        write(&path, META, &b.finish()).unwrap();
        let good = fs::read(&path).unwrap();
        // Flip one body byte: the body checksum refuses it.
        let mut bad = good.clone();
        let last = bad.len() - 3;
        bad[last] ^= 0x40;
        fs::write(&path, &bad).unwrap();
        assert!(matches!(Snapshot::open(&path), Err(SnapshotError::BodyCrc)));
        // Another format version (with a valid header checksum) is refused by version.
        let mut other = good.clone();
        other[8..12].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32fast::hash(&other[..60]);
        other[60..64].copy_from_slice(&crc.to_le_bytes());
        fs::write(&path, &other).unwrap();
        assert!(matches!(
            Snapshot::open(&path),
            Err(SnapshotError::Version { found: 2 })
        ));
        // Truncated file.
        fs::write(&path, &good[..good.len() - 1]).unwrap();
        assert!(matches!(
            Snapshot::open(&path),
            Err(SnapshotError::Length { .. })
        ));
        fs::write(&path, &good).unwrap();
        assert_eq!(
            Snapshot::open(&path).unwrap().find(&lease.resource),
            Some(lease)
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
