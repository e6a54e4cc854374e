//! Store tests: the durability contract, restart, compaction, re-homing and faults, checked
//! against the in-memory table as the oracle.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::num::{NonZeroU32, NonZeroU64};
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::*;
use crate::lease::memory::MemoryTable;
use crate::lease::{BindingState, Duid, IaType};

pub(crate) struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "tandem-store-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn cfg(dir: &Path, compact_after: u32) -> StoreSection {
    StoreSection {
        data_dir: dir.to_path_buf(),
        durability: Durability::Fsync,
        compact_after_changes: NonZeroU32::new(compact_after).unwrap(),
        wal_chunk_bytes: NonZeroU64::new(64 << 10).unwrap(),
        max_in_flight: NonZeroU32::new(4).unwrap(),
    }
}

fn lease(i: u32, client: u32, pd: bool, expires_at: u64) -> Lease {
    let duid = [
        0,
        3,
        0,
        1,
        0x02,
        0x42,
        0,
        0,
        (client >> 8) as u8,
        client as u8,
    ];
    let (resource, ia_type) = if pd {
        (
            Resource::prefix(
                Ipv6Addr::from(0x2001_0db8_8000_u128 << 80 | u128::from(i) << 72),
                56,
            ),
            IaType::Pd,
        )
    } else {
        (
            Resource::address(Ipv6Addr::from(0x2001_0db8_0001_u128 << 80 | u128::from(i))),
            IaType::Na,
        )
    };
    Lease {
        resource,
        ia_type,
        duid: Duid::new(&duid).unwrap(),
        iaid: 1,
        state: BindingState::Active,
        preferred_lifetime: 300,
        valid_lifetime: 600,
        cltt: expires_at.saturating_sub(600),
        expires_at,
        subnet: 0,
        partner_lifetime: 0,
        update_pending: false,
    }
}

fn contents(t: &dyn LeaseTable) -> BTreeMap<Resource, Lease> {
    let mut m = BTreeMap::new();
    t.for_each(&mut |l| {
        assert!(
            m.insert(l.resource, *l).is_none(),
            "duplicate {:?}",
            l.resource
        );
    });
    // The startup scan (no lease decoding) must see exactly the same records.
    let mut seen = BTreeMap::new();
    t.for_each_resource(&mut |r, state, expires_at| {
        assert!(
            seen.insert(*r, (state, expires_at)).is_none(),
            "duplicate {r:?}"
        );
    });
    let want: BTreeMap<_, _> = m
        .iter()
        .map(|(r, l)| (*r, (l.state, l.expires_at)))
        .collect();
    assert_eq!(seen, want, "for_each_resource disagrees with for_each");
    // A range of it (the allocator's per-pool scan): exactly the records inside.
    let keys: Vec<Resource> = m.keys().copied().collect();
    if let (Some(first), Some(last)) = (keys.get(keys.len() / 4), keys.get(keys.len() * 3 / 4)) {
        let mut inside = BTreeMap::new();
        t.for_each_resource_in(first, last, &mut |r, state, expires_at| {
            assert!(
                inside.insert(*r, (state, expires_at)).is_none(),
                "duplicate {r:?}"
            );
        });
        let want: BTreeMap<_, _> = want.range(*first..=*last).map(|(r, v)| (*r, *v)).collect();
        assert_eq!(
            inside, want,
            "for_each_resource_in disagrees with the range"
        );
    }
    m
}

fn all_contents(tables: &[ShardTable]) -> BTreeMap<Resource, Lease> {
    let mut m = BTreeMap::new();
    for t in tables {
        m.extend(contents(t));
    }
    m
}

fn sync_all(tables: &mut [ShardTable]) {
    for t in tables {
        t.sync().unwrap();
    }
}

#[test]
fn leases_survive_reopen_and_lookups_agree() {
    let dir = TempDir::new("reopen");
    let c = cfg(&dir.0, 1_000_000);
    {
        let mut s = Store::open(&c, 1).unwrap();
        let t = &mut s.tables[0];
        for i in 0..100 {
            t.upsert(lease(i, i / 2, i % 2 == 1, 10_000)).unwrap();
        }
        let id = t.commit().unwrap().unwrap();
        while t.durable(true).unwrap() < id {}
        t.remove(&lease(4, 2, false, 0).resource).unwrap();
        t.sync().unwrap();
    }
    let s = Store::open(&c, 1).unwrap();
    let t = &s.tables[0];
    assert_eq!(t.len(), 99);
    assert_eq!(s.report.wal_batches_replayed, 2);
    assert!(t.by_resource(&lease(4, 2, false, 0).resource).is_none());
    let l7 = lease(7, 3, true, 10_000);
    assert_eq!(t.by_resource(&l7.resource), Some(l7));
    let mut out = Vec::new();
    t.client_leases(&l7.duid, &mut out);
    out.sort_by_key(|l| l.resource);
    assert_eq!(out, vec![lease(6, 3, false, 10_000), l7]);
    out.clear();
    t.ia_leases(&l7.duid, IaType::Pd, 1, &mut out);
    assert_eq!(out, vec![l7]);
}

