//! The lease store's boundary with the kernel: read-only file mappings of snapshots, the
//! validated rkyv view over them, space preallocation, and the io_uring ring that writes the
//! write-ahead log. This is the only file under `lease/` with `unsafe` code; every block says
//! which invariant makes it sound. The rest of the store is safe code over these wrappers.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use io_uring::{opcode, squeue, types, IoUring};

use super::store::snapshot::ArchivedSnapBody;

/// A read-only mapping of a whole snapshot file, owned by one value and unmapped on drop.
pub struct MappedFile {
    map: memmap2::Mmap,
}

impl MappedFile {
    /// Maps `file` read-only.
    pub fn map(file: &File) -> io::Result<MappedFile> {
        // SAFETY: memmap2 requires that the file is not truncated or modified while mapped
        // (that would be undefined behaviour / SIGBUS). Snapshot files are written under a
        // temporary name, fsynced and renamed into place, and never opened for writing again:
        // a new snapshot always gets a new inode. The data directory is flock()ed by the one
        // server (or offline tool) using it, so no other tandem process rewrites it meanwhile.
        // Compaction unlinks old snapshots, which keeps the inode (and our mapping) alive.
        let map = unsafe { memmap2::MmapOptions::new().map(file)? };
        Ok(MappedFile { map })
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// Asks the kernel to read the whole file ahead (`MADV_WILLNEED`): opening a snapshot
    /// checksums every byte, so on a cold page cache the reads should be queued at once
    /// rather than page fault by page fault. Advisory; a refusal changes nothing.
    pub fn will_need(&self) {
        let _ = self.map.advise(memmap2::Advice::WillNeed);
    }
}

/// A snapshot body whose rkyv archive has been validated once (bytecheck) at open time, so
/// lookups afterwards access it without re-checking.
pub struct ValidatedSnapshot {
    file: MappedFile,
    body_start: usize,
    body_end: usize,
}

impl ValidatedSnapshot {
    /// Validates the archive in `file[body_start..body_end]`. The caller has already checked
    /// the range against the file length and verified the body checksum.
    pub fn new(
        file: MappedFile,
        body_start: usize,
        body_end: usize,
    ) -> Result<ValidatedSnapshot, rkyv::rancor::Error> {
        let body = file
            .bytes()
            .get(body_start..body_end)
            .ok_or_else(|| <rkyv::rancor::Error as rkyv::rancor::Source>::new(BadRange))?;
        rkyv::access::<ArchivedSnapBody, rkyv::rancor::Error>(body)?;
        Ok(ValidatedSnapshot {
            file,
            body_start,
            body_end,
        })
    }

    pub fn body(&self) -> &ArchivedSnapBody {
        let bytes = &self.file.bytes()[self.body_start..self.body_end];
        // SAFETY: `new` ran the validating `rkyv::access` over exactly this byte range of this
        // mapping, and the mapping is immutable for our lifetime (see `MappedFile::map`), so
        // the bytes still form a valid `ArchivedSnapBody` rooted at the same position.
        unsafe { rkyv::access_unchecked::<ArchivedSnapBody>(bytes) }
    }

    pub fn file_len(&self) -> usize {
        self.file.len()
    }
}

#[derive(Debug)]
struct BadRange;
impl std::fmt::Display for BadRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("snapshot body range outside the file")
    }
}
impl std::error::Error for BadRange {}

/// Reserves disk blocks for `file[offset..offset+len]` (fallocate mode 0, which also extends
/// the file size). Writes into reserved blocks cannot fail with ENOSPC, which is how the store
/// learns that the disk is full *before* it accepts a lease it could not log.
pub fn preallocate(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(off), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(io::Error::from_raw_os_error(libc::EFBIG));
    };
    loop {
        // SAFETY: fallocate only reads its integer arguments; the descriptor is owned by the
        // borrowed `File` and stays open for the duration of the call.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, off, len) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Takes an exclusive `flock` on `file` without blocking. `Ok(false)`: another open file
/// description holds it (another process, or another open in this one). The lock lives as
/// long as the file stays open. (`File::try_lock` does the same but needs Rust 1.89.)
pub fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    loop {
        // SAFETY: flock only takes the descriptor and flags; the descriptor is owned by the
        // borrowed `File` and stays open for the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(err),
        }
    }
}

/// One in-flight log append: the buffer and the file must live until the kernel is done.
struct InFlight {
    _file: Arc<File>,
    buf: Vec<u8>,
    /// Result of the write CQE, once seen (the fsync CQE completes the entry).
    write_done: Option<i32>,
    sync: bool,
}

/// An io_uring used to append to the WAL: each append is one write, optionally linked to one
/// fdatasync (RFC 8415 §18.3 stable storage; the link makes the sync cover the write).
pub struct UringLog {
    ring: IoUring,
    /// Slab of in-flight appends keyed by tag; the kernel holds pointers into `buf`.
    inflight: HashMap<u64, InFlight>,
}

const WRITE_BIT: u64 = 0;
const SYNC_BIT: u64 = 1;

