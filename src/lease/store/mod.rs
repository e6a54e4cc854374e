//! The durable lease store: per shard, an rkyv snapshot in a memory-mapped file, an in-memory
//! delta of changes since, and a write-ahead log appended with io_uring group commit.
//!
//! # Files in the data directory
//!
//! ```text
//! LOCK                                flock()ed by the one process using the directory
//! shard-<i>-of-<n>.g<gen>.snap        snapshot of shard i of n (see `snapshot`)
//! shard-<i>-of-<n>.g<gen>.wal.<seg>   WAL segments after that snapshot (see `wal`)
//! ```
//!
//! A *set* is the n snapshots of one generation. A new generation is written only when the
//! layout changes (a different shard count: leases are re-homed to their DUID's new shard) or
//! by an import; it is written completely before the old set is deleted, so a crash leaves
//! either the old complete set or the new one. Startup picks the newest complete set and
//! deletes leftovers. Compaction rewrites one shard's snapshot in place (atomic rename) and
//! deletes the WAL segments it covers.
//!
//! # Durability contract (RFC 8415 §18.3)
//!
//! [`ShardTable`] implements [`LeaseTable`]: `upsert`/`remove` log a record into the batch
//! being built and change the in-memory delta at once; `commit` seals the batch with a
//! Commit record and submits one io_uring write linked to one fdatasync (`fsync` mode) or a
//! plain write (`write` mode); `durable` reaps completions and reports the highest batch id
//! below which every batch is on disk. The shard loop releases a batch's replies only then.

pub mod kea;
pub mod record;
pub mod snapshot;
mod table;
pub mod wal;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use table::{ShardTable, StoreStats};

use crate::config::store::{Durability, StoreSection};
use crate::lease::mmap::UringLog;
use crate::lease::{Lease, LeaseTable, Resource};
use snapshot::{Builder, SnapMeta, Snapshot, SnapshotError};
use wal::{WalHeader, WalWriter};

/// Why the store could not be opened. Every variant names the file or directory.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("data directory {}: {what}: {source}", path.display())]
    DataDir {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(
        "data directory {} is in use by another tandem process{holder}; \
         stop it or choose another --data-dir",
        path.display()
    )]
    Locked { path: PathBuf, holder: String },
    #[error(
        "snapshot {}: {source}; refusing to serve from it (restore it from a backup, or move \
         it away to start without its leases)",
        path.display()
    )]
    Snapshot {
        path: PathBuf,
        #[source]
        source: SnapshotError,
    },
    #[error("WAL segment {}: {reason}; refusing to start", path.display())]
    Wal { path: PathBuf, reason: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("data directory {}: {reason}", path.display())]
    Layout { path: PathBuf, reason: String },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The exclusive lock on a data directory, held as long as any table of it lives.
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Locks `dir/LOCK` (flock, non-blocking) and writes our pid into it for the next one
    /// who tries.
    pub fn acquire(dir: &Path) -> Result<DirLock, StoreError> {
        let path = dir.join("LOCK");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|source| StoreError::DataDir {
                path: dir.to_path_buf(),
                what: "cannot create the lock file (is it writable?)",
                source,
            })?;
        match crate::lease::mmap::try_lock_exclusive(&file) {
            Ok(true) => {}
            Ok(false) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => String::new(),
                    pid => format!(" (pid {pid})"),
                };
                return Err(StoreError::Locked {
                    path: dir.to_path_buf(),
                    holder,
                });
            }
            Err(e) => return Err(io_at(&path)(e)),
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        Ok(DirLock { _file: file })
    }
}

/// File name of a snapshot.
fn snapshot_name(shard: u32, shards: u32, generation: u64) -> String {
    format!("shard-{shard}-of-{shards}.g{generation}.snap")
}

fn snapshot_path(l: &table::Layout) -> PathBuf {
    l.dir.join(snapshot_name(l.shard, l.shards, l.generation))
}

/// What a file name in the data directory says it is.
#[derive(Debug, PartialEq, Eq)]
enum Name {
    Snapshot {
        shard: u32,
        shards: u32,
        generation: u64,
    },
    Wal(WalHeader),
    Temp,
    Other,
}