#[test]
fn compaction_runs_in_the_background_and_trims_the_wal() {
    let dir = TempDir::new("compact");
    let c = cfg(&dir.0, 50);
    let mut oracle = MemoryTable::new();
    {
        let mut s = Store::open(&c, 1).unwrap();
        let t = &mut s.tables[0];
        for round in 0..10u32 {
            for i in 0..40 {
                let l = lease(round * 13 + i, i, i % 3 == 0, 1000 + u64::from(round));
                t.upsert(l).unwrap();
                oracle.upsert(l).unwrap();
            }
            t.commit().unwrap();
            t.durable(false).unwrap();
        }
        t.compact_now().unwrap();
        assert!(t.stats().compactions >= 2, "{:?}", t.stats());
        assert_eq!(contents(t), contents(&oracle));
        t.sync().unwrap();
    }
    let wal_files = fs::read_dir(&dir.0)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".wal.")
        })
        .count();
    assert_eq!(wal_files, 1, "covered segments are deleted");
    let s = Store::open(&c, 1).unwrap();
    assert_eq!(contents(&s.tables[0]), contents(&oracle));
}

#[test]
fn a_different_shard_count_rehomes_every_lease() {
    let dir = TempDir::new("rehome");
    let mut expect = BTreeMap::new();
    {
        let mut s = Store::open(&cfg(&dir.0, 1000), 2).unwrap();
        for i in 0..300 {
            let l = lease(i, i, i % 4 == 0, 5000);
            let owner = l.duid.shard_of(2);
            s.tables[owner].upsert(l).unwrap();
            expect.insert(l.resource, l);
        }
        sync_all(&mut s.tables);
    }
    for shards in [3usize, 1, 4] {
        let s = Store::open(&cfg(&dir.0, 1000), shards).unwrap();
        assert_eq!(s.tables.len(), shards);
        assert!(s.report.rehomed_from.is_some());
        for (i, t) in s.tables.iter().enumerate() {
            t.for_each(&mut |l| assert_eq!(l.duid.shard_of(shards), i));
        }
        assert_eq!(all_contents(&s.tables), expect);
        let snaps = fs::read_dir(&dir.0)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".snap")
            })
            .count();
        assert_eq!(snaps, shards, "old layouts are removed");
    }
}

#[test]
fn foreign_resources_are_reported_to_the_partition_owner() {
    let t0 = {
        let mut t = MemoryTable::new();
        t.upsert(lease(1, 1, false, 10)).unwrap();
        t.upsert(lease(2, 1, false, 10)).unwrap();
        t
    };
    let t1 = MemoryTable::new();
    // Partition by the low bit of the address.
    let f = foreign_resources(&[t0, t1], &|r| Some((r.addr.octets()[15] & 1) as usize));
    assert_eq!(f[0], Vec::<Resource>::new());
    assert_eq!(f[1], vec![lease(1, 1, false, 10).resource]);
}

#[test]
fn a_second_process_is_refused_by_the_lock() {
    let dir = TempDir::new("lock");
    let s = Store::open(&cfg(&dir.0, 1000), 1).unwrap();
    let err = Store::open(&cfg(&dir.0, 1000), 1).err().unwrap();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Locked { .. }), "{msg}");
    assert!(
        msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
    assert!(Store::open_read_only(&dir.0).is_err());
    drop(s);
    Store::open_read_only(&dir.0).unwrap();
}

#[test]
fn bad_directories_give_clear_errors() {
    let dir = TempDir::new("baddir");
    let missing = dir.0.join("no/such/parent");
    let e = Store::open(&cfg(&missing, 10), 1)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("does not exist and cannot be created"), "{e}");
    let file = dir.0.join("plain-file");
    fs::write(&file, b"x").unwrap();
    let e = Store::open(&cfg(&file, 10), 1).err().unwrap().to_string();
    assert!(e.contains("not a directory"), "{e}");
}

