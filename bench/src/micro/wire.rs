//! The DHCPv6 codec (src/wire) on real packets: a dhclient Solicit, a two-hop relayed Request
//! (scapy relay agent) and an Advertise like Kea's. The owned `Repr` parse of the same bytes
//! (allocating, the dhcproto style the views replace) is measured beside the views as the
//! baseline of the same run.

use std::hint::black_box;
use std::net::Ipv6Addr;

use criterion::{Criterion, Throughput};
use tandem::wire::{client_id, parse_relayed, DhcpOption, MessageType, Repr, StatusCode, Writer};

const SOLICIT: &[u8] = include_bytes!("../../../tests/vectors/dhclient-na-01-solicit.bin");
const RELAYED_REQUEST: &[u8] =
    include_bytes!("../../../tests/vectors/scapy-relay-03-relay-forw-relay-forw-request.bin");
const SERVER_DUID: &[u8] = &[0, 2, 0, 0, 0x09, 0xbf, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f];

/// What the engine does with a request before any policy: walk the relays, then decode every
/// option of the client message (and the addresses inside IAs). Returns a checksum so the
/// work cannot be optimised away.
fn parse_and_walk(payload: &[u8]) -> usize {
    let relayed = parse_relayed(payload).expect("vector parses");
    let mut sum = relayed.depth();
    for layer in relayed.layers() {
        sum += layer.interface_id().map_or(0, <[u8]>::len);
    }
    for raw in relayed.message().options() {
        match DhcpOption::parse(raw).expect("vector options parse") {
            DhcpOption::ClientId(d) => sum += d.as_bytes().len(),
            DhcpOption::IaNa(ia) => {
                sum += ia.iaid() as usize;
                for a in ia.addresses() {
                    sum += a.map_or(0, |a| a.valid_lifetime() as usize);
                }
            }
            DhcpOption::IaPd(ia) => {
                for p in ia.prefixes() {
                    sum += p.map_or(0, |p| usize::from(p.prefix_len()));
                }
            }
            DhcpOption::Oro(codes) => sum += codes.len(),
            other => sum += usize::from(other.code()),
        }
    }
    sum
}

/// An Advertise as Kea sends it to dhclient (dhclient-na-02-advertise-to-solicit.bin).
fn emit_advertise(out: &mut Vec<u8>, client_duid: &[u8]) -> usize {
    let dns = [
        Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x53),
        Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x54),
    ];
    let addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x1000);
    let mut w = Writer::message(out, MessageType::Advertise, 0x00ab_cdef);
    w.client_id(client_duid)
        .server_id(SERVER_DUID)
        .ia_na(0x7bb6_5db0, 1800, 2880, |w| {
            w.ia_addr(addr, 3600, 7200, |_| {});
        })
        .dns_servers(&dns)
        .domain_list(["example.com", "isp.example.net"])
        .status_code(StatusCode::Success, "");
    w.finish().expect("advertise fits")
}

pub fn benchmarks(c: &mut Criterion) {
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Elements(1));

    g.bench_function("parse_solicit_views", |b| {
        b.iter(|| parse_and_walk(black_box(SOLICIT)))
    });
    g.bench_function("parse_solicit_repr_baseline", |b| {
        b.iter(|| Repr::parse(black_box(SOLICIT)).expect("parses"))
    });
    g.bench_function("parse_relayed_request_2hop_views", |b| {
        b.iter(|| parse_and_walk(black_box(RELAYED_REQUEST)))
    });
    g.bench_function("parse_relayed_request_2hop_repr_baseline", |b| {
        b.iter(|| Repr::parse(black_box(RELAYED_REQUEST)).expect("parses"))
    });
    g.bench_function("client_id_relayed_request_2hop", |b| {
        b.iter(|| {
            client_id(black_box(RELAYED_REQUEST))
                .expect("has CLIENTID")
                .len()
        })
    });

    let client_duid = client_id(SOLICIT).expect("has CLIENTID").to_vec();
    let mut out = Vec::with_capacity(1500);
    g.bench_function("emit_advertise", |b| {
        b.iter(|| {
            out.clear();
            emit_advertise(&mut out, black_box(&client_duid))
        })
    });
    let advertise_repr = {
        let mut buf = Vec::new();
        emit_advertise(&mut buf, &client_duid);
        Repr::parse(&buf).expect("our Advertise parses")
    };
    g.bench_function("emit_advertise_repr_baseline", |b| {
        b.iter(|| {
            out.clear();
            black_box(&advertise_repr).emit(&mut out).expect("emits")
        })
    });

    let relayed = parse_relayed(RELAYED_REQUEST).expect("parses");
    g.bench_function("emit_relay_reply_2hop", |b| {
        b.iter(|| {
            out.clear();
            let mut w = Writer::relay_reply(&mut out, black_box(&relayed));
            w.header(MessageType::Reply, 1).server_id(SERVER_DUID);
            w.finish().expect("fits")
        })
    });
    g.finish();
}
