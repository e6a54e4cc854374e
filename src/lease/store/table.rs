//! One shard's durable lease table: snapshot (mapped) + frozen delta (being compacted) +
//! active delta (hashbrown), with every change appended to the WAL and group-committed.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use hashbrown::HashMap;

use super::record::{self, Record};
use super::snapshot::{self, Builder, SnapMeta, Snapshot};
use super::wal::WalWriter;
use super::DirLock;
use crate::config::store::Durability;
use crate::lease::{BindingState, CommitId, Duid, IaType, Lease, LeaseTable, Resource, TableError};

/// Parts of a [`SplitMap`].
const PARTS: usize = 16;

/// A hash map cut into [`PARTS`] maps by a hash of the key. A hash map grows by rehashing
/// everything at once, which in the shard thread is a pause in packet service; split, each
/// growth rehashes a sixteenth of the entries (a few ms at a million entries instead of
/// ~170 ms measured for one map on the benchmark machine).
#[derive(Clone)]
struct SplitMap<K, V> {
    parts: Vec<HashMap<K, V>>,
    len: usize,
}

/// Which part of a [`SplitMap`] a key lives in.
trait PartOf {
    fn part(&self) -> usize;
}

/// Fibonacci hashing of a 64-bit value to a part number.
fn part_of_u64(x: u64) -> usize {
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 60) as usize % PARTS
}

impl PartOf for Resource {
    fn part(&self) -> usize {
        // Addresses differ in their low bits, delegated prefixes in their high bits.
        let x = u128::from(self.addr);
        part_of_u64(x as u64 ^ (x >> 64) as u64 ^ u64::from(self.prefix_len))
    }
}

impl PartOf for u64 {
    fn part(&self) -> usize {
        part_of_u64(*self)
    }
}

impl<K: PartOf + Eq + std::hash::Hash, V> Default for SplitMap<K, V> {
    fn default() -> Self {
        SplitMap {
            parts: (0..PARTS).map(|_| HashMap::new()).collect(),
            len: 0,
        }
    }
}

impl<K: PartOf + Eq + std::hash::Hash, V> SplitMap<K, V> {
    fn get(&self, k: &K) -> Option<&V> {
        self.parts[k.part()].get(k)
    }

    fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.parts[k.part()].get_mut(k)
    }

    fn contains_key(&self, k: &K) -> bool {
        self.parts[k.part()].contains_key(k)
    }

    fn insert(&mut self, k: K, v: V) -> Option<V> {
        let old = self.parts[k.part()].insert(k, v);
        self.len += usize::from(old.is_none());
        old
    }

    /// The value for `k`, inserting `v` first if there is none.
    fn get_or_insert(&mut self, k: K, v: V) -> &mut V {
        match self.parts[k.part()].entry(k) {
            hashbrown::hash_map::Entry::Occupied(o) => o.into_mut(),
            hashbrown::hash_map::Entry::Vacant(e) => {
                self.len += 1;
                e.insert(v)
            }
        }
    }

    fn remove(&mut self, k: &K) -> Option<V> {
        let old = self.parts[k.part()].remove(k);
        self.len -= usize::from(old.is_some());
        old
    }

    fn len(&self) -> usize {
        self.len
    }

    fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.parts.iter().flat_map(|p| p.iter())
    }
}

/// Changes over the layers below, with the indexes lookups need.
///
/// The leases live in a slab (`slots`) and the hash maps hold only small keys and slot
/// numbers, split in parts, so when a map outgrows its capacity the rehash moves a
/// sixteenth of its ~24-byte entries rather than all of ~200-byte leases: with a million
/// changes that is a pause of milliseconds instead of most of a second in the shard's packet
/// service. (The slab grows by `realloc`, which the allocator does with `mremap` at this
/// size: no copy.)
#[derive(Default, Clone)]
pub(super) struct Delta {
    /// Resource → its slot.
    index: SplitMap<Resource, u32>,
    slots: Vec<Slot>,
    /// Slots no longer used, reused before the slab grows.
    free: Vec<u32>,
    /// Stable hash of a DUID → first slot of the chain of live leases whose DUIDs have that
    /// hash (chained through `Slot::next_of_client`; a chain is one client's few leases).
    by_client: SplitMap<u64, u32>,
    /// Deadline buckets: expiry second → the slots of the live leases ending then (each
    /// slot knows its position, `Slot::deadline_pos`). A renewal moves its slot from one
    /// bucket to another in O(1): a swap-remove and a push onto the bucket of `now +
    /// lifetime`, which every renewal of that second shares and keeps in cache. (An ordered
    /// set of (expiry, resource) cost two searches from the root per renewal, inserts
    /// scattered by resource order inside the current second: a quarter of a bound client's
    /// Solicit + Request in the engine micro-benchmark.)
    expiry: BTreeMap<u64, Vec<u32>>,
    /// The slots of the last two leases a client lookup returned.
    recent: RecentSlots,
}

