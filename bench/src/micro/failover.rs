//! Failover micro-benchmarks (RFC 8156).
//!
//! * `failover/bndupd`: encode one client's BNDUPD (an IA_NA address and an IA_PD prefix,
//!   every §7.4 option) and decode it again, per binding update. Baseline in the same run:
//!   splitting the same frame and walking its top-level options without decoding them.
//! * `failover/updreqall`: a partner that lost its database asks with UPDREQALL (§8.5.2)
//!   and receives every binding: the whole exchange between two real endpoints (BNDUPD
//!   build, framing, parse, §7.5.4 conflict check, store into a `MemoryTable`, BNDREPLY
//!   build and parse, ack processing) for 1M bindings, until UPDDONE. Both endpoints run on
//!   the measuring thread, so the figure is the CPU time of both sides together. The
//!   bindings are an ISP mix (see [`leases`]): 600k clients with DUID-LLT/LL/EN/UUID DUIDs,
//!   two in three with an IA_NA address and an IA_PD /56, the rest a prefix only, one in
//!   32 leases EXPIRED awaiting acknowledgement, some clients' records not adjacent in the
//!   table. Setup (filling the sender's table) is outside the timing. The receiver's table
//!   is sized for the pool at start, as a server sizes its store. Baseline in the same run:
//!   `store only`, inserting the same bindings into an empty table of the same size, the
//!   receiver's floor with no protocol at all. `TANDEM_BENCH_RESYNC_N` overrides the
//!   binding count. Times are the thread's CPU time.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};

use super::cputime::{thread_cpu_time, ThreadCpuTime};
use tandem::failover::{Endpoint, FailoverConfig, PersistentState, Role, ServerState};
use tandem::lease::memory::MemoryTable;
use tandem::lease::{BindingState, Duid, IaType, Lease, LeaseTable, Resource};
use tandem::time::Timestamp;
use tandem::wire::failover::{
    split_frame, BindingUpdateRepr, Builder, Frame, LeaseRecord, Message, MessageType, Subject,
};

const NOW_MS: u64 = 1_800_000_000_000;

fn record(ia_type: IaType, resource: Resource) -> LeaseRecord {
    LeaseRecord {
        ia_type,
        iaid: 1,
        t1: 1800,
        t2: 2880,
        resource,
        preferred_lifetime: 3000,
        valid_lifetime: 3600,
        status: BindingState::Active,
        start_time_of_state: Some(800_000_000),
        state_expiration_time: Some(800_003_600),
        clt_time: Some(3),
        partner_lifetime: Some(800_005_400),
        partner_raw_clt_time: Some(800_000_001),
        expiration_time: Some(800_003_600),
        partner_lifetime_sent: None,
        status_code: None,
    }
}

fn bndupd(c: &mut Criterion<ThreadCpuTime>) {
    let update = BindingUpdateRepr {
        subject: Subject::Client(
            Duid::new(&[0, 1, 0, 1, 0x2a, 0x2b, 0x2c, 0x2d, 2, 0, 0, 0, 0, 1]).unwrap(),
        ),
        base_time: 800_000_003,
        top_status: None,
        records: vec![
            record(
                IaType::Na,
                Resource::address("2001:db8:1::1001".parse().unwrap()),
            ),
            record(
                IaType::Pd,
                Resource::prefix("2001:db8:100:1200::".parse().unwrap(), 56),
            ),
        ],
    };
    let mut frame = Vec::with_capacity(512);
    let mut b = Builder::new(&mut frame, MessageType::Bndupd, 7, 800_000_003);
    update.emit(&mut b, false);
    b.finish().unwrap();

    let mut g = c.benchmark_group("failover/bndupd");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode+decode", |bch| {
        let mut buf = Vec::with_capacity(512);
        let mut back = BindingUpdateRepr::default();
        bch.iter(|| {
            buf.clear();
            let mut b = Builder::new(&mut buf, MessageType::Bndupd, 7, 800_000_003);
            black_box(&update).emit(&mut b, false);
            b.finish().unwrap();
            let Ok(Frame::Complete { message, .. }) = split_frame(&buf) else {
                unreachable!()
            };
            let m = Message::new_checked(message).unwrap();
            back.parse(m.options(), false).unwrap();
            black_box(back.records.len())
        })
    });
    g.bench_function("baseline: frame split + option walk", |bch| {
        bch.iter(|| {
            let Ok(Frame::Complete { message, .. }) = split_frame(black_box(&frame)) else {
                unreachable!()
            };
            let m = Message::new_checked(message).unwrap();
            black_box(m.options().into_iter().count())
        })
    });
    g.finish();
}

