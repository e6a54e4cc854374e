//! WAL segments: `shard-<i>-of-<n>.wal.<segment>`, a 64-byte header then framed records
//! (see [`record`](super::record)). A shard appends to one segment; a new segment starts at
//! every open and every compaction, and segments covered by a snapshot are deleted.
//!
//! Space is reserved ahead with fallocate in chunks, so a write never hits ENOSPC: a full
//! disk is noticed when a chunk cannot be reserved, while the lease that needs it is still
//! being decided (see `ShardTable::upsert`), never after a Reply was promised.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::record::{self, DecodeError, Record};
use super::snapshot::sync_dir;
use crate::lease::mmap::{preallocate, UringLog};

pub const MAGIC: &[u8; 8] = b"TNDMWAL\0";
pub const FORMAT_VERSION: u32 = 1;
pub const HEADER_LEN: u64 = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalHeader {
    pub shard: u32,
    pub shards: u32,
    pub generation: u64,
    pub segment: u64,
}

impl WalHeader {
    fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut h = [0u8; HEADER_LEN as usize];
        h[0..8].copy_from_slice(MAGIC);
        h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&self.shard.to_le_bytes());
        h[16..20].copy_from_slice(&self.shards.to_le_bytes());
        h[24..32].copy_from_slice(&self.generation.to_le_bytes());
        h[32..40].copy_from_slice(&self.segment.to_le_bytes());
        let crc = crc32fast::hash(&h[..60]);
        h[60..64].copy_from_slice(&crc.to_le_bytes());
        h
    }

    fn decode(h: &[u8]) -> Result<WalHeader, String> {
        let h = h
            .get(..HEADER_LEN as usize)
            .ok_or("shorter than its header")?;
        if &h[0..8] != MAGIC {
            return Err("not a tandem WAL segment (bad magic)".into());
        }
        let u32_at = |o: usize| u32::from_le_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[o..o + 8]);
            u64::from_le_bytes(b)
        };
        if crc32fast::hash(&h[..60]) != u32_at(60) {
            return Err("header checksum mismatch".into());
        }
        let v = u32_at(8);
        if v != FORMAT_VERSION {
            return Err(format!(
                "format version {v} is not supported (this build reads version {FORMAT_VERSION})"
            ));
        }
        Ok(WalHeader {
            shard: u32_at(12),
            shards: u32_at(16),
            generation: u64_at(24),
            segment: u64_at(32),
        })
    }
}

/// `shard-<i>-of-<n>.g<generation>.wal.<segment>`.
pub fn segment_path(dir: &Path, h: &WalHeader) -> PathBuf {
    dir.join(format!(
        "shard-{}-of-{}.g{}.wal.{}",
        h.shard, h.shards, h.generation, h.segment
    ))
}

/// What replaying one segment found.
#[derive(Debug, Default)]
pub struct Replay {
    /// Complete batches applied.
    pub batches: u64,
    pub records: u64,
    pub last_seq: u64,
    /// End of the last complete batch (where appending could resume).
    pub valid_end: u64,
    /// Bytes after `valid_end` that were not zero fill: a torn or corrupt tail, cut.
    pub cut: Option<(u64, DecodeError)>,
}

/// Replays the segment at `path`, calling `apply` for each record of each complete batch in
/// order. A torn or corrupt tail stops the replay at the last complete batch.
pub fn replay(
    path: &Path,
    expect: WalHeader,
    apply: &mut dyn FnMut(Record),
) -> Result<Replay, String> {
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    if bytes.len() < HEADER_LEN as usize && bytes.iter().all(|&b| b == 0) {
        // Created but the header never reached the disk: an empty segment.
        return Ok(Replay::default());
    }
    let header = WalHeader::decode(&bytes)?;
    if header != expect {
        return Err(format!(
            "header names shard {}/{} generation {} segment {}, expected {}/{} generation {} segment {}",
            header.shard,
            header.shards,
            header.generation,
            header.segment,
            expect.shard,
            expect.shards,
            expect.generation,
            expect.segment
        ));
    }
    let mut pos = HEADER_LEN as usize;
    let mut out = Replay {
        valid_end: HEADER_LEN,
        ..Replay::default()
    };
    let mut batch: Vec<Record> = Vec::new();
    loop {
        match record::decode(&bytes[pos..]) {
            Ok((rec, used)) => {
                pos += used;
                if let Record::Commit { seq, count } = rec {
                    if count as usize != batch.len() || seq <= out.last_seq && out.batches > 0 {
                        // A commit that does not close what precedes it: treat as corrupt.
                        out.cut = Some((out.valid_end, DecodeError::BadBody));
                        break;
                    }
                    out.records += batch.len() as u64;
                    for r in batch.drain(..) {
                        apply(r);
                    }
                    out.batches += 1;
                    out.last_seq = seq;
                    out.valid_end = pos as u64;
                } else {
                    batch.push(rec);
                }
            }
            Err(e) => {
                let tail = &bytes[out.valid_end as usize..];
                if !tail.iter().all(|&b| b == 0) {
                    out.cut = Some((out.valid_end, e));
                }
                break;
            }
        }
    }
    Ok(out)
}