#[test]
fn corrupt_or_foreign_snapshots_are_refused_by_name() {
    let dir = TempDir::new("corrupt");
    {
        let mut s = Store::open(&cfg(&dir.0, 1000), 1).unwrap();
        s.tables[0].upsert(lease(1, 1, false, 100)).unwrap();
        s.tables[0].compact_now().unwrap();
    }
    let snap = fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".snap"))
        .unwrap();
    let good = fs::read(&snap).unwrap();
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 10] ^= 1;
    fs::write(&snap, &bad).unwrap();
    let e = Store::open(&cfg(&dir.0, 1000), 1)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains(&snap.display().to_string()) && e.contains("checksum"),
        "{e}"
    );
    let mut v2 = good.clone();
    v2[8..12].copy_from_slice(&99u32.to_le_bytes());
    let crc = crc32fast::hash(&v2[..60]);
    v2[60..64].copy_from_slice(&crc.to_le_bytes());
    fs::write(&snap, &v2).unwrap();
    let e = Store::open(&cfg(&dir.0, 1000), 1)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("format version 99"), "{e}");
    fs::write(&snap, &good).unwrap();
    let s = Store::open(&cfg(&dir.0, 1000), 1).unwrap();
    assert_eq!(s.tables[0].len(), 1);
}

#[test]
fn a_torn_wal_tail_is_cut_at_the_last_complete_batch() {
    let dir = TempDir::new("torn");
    {
        let mut s = Store::open(&cfg(&dir.0, 1000), 1).unwrap();
        s.tables[0].upsert(lease(1, 1, false, 100)).unwrap();
        s.tables[0].sync().unwrap();
        s.tables[0].upsert(lease(2, 2, false, 100)).unwrap();
        s.tables[0].sync().unwrap();
    }
    let wal = fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".wal."))
        .max()
        .unwrap();
    // Garbage over the second batch's Commit record: that batch was never acknowledged.
    let mut bytes = fs::read(&wal).unwrap();
    let mut end = wal::HEADER_LEN as usize;
    let mut ends = Vec::new();
    while let Ok((rec, used)) = record::decode(&bytes[end..]) {
        end += used;
        if matches!(rec, record::Record::Commit { .. }) {
            ends.push(end);
        }
    }
    assert_eq!(ends.len(), 2);
    bytes[ends[1] - 3] ^= 0xff;
    fs::write(&wal, &bytes).unwrap();
    let s = Store::open(&cfg(&dir.0, 1000), 1).unwrap();
    assert_eq!(s.report.cut_tails.len(), 1);
    assert_eq!(s.report.cut_tails[0].1, ends[0] as u64);
    assert_eq!(s.tables[0].len(), 1);
}

#[test]
fn expiry_frees_resources_across_all_layers() {
    let dir = TempDir::new("expire");
    let mut s = Store::open(&cfg(&dir.0, 1_000_000), 1).unwrap();
    let t = &mut s.tables[0];
    let mut oracle = MemoryTable::new();
    for i in 0..200 {
        let l = lease(i, i, i % 2 == 0, 100 + u64::from(i));
        t.upsert(l).unwrap();
        oracle.upsert(l).unwrap();
    }
    t.commit().unwrap();
    // Half in the snapshot, some in a frozen-then-merged layer, the rest in the delta.
    t.compact_now().unwrap();
    for i in 200..260 {
        let l = lease(i, i, false, 150);
        t.upsert(l).unwrap();
        oracle.upsert(l).unwrap();
    }
    let (mut freed_t, mut freed_o) = (Vec::new(), Vec::new());
    for now in [120u64, 200, 299, 10_000] {
        while t.expire(now, 7, &mut freed_t) == 7 {}
        while oracle.expire(now, 7, &mut freed_o) == 7 {}
        t.commit().unwrap();
        assert_eq!(contents(t), contents(&oracle), "now={now}");
    }
    freed_t.sort_by_key(|l| l.resource);
    freed_o.sort_by_key(|l| l.resource);
    assert_eq!(freed_t, freed_o);
    assert_eq!(t.len(), 0);
}

