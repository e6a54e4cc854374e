//! Storage-level crash simulator for the lease store (issue 3, item 5b).
//!
//! Each trial drives a real store (real files, io_uring WAL, background compactions) with
//! random lease changes in commit batches, remembering the table's contents after every
//! batch (the oracle) and the highest batch acknowledged durable (replies released). It then
//! builds a *crash image* of the data directory, as a power cut could leave it:
//! * the last WAL segment is cut at a random byte at or after the end of the last
//!   acknowledged batch (between write and fdatasync, or inside a record), and what follows is
//!   zero fill (reserved, never written) or random garbage (a torn page);
//! * sometimes a snapshot being written (a `.tmp` with a random prefix of a real snapshot),
//!   or a re-home that stopped half way (part of a new generation's set) is left behind.
//!
//! Reopening the image must succeed and give exactly the contents after some batch at or
//! after the acknowledged one: every acknowledged lease is there, and nothing half-written.

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv6Addr;
use std::num::{NonZeroU32, NonZeroU64};
use std::path::{Path, PathBuf};

use tandem::config::store::{Durability, StoreSection};
use tandem::lease::store::{record, wal, Store};
use tandem::lease::{BindingState, Duid, IaType, Lease, LeaseTable, Resource};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: deterministic per seed, so a failing trial can be replayed.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tandem-crash-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn section(dir: &Path, durability: Durability) -> StoreSection {
    StoreSection {
        data_dir: dir.to_path_buf(),
        durability,
        compact_after_changes: NonZeroU32::new(48).unwrap(),
        wal_chunk_bytes: NonZeroU64::new(64 << 10).unwrap(),
        max_in_flight: NonZeroU32::new(8).unwrap(),
    }
}

fn lease(rng: &mut Rng, now: u64) -> Lease {
    let i = rng.below(400) as u32;
    let client = rng.below(150) as u16;
    // Realistic DUID sizes: DUID-LL (10), DUID-LLT (14), DUID-EN (~18-22).
    let duid_len = [10usize, 14, 18, 22][(client % 4) as usize];
    let mut duid = vec![0u8; duid_len];
    duid[1] = 3;
    duid[duid_len - 2..].copy_from_slice(&client.to_be_bytes());
    let pd = i % 3 == 0;
    let resource = if pd {
        Resource::prefix(
            Ipv6Addr::from(0x2001_0db8_8000_u128 << 80 | u128::from(i) << 72),
            56,
        )
    } else {
        Resource::address(Ipv6Addr::from(0x2001_0db8_0001_u128 << 80 | u128::from(i)))
    };
    let valid = 600 + rng.below(3000) as u32;
    Lease {
        resource,
        ia_type: if pd { IaType::Pd } else { IaType::Na },
        duid: Duid::new(&duid).unwrap(),
        iaid: u32::from(client % 3),
        state: BindingState::Active,
        preferred_lifetime: valid / 2,
        valid_lifetime: valid,
        cltt: now,
        expires_at: now + u64::from(valid),
        subnet: 0,
        partner_lifetime: 0,
        update_pending: rng.below(2) == 0,
    }
}

fn contents(store: &Store) -> BTreeMap<Resource, Lease> {
    let mut m = BTreeMap::new();
    for t in &store.tables {
        t.for_each(&mut |l| {
            assert!(m.insert(l.resource, *l).is_none());
        });
    }
    m
}

/// End offsets of the complete batches (Commit records) in a WAL segment image.
fn batch_ends(bytes: &[u8]) -> Vec<usize> {
    let mut pos = wal::HEADER_LEN as usize;
    let mut ends = Vec::new();
    while pos < bytes.len() {
        match record::decode(&bytes[pos..]) {
            Ok((rec, used)) => {
                pos += used;
                if matches!(rec, record::Record::Commit { .. }) {
                    ends.push(pos);
                }
            }
            Err(_) => break,
        }
    }
    ends
}