/// The last two slots [`Delta::client`] returned, so that writing back the lease just read
/// (the engine reads a client's binding, then renews it) finds its slot without a second,
/// cache-missing probe of the resource index. Only a hint: a slot is used only if it holds a
/// live lease of the resource asked for, and a slot holding resource `r`'s live lease is
/// always `index[r]`. An atomic because a frozen delta is shared with the compaction thread
/// (`Relaxed`: any value read is validated).
#[derive(Default)]
struct RecentSlots(AtomicU64);

impl Clone for RecentSlots {
    fn clone(&self) -> Self {
        RecentSlots(AtomicU64::new(self.0.load(Ordering::Relaxed)))
    }
}

impl RecentSlots {
    fn note(&self, slot: u32) {
        let before = self.0.load(Ordering::Relaxed);
        self.0
            .store((before << 32) | u64::from(slot), Ordering::Relaxed);
    }

    fn both(&self) -> [u32; 2] {
        let v = self.0.load(Ordering::Relaxed);
        [v as u32, (v >> 32) as u32]
    }
}

/// One entry of the delta: a live lease, or `None` for a tombstone (the resource was
/// removed although a lower layer holds it).
#[derive(Clone, Copy)]
struct Slot {
    lease: Option<Lease>,
    next_of_client: u32,
    /// Position of this slot in its deadline bucket (live leases only).
    deadline_pos: u32,
}

/// End of a client chain.
const NIL: u32 = u32::MAX;

impl Delta {
    /// The slot of `r`: a recently read slot if it holds `r`'s live lease, else the index.
    fn slot_of(&self, r: &Resource) -> Option<u32> {
        for s in self.recent.both() {
            let live = self.slots.get(s as usize).and_then(|x| x.lease.as_ref());
            if live.is_some_and(|l| l.resource == *r) {
                return Some(s);
            }
        }
        self.index.get(r).copied()
    }

    fn get(&self, r: &Resource) -> Option<Option<&Lease>> {
        self.slot_of(r)
            .map(|s| self.slots[s as usize].lease.as_ref())
    }

