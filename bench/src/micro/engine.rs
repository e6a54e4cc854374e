//! Engine micro-benchmarks: parse + engine + emit per packet, for Solicit, Request and
//! Renew, sent directly and relayed through two hops, each with one IA_NA and one IA_PD
//! (what a CPE sends). The baseline in the same run is the wire parse alone of the same
//! relayed Request (`parse_relayed` plus a walk of every option), so the ratio says what
//! the engine adds on top of decoding.
//!
//! Times are the benchmark thread's CPU time ([`super::cputime`]), so waiting for a core on
//! a shared machine does not count.
//!
//! Requests allocate for a new client every time: the timed loop runs over chunks of
//! distinct clients and rebuilds the table between chunks, outside the timing.
//!
//! `sarr-bound` is the load of the AF_XDP benchmark (docs/benchmarks.md): Solicit then
//! Request from clients that already hold their leases, round robin over 20,000 clients,
//! on the table the server really uses (`ShardTable` in durability `memory`), one relay
//! hop. One iteration is one exchange (two messages, one lease renewed).

use std::hint::black_box;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};

use super::cputime::{thread_cpu_time, ThreadCpuTime};
use tandem::config::{Config, LocalInterface};
use tandem::engine::{Engine, Outcome, Received, ShardId};
use tandem::lease::memory::MemoryTable;
use tandem::lease::store::ShardTable;
use tandem::lease::{Duid, LeaseTable};
use tandem::time::Timestamp;
use tandem::wire::{self, MessageType, Writer};

const CONFIG: &str = r#"
[options]
dns_servers = ["2001:db8::53"]
domain_list = ["isp.example"]

[[subnet]]
prefix = "2001:db8:1::/64"
interfaces = ["eth1"]
preferred_lifetime = 14400
valid_lifetime = 21600
pool = [{ start = "2001:db8:1::1:0", end = "2001:db8:1::ffff:ffff:ffff" }]
pd_pool = [{ prefix = "2001:db8:100::/40", delegated_length = 56 }]
"#;

/// Distinct clients per timed chunk (fits the /40 → /56 PD pool many times over).
const CHUNK: usize = 16_384;

fn server_duid() -> Duid {
    Duid::new(&[0, 1, 0, 1, 1, 2, 3, 4, 0xde, 0xad, 0xbe, 0xef, 0, 1]).expect("valid DUID")
}

fn engine() -> Engine {
    let mut cfg = Config::from_str(CONFIG, "bench").expect("bench config is valid");
    cfg.bind_interfaces(&[LocalInterface {
        name: "eth1".into(),
        ifindex: 2,
        addrs: vec![],
        up: true,
        loopback: false,
    }]);
    Engine::new(Arc::new(cfg), server_duid(), ShardId { index: 0, count: 1 })
}

fn client_duid(n: usize) -> [u8; 14] {
    let mut d = [0, 1, 0, 1, 0x2a, 0x2b, 0x2c, 0x2d, 0x02, 0, 0, 0, 0, 0];
    d[10..].copy_from_slice(&(n as u32).to_be_bytes());
    d
}

/// A CPE message: CLIENTID, SERVERID (when the type needs it), ELAPSED_TIME, ORO, IA_NA,
/// IA_PD; `leases` fills the IAs for Renew.
fn client_msg(t: MessageType, n: usize, leases: Option<(Ipv6Addr, Ipv6Addr)>) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = Writer::message(&mut buf, t, n as u32 & 0xff_ffff);
    w.client_id(&client_duid(n));
    if matches!(t, MessageType::Request | MessageType::Renew) {
        w.server_id(server_duid().as_bytes());
    }
    w.elapsed_time(0);
    w.oro(&[wire::OPTION_DNS_SERVERS, wire::OPTION_DOMAIN_LIST]);
    w.ia_na(1, 0, 0, |w| {
        if let Some((a, _)) = leases {
            w.ia_addr(a, 0, 0, |_| {});
        }
    });
    w.ia_pd(2, 0, 0, |w| {
        if let Some((_, p)) = leases {
            w.ia_prefix(0, 0, 56, p, |_| {});
        }
    });
    w.finish().expect("bench message encodes");
    buf
}

