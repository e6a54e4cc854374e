//! `store-bench`: the lease store's scale figures (issue 3, item 7). Heavy; run by hand:
//!
//! ```text
//! cargo run --release -p tandem-bench --bin store-bench -- build  --dir /var/tmp/s10m --leases 10000000 --shards 2
//! cargo run --release -p tandem-bench --bin store-bench -- open   --dir /var/tmp/s10m --shards 2
//! cargo run --release -p tandem-bench --bin store-bench -- wal    --dir /var/tmp/swal
//! cargo run --release -p tandem-bench --bin store-bench -- expire --dir /var/tmp/sexp --leases 1000000
//! ```
//!
//! Every figure is printed with the baseline it is compared to, measured in the same run.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::Ipv6Addr;
use std::num::{NonZeroU32, NonZeroU64};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use tandem::config::store::{Durability, StoreSection};
use tandem::lease::memory::MemoryTable;
use tandem::lease::store::Store;
use tandem::lease::{BindingState, Duid, IaType, Lease, LeaseTable, Resource};

#[derive(Parser)]
#[command(about = "Lease store benchmarks (10M-lease tables, WAL group commit, expiry)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Writes a table of N leases (60% IA_NA, 40% IA_PD; DUID-LL/LLT/EN sizes) offline.
    Build {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 10_000_000)]
        leases: u64,
        #[arg(long, default_value_t = 2)]
        shards: usize,
        #[arg(long, value_enum, default_value_t = Placement::Allocated)]
        placement: Placement,
    },
    /// Restart time (open: map + verify + replay), resident bytes per lease, lookups/s.
    Open {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 2)]
        shards: usize,
        #[arg(long, default_value_t = 2_000_000)]
        lookups: u64,
        /// How the table was built (`build --placement`), to regenerate lookup keys.
        #[arg(long, value_enum, default_value_t = Placement::Allocated)]
        placement: Placement,
    },
    /// Durable leases/s through the WAL's group commit, batch sizes 1..1024, against one
    /// synchronous pwrite+fdatasync per batch.
    Wal {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
    /// Expiry/reclamation rate of one shard (leases/s), against the in-memory table.
    Expire {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        leases: u64,
    },
}

/// Where the synthetic leases' resources sit relative to the shards' allocation partitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Placement {
    /// As tandem's allocator hands them out with this shard count (src/alloc): an address's
    /// `(iid >> 1) mod shards` and a prefix's pool index `mod shards` are its client's shard.
    /// The steady state of a server restarting with the same shard count.
    Allocated,
    /// Independent of the client's shard: what a re-home to another shard count or a Kea
    /// import leaves (about half the leases sit in another shard's partition with 2 shards).
    Random,
}

/// Lease number `i` of the synthetic population: 5 leases per 3 clients (60% IA_NA, 40%
/// IA_PD /56 from 2001:db8::/32; a client's NA and PD share one DUID); DUID sizes cycle
/// through DUID-LL (10), DUID-LLT (14) and DUID-EN (18, 22).
fn synthetic(i: u64, now: u64, placement: Placement, shards: usize) -> Lease {
    let client = i * 3 / 5; // 5 leases per 3 clients: 60% NA, 40% PD
    let pd = i % 5 >= 3;
    let len = [10usize, 14, 18, 22][(client % 4) as usize];
    let mut duid = [0u8; 22];
    duid[1] = [3u8, 1, 2, 2][(client % 4) as usize];
    duid[len - 8..len].copy_from_slice(&client.to_be_bytes());
    let duid = Duid::new(&duid[..len]).expect("valid DUID");
    let n = shards.max(1) as u64;
    let owner = duid.shard_of(shards.max(1)) as u64;
    let resource = if pd {
        // Pool index: the i-th PD lease, spread over the partitions like the allocator does.
        let pd_number = i / 5 * 2 + (i % 5 - 3);
        let index = match placement {
            Placement::Allocated => pd_number * n + owner,
            Placement::Random => i,
        };
        Resource::prefix(
            Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(index) << 72),
            56,
        )
    } else {
        let mut iid = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        if placement == Placement::Allocated {
            let mut half = (iid >> 1) / n * n + owner;
            if half >= 1 << 63 {
                half -= n; // keep the top bit: the partition is of `iid >> 1`
            }
            iid = half.wrapping_shl(1) | (iid & 1);
        }
        Resource::address(Ipv6Addr::from(
            0x2001_0db8_0001_u128 << 80 | u128::from(iid),
        ))
    };
    let valid = 3600 + (i % 7200) as u32;
    Lease {
        resource,
        ia_type: if pd { IaType::Pd } else { IaType::Na },
        duid,
        iaid: (i % 3) as u32,
        state: BindingState::Active,
        preferred_lifetime: valid / 2,
        valid_lifetime: valid,
        cltt: now,
        expires_at: now + u64::from(valid),
        subnet: 0,
        partner_lifetime: 0,
        update_pending: false,
    }
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