#[derive(Clone, Debug)]
enum Op {
    Upsert {
        i: u32,
        client: u32,
        pd: bool,
        exp: u64,
    },
    Remove(u32),
    Expire {
        now: u64,
        budget: usize,
    },
    Commit,
    Compact,
    Reopen {
        shards: usize,
    },
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u32..60, 0u32..20, any::<bool>(), 0u64..100)
            .prop_map(|(i, client, pd, exp)| Op::Upsert { i, client, pd, exp }),
        2 => (0u32..60).prop_map(Op::Remove),
        1 => (0u64..120, 1usize..10).prop_map(|(now, budget)| Op::Expire { now, budget }),
        3 => Just(Op::Commit),
        1 => Just(Op::Compact),
        1 => (1usize..4).prop_map(|shards| Op::Reopen { shards }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Any sequence of changes, commits, compactions and restarts (with shard count changes)
    /// leaves the store holding exactly what the in-memory oracle holds.
    #[test]
    fn store_matches_the_in_memory_oracle(ops in prop::collection::vec(arb_op(), 1..80)) {
        let dir = TempDir::new("prop");
        let c = cfg(&dir.0, 16);
        let mut shards = 1usize;
        let mut s = Store::open(&c, shards).unwrap();
        let mut oracle = MemoryTable::new();
        for op in ops {
            match op {
                Op::Upsert { i, client, pd, exp } => {
                    let l = lease(i, client, pd, exp);
                    // Resources belong to one client at a time in the engine: drop the old
                    // holder first, like an allocator would.
                    if let Some(old) = oracle.by_resource(&l.resource) {
                        s.tables[old.duid.shard_of(shards)].remove(&old.resource).unwrap();
                    }
                    s.tables[l.duid.shard_of(shards)].upsert(l).unwrap();
                    oracle.upsert(l).unwrap();
                }
                Op::Remove(i) => {
                    for pd in [false, true] {
                        let r = lease(i, 0, pd, 0).resource;
                        if let Some(old) = oracle.by_resource(&r) {
                            s.tables[old.duid.shard_of(shards)].remove(&r).unwrap();
                            oracle.remove(&r).unwrap();
                        }
                    }
                }
                Op::Expire { now, budget } => {
                    let mut f = Vec::new();
                    for t in &mut s.tables {
                        while t.expire(now, budget, &mut f) == budget {}
                    }
                    while oracle.expire(now, budget, &mut Vec::new()) == budget {}
                }
                Op::Commit => {
                    for t in &mut s.tables {
                        t.commit().unwrap();
                        t.durable(false).unwrap();
                    }
                }
                Op::Compact => {
                    for t in &mut s.tables {
                        t.compact_now().unwrap();
                    }
                }
                Op::Reopen { shards: n } => {
                    sync_all(&mut s.tables);
                    drop(s);
                    shards = n;
                    s = Store::open(&c, shards).unwrap();
                }
            }
            let total: usize = s.tables.iter().map(|t| t.len()).sum();
            prop_assert_eq!(total, oracle.len());
            // Lookups by client (the delta's per-client chains) agree with the oracle.
            let mut duids: Vec<Duid> = Vec::new();
            oracle.for_each(&mut |l| duids.push(l.duid));
            for d in duids {
                let (mut got, mut want) = (Vec::new(), Vec::new());
                s.tables[d.shard_of(shards)].client_leases(&d, &mut got);
                oracle.client_leases(&d, &mut want);
                got.sort_by_key(|l| l.resource);
                want.sort_by_key(|l| l.resource);
                prop_assert_eq!(got, want);
            }
        }
        prop_assert_eq!(all_contents(&s.tables), contents(&oracle));
        sync_all(&mut s.tables);
        drop(s);
        let s = Store::open(&c, shards).unwrap();
        prop_assert_eq!(all_contents(&s.tables), contents(&oracle));
    }
}

/// The store's view of the allocation partition must be the allocator's own rule.
#[test]
fn partition_of_agrees_with_the_allocator() {
    use crate::alloc::{Ownership, Partition};
    let cfg = crate::config::Config::from_str(
        "[[subnet]]\nprefix = \"2001:db8:1::/64\"\n\
         pool = [{ start = \"2001:db8:1::1000\", end = \"2001:db8:1::ffff\" }]\n\
         pd_pool = [{ prefix = \"2001:db8:100::/40\", delegated_length = 56 }]\n",
        "test.toml",
    )
    .unwrap();
    for shards in 1..5usize {
        let part = partition_of(&cfg, shards);
        for i in 0..500u128 {
            let a = Ipv6Addr::from(0x2001_0db8_0001_u128 << 80 | (i * 0x9e37_79b9 + 0x1000));
            let owner = part(&Resource::address(a)).unwrap();
            for s in 0..shards {
                let p = Partition::new(s, shards, Ownership::Any);
                assert_eq!(p.owns_address(a), s == owner, "{a} shards={shards}");
            }
            let pool = &cfg.subnets[0].pd_pools[0];
            let idx = (i as u32) % pool.count();
            let r = Resource::prefix(pool.nth(idx), 56);
            let owner = part(&r).unwrap();
            for s in 0..shards {
                let p = Partition::new(s, shards, Ownership::Any);
                assert_eq!(p.owns_prefix_index(idx), s == owner);
            }
        }
        assert_eq!(
            part(&Resource::prefix("2001:db9::".parse().unwrap(), 56)),
            None
        );
    }
}