/// A realistic client DUID (RFC 8415 §11): half DUID-LLT (14 octets), 30 % DUID-LL (10),
/// 15 % DUID-EN (18), 5 % DUID-UUID (18), with MAC addresses under a few vendor OUIs.
fn duid(c: u32) -> Duid {
    let ouis: [[u8; 3]; 4] = [
        [0x00, 0x1a, 0x2b],
        [0x3c, 0x84, 0x6a],
        [0xa0, 0x63, 0x91],
        [0xf4, 0xf2, 0x6d],
    ];
    let oui = ouis[(c % 4) as usize];
    let id = c.to_be_bytes();
    let mac = [oui[0], oui[1], oui[2], id[1], id[2], id[3]];
    let mut raw = [0u8; 18];
    let len = match c % 20 {
        0..=9 => {
            // DUID-LLT: type 1, hardware type 1 (Ethernet), time, link-layer address.
            raw[..4].copy_from_slice(&[0, 1, 0, 1]);
            raw[4..8].copy_from_slice(&(0x2a00_0000u32 + (c >> 3)).to_be_bytes());
            raw[8..14].copy_from_slice(&mac);
            14
        }
        10..=15 => {
            // DUID-LL: type 3, hardware type 1, link-layer address.
            raw[..4].copy_from_slice(&[0, 3, 0, 1]);
            raw[4..10].copy_from_slice(&mac);
            10
        }
        16..=18 => {
            // DUID-EN: type 2, enterprise number 4491 (CableLabs), 12-octet identifier.
            raw[..6].copy_from_slice(&[0, 2, 0, 0, 0x11, 0x8b]);
            raw[6..12].copy_from_slice(&mac);
            raw[12..16].copy_from_slice(&id);
            raw[16..18].copy_from_slice(&[0x5e, 0x10]);
            18
        }
        _ => {
            // DUID-UUID (RFC 6355): type 4, 16-octet UUID.
            raw[..2].copy_from_slice(&[0, 4]);
            raw[2..6].copy_from_slice(&id);
            raw[6..12].copy_from_slice(&mac);
            raw[12..18].copy_from_slice(&[0x4a, 0x1d, 0x80, 0x00, 0x3c, 0x9e]);
            18
        }
    };
    Duid::new(&raw[..len]).unwrap()
}

/// One of client `c`'s leases: its IA_NA address or its IA_PD /56. Most are ACTIVE (renewed
/// some time in the last half hour); one in 32 is EXPIRED and waiting for the partner's
/// acknowledgement (flagged, held, as `binding::expire` leaves it).
fn lease(c: u32, pd: bool) -> Lease {
    let now = NOW_MS / 1000;
    let resource = if pd {
        // 2001:db8:XXXX:XX00::/56, one per client.
        Resource::prefix(
            (0x2001_0db8_0000_0000_0000_0000_0000_0000u128 | (u128::from(c) << 72)).into(),
            56,
        )
    } else {
        Resource::address(
            (0x2001_0db8_ffff_0000_0000_0000_0000_0000u128 | (u128::from(c) << 1) | 1).into(),
        )
    };
    let cltt = now - 1800 + u64::from(c % 1800);
    let expired = c % 32 == 7;
    Lease {
        resource,
        ia_type: if pd { IaType::Pd } else { IaType::Na },
        duid: duid(c),
        iaid: if pd { 2 } else { 1 },
        state: if expired {
            BindingState::Expired
        } else {
            BindingState::Active
        },
        preferred_lifetime: 1800,
        valid_lifetime: 3600,
        cltt,
        expires_at: if expired { u64::MAX } else { cltt + 3600 },
        subnet: 0,
        partner_lifetime: cltt + 3600 + 1800,
        update_pending: expired,
    }
}

/// `n` bindings: two clients in three hold an address and a prefix, the third only a
/// prefix (a routed CPE with an unnumbered WAN). The table is written in grant order: a
/// client's records are adjacent, except that one dual-stack client in eight got its
/// prefix later (its IA_PD record sits after everyone's first grants).
///
/// `TANDEM_BENCH_RESYNC_SHAPE=na` instead gives every client one address (n clients, n
/// BNDUPDs of one record: the shape the earlier figures used).
fn leases(n: u32) -> Vec<Lease> {
    if std::env::var("TANDEM_BENCH_RESYNC_SHAPE").is_ok_and(|v| v == "na") {
        return (0..n).map(|c| lease(c, false)).collect();
    }
    let mut first = Vec::with_capacity(n as usize);
    let mut later = Vec::new();
    let mut c = 0u32;
    while first.len() + later.len() < n as usize {
        let dual = c % 3 != 2;
        if dual {
            first.push(lease(c, false));
            if first.len() + later.len() < n as usize {
                if c % 8 == 1 {
                    later.push(lease(c, true));
                } else {
                    first.push(lease(c, true));
                }
            }
        } else {
            first.push(lease(c, true));
        }
        c += 1;
    }
    first.extend(later);
    first
}