    fn contains(&self, r: &Resource) -> bool {
        self.index.contains_key(r)
    }

    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    /// Every entry: the resource and its lease, `None` for a tombstone.
    fn entries(&self) -> impl Iterator<Item = (Resource, Option<Lease>)> + '_ {
        self.index
            .iter()
            .map(|(r, &s)| (*r, self.slots[s as usize].lease))
    }

    /// The live leases of `duid` (a hash chain, filtered to the exact DUID).
    fn client<'a>(&'a self, duid: &'a Duid) -> impl Iterator<Item = &'a Lease> + 'a {
        let mut at = self
            .by_client
            .get(&duid.stable_hash())
            .copied()
            .unwrap_or(NIL);
        std::iter::from_fn(move || {
            while at != NIL {
                let here = at;
                let slot = &self.slots[at as usize];
                at = slot.next_of_client;
                match &slot.lease {
                    Some(l) if l.duid == *duid => {
                        self.recent.note(here);
                        return Some(l);
                    }
                    _ => continue,
                }
            }
            None
        })
    }

    /// Puts slot `s` into the bucket of deadline `at`.
    fn add_deadline(&mut self, s: u32, at: u64) {
        let bucket = self.expiry.entry(at).or_default();
        self.slots[s as usize].deadline_pos = bucket.len() as u32;
        bucket.push(s);
    }

    /// Takes slot `s` out of the bucket of deadline `at`.
    fn remove_deadline(&mut self, s: u32, at: u64) {
        let Some(bucket) = self.expiry.get_mut(&at) else {
            debug_assert!(false, "slot {s} has no deadline bucket {at}");
            return;
        };
        let mut pos = self.slots[s as usize].deadline_pos as usize;
        if bucket.get(pos) != Some(&s) {
            // Not reachable while `deadline_pos` is kept up to date; stay correct anyway.
            debug_assert!(false, "slot {s}: stale deadline position");
            let Some(p) = bucket.iter().position(|&x| x == s) else {
                return;
            };
            pos = p;
        }
        bucket.swap_remove(pos);
        if let Some(&moved) = bucket.get(pos) {
            self.slots[moved as usize].deadline_pos = pos as u32;
        }
        if bucket.is_empty() {
            self.expiry.remove(&at);
        }
    }

    /// The first deadline entry at or after cursor `(at, pos)` (bucket `at` from position
    /// `pos`, then the later buckets), as (deadline, position, lease). For the frozen
    /// delta, which never changes, so positions stay valid.
    fn deadline_from(&self, (from, from_pos): (u64, usize)) -> Option<(u64, usize, Lease)> {
        for (&at, bucket) in self.expiry.range(from..) {
            let start = if at == from { from_pos } else { 0 };
            for (pos, &s) in bucket.iter().enumerate().skip(start) {
                if let Some(l) = self.slots.get(s as usize).and_then(|x| x.lease) {
                    return Some((at, pos, l));
                }
            }
        }
        None
    }

    /// The live lease with the earliest deadline, if that deadline is at or before `now`.
    fn first_due(&mut self, now: u64) -> Option<Lease> {
        loop {
            let mut bucket = self.expiry.first_entry()?;
            let at = *bucket.key();
            if at > now {
                return None;
            }
            let Some(&s) = bucket.get().last() else {
                bucket.remove();
                continue;
            };
            match self.slots.get(s as usize).and_then(|x| x.lease) {
                Some(l) if l.expires_at == at => return Some(l),
                // Not reachable (buckets hold live leases at their deadline); never loop.
                _ => {
                    bucket.get_mut().pop();
                }
            }
        }
    }

    /// Takes slot `s`'s live lease out of the client chain and the expiry queue.
    fn unlink(&mut self, s: u32, old: &Lease) {
        self.remove_deadline(s, old.expires_at);
        let h = old.duid.stable_hash();
        let next = self.slots[s as usize].next_of_client;
        self.slots[s as usize].next_of_client = NIL;
        let Some(head) = self.by_client.get_mut(&h) else {
            return;
        };
        if *head == s {
            if next == NIL {
                self.by_client.remove(&h);
            } else {
                *head = next;
            }
            return;
        }
        let mut at = *head;
        while at != NIL {
            let following = self.slots[at as usize].next_of_client;
            if following == s {
                self.slots[at as usize].next_of_client = next;
                return;
            }
            at = following;
        }
    }

    /// Puts slot `s`'s live lease into the client chain and the expiry queue.
    fn link(&mut self, s: u32, l: &Lease) {
        let head = self.by_client.get_or_insert(l.duid.stable_hash(), NIL);
        self.slots[s as usize].next_of_client = *head;
        *head = s;
        self.add_deadline(s, l.expires_at);
    }

    /// Sets the entry for `r` (a live lease, or `None` = tombstone), or drops it with
    /// `entry = None, keep_tombstone = false`.
    fn set(&mut self, r: Resource, entry: Option<Lease>, keep_tombstone: bool) {
        let keep = entry.is_some() || keep_tombstone;
        let s = match self.slot_of(&r) {
            Some(s) => {
                let slot = &mut self.slots[s as usize];
                match (slot.lease.as_mut(), &entry) {
                    // A renewal (same client): the slot stays in its client chain, only
                    // the record and, when it moved, its deadline change.
                    (Some(old), Some(new)) if old.duid == new.duid => {
                        let old = std::mem::replace(old, *new);
                        if old.expires_at != new.expires_at {
                            self.remove_deadline(s, old.expires_at);
                            self.add_deadline(s, new.expires_at);
                        }
                        return;
                    }
                    _ => {}
                }
                if let Some(old) = self.slots[s as usize].lease.take() {
                    self.unlink(s, &old);
                }
                if !keep {
                    self.index.remove(&r);
                    self.free.push(s);
                    return;
                }
                s
            }
            None if !keep => return,
            None => {
                let slot = Slot {
                    lease: None,
                    next_of_client: NIL,
                    deadline_pos: 0,
                };
                let s = match self.free.pop() {
                    Some(s) => {
                        self.slots[s as usize] = slot;
                        s
                    }
                    None => {
                        self.slots.push(slot);
                        (self.slots.len() - 1) as u32
                    }
                };
                self.index.insert(r, s);
                s
            }
        };
        self.slots[s as usize].lease = entry;
        if let Some(l) = entry {
            self.link(s, &l);
        }
    }

    fn live(&self) -> impl Iterator<Item = &Lease> {
        self.slots.iter().filter_map(|s| s.lease.as_ref())
    }
}

/// Where a table's files live.
pub(super) struct Layout {
    pub dir: PathBuf,
    pub shard: u32,
    pub shards: u32,
    pub generation: u64,
}

/// A running background compaction.
struct Compaction {
    /// Highest WAL segment the new snapshot will contain.
    covers: u64,
    handle: JoinHandle<io::Result<Snapshot>>,
}

/// Counters the shard loop can log.
#[derive(Clone, Copy, Debug, Default)]
pub struct StoreStats {
    pub commits: u64,
    pub records_logged: u64,
    pub bytes_logged: u64,
    pub compactions: u64,
    pub compaction_failures: u64,
    pub refused_full: u64,
}

/// A shard's lease table. Implements [`LeaseTable`]; see the module docs of
/// [`crate::lease::store`] for the layers and the durability contract.
pub struct ShardTable {
    pub(super) layout: Option<Layout>,
    durability: Durability,
    snap: Option<Arc<Snapshot>>,
    frozen: Option<Arc<Delta>>,
    delta: Delta,
    len: usize,
    wal: Option<WalWriter>,
    /// Frames of the batch being built (sealed by `commit`).
    pending: Vec<u8>,
    pending_count: u32,
    last_commit: CommitId,
    durable: CommitId,
    completed: BTreeSet<CommitId>,
    failed: Option<TableError>,
    /// A WAL reservation failed: new resources are refused until space returns.
    full: bool,
    full_retry: u32,
    /// Expiry cursors over the immutable layers.
    snap_cursor: usize,
    /// Next frozen deadline to look at: (bucket, position in it).
    frozen_cursor: Option<(u64, usize)>,
    compaction: Option<Compaction>,
    compact_after: usize,
    max_in_flight: usize,
    /// Bytes of reserved WAL space kept for updates of existing leases once the disk is full.
    reserve: u64,
    stats: StoreStats,
    _lock: Option<Arc<DirLock>>,
}