/// Two Relay-forw layers: an access relay on the subscriber link (with Interface-ID,
/// Remote-ID, Subscriber-ID) inside an aggregation relay.
fn relayed(inner: &[u8]) -> Vec<u8> {
    let mut l1 = Vec::new();
    let mut w = Writer::relay(
        &mut l1,
        MessageType::RelayForw,
        0,
        "2001:db8:1::1".parse().expect("addr"),
        "fe80::2".parse().expect("addr"),
    );
    w.interface_id(b"ge-0/0/1.100");
    w.remote_id(3561, b"olt7-port12");
    w.subscriber_id(b"sub-000123");
    w.relay_msg(|w| {
        w.bytes(inner);
    });
    w.finish().expect("relay encodes");
    let mut l2 = Vec::new();
    let mut w = Writer::relay(
        &mut l2,
        MessageType::RelayForw,
        1,
        "2001:db8:ffff::1".parse().expect("addr"),
        "2001:db8:ffff::2".parse().expect("addr"),
    );
    w.interface_id(b"ae0");
    w.relay_msg(|w| {
        w.bytes(&l1);
    });
    w.finish().expect("relay encodes");
    l2
}

fn rx(relay: bool) -> Received {
    if relay {
        Received {
            src: SocketAddrV6::new("2001:db8:ffff::2".parse().expect("addr"), 547, 0, 0),
            dst: "2001:db8::547".parse().expect("addr"),
            ifindex: 9,
        }
    } else {
        Received {
            src: SocketAddrV6::new("fe80::1234".parse().expect("addr"), 546, 0, 2),
            dst: wire::ALL_DHCP_RELAY_AGENTS_AND_SERVERS,
            ifindex: 2,
        }
    }
}

fn now() -> Timestamp {
    Timestamp::from_secs(1_800_000_000)
}

fn answer(e: &mut Engine, t: &mut dyn LeaseTable, rx: &Received, p: &[u8], out: &mut Vec<u8>) {
    let o = e.handle(rx, p, now(), t, out);
    assert!(
        matches!(o, Outcome::Reply { .. }),
        "bench packet was dropped: {o:?}"
    );
}