/// The append side of one shard's current segment.
pub struct WalWriter {
    dir: PathBuf,
    header: WalHeader,
    file: Arc<File>,
    /// Where the next batch goes.
    offset: u64,
    /// File length reserved with fallocate.
    allocated: u64,
    chunk: u64,
    ring: UringLog,
    sync: bool,
}

impl WalWriter {
    /// Creates segment `header.segment` (header written, first chunk reserved, file and
    /// directory synced so the segment survives a crash before its first batch does).
    pub fn create(
        dir: &Path,
        header: WalHeader,
        chunk: u64,
        sync: bool,
        ring: UringLog,
    ) -> io::Result<WalWriter> {
        let (file, allocated) = new_segment(dir, &header, chunk)?;
        Ok(WalWriter {
            dir: dir.to_path_buf(),
            header,
            file: Arc::new(file),
            offset: HEADER_LEN,
            allocated,
            chunk,
            ring,
            sync,
        })
    }

    pub fn segment(&self) -> u64 {
        self.header.segment
    }

    /// Bytes reserved but not yet claimed by a submitted batch.
    pub fn room(&self) -> u64 {
        self.allocated - self.offset
    }

    /// Reserves one more chunk (or `at_least` bytes if larger). Fails with the OS error,
    /// typically ENOSPC.
    pub fn grow(&mut self, at_least: u64) -> io::Result<()> {
        let add = self.chunk.max(at_least);
        preallocate(&self.file, self.allocated, add)?;
        self.allocated += add;
        Ok(())
    }

    /// Submits one batch (already framed, ending with its Commit record) as one write linked
    /// to one fdatasync (or a plain write in `write` mode). The caller made sure it fits.
    pub fn submit(&mut self, buf: Vec<u8>, tag: u64) -> io::Result<()> {
        let len = buf.len() as u64;
        debug_assert!(len <= self.room());
        self.ring
            .append(&self.file, self.offset, buf, self.sync, tag)?;
        self.offset += len;
        Ok(())
    }

    pub fn reap(
        &mut self,
        wait: bool,
        done: &mut dyn FnMut(u64, io::Result<()>),
    ) -> io::Result<()> {
        self.ring.reap(wait, done)
    }

    pub fn in_flight(&self) -> usize {
        self.ring.in_flight()
    }

    /// Clean shutdown, nothing in flight: gives back the reserved space after the data so
    /// the next start replays only what was written.
    pub fn trim(&self) -> io::Result<()> {
        self.file.set_len(self.offset)?;
        self.file.sync_all()
    }

    /// Starts segment `header.segment + 1` and returns the old writer's segment number;
    /// batches in flight on the old segment still complete through the same ring.
    pub fn rotate(&mut self) -> io::Result<u64> {
        let next = WalHeader {
            segment: self.header.segment + 1,
            ..self.header
        };
        let (file, allocated) = new_segment(&self.dir, &next, self.chunk)?;
        let old = self.header.segment;
        self.header = next;
        self.file = Arc::new(file);
        self.offset = HEADER_LEN;
        self.allocated = allocated;
        Ok(old)
    }
}

/// Creates a segment file: header written, up to one chunk reserved, file and directory
/// synced (so the segment survives a crash before its first batch does). On a full disk
/// the segment is created with no reserve (the table then refuses new leases); only when
/// not even the header fits is it an error. Returns the file and the bytes reserved.
fn new_segment(dir: &Path, header: &WalHeader, chunk: u64) -> io::Result<(File, u64)> {
    let path = segment_path(dir, header);
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    let init = (|| {
        let allocated = match preallocate(&file, 0, HEADER_LEN + chunk) {
            Ok(()) => HEADER_LEN + chunk,
            Err(e) if is_no_space(&e) => {
                preallocate(&file, 0, HEADER_LEN)?;
                HEADER_LEN
            }
            Err(e) => return Err(e),
        };
        file.write_all_at(&header.encode(), 0)?;
        file.sync_all()?;
        sync_dir(dir)?;
        Ok(allocated)
    })();
    match init {
        Ok(allocated) => Ok((file, allocated)),
        Err(e) => {
            drop(file);
            let _ = fs::remove_file(&path);
            Err(e)
        }
    }
}

/// ENOSPC or EDQUOT: the filesystem (or the quota) is full.
pub fn is_no_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}