fn parse_name(name: &str) -> Name {
    if name.ends_with(".tmp") && name.starts_with("shard-") {
        return Name::Temp;
    }
    let Some(rest) = name.strip_prefix("shard-") else {
        return Name::Other;
    };
    let parse = || -> Option<Name> {
        let (shard, rest) = rest.split_once("-of-")?;
        let (shards, rest) = rest.split_once(".g")?;
        let (shard, shards) = (shard.parse().ok()?, shards.parse().ok()?);
        if let Some(g) = rest.strip_suffix(".snap") {
            return Some(Name::Snapshot {
                shard,
                shards,
                generation: g.parse().ok()?,
            });
        }
        let (g, seg) = rest.split_once(".wal.")?;
        Some(Name::Wal(WalHeader {
            shard,
            shards,
            generation: g.parse().ok()?,
            segment: seg.parse().ok()?,
        }))
    };
    parse().unwrap_or(Name::Other)
}

/// The files found in a data directory.
#[derive(Default)]
struct Scan {
    /// (generation, shards) → shard → path.
    sets: BTreeMap<(u64, u32), BTreeMap<u32, PathBuf>>,
    wals: Vec<(WalHeader, PathBuf)>,
    temps: Vec<PathBuf>,
}

impl Scan {
    fn read(dir: &Path) -> Result<Scan, StoreError> {
        let mut scan = Scan::default();
        let entries = fs::read_dir(dir).map_err(|source| StoreError::DataDir {
            path: dir.to_path_buf(),
            what: "cannot list",
            source,
        })?;
        for e in entries {
            let e = e.map_err(io_at(dir))?;
            let Some(name) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            match parse_name(&name) {
                Name::Snapshot {
                    shard,
                    shards,
                    generation,
                } => {
                    scan.sets
                        .entry((generation, shards))
                        .or_default()
                        .insert(shard, e.path());
                }
                Name::Wal(h) => scan.wals.push((h, e.path())),
                Name::Temp => scan.temps.push(e.path()),
                Name::Other => {}
            }
        }
        scan.wals
            .sort_by_key(|(h, _)| (h.generation, h.shards, h.shard, h.segment));
        Ok(scan)
    }

    /// The newest generation whose set is complete (every shard 0..n present).
    fn current(&self) -> Option<(u64, u32)> {
        self.sets
            .iter()
            .rev()
            .find(|(&(_, n), files)| n > 0 && (0..n).all(|i| files.contains_key(&i)))
            .map(|(&k, _)| k)
    }
}

/// What opening found and did, for the startup log and the tooling.
#[derive(Debug, Default, Clone)]
pub struct OpenReport {
    pub generation: u64,
    /// Shard count of the previous run when leases were re-homed.
    pub rehomed_from: Option<u32>,
    pub leases: usize,
    pub wal_batches_replayed: u64,
    /// WAL tails cut: (file, offset, why).
    pub cut_tails: Vec<(PathBuf, u64, String)>,
    pub stale_files_removed: usize,
}

/// An opened data directory: one table per shard (and the directory lock they share).
pub struct Store {
    pub tables: Vec<ShardTable>,
    pub report: OpenReport,
}