/// Framed size of a Commit record.
const COMMIT_FRAME: usize = 2 + 1 + 8 + 4 + 4;

impl ShardTable {
    /// A table with no files (durability `memory`).
    pub fn in_memory() -> ShardTable {
        ShardTable::new(None, Durability::Memory, None, None)
    }

    pub(super) fn new(
        layout: Option<Layout>,
        durability: Durability,
        snap: Option<Arc<Snapshot>>,
        lock: Option<Arc<DirLock>>,
    ) -> ShardTable {
        let len = snap.as_ref().map_or(0, |s| s.len());
        ShardTable {
            layout,
            durability,
            snap,
            frozen: None,
            delta: Delta::default(),
            len,
            wal: None,
            pending: Vec::new(),
            pending_count: 0,
            last_commit: 0,
            durable: 0,
            completed: BTreeSet::new(),
            failed: None,
            full: false,
            full_retry: 0,
            snap_cursor: 0,
            frozen_cursor: None,
            compaction: None,
            compact_after: usize::MAX,
            max_in_flight: 64,
            reserve: 0,
            stats: StoreStats::default(),
            _lock: lock,
        }
    }

    pub(super) fn attach_wal(
        &mut self,
        wal: WalWriter,
        compact_after: usize,
        max_in_flight: usize,
        chunk: u64,
    ) {
        self.wal = Some(wal);
        self.compact_after = compact_after.max(1);
        self.max_in_flight = max_in_flight.max(1);
        // Keep an eighth of a chunk (at least a few hundred renewals) for existing leases.
        self.reserve = (chunk / 8).max(16 * record::MAX_FRAME as u64);
    }

    pub fn durability(&self) -> Durability {
        self.durability
    }

    pub fn stats(&self) -> StoreStats {
        self.stats
    }

    /// True while new resources are refused for lack of disk space.
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// Shard number and count this table belongs to (0/1 in memory mode).
    pub fn shard(&self) -> (u32, u32) {
        self.layout.as_ref().map_or((0, 1), |l| (l.shard, l.shards))
    }

    /// Bytes of the mapped snapshot file (0 without one).
    pub fn snapshot_bytes(&self) -> usize {
        self.snap.as_ref().map_or(0, |s| s.file_len())
    }

    /// Records held in the in-memory layers (active + frozen delta).
    pub fn delta_len(&self) -> usize {
        self.delta.len() + self.frozen.as_ref().map_or(0, |f| f.len())
    }

    fn lookup(&self, r: &Resource) -> Option<Lease> {
        if let Some(e) = self.delta.get(r) {
            return e.copied();
        }
        if let Some(f) = &self.frozen {
            if let Some(e) = f.get(r) {
                return e.copied();
            }
        }
        self.snap.as_ref().and_then(|s| s.find(r))
    }

    /// Whether any layer holds a live record for `r` (no lease is built).
    fn exists(&self, r: &Resource) -> bool {
        if let Some(e) = self.delta.get(r) {
            return e.is_some();
        }
        if let Some(f) = &self.frozen {
            if let Some(e) = f.get(r) {
                return e.is_some();
            }
        }
        self.snap.as_ref().is_some_and(|s| s.position(r).is_some())
    }

    /// True if a layer under the active delta has a live record for `r`.
    fn lower_has(&self, r: &Resource) -> bool {
        if let Some(f) = &self.frozen {
            if let Some(e) = f.get(r) {
                return e.is_some();
            }
        }
        self.snap.as_ref().is_some_and(|s| s.position(r).is_some())
    }

    /// The startup scans: resource, state and expiry of every live record (in `range`),
    /// read from the snapshot's archived records in place, then the delta layers.
    fn resources(
        &self,
        range: Option<(&Resource, &Resource)>,
        f: &mut dyn FnMut(&Resource, BindingState, u64),
    ) {
        let wanted = |r: &Resource| range.is_none_or(|(first, last)| first <= r && r <= last);
        if let Some(s) = &self.snap {
            // Right after a compaction (the usual restart) nothing shadows the snapshot:
            // skip the per-record hash probes then.
            let shadowed =
                self.delta.len() > 0 || self.frozen.as_ref().is_some_and(|f| f.len() > 0);
            let mut visit = |_, r: Resource, state, expires_at| {
                if !shadowed || !self.shadowed_above_snap(&r) {
                    f(&r, state, expires_at);
                }
            };
            match range {
                Some((first, last)) => s.for_each_resource_in(first, last, &mut visit),
                None => s.for_each_resource(&mut visit),
            }
        }
        if let Some(fr) = &self.frozen {
            for l in fr.live() {
                if wanted(&l.resource) && !self.delta.contains(&l.resource) {
                    f(&l.resource, l.state, l.expires_at);
                }
            }
        }
        for l in self.delta.live() {
            if wanted(&l.resource) {
                f(&l.resource, l.state, l.expires_at);
            }
        }
    }

