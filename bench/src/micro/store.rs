//! Lease store micro-benchmarks: the WAL record codec, and lookups in a mapped snapshot of
//! 100k leases against the in-memory table holding the same leases (the baseline in the same
//! run). The 10M-lease figures come from `store-bench` (docs/benchmarks.md).

use std::hint::black_box;
use std::net::Ipv6Addr;
use std::num::{NonZeroU32, NonZeroU64};

use criterion::{Criterion, Throughput};
use tandem::config::store::{Durability, StoreSection};
use tandem::lease::memory::MemoryTable;
use tandem::lease::store::{record, Store};
use tandem::lease::{BindingState, Duid, IaType, Lease, LeaseTable, Resource};

const N: u64 = 100_000;

fn lease(i: u64) -> Lease {
    let mut duid = [0u8; 14];
    duid[1] = 1;
    duid[6..].copy_from_slice(&(i / 2).to_be_bytes());
    let pd = i % 2 == 1;
    Lease {
        resource: if pd {
            Resource::prefix(
                Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(i) << 72),
                56,
            )
        } else {
            Resource::address(Ipv6Addr::from(0x2001_0db8_0001_u128 << 80 | u128::from(i)))
        },
        ia_type: if pd { IaType::Pd } else { IaType::Na },
        duid: Duid::new(&duid).expect("valid DUID"),
        iaid: 1,
        state: BindingState::Active,
        preferred_lifetime: 3000,
        valid_lifetime: 4000,
        cltt: 1_800_000_000,
        expires_at: 1_800_004_000,
        subnet: 0,
        partner_lifetime: 0,
        update_pending: false,
    }
}

pub fn benchmarks(c: &mut Criterion) {
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(1));
    let l = lease(7);
    let mut buf = Vec::with_capacity(256);
    g.bench_function("record_encode", |b| {
        b.iter(|| {
            buf.clear();
            record::encode(&record::Record::Upsert(black_box(l)), &mut buf);
            black_box(buf.len())
        })
    });
    let mut frame = Vec::new();
    record::encode(&record::Record::Upsert(l), &mut frame);
    g.bench_function("record_decode", |b| {
        b.iter(|| black_box(record::decode(black_box(&frame))).is_ok())
    });

    let dir = std::env::temp_dir().join(format!("tandem-micro-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    if Store::add_offline(&dir, Some(1), |_, push| {
        for i in 0..N {
            push(lease(i));
        }
        Ok(())
    })
    .is_err()
    {
        eprintln!(
            "store micro-benchmarks skipped: cannot write {}",
            dir.display()
        );
        return;
    }
    let cfg = StoreSection {
        data_dir: dir.clone(),
        durability: Durability::Write,
        compact_after_changes: NonZeroU32::MAX,
        wal_chunk_bytes: NonZeroU64::new(1 << 20).unwrap_or(NonZeroU64::MIN),
        max_in_flight: NonZeroU32::new(64).unwrap_or(NonZeroU32::MIN),
    };
    let Ok(store) = Store::open(&cfg, 1) else {
        eprintln!(
            "store micro-benchmarks skipped: cannot open {}",
            dir.display()
        );
        return;
    };
    let mut mem = MemoryTable::new();
    for i in 0..N {
        let _ = mem.upsert(lease(i));
    }
    let keys: Vec<Lease> = (0..1024).map(|k| lease((k * 7919) % N)).collect();
    let mut k = 0usize;
    g.bench_function("snapshot_by_resource", |b| {
        b.iter(|| {
            k = (k + 1) & 1023;
            black_box(store.tables[0].by_resource(&keys[k].resource))
        })
    });
    g.bench_function("baseline_memory_by_resource", |b| {
        b.iter(|| {
            k = (k + 1) & 1023;
            black_box(mem.by_resource(&keys[k].resource))
        })
    });
    let mut out = Vec::new();
    g.bench_function("snapshot_client_leases", |b| {
        b.iter(|| {
            k = (k + 1) & 1023;
            out.clear();
            store.tables[0].client_leases(&keys[k].duid, &mut out);
            black_box(out.len())
        })
    });
    g.bench_function("baseline_memory_client_leases", |b| {
        b.iter(|| {
            k = (k + 1) & 1023;
            out.clear();
            mem.client_leases(&keys[k].duid, &mut out);
            black_box(out.len())
        })
    });
    g.finish();
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