fn dir_bytes(dir: &Path, suffix: &str) -> u64 {
    std::fs::read_dir(dir)
        .map(|it| {
            it.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn section(dir: &Path, durability: Durability) -> StoreSection {
    StoreSection {
        data_dir: dir.to_path_buf(),
        durability,
        compact_after_changes: NonZeroU32::new(u32::MAX).unwrap_or(NonZeroU32::MIN),
        wal_chunk_bytes: NonZeroU64::new(64 << 20).unwrap_or(NonZeroU64::MIN),
        max_in_flight: NonZeroU32::new(64).unwrap_or(NonZeroU32::MIN),
    }
}

/// Cheap deterministic sequence for lookups.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x
}

fn main() {
    let cli = Cli::parse();
    let now = 1_800_000_000u64;
    match cli.cmd {
        Cmd::Build {
            dir,
            leases,
            shards,
            placement,
        } => {
            let _ = std::fs::remove_dir_all(&dir);
            let t = Instant::now();
            Store::add_offline(&dir, Some(shards), |_, push| {
                for i in 0..leases {
                    push(synthetic(i, now, placement, shards));
                }
                Ok(())
            })
            .expect("building the store");
            let took = t.elapsed();
            let bytes = dir_bytes(&dir, ".snap");
            println!(
                "build: {leases} leases in {shards} shard(s) in {:.2} s; snapshot files {} bytes = {:.1} bytes/lease",
                took.as_secs_f64(),
                bytes,
                bytes as f64 / leases as f64
            );
        }
        Cmd::Open {
            dir,
            shards,
            lookups,
            placement,
        } => {
            let rss0 = rss_bytes();
            let t = Instant::now();
            let store = Store::open(&section(&dir, Durability::Fsync), shards).expect("open");
            // First answer: one lookup right after open (what the first Reply needs).
            let probe = synthetic(0, now, placement, shards);
            let owner = probe.duid.shard_of(shards);
            let first = store.tables[owner].by_resource(&probe.resource);
            let restart = t.elapsed();
            assert!(first.is_some(), "lease 0 missing");
            let n: usize = store.tables.iter().map(|t| t.len()).sum();
            let rss_open = rss_bytes();
            println!(
                "restart: open {} leases ({} shards: map, verify checksums and archives, replay WAL) \
                 and answer the first lookup in {:.3} s; RSS +{} bytes ({:.1} bytes/lease)",
                n,
                shards,
                restart.as_secs_f64(),
                rss_open.saturating_sub(rss0),
                rss_open.saturating_sub(rss0) as f64 / n as f64
            );
            // Lookups by resource and by client, random over the population.
            let total = n as u64;
            let t = Instant::now();
            let mut hits = 0u64;
            for k in 0..lookups {
                let l = synthetic(mix(k) % total, now, placement, shards);
                let s = l.duid.shard_of(shards);
                hits += u64::from(store.tables[s].by_resource(&l.resource).is_some());
            }
            let by_res = lookups as f64 / t.elapsed().as_secs_f64();
            let t = Instant::now();
            let mut out = Vec::new();
            for k in 0..lookups {
                let l = synthetic(mix(k ^ 0x5555) % total, now, placement, shards);
                out.clear();
                store.tables[l.duid.shard_of(shards)]
                    .ia_leases(&l.duid, l.ia_type, l.iaid, &mut out);
                hits += out.len() as u64;
            }
            let by_client = lookups as f64 / t.elapsed().as_secs_f64();
            // Baseline in the same run: the same lookups on a hashbrown HashMap of the
            // same leases for a 1M sample (the in-memory table).
            let sample = total.min(1_000_000);
            let mut mem = MemoryTable::new();
            for i in 0..sample {
                let _ = mem.upsert(synthetic(i, now, placement, shards));
            }
            let t = Instant::now();
            for k in 0..lookups {
                let l = synthetic(mix(k) % sample, now, placement, shards);
                hits += u64::from(mem.by_resource(&l.resource).is_some());
            }
            let mem_rate = lookups as f64 / t.elapsed().as_secs_f64();
            let rss_all = rss_bytes();
            println!(
                "lookups (1 thread, includes generating the key): by resource {:.0}/s, by client IA {:.0}/s; \
                 in-memory hashbrown table (1M sample) {:.0}/s; ratio {:.2}; hits {hits}",
                by_res,
                by_client,
                mem_rate,
                by_res / mem_rate
            );
            println!(
                "RSS after touching lookups + the 1M-lease in-memory baseline: {} bytes",
                rss_all
            );
        }
        Cmd::Wal { dir, seconds } => {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("dir");
            println!("batch  group-commit durable leases/s   sync-per-batch leases/s   ratio");
            for batch in [1usize, 4, 16, 64, 256, 1024] {
                let bdir = dir.join(format!("b{batch}"));
                let mut store = Store::open(&section(&bdir, Durability::Fsync), 1).expect("open");
                let t = &mut store.tables[0];
                let mut i = 0u64;
                let start = Instant::now();
                let limit = Duration::from_secs_f64(seconds);
                let mut durable_leases = 0u64;
                let mut batches: std::collections::VecDeque<(u64, u64)> = Default::default();
                while start.elapsed() < limit {
                    for _ in 0..batch {
                        t.upsert(synthetic(i, now, Placement::Random, 1))
                            .expect("upsert");
                        i += 1;
                    }
                    if let Some(id) = t.commit().expect("commit") {
                        batches.push_back((id, batch as u64));
                    }
                    // Like the shard loop: collect completions without waiting, unless the
                    // pipeline is deep (then the next commit would wait anyway).
                    let d = t.durable(false).expect("durable");
                    while batches.front().is_some_and(|b| b.0 <= d) {
                        durable_leases += batches.pop_front().map_or(0, |b| b.1);
                    }
                }
                let d = t.sync().expect("sync");
                while batches.front().is_some_and(|b| b.0 <= d) {
                    durable_leases += batches.pop_front().map_or(0, |b| b.1);
                }
                let rate = durable_leases as f64 / start.elapsed().as_secs_f64();
                drop(store);
                // Baseline: the obvious design, one pwrite + fdatasync per batch, in line.
                let path = dir.join(format!("naive{batch}"));
                let f: File = OpenOptions::new()
                    .create(true)
                    .truncate(true)
                    .write(true)
                    .open(&path)
                    .expect("naive file");
                let rec = vec![0x5au8; 90 * batch];
                let start = Instant::now();
                let mut off = 0u64;
                let mut n = 0u64;
                while start.elapsed() < limit {
                    f.write_all_at(&rec, off).expect("write");
                    f.sync_data().expect("fdatasync");
                    off += rec.len() as u64;
                    n += batch as u64;
                }
                let naive = n as f64 / start.elapsed().as_secs_f64();
                let _ = std::fs::remove_file(&path);
                let _ = std::fs::remove_dir_all(&bdir);
                println!(
                    "{batch:>5}  {rate:>28.0}   {naive:>23.0}   {:>5.2}",
                    rate / naive
                );
                std::io::stdout().flush().ok();
            }
        }
        Cmd::Expire { dir, leases } => {
            let _ = std::fs::remove_dir_all(&dir);
            // Half the leases in the snapshot, the rest in the delta: the store's real mix.
            Store::add_offline(&dir, Some(1), |_, push| {
                for i in 0..leases / 2 {
                    push(synthetic(i, now, Placement::Random, 1));
                }
                Ok(())
            })
            .expect("build");
            let mut store = Store::open(&section(&dir, Durability::Fsync), 1).expect("open");
            let t = &mut store.tables[0];
            for i in leases / 2..leases {
                t.upsert(synthetic(i, now, Placement::Random, 1))
                    .expect("upsert");
            }
            t.sync().expect("sync");
            let later = now + 100_000;
            let mut freed = Vec::new();
            let start = Instant::now();
            let mut changed = 0u64;
            let mut calls: Vec<Duration> = Vec::new();
            let mut worst_commit = Duration::ZERO;
            loop {
                let call = Instant::now();
                let n = t.expire(later, 1024, &mut freed);
                calls.push(call.elapsed());
                let call = Instant::now();
                t.commit().expect("commit");
                t.durable(false).expect("durable");
                worst_commit = worst_commit.max(call.elapsed());
                freed.clear();
                changed += n as u64;
                if n < 1024 {
                    break;
                }
            }
            t.sync().expect("sync");
            let rate = changed as f64 / start.elapsed().as_secs_f64();
            // Each call is a pause in the shard's packet service: report their distribution.
            let worst_at = calls
                .iter()
                .enumerate()
                .max_by_key(|(_, d)| **d)
                .map_or(0, |(i, _)| i);
            let mut sorted = calls.clone();
            sorted.sort_unstable();
            let pct = |q: f64| {
                sorted
                    .get(((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1)))
                    .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
            };
            let worst = sorted.last().copied().unwrap_or_default();
            println!(
                "expire calls (budget 1024): {} calls, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (call #{worst_at})",
                calls.len(),
                pct(0.5),
                pct(0.99),
                worst.as_secs_f64() * 1000.0
            );
            let mut mem = MemoryTable::new();
            for i in 0..leases {
                let _ = mem.upsert(synthetic(i, now, Placement::Random, 1));
            }
            let start = Instant::now();
            let mut mchanged = 0u64;
            while {
                let n = mem.expire(later, 1024, &mut freed);
                freed.clear();
                mchanged += n as u64;
                n == 1024
            } {}
            let mrate = mchanged as f64 / start.elapsed().as_secs_f64();
            println!(
                "expire: {changed} leases Active→Expired in {:.2} s = {rate:.0} leases/s per shard \
                 (budget 1024 per call + commit; longest expire call {:.2} ms, longest commit \
                 {:.2} ms); in-memory table {mrate:.0} leases/s; ratio {:.2}",
                changed as f64 / rate,
                worst.as_secs_f64() * 1000.0,
                worst_commit.as_secs_f64() * 1000.0,
                rate / mrate
            );
        }
    }
}