    fn shadowed_above_snap(&self, r: &Resource) -> bool {
        self.delta.contains(r) || self.frozen.as_ref().is_some_and(|f| f.contains(r))
    }

    fn client_view(&self, duid: &Duid, f: &mut dyn FnMut(Lease)) {
        if let Some(s) = &self.snap {
            s.client_records(duid, &mut |i| {
                let Some(r) = s.resource_of(i) else { return };
                if !self.shadowed_above_snap(&r) {
                    if let Some(l) = s.lease(i) {
                        f(l);
                    }
                }
            });
        }
        if let Some(fr) = &self.frozen {
            for l in fr.client(duid) {
                if !self.delta.contains(&l.resource) {
                    f(*l);
                }
            }
        }
        for l in self.delta.client(duid) {
            f(*l);
        }
    }

    /// Applies a change to the in-memory layers only (WAL replay).
    pub(super) fn apply(&mut self, rec: Record) {
        let existed = match &rec {
            Record::Upsert(l) => self.exists(&l.resource),
            Record::Remove(r) => self.exists(r),
            Record::Commit { .. } => return,
        };
        self.apply_known(rec, existed);
    }

    /// Applies a change whose resource the caller already knows to hold a live record
    /// (`existed`) or not, so the hot path looks each resource up once.
    fn apply_known(&mut self, rec: Record, existed: bool) {
        match rec {
            Record::Upsert(l) => {
                if !existed {
                    self.len += 1;
                }
                self.delta.set(l.resource, Some(l), true);
            }
            Record::Remove(r) => {
                if existed {
                    self.len -= 1;
                    let keep = self.lower_has(&r);
                    self.delta.set(r, None, keep);
                }
            }
            Record::Commit { .. } => {}
        }
    }

    /// Makes sure the WAL has room for `frame_len` more bytes in the batch being built.
    /// New resources may not eat into the reserve kept for renewals.
    fn ensure_room(&mut self, frame_len: usize, new_resource: bool) -> Result<(), TableError> {
        let Some(wal) = self.wal.as_mut() else {
            return Ok(());
        };
        let need = (self.pending.len() + frame_len + COMMIT_FRAME) as u64;
        let want = if new_resource {
            need + self.reserve
        } else {
            need
        };
        if want <= wal.room() {
            return Ok(());
        }
        if self.full && new_resource {
            // Do not hammer a full filesystem: retry the reservation now and then.
            self.full_retry += 1;
            if self.full_retry % 256 != 0 {
                self.stats.refused_full += 1;
                return Err(TableError::Full);
            }
        }
        match wal.grow(want.saturating_sub(wal.room())) {
            Ok(()) => {
                if self.full {
                    tracing::info!("lease store has disk space again; granting new leases");
                }
                self.full = false;
                Ok(())
            }
            Err(e) => {
                if !self.full {
                    tracing::error!(
                        error = %e,
                        "cannot reserve WAL space: refusing new leases, renewals continue"
                    );
                }
                self.full = true;
                if need <= wal.room() && !new_resource {
                    return Ok(());
                }
                self.stats.refused_full += 1;
                if super::wal::is_no_space(&e) {
                    Err(TableError::Full)
                } else {
                    Err(TableError::Io)
                }
            }
        }
    }