pub fn benchmarks(c: &mut Criterion<ThreadCpuTime>) {
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(1));
    for relay in [false, true] {
        let path = if relay { "relayed-2hops" } else { "direct" };
        let wrap = |p: Vec<u8>| if relay { relayed(&p) } else { p };
        let rx = rx(relay);

        // Solicit → Advertise: stores nothing, so one packet can repeat.
        let solicit = wrap(client_msg(MessageType::Solicit, 1, None));
        let mut e = engine();
        let mut t = MemoryTable::new();
        let mut out = Vec::with_capacity(512);
        answer(&mut e, &mut t, &rx, &solicit, &mut out);
        g.bench_function(BenchmarkId::new("solicit", path), |b| {
            b.iter(|| e.handle(&rx, black_box(&solicit), now(), &mut t, &mut out))
        });

        // Request → Reply for a new client each time (allocates an address and a prefix).
        let requests: Vec<Vec<u8>> = (0..CHUNK)
            .map(|n| wrap(client_msg(MessageType::Request, n, None)))
            .collect();
        g.bench_function(BenchmarkId::new("request", path), |b| {
            // Sized up front and reused, as a server's table is: growth rehashes and first
            // page touches are properties of the test table, not of the per-packet work.
            let mut t = MemoryTable::with_capacity(2 * CHUNK);
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut done = 0u64;
                while done < iters {
                    let mut e = engine();
                    t.clear();
                    let n = (iters - done).min(CHUNK as u64) as usize;
                    let start = thread_cpu_time();
                    for p in &requests[..n] {
                        black_box(e.handle(&rx, p, now(), &mut t, &mut out));
                    }
                    total += thread_cpu_time().saturating_sub(start);
                    done += n as u64;
                }
                total
            })
        });

        // Renew → Reply for clients holding leases (the steady state of an access site).
        let mut e = engine();
        let mut t = MemoryTable::with_capacity(2 * CHUNK);
        let mut renews = Vec::with_capacity(CHUNK);
        for (n, p) in requests.iter().enumerate() {
            answer(&mut e, &mut t, &rx, p, &mut out);
            let reply = wire::parse_relayed(&out).expect("reply parses").message();
            let na = reply.option(wire::OPTION_IA_NA).expect("IA_NA");
            let na = wire::IaNa::new_checked(na).expect("IA_NA view");
            let a = na
                .addresses()
                .next()
                .expect("address")
                .expect("IAADDR")
                .address();
            let pd = reply.option(wire::OPTION_IA_PD).expect("IA_PD");
            let pd = wire::IaPd::new_checked(pd).expect("IA_PD view");
            let p = pd
                .prefixes()
                .next()
                .expect("prefix")
                .expect("IAPREFIX")
                .prefix();
            renews.push(wrap(client_msg(MessageType::Renew, n, Some((a, p)))));
        }
        let mut i = 0;
        g.bench_function(BenchmarkId::new("renew", path), |b| {
            b.iter(|| {
                i = (i + 1) % renews.len();
                e.handle(&rx, black_box(&renews[i]), now(), &mut t, &mut out)
            })
        });
    }

    // Solicit + Request of bound clients on the server's own table (see the module docs).
    const SARR_CLIENTS: usize = 20_000;
    let one_hop = |inner: &[u8]| {
        let mut buf = Vec::new();
        let mut w = Writer::relay(
            &mut buf,
            MessageType::RelayForw,
            0,
            "2001:db8:1::1".parse().expect("addr"),
            "fe80::2".parse().expect("addr"),
        );
        w.interface_id(b"ge-0/0/1.100");
        w.relay_msg(|w| {
            w.bytes(inner);
        });
        w.finish().expect("relay encodes");
        buf
    };
    let sarr: Vec<(Vec<u8>, Vec<u8>)> = (0..SARR_CLIENTS)
        .map(|n| {
            (
                one_hop(&client_msg(MessageType::Solicit, n, None)),
                one_hop(&client_msg(MessageType::Request, n, None)),
            )
        })
        .collect();
    let rx = self::rx(true);
    let mut e = engine();
    let mut t = ShardTable::in_memory();
    let mut out = Vec::with_capacity(512);
    for (solicit, request) in &sarr {
        answer(&mut e, &mut t, &rx, solicit, &mut out);
        answer(&mut e, &mut t, &rx, request, &mut out);
    }
    let mut i = 0;
    let mut secs = now().secs();
    g.bench_function("sarr-bound/relayed-1hop-shardtable", |b| {
        b.iter(|| {
            i += 1;
            if i == SARR_CLIENTS {
                // A new second every round, as on the wire: renewals move their deadlines.
                i = 0;
                secs += 1;
            }
            let now = Timestamp::from_secs(secs);
            let (solicit, request) = &sarr[i];
            e.handle(&rx, black_box(solicit), now, &mut t, &mut out);
            let o = e.handle(&rx, black_box(request), now, &mut t, &mut out);
            t.commit().expect("memory commit");
            o
        })
    });

    // Baseline: decoding alone of the relayed Request (relay walk + every option body).
    let request = relayed(&client_msg(MessageType::Request, 7, None));
    g.bench_function("baseline/wire-parse-relayed-request", |b| {
        b.iter(|| {
            let r = wire::parse_relayed(black_box(&request)).expect("parses");
            let mut n = 0usize;
            for layer in r.layers() {
                n += layer.options().count();
            }
            for opt in r.message().options() {
                n += usize::from(opt.parse().is_ok());
            }
            n
        })
    });
    g.finish();
}