impl UringLog {
    pub fn new(entries: u32) -> io::Result<UringLog> {
        Ok(UringLog {
            ring: IoUring::new(entries)?,
            inflight: HashMap::new(),
        })
    }

    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// Queues `buf` for writing at `offset` of `file` and (with `sync`) one linked fdatasync,
    /// then submits. `tag` identifies the append in [`reap`](Self::reap); it must be unique
    /// among in-flight appends.
    pub fn append(
        &mut self,
        file: &Arc<File>,
        offset: u64,
        buf: Vec<u8>,
        sync: bool,
        tag: u64,
    ) -> io::Result<()> {
        let len =
            u32::try_from(buf.len()).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
        let needed = if sync { 2 } else { 1 };
        // Make room in the submission queue: completed entries are consumed by `reap`.
        while {
            let sq = self.ring.submission();
            sq.capacity() - sq.len() < needed
        } {
            self.ring.submit()?;
        }
        let fd = types::Fd(file.as_raw_fd());
        let entry = InFlight {
            _file: Arc::clone(file),
            buf,
            write_done: None,
            sync,
        };
        let ptr = entry.buf.as_ptr();
        let write = opcode::Write::new(fd, ptr, len)
            .offset(offset)
            .build()
            .user_data(tag << 1 | WRITE_BIT);
        let write = if sync {
            write.flags(squeue::Flags::IO_LINK)
        } else {
            write
        };
        // The slab entry is inserted before the SQE is pushed: `ptr` points into the Vec's
        // heap buffer, which does not move when the Vec itself moves into the map.
        self.inflight.insert(tag, entry);
        let mut sq = self.ring.submission();
        // SAFETY: the SQE points at `buf`'s heap allocation (len bytes) and at `file`'s
        // descriptor; both are owned by the slab entry for `tag`, which is removed only in
        // `reap` after the last CQE of this append (write, or linked fsync) has arrived, or
        // never if the ring is dropped first (the slab is dropped after the ring; see Drop).
        unsafe {
            sq.push(&write)
                .map_err(|_| io::Error::from_raw_os_error(libc::EBUSY))?;
        }
        if sync {
            let fsync = opcode::Fsync::new(fd)
                .flags(types::FsyncFlags::DATASYNC)
                .build()
                .user_data(tag << 1 | SYNC_BIT);
            // SAFETY: fsync references only the descriptor, kept open by the slab entry as
            // above.
            unsafe {
                sq.push(&fsync)
                    .map_err(|_| io::Error::from_raw_os_error(libc::EBUSY))?;
            }
        }
        drop(sq);
        self.ring.submit()?;
        Ok(())
    }

    /// Collects completions, waiting for at least one if `wait` and anything is in flight.
    /// Calls `done(tag, result)` once per finished append: `Ok(())` when the whole buffer was
    /// written (and synced), the OS error otherwise (a short write reports ENOSPC).
    pub fn reap(
        &mut self,
        wait: bool,
        done: &mut dyn FnMut(u64, io::Result<()>),
    ) -> io::Result<()> {
        if wait && !self.inflight.is_empty() {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let mut finished: Vec<(u64, io::Result<()>)> = Vec::new();
        for cqe in self.ring.completion() {
            let tag = cqe.user_data() >> 1;
            let is_sync = cqe.user_data() & 1 == SYNC_BIT;
            let res = cqe.result();
            let Some(entry) = self.inflight.get_mut(&tag) else {
                continue;
            };
            if !is_sync {
                entry.write_done = Some(res);
                if entry.sync {
                    continue; // the linked fsync (or its cancellation) follows
                }
            }
            let write_res = entry.write_done.unwrap_or(-libc::ECANCELED);
            let outcome = if write_res < 0 {
                Err(io::Error::from_raw_os_error(-write_res))
            } else if usize::try_from(write_res).ok() != Some(entry.buf.len()) {
                Err(io::Error::from_raw_os_error(libc::ENOSPC))
            } else if is_sync && res < 0 {
                Err(io::Error::from_raw_os_error(-res))
            } else {
                Ok(())
            };
            finished.push((tag, outcome));
        }
        for (tag, outcome) in finished {
            self.inflight.remove(&tag);
            done(tag, outcome);
        }
        Ok(())
    }
}

impl Drop for UringLog {
    fn drop(&mut self) {
        // Let the kernel finish with every buffer before the slab frees them.
        while !self.inflight.is_empty() {
            if self.reap(true, &mut |_, _| {}).is_err() {
                // The ring is unusable; leak the buffers rather than free memory the kernel
                // may still write from.
                std::mem::forget(std::mem::take(&mut self.inflight));
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn linked_write_and_sync_complete_together() {
        let dir = std::env::temp_dir().join(format!("tandem-uring-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        let file = Arc::new(
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .read(true)
                .write(true)
                .open(&path)
                .unwrap(),
        );
        let mut log = UringLog::new(8).unwrap();
        log.append(&file, 0, b"hello ".to_vec(), true, 1).unwrap();
        log.append(&file, 6, b"world".to_vec(), false, 2).unwrap();
        let mut seen = Vec::new();
        while log.in_flight() > 0 {
            log.reap(true, &mut |tag, r| seen.push((tag, r.is_ok())))
                .unwrap();
        }
        seen.sort();
        assert_eq!(seen, vec![(1, true), (2, true)]);
        let mut s = String::new();
        File::open(&path).unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello world");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