    /// Logs and applies one change; `existed`: the resource holds a live record now.
    fn change(&mut self, rec: Record, existed: bool) -> Result<(), TableError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.wal.is_some() {
            self.ensure_room(record::frame_len(&rec), !existed)?;
            record::encode(&rec, &mut self.pending);
        }
        self.pending_count += 1;
        self.apply_known(rec, existed);
        Ok(())
    }

    fn expire_one(
        &mut self,
        mut lease: Lease,
        now_secs: u64,
        freed: &mut Vec<Lease>,
    ) -> Result<(), TableError> {
        if lease.state == BindingState::Active {
            // RFC 8415 §18.3: the resource returns to the pool at the end of its valid
            // lifetime; the record stays as Expired for one more lifetime so a returning
            // client can be recognised (same rule as the in-memory table).
            lease.state = BindingState::Expired;
            lease.expires_at = now_secs.saturating_add(u64::from(lease.valid_lifetime));
            self.change(Record::Upsert(lease), true)?;
            freed.push(lease);
        } else {
            self.change(Record::Remove(lease.resource), true)?;
        }
        Ok(())
    }

    /// Finishes a compaction if its thread is done (or waits for it with `block`).
    fn poll_compaction(&mut self, block: bool) {
        let done = self
            .compaction
            .as_ref()
            .is_some_and(|c| block || c.handle.is_finished());
        if !done {
            return;
        }
        let Some(c) = self.compaction.take() else {
            return;
        };
        let result = c
            .handle
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("compaction thread panicked")));
        let frozen = self.frozen.take();
        match result {
            Ok(new) => {
                self.snap = Some(Arc::new(new));
                self.snap_cursor = 0;
                self.frozen_cursor = None;
                self.stats.compactions += 1;
                if let Some(l) = &self.layout {
                    super::remove_segments_upto(l, c.covers);
                }
                self.full = false;
            }
            Err(e) => {
                self.stats.compaction_failures += 1;
                tracing::error!(error = %e, "compaction failed; keeping the WAL, will retry");
                // Put the frozen changes back under the newer ones.
                if let Some(fr) = frozen {
                    let fr = Arc::try_unwrap(fr).unwrap_or_else(|a| (*a).clone());
                    for (r, e) in fr.entries() {
                        if !self.delta.contains(&r) {
                            // Tombstones stay tombstones: the snapshot below still has `r`.
                            self.delta.set(r, e, true);
                        }
                    }
                }
                self.frozen_cursor = None;
                // Back off: wait for another full delta before trying again.
                self.compact_after = self.compact_after.saturating_mul(2);
            }
        }
    }

    /// Starts a background compaction: rotates the WAL, freezes the delta and merges it
    /// with the snapshot into a new snapshot file on another thread.
    fn start_compaction(&mut self) {
        // One at a time: the frozen layer and the WAL segment it covers are single slots.
        if self.compaction.is_some() || self.frozen.is_some() {
            return;
        }
        let (Some(layout), Some(wal)) = (self.layout.as_ref(), self.wal.as_mut()) else {
            return;
        };
        let covers = match wal.rotate() {
            Ok(old) => old,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a WAL segment; compaction postponed");
                self.compact_after = self.compact_after.saturating_mul(2);
                return;
            }
        };
        let frozen = Arc::new(std::mem::take(&mut self.delta));
        self.frozen = Some(Arc::clone(&frozen));
        self.frozen_cursor = None;
        let snap = self.snap.clone();
        let for_thread = Arc::clone(&frozen);
        let path = super::snapshot_path(layout);
        let meta = SnapMeta {
            shard: layout.shard,
            shards: layout.shards,
            generation: layout.generation,
            covers_segment: covers,
        };
        let handle = std::thread::Builder::new()
            .name(format!("tandem-compact-{}", layout.shard))
            .spawn(move || {
                let body = merge(snap.as_deref(), &for_thread);
                snapshot::write(&path, meta, &body)?;
                drop(body);
                Snapshot::open(&path).map_err(|e| io::Error::other(e.to_string()))
            });
        match handle {
            Ok(handle) => self.compaction = Some(Compaction { covers, handle }),
            Err(e) => {
                tracing::error!(error = %e, "cannot spawn the compaction thread");
                self.frozen = None;
                // The closure (and its clone of the Arc) was dropped with the error.
                if let Ok(fr) = Arc::try_unwrap(frozen) {
                    self.delta = fr;
                }
            }
        }
    }

    /// Starts a background compaction if the in-memory delta holds anything (at startup
    /// after a WAL replay: folds the replayed segments into the snapshot and deletes them).
    pub fn compact_in_background(&mut self) {
        if self.delta.len() > 0 {
            self.start_compaction();
        }
    }

    /// Waits for a running background compaction to finish (clean shutdown, tests).
    pub fn finish_compaction(&mut self) {
        self.poll_compaction(true);
    }

    /// Runs a compaction to completion now (tooling, tests, clean shutdown).
    pub fn compact_now(&mut self) -> Result<(), TableError> {
        self.poll_compaction(true);
        if self.wal.is_none() {
            return Ok(());
        }
        self.commit()?;
        // The commit may have started one already; let it finish, then fold in the rest.
        self.poll_compaction(true);
        self.start_compaction();
        self.poll_compaction(true);
        Ok(())
    }

    /// Waits until every committed batch is durable.
    pub fn sync(&mut self) -> Result<CommitId, TableError> {
        self.commit()?;
        while self.durable(false)? < self.last_commit {
            self.durable(true)?;
        }
        Ok(self.durable)
    }
}

/// Merges the snapshot with the frozen delta into a new body (runs on the compaction thread).
fn merge(snap: Option<&Snapshot>, frozen: &Delta) -> snapshot::SnapBody {
    let n = snap.map_or(0, |s| s.len()) + frozen.len();
    let mut b = Builder::with_capacity(n);
    if let Some(s) = snap {
        for i in 0..s.len() {
            let Some(r) = s.resource_of(i) else { continue };
            if frozen.contains(&r) {
                continue;
            }
            if let Some(l) = s.lease(i) {
                b.push(&l);
            }
        }
    }
    for l in frozen.live() {
        b.push(l);
    }
    b.finish()
}

impl LeaseTable for ShardTable {
    fn ia_leases(&self, duid: &Duid, ia_type: IaType, iaid: u32, out: &mut Vec<Lease>) {
        self.client_view(duid, &mut |l| {
            if l.ia_type == ia_type && l.iaid == iaid {
                out.push(l);
            }
        });
    }

    fn client_leases(&self, duid: &Duid, out: &mut Vec<Lease>) {
        self.client_view(duid, &mut |l| out.push(l));
    }