impl Store {
    /// Opens (creating if needed) the store for `shards` shards as `[store]` says. With
    /// durability `memory` no file is touched. A different shard count than the data on disk
    /// re-homes every lease to its DUID's new shard before anything is served.
    pub fn open(cfg: &StoreSection, shards: usize) -> Result<Store, StoreError> {
        let shards = u32::try_from(shards.max(1)).unwrap_or(u32::MAX);
        if cfg.durability == Durability::Memory {
            return Ok(Store {
                tables: (0..shards).map(|_| ShardTable::in_memory()).collect(),
                report: OpenReport::default(),
            });
        }
        let dir = cfg.data_dir.as_path();
        prepare_dir(dir)?;
        let lock = Arc::new(DirLock::acquire(dir)?);
        let mut report = OpenReport::default();
        let mut scan = Scan::read(dir)?;
        for t in scan.temps.drain(..) {
            let _ = fs::remove_file(&t);
            report.stale_files_removed += 1;
        }
        let (generation, on_disk) = match scan.current() {
            Some(k) => k,
            None => {
                if let Some((_, files)) = scan.sets.iter().next_back() {
                    // Snapshots exist but no set is complete: files went missing.
                    let have: Vec<String> =
                        files.values().map(|p| p.display().to_string()).collect();
                    return Err(StoreError::Layout {
                        path: dir.to_path_buf(),
                        reason: format!(
                            "incomplete set of snapshots ({}); refusing to start without the \
                             missing shards' leases",
                            have.join(", ")
                        ),
                    });
                }
                if let Some((_, p)) = scan.wals.first() {
                    return Err(StoreError::Layout {
                        path: dir.to_path_buf(),
                        reason: format!("WAL segment {} without its snapshot", p.display()),
                    });
                }
                write_empty_set(dir, shards, 1)?;
                scan = Scan::read(dir)?;
                (1, shards)
            }
        };
        report.stale_files_removed += remove_stale(dir, &scan, (generation, on_disk));
        let generation = if on_disk != shards {
            let g = rewrite(dir, (generation, on_disk), shards, &lock, |_| Ok(()))?;
            report.rehomed_from = Some(on_disk);
            tracing::info!(
                from = on_disk,
                to = shards,
                "shard count changed: leases re-homed to their DUIDs' new shards"
            );
            let rescan = Scan::read(dir)?;
            report.stale_files_removed += remove_stale(dir, &rescan, (g, shards));
            g
        } else {
            generation
        };
        report.generation = generation;
        let scan = Scan::read(dir)?;
        // Shards are independent (own snapshot, own WAL): open them in parallel, so the
        // checksum and archive validation of every snapshot byte and the WAL replays use
        // every core instead of one (restart time, issue 3 §7).
        let opened: Vec<Result<(ShardTable, OpenReport), StoreError>> =
            std::thread::scope(|scope| {
                let workers: Vec<_> = (0..shards)
                    .map(|shard| {
                        let (scan, lock) = (&scan, &lock);
                        scope.spawn(move || {
                            open_and_attach(cfg, dir, scan, lock, (shard, shards), generation)
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                    .collect()
            });
        let mut tables = Vec::with_capacity(shards as usize);
        for r in opened {
            let (t, r) = r?;
            report.wal_batches_replayed += r.wal_batches_replayed;
            report.cut_tails.extend(r.cut_tails);
            report.leases += t.len();
            tables.push(t);
        }
        Ok(Store { tables, report })
    }

    /// Opens the data directory for reading only (the offline `tandem leases` tools): takes
    /// the lock, maps the current set as it is (no re-homing, no new files) and replays the
    /// WAL into memory.
    pub fn open_read_only(dir: &Path) -> Result<Store, StoreError> {
        if !dir.is_dir() {
            return Err(StoreError::DataDir {
                path: dir.to_path_buf(),
                what: "not a directory",
                source: io::Error::from(io::ErrorKind::NotFound),
            });
        }
        let lock = Arc::new(DirLock::acquire(dir)?);
        let scan = Scan::read(dir)?;
        let mut report = OpenReport::default();
        let Some((generation, shards)) = scan.current() else {
            return Ok(Store {
                tables: Vec::new(),
                report,
            });
        };
        report.generation = generation;
        let mut tables = Vec::new();
        for shard in 0..shards {
            let layout = table::Layout {
                dir: dir.to_path_buf(),
                shard,
                shards,
                generation,
            };
            let (t, _) = open_shard(
                layout,
                &scan,
                Durability::Memory,
                Some(&lock),
                &mut report,
                false,
            )?;
            report.leases += t.len();
            tables.push(t);
        }
        Ok(Store { tables, report })
    }

    /// Adds leases to the data directory offline (`tandem leases import`): takes the lock,
    /// loads the current set, lets `add` push new leases (it sees the existing ones through
    /// the lookup function it is given), and writes a new generation with `shards` shards (or
    /// the current count). Returns the generation written.
    pub fn add_offline(
        dir: &Path,
        shards: Option<usize>,
        add: impl FnOnce(&dyn Fn(&Resource) -> Option<Lease>, &mut dyn FnMut(Lease)) -> io::Result<()>,
    ) -> Result<u64, StoreError> {
        prepare_dir(dir)?;
        let lock = Arc::new(DirLock::acquire(dir)?);
        let scan = Scan::read(dir)?;
        let current = match scan.current() {
            Some(k) => k,
            None => {
                let n = shards.unwrap_or(1).max(1) as u32;
                write_empty_set(dir, n, 1)?;
                (1, n)
            }
        };
        let n = shards.map_or(current.1, |s| s.max(1) as u32);
        let g = rewrite(dir, current, n, &lock, |cb| add(cb.0, cb.1))?;
        let rescan = Scan::read(dir)?;
        remove_stale(dir, &rescan, (g, n));
        Ok(g)
    }
}

/// Opens shard `shard` of `shards` of the current set for serving: maps, verifies and
/// replays it (cutting a torn tail), starts its next WAL segment and starts folding any
/// replayed changes into a new snapshot in the background.
fn open_and_attach(
    cfg: &StoreSection,
    dir: &Path,
    scan: &Scan,
    lock: &Arc<DirLock>,
    (shard, shards): (u32, u32),
    generation: u64,
) -> Result<(ShardTable, OpenReport), StoreError> {
    let mut report = OpenReport::default();
    let layout = table::Layout {
        dir: dir.to_path_buf(),
        shard,
        shards,
        generation,
    };
    let (mut t, last_segment) =
        open_shard(layout, scan, cfg.durability, Some(lock), &mut report, true)?;
    let header = WalHeader {
        shard,
        shards,
        generation,
        segment: last_segment + 1,
    };
    let ring = UringLog::new(256).map_err(|source| StoreError::DataDir {
        path: dir.to_path_buf(),
        what: "cannot set up io_uring for the WAL",
        source,
    })?;
    let w = WalWriter::create(
        dir,
        header,
        cfg.wal_chunk(),
        cfg.durability == Durability::Fsync,
        ring,
    )
    .map_err(io_at(&wal::segment_path(dir, &header)))?;
    t.attach_wal(
        w,
        cfg.compact_after_changes.get() as usize,
        cfg.max_in_flight.get() as usize,
        cfg.wal_chunk(),
    );
    // Fold what was replayed into a fresh snapshot while serving, so restarts never pile up
    // WAL segments.
    t.compact_in_background();
    Ok((t, report))
}

/// Creates the data directory if its parent exists; refuses a missing parent or a path that
/// is not a writable directory.
fn prepare_dir(dir: &Path) -> Result<(), StoreError> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(StoreError::DataDir {
            path: dir.to_path_buf(),
            what: "exists but is not a directory",
            source: io::Error::from(io::ErrorKind::AlreadyExists),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir(dir).map_err(|source| StoreError::DataDir {
                path: dir.to_path_buf(),
                what: "does not exist and cannot be created",
                source,
            })
        }
        Err(source) => Err(StoreError::DataDir {
            path: dir.to_path_buf(),
            what: "cannot be read",
            source,
        }),
    }
}

fn write_empty_set(dir: &Path, shards: u32, generation: u64) -> Result<(), StoreError> {
    for shard in 0..shards {
        let path = dir.join(snapshot_name(shard, shards, generation));
        let meta = SnapMeta {
            shard,
            shards,
            generation,
            covers_segment: 0,
        };
        snapshot::write(&path, meta, &Builder::default().finish()).map_err(io_at(&path))?;
    }
    Ok(())
}

/// Deletes every snapshot and WAL segment not of the set `keep`.
fn remove_stale(dir: &Path, scan: &Scan, keep: (u64, u32)) -> usize {
    let mut removed = 0;
    for (&(g, n), files) in &scan.sets {
        if (g, n) != keep {
            for p in files.values() {
                tracing::info!(file = %p.display(), "removing a snapshot of an older layout");
                removed += usize::from(fs::remove_file(p).is_ok());
            }
        }
    }
    for (h, p) in &scan.wals {
        if (h.generation, h.shards) != keep {
            removed += usize::from(fs::remove_file(p).is_ok());
        }
    }
    if removed > 0 {
        let _ = snapshot::sync_dir(dir);
    }
    removed
}

/// Deletes one shard's WAL segments numbered <= `upto` (covered by its snapshot).
fn remove_segments_upto(l: &table::Layout, upto: u64) {
    let Ok(scan) = Scan::read(&l.dir) else { return };
    let mut removed = false;
    for (h, p) in &scan.wals {
        if h.shard == l.shard
            && h.shards == l.shards
            && h.generation == l.generation
            && h.segment <= upto
        {
            removed |= fs::remove_file(p).is_ok();
        }
    }
    if removed {
        let _ = snapshot::sync_dir(&l.dir);
    }
}

/// Opens one shard of the current set: maps and verifies its snapshot, replays its WAL
/// segments in order (cutting a torn tail, and truncating it when `fix`), and returns the
/// table and the highest segment number seen.
fn open_shard(
    layout: table::Layout,
    scan: &Scan,
    durability: Durability,
    lock: Option<&Arc<DirLock>>,
    report: &mut OpenReport,
    fix: bool,
) -> Result<(ShardTable, u64), StoreError> {
    let path = snapshot_path(&layout);
    let snap = Snapshot::open(&path).map_err(|source| StoreError::Snapshot {
        path: path.clone(),
        source,
    })?;
    let h = snap.header;
    if (h.shard, h.shards, h.generation) != (layout.shard, layout.shards, layout.generation) {
        return Err(StoreError::Snapshot {
            path,
            source: SnapshotError::Archive(format!(
                "header says shard {} of {} generation {}, the file name says {} of {} generation {}",
                h.shard, h.shards, h.generation, layout.shard, layout.shards, layout.generation
            )),
        });
    }
    let covers = h.covers_segment;
    let mut last = covers;
    let segments: Vec<&(WalHeader, PathBuf)> = scan
        .wals
        .iter()
        .filter(|(w, _)| {
            w.shard == layout.shard
                && w.shards == layout.shards
                && w.generation == layout.generation
        })
        .collect();
    let mut table = ShardTable::new(
        Some(table::Layout {
            dir: layout.dir.clone(),
            ..layout
        }),
        durability,
        Some(Arc::new(snap)),
        lock.cloned(),
    );
    let mut covered = BTreeSet::new();
    for (w, p) in segments {
        last = last.max(w.segment);
        if w.segment <= covers {
            covered.insert(p.clone());
            continue;
        }
        let r =
            wal::replay(p, *w, &mut |rec| table.apply(rec)).map_err(|reason| StoreError::Wal {
                path: p.clone(),
                reason,
            })?;
        report.wal_batches_replayed += r.batches;
        if fix && r.cut.is_none() {
            // Give back the space reserved beyond the data (never appended to again).
            if let Ok(f) = OpenOptions::new().write(true).open(p) {
                if f.set_len(r.valid_end).is_ok() {
                    let _ = f.sync_all();
                }
            }
        }
        if let Some((at, why)) = r.cut {
            tracing::warn!(
                file = %p.display(),
                offset = at,
                reason = ?why,
                "WAL tail torn or corrupt: cut at the last complete batch"
            );
            report.cut_tails.push((p.clone(), at, format!("{why:?}")));
            if fix {
                let f = OpenOptions::new().write(true).open(p).map_err(io_at(p))?;
                f.set_len(at).map_err(io_at(p))?;
                f.sync_all().map_err(io_at(p))?;
            }
        }
        if fix && r.batches == 0 {
            // Nothing complete in it, so nothing acknowledged: drop the empty segment.
            let _ = fs::remove_file(p);
        }
    }
    if fix {
        for p in covered {
            let _ = fs::remove_file(p);
        }
    }
    Ok((table, last))
}

/// Writes generation `from.0 + 1` with `shards` shards from the set `from` plus whatever
/// `add` pushes, then deletes the old set. Crash-safe: the new set is complete on disk
/// (files and directory synced) before anything old is removed.
fn rewrite(
    dir: &Path,
    from: (u64, u32),
    shards: u32,
    lock: &Arc<DirLock>,
    add: impl FnOnce((&dyn Fn(&Resource) -> Option<Lease>, &mut dyn FnMut(Lease))) -> io::Result<()>,
) -> Result<u64, StoreError> {
    let (generation, old_shards) = from;
    let scan = Scan::read(dir)?;
    let mut report = OpenReport::default();
    let mut old = Vec::new();
    for shard in 0..old_shards {
        let layout = table::Layout {
            dir: dir.to_path_buf(),
            shard,
            shards: old_shards,
            generation,
        };
        let (t, _) = open_shard(
            layout,
            &scan,
            Durability::Memory,
            Some(lock),
            &mut report,
            false,
        )?;
        old.push(t);
    }
    let mut builders: Vec<Builder> = (0..shards).map(|_| Builder::default()).collect();
    for t in &old {
        t.for_each(&mut |l| builders[l.duid.shard_of(shards as usize)].push(l));
    }
    {
        let lookup = |r: &Resource| old.iter().find_map(|t| t.by_resource(r));
        let mut push = |l: Lease| builders[l.duid.shard_of(shards as usize)].push(&l);
        add((&lookup, &mut push)).map_err(io_at(dir))?;
    }
    drop(old);
    let new_gen = generation + 1;
    for (shard, b) in builders.into_iter().enumerate() {
        let shard = shard as u32;
        let path = dir.join(snapshot_name(shard, shards, new_gen));
        let meta = SnapMeta {
            shard,
            shards,
            generation: new_gen,
            covers_segment: 0,
        };
        snapshot::write(&path, meta, &b.finish()).map_err(io_at(&path))?;
    }
    snapshot::sync_dir(dir).map_err(io_at(dir))?;
    Ok(new_gen)
}

/// For each shard, the resources in its allocation partition that are leased by a client
/// of another shard (after re-homing, or imported from another server). `partition` says
/// which shard's allocator would hand a resource out (`None`: outside every pool). The
/// engine treats these as taken until the next restart (see SEAMS.md).
///
/// One thread per table, each a sequential scan of resources only
/// ([`LeaseTable::for_each_resource`]): in steady state the sets are empty, after a re-home
/// they hold most leases, and neither case decodes a lease.
pub fn foreign_resources<T: LeaseTable + Sync>(
    tables: &[T],
    partition: &(dyn Fn(&Resource) -> Option<usize> + Sync),
) -> Vec<Vec<Resource>> {
    let n = tables.len();
    let per_table: Vec<Vec<Vec<Resource>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = tables
            .iter()
            .enumerate()
            .map(|(owner, t)| {
                scope.spawn(move || {
                    let mut out = vec![Vec::new(); n];
                    t.for_each_resource(&mut |r, _, _| {
                        if let Some(p) = partition(r) {
                            if p != owner && p < n {
                                out[p].push(*r);
                            }
                        }
                    });
                    out
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let mut out = vec![Vec::new(); n];
    for found in per_table {
        for (p, resources) in found.into_iter().enumerate() {
            out[p].extend(resources);
        }
    }
    out
}

/// The allocation partition rule of `crate::alloc` for `shards` shards over `config`'s
/// pools: addresses by their interface-id, delegated prefixes by their index in the pool.
pub fn partition_of(
    config: &crate::config::Config,
    shards: usize,
) -> impl Fn(&Resource) -> Option<usize> + Sync + '_ {
    let n = shards.max(1);
    move |r: &Resource| {
        if r.is_prefix() {
            config
                .subnets
                .iter()
                .flat_map(|s| s.pd_pools.iter())
                .find_map(|p| p.index_of(r.addr, r.prefix_len))
                .map(|idx| idx as usize % n)
        } else {
            let iid = u128::from(r.addr) as u64;
            Some(((iid >> 1) % n as u64) as usize)
        }
    }
}

#[cfg(test)]
mod tests;