fn segment_number(p: &Path) -> u64 {
    p.to_string_lossy()
        .rsplit(".wal.")
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn run_trial(seed: u64, durability: Durability) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let dir = tmp(&format!("live-{seed}"));
    let img = tmp(&format!("img-{seed}"));
    let mut store = Store::open(&section(&dir, durability), 1).unwrap();
    // states[k] = contents after batch k (batch ids start at 1; 0 = empty).
    let mut states = vec![BTreeMap::new()];
    let mut acked = 0u64;
    let batches = 20 + rng.below(60);
    for b in 0..batches {
        let t = &mut store.tables[0];
        for _ in 0..1 + rng.below(12) {
            let l = lease(&mut rng, 1_000_000 + b);
            if rng.below(5) == 0 {
                t.remove(&l.resource).unwrap();
            } else {
                t.upsert(l).unwrap();
            }
        }
        if rng.below(6) == 0 {
            // Expire some: moves Active leases to Expired, removes old Expired ones.
            let mut freed = Vec::new();
            t.expire(1_000_000 + b + 2000, 8, &mut freed);
        }
        // A batch whose removals all missed changes nothing and gets no id.
        if let Some(id) = t.commit().unwrap() {
            assert_eq!(id as usize, states.len());
            states.push(contents(&store));
        }
        let t = &mut store.tables[0];
        // The shard loop waits only when idle; sometimes we let batches pile up in flight.
        acked = t.durable(rng.below(3) == 0).unwrap();
    }
    // Everything submitted reaches the page cache (the crash image may still lose it).
    let written = states.len() as u64 - 1;
    while store.tables[0].durable(true).unwrap() < written {}
    // Snapshot files are taken at rest; a snapshot being written is simulated below.
    store.tables[0].finish_compaction();

    // Build the crash image. Snapshots are complete once renamed (written, fsynced, renamed).
    let mut segments: Vec<PathBuf> = Vec::new();
    for e in fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.contains(".wal.") {
            segments.push(p);
        } else if let Ok(bytes) = fs::read(&p) {
            fs::write(img.join(&name), bytes).unwrap();
        }
    }
    segments.sort_by_key(|p| segment_number(p));
    let Some(last) = segments.pop() else {
        panic!("seed {seed}: no WAL segment");
    };
    for p in &segments {
        if let Ok(bytes) = fs::read(p) {
            fs::write(img.join(p.file_name().unwrap()), bytes).unwrap();
        }
    }
    let mut bytes = fs::read(&last).unwrap();
    let ends = batch_ends(&bytes);
    let data_end = ends.last().copied().unwrap_or(wal::HEADER_LEN as usize);
    // Batches in this segment: the last `ends.len()` ones. The acknowledged ones must stay.
    let first_in_segment = written + 1 - ends.len() as u64;
    let keep = if acked >= first_in_segment {
        ends[(acked - first_in_segment) as usize]
    } else {
        wal::HEADER_LEN as usize
    };
    let cut = keep + rng.below((data_end - keep + 1) as u64) as usize;
    match rng.below(3) {
        0 => bytes[cut..].fill(0),
        1 => {
            let junk = (cut + 1 + rng.below(300) as usize).min(bytes.len());
            for b in &mut bytes[cut..junk] {
                *b = rng.next() as u8;
            }
            bytes[junk..].fill(0);
        }
        _ => bytes.truncate(cut),
    }
    fs::write(img.join(last.file_name().unwrap()), &bytes).unwrap();
    // A snapshot being written when the power went: a partial temp file.
    let snaps: Vec<PathBuf> = fs::read_dir(&img)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".snap"))
        .collect();
    if rng.below(2) == 0 {
        let s = fs::read(&snaps[0]).unwrap();
        let n = rng.below(s.len() as u64) as usize;
        let mut tmp_name = snaps[0].file_name().unwrap().to_os_string();
        tmp_name.push(".tmp");
        fs::write(img.join(tmp_name), &s[..n]).unwrap();
    }
    // A re-home to 2 shards that stopped after writing shard 0's new snapshot.
    if rng.below(3) == 0 {
        let s = fs::read(&snaps[0]).unwrap();
        fs::write(img.join("shard-0-of-2.g99.snap"), &s).unwrap();
        fs::write(img.join("shard-1-of-2.g99.snap.tmp"), &s[..s.len() / 2]).unwrap();
    }
    drop(store);
    let _ = fs::remove_dir_all(&dir);

    let reopened = Store::open(&section(&img, durability), 1)
        .unwrap_or_else(|e| panic!("seed {seed}: crash image refused: {e}"));
    let got = contents(&reopened);
    let matched = (acked..=written).find(|&k| states[k as usize] == got);
    assert!(
        matched.is_some(),
        "seed {seed}: reopened contents ({} leases) match no batch state in {acked}..={written}",
        got.len()
    );
    // Leftovers of the interrupted writes are gone.
    drop(reopened);
    for e in fs::read_dir(&img).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().to_string();
        assert!(
            !name.ends_with(".tmp") && !name.contains("-of-2."),
            "seed {seed}: {name} left behind"
        );
    }
    let _ = fs::remove_dir_all(&img);
}

#[test]
fn crash_images_reopen_to_an_acknowledged_prefix_write_mode() {
    for seed in 1..=30 {
        run_trial(seed, Durability::Write);
    }
}

#[test]
fn crash_images_reopen_to_an_acknowledged_prefix_fsync_mode() {
    for seed in 101..=106 {
        run_trial(seed, Durability::Fsync);
    }
}