    fn by_resource(&self, resource: &Resource) -> Option<Lease> {
        self.lookup(resource)
    }

    fn upsert(&mut self, lease: Lease) -> Result<(), TableError> {
        let existed = self.exists(&lease.resource);
        self.change(Record::Upsert(lease), existed)
    }

    fn remove(&mut self, resource: &Resource) -> Result<(), TableError> {
        if !self.exists(resource) {
            return Ok(());
        }
        self.change(Record::Remove(*resource), true)
    }

    fn expire(&mut self, now_secs: u64, budget: usize, freed: &mut Vec<Lease>) -> usize {
        let mut changed = 0;
        // Index entries of the immutable layers that were changed since (shadowed) are
        // skipped; the cursors never go back, so each costs one hash probe once.
        // Active delta first: its own queue is always exact.
        while changed < budget {
            let Some(lease) = self.delta.first_due(now_secs) else {
                break;
            };
            if self.expire_one(lease, now_secs, freed).is_err() {
                return changed;
            }
            changed += 1;
        }
        // Frozen delta: immutable, walked with a cursor; entries changed since are skipped.
        while changed < budget {
            let Some(fr) = self.frozen.clone() else { break };
            let Some((at, pos, lease)) = fr.deadline_from(self.frozen_cursor.unwrap_or((0, 0)))
            else {
                break;
            };
            if at > now_secs {
                break;
            }
            self.frozen_cursor = Some((at, pos + 1));
            if self.delta.contains(&lease.resource) {
                continue;
            }
            if self.expire_one(lease, now_secs, freed).is_err() {
                return changed;
            }
            changed += 1;
        }
        // Snapshot: walked in expiry order with a cursor.
        while changed < budget {
            let Some(s) = self.snap.clone() else { break };
            let Some((at, i)) = s.expiry_at(self.snap_cursor) else {
                break;
            };
            if at > now_secs {
                break;
            }
            let Some(r) = s.resource_of(i) else {
                self.snap_cursor += 1;
                continue;
            };
            if self.shadowed_above_snap(&r) {
                self.snap_cursor += 1;
                continue;
            }
            let Some(lease) = s.lease(i) else {
                self.snap_cursor += 1;
                continue;
            };
            if self.expire_one(lease, now_secs, freed).is_err() {
                return changed;
            }
            self.snap_cursor += 1;
            changed += 1;
        }
        changed
    }

    fn len(&self) -> usize {
        self.len
    }

    fn for_each(&self, f: &mut dyn FnMut(&Lease)) {
        if let Some(s) = &self.snap {
            for i in 0..s.len() {
                let Some(r) = s.resource_of(i) else { continue };
                if self.shadowed_above_snap(&r) {
                    continue;
                }
                if let Some(l) = s.lease(i) {
                    f(&l);
                }
            }
        }
        if let Some(fr) = &self.frozen {
            for l in fr.live() {
                if !self.delta.contains(&l.resource) {
                    f(l);
                }
            }
        }
        for l in self.delta.live() {
            f(l);
        }
    }

    fn for_each_resource(&self, f: &mut dyn FnMut(&Resource, BindingState, u64)) {
        self.resources(None, f);
    }

    fn for_each_resource_in(
        &self,
        first: &Resource,
        last: &Resource,
        f: &mut dyn FnMut(&Resource, BindingState, u64),
    ) {
        self.resources(Some((first, last)), f);
    }

    fn commit(&mut self) -> Result<Option<CommitId>, TableError> {
        self.poll_compaction(false);
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.pending_count == 0 {
            return Ok(None);
        }
        let seq = self.last_commit + 1;
        let count = std::mem::take(&mut self.pending_count);
        if self.wal.is_none() {
            // Memory mode: nothing to wait for.
            self.pending.clear();
            self.last_commit = seq;
            self.durable = seq;
            self.stats.commits += 1;
            return Ok(Some(seq));
        }
        record::encode(&Record::Commit { seq, count }, &mut self.pending);
        let buf = std::mem::take(&mut self.pending);
        self.stats.bytes_logged += buf.len() as u64;
        self.stats.records_logged += u64::from(count);
        self.stats.commits += 1;
        // Bound the pipeline: wait for the oldest batches when too many are in flight.
        while self
            .wal
            .as_ref()
            .is_some_and(|w| w.in_flight() >= self.max_in_flight)
        {
            let mut done = Vec::new();
            let r = match self.wal.as_mut() {
                Some(w) => w.reap(true, &mut |tag, res| done.push((tag, res))),
                None => Ok(()),
            };
            self.note_completions(done);
            if let Err(e) = r {
                tracing::error!(error = %e, "io_uring failed");
                self.failed = Some(TableError::Io);
            }
            if let Some(e) = self.failed {
                return Err(e);
            }
        }
        let Some(wal) = self.wal.as_mut() else {
            return Err(TableError::Io);
        };
        if let Err(e) = wal.submit(buf, seq) {
            tracing::error!(error = %e, "cannot submit a WAL write");
            self.failed = Some(TableError::Io);
            return Err(TableError::Io);
        }
        self.last_commit = seq;
        if self.compaction.is_none() && self.delta.len() >= self.compact_after {
            self.start_compaction();
        }
        Ok(Some(seq))
    }