struct Side {
    ep: Endpoint,
    table: MemoryTable,
}

fn config(role: Role) -> FailoverConfig {
    let mut c = FailoverConfig::new(role);
    c.max_unacked_bndupd = 256;
    c
}

fn filled_table(n: u32) -> MemoryTable {
    let mut table = MemoryTable::with_capacity(n as usize);
    for l in leases(n) {
        table.upsert(l).unwrap();
    }
    table.commit().unwrap();
    table
}

/// The baseline: every binding of `from` stored into an empty table of the same size.
fn store_only(from: &MemoryTable) -> Duration {
    let mut leases = Vec::with_capacity(from.len());
    from.for_each(&mut |l: &Lease| leases.push(*l));
    let mut to = MemoryTable::with_capacity(from.len());
    let start = thread_cpu_time();
    for l in &leases {
        to.upsert(*l).unwrap();
    }
    to.commit().unwrap();
    let spent = thread_cpu_time().saturating_sub(start);
    assert_eq!(to.len(), from.len());
    spent
}

/// One UPDREQALL resync of `n` bindings; returns the CPU time of the exchange.
fn resync(n: u32) -> Duration {
    let now = Timestamp(NOW_MS);
    let primary_table = filled_table(n);
    let persisted = PersistentState {
        state: ServerState::Normal,
        previous_state: ServerState::Normal,
        start_time_of_state: now.secs() - 1000,
        partner_state: Some(ServerState::Normal),
        partner_start_time_of_state: now.secs() - 1000,
        last_partner_message: now.secs() - 10,
        last_operating_time: now.secs() - 1,
        communicated: true,
        mclt: 3600,
        partner_down_time: 0,
    };
    let mut p = Side {
        ep: Endpoint::new(config(Role::Primary), Some(persisted), now),
        table: primary_table,
    };
    // The secondary lost its stable storage: no persisted state, empty table.
    let mut s = Side {
        ep: Endpoint::new(config(Role::Secondary), None, now),
        table: MemoryTable::with_capacity(n as usize),
    };
    let start = thread_cpu_time();
    p.ep.handle_connected(now);
    s.ep.handle_connected(now);
    let mut buf = Vec::with_capacity(1 << 20);
    loop {
        let mut moved = false;
        for (x, y) in [(0, 1), (1, 0)] {
            let (from, to) = if x == 0 {
                (&mut p, &mut s)
            } else {
                (&mut s, &mut p)
            };
            let _ = y;
            buf.clear();
            while from.ep.poll_transmit(now, &mut from.table, &mut buf) && buf.len() < (1 << 20) {}
            while from.ep.poll_event().is_some() {}
            if !buf.is_empty() {
                moved = true;
                to.ep.handle_stream(now, &buf, &mut to.table);
                while to.ep.poll_event().is_some() {}
            }
        }
        if s.ep.server_state() == ServerState::RecoverWait || !moved {
            break;
        }
    }
    let spent = thread_cpu_time().saturating_sub(start);
    assert_eq!(
        s.ep.server_state(),
        ServerState::RecoverWait,
        "UPDDONE received"
    );
    assert_eq!(s.table.len(), n as usize, "every binding arrived");
    spent
}

fn updreqall(c: &mut Criterion<ThreadCpuTime>) {
    let n: u32 = std::env::var("TANDEM_BENCH_RESYNC_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut g = c.benchmark_group("failover/updreqall");
    // One resync per sample, ten samples: the target is per resync of 1M.
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(u64::from(n)));
    g.bench_with_input(BenchmarkId::from_parameter(n), &n, |bch, &n| {
        bch.iter_custom(|iters| (0..iters).map(|_| resync(n)).sum())
    });
    let from = filled_table(n);
    g.bench_with_input(
        BenchmarkId::new("baseline: store only", n),
        &from,
        |bch, from| bch.iter_custom(|iters| (0..iters).map(|_| store_only(from)).sum()),
    );
    g.finish();
}

pub fn benchmarks(c: &mut Criterion<ThreadCpuTime>) {
    bndupd(c);
    updreqall(c);
}