    fn durable(&mut self, wait: bool) -> Result<CommitId, TableError> {
        if let Some(wal) = self.wal.as_mut() {
            let mut done = Vec::new();
            let wait = wait && wal.in_flight() > 0;
            let r = wal.reap(wait, &mut |tag, res| done.push((tag, res)));
            self.note_completions(done);
            if let Err(e) = r {
                tracing::error!(error = %e, "io_uring failed");
                self.failed = Some(TableError::Io);
            }
        } else {
            self.durable = self.last_commit;
        }
        self.poll_compaction(false);
        match self.failed {
            Some(e) => Err(e),
            None => Ok(self.durable),
        }
    }
}

impl ShardTable {
    fn note_completions(&mut self, done: Vec<(u64, io::Result<()>)>) {
        for (tag, res) in done {
            match res {
                Ok(()) => {
                    self.completed.insert(tag);
                }
                Err(e) => {
                    // The batch's replies must never be sent; the store stops accepting
                    // changes (the shard answers with errors) rather than guess.
                    tracing::error!(error = %e, batch = tag, "WAL write or sync failed");
                    self.failed = Some(TableError::Io);
                }
            }
        }
        // Batches complete out of order; the durable mark moves only over a contiguous run.
        while self.completed.remove(&(self.durable + 1)) {
            self.durable += 1;
        }
    }
}

impl Drop for ShardTable {
    fn drop(&mut self) {
        // Finish the batch being built and everything in flight, then the compaction, so the
        // data directory is quiescent when the lock is released.
        if self.failed.is_none() && self.wal.is_some() {
            let _ = self.sync();
        }
        self.poll_compaction(true);
        if let Some(w) = &self.wal {
            if self.failed.is_none() && w.in_flight() == 0 {
                let _ = w.trim();
            }
        }
    }
}

#[cfg(test)]
mod delta_tests {
    //! The delta's own bookkeeping (deadline buckets, client chains, the recent-slot hint)
    //! under random changes, against a plain map.

    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::net::Ipv6Addr;

    fn lease(i: u8, client: u8, expires_at: u64) -> Lease {
        Lease {
            resource: Resource::address(Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(i))),
            ia_type: IaType::Na,
            duid: Duid::new(&[0, 3, 0, 1, 2, 0x42, 0, client]).expect("valid DUID"),
            iaid: 1,
            state: BindingState::Active,
            preferred_lifetime: 300,
            valid_lifetime: 600,
            cltt: 0,
            expires_at,
            subnet: 0,
            partner_lifetime: 0,
            update_pending: false,
        }
    }

    /// Every live slot sits in the bucket of its deadline at its recorded position, and the
    /// buckets hold nothing else.
    fn check_buckets(d: &Delta) {
        let mut in_buckets = 0;
        for (&at, bucket) in &d.expiry {
            assert!(!bucket.is_empty(), "empty bucket {at} kept");
            for (pos, &s) in bucket.iter().enumerate() {
                let slot = &d.slots[s as usize];
                let l = slot.lease.expect("bucket holds a live slot");
                assert_eq!(l.expires_at, at);
                assert_eq!(slot.deadline_pos as usize, pos);
                in_buckets += 1;
            }
        }
        assert_eq!(in_buckets, d.live().count());
    }

    proptest! {
        #[test]
        fn buckets_chains_and_hints_stay_exact(
            ops in prop::collection::vec((0u8..24, 0u8..6, 0u64..12, 0u8..4), 1..200),
        ) {
            let mut d = Delta::default();
            let mut model: BTreeMap<Resource, Lease> = BTreeMap::new();
            for (i, client, at, kind) in ops {
                let l = lease(i, client, at);
                match kind {
                    // Upsert (a renewal when the client is the same).
                    0 | 1 => {
                        d.set(l.resource, Some(l), true);
                        model.insert(l.resource, l);
                    }
                    // Tombstone or drop.
                    2 => {
                        d.set(l.resource, None, i % 2 == 0);
                        model.remove(&l.resource);
                    }
                    // Read a client's leases (sets the hint), then expire what is due.
                    _ => {
                        let got: Vec<Lease> = d.client(&l.duid).copied().collect();
                        let want = model.values().filter(|m| m.duid == l.duid).count();
                        prop_assert_eq!(got.len(), want);
                        while let Some(due) = d.first_due(at) {
                            prop_assert!(due.expires_at <= at);
                            prop_assert_eq!(model.get(&due.resource), Some(&due));
                            d.set(due.resource, None, false);
                            model.remove(&due.resource);
                        }
                        prop_assert!(model.values().all(|m| m.expires_at > at));
                    }
                }
                check_buckets(&d);
                for (r, m) in &model {
                    prop_assert_eq!(d.get(r), Some(Some(m)));
                }
                prop_assert_eq!(d.live().count(), model.len());
            }
        }
    }
}
