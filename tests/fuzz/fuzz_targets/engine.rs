//! Fuzz target: the whole engine (parse → validate → allocate → emit) on arbitrary bytes.
//!
//! The first input byte picks how the packet arrived (direct multicast, direct unicast, from
//! a relay) and the server's failover role; the rest is the UDP payload. The payload is
//! handled twice (so a Request is followed by its own retransmission, exercising the
//! renewal paths), then expiry runs. Invariants checked beyond "no panic": a dropped packet
//! leaves the output empty, every reply parses back, and owner_shard never panics.

#![no_main]

use std::net::{Ipv6Addr, SocketAddrV6};
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use tandem::config::{Config, LocalInterface};
use tandem::engine::{owner_shard, Engine, Outcome, Received, ShardId};
use tandem::failover::{Role, ServerState, ServiceScope};
use tandem::lease::memory::MemoryTable;
use tandem::lease::Duid;
use tandem::time::Timestamp;

const CONFIG: &str = r#"
[server]
decline_quarantine = 600

[options]
dns_servers = ["2001:db8::53"]
domain_list = ["isp.example"]
sol_max_rt = 600
inf_max_rt = 600

[[subnet]]
prefix = "2001:db8:1::/64"
interfaces = ["eth1"]
relay_addresses = ["2001:db8:ffff::1"]
interface_ids = ["port-1"]
rapid_commit = true
temporary_addresses = true
pool = [{ start = "2001:db8:1::1000", end = "2001:db8:1::10ff" }]
pd_pool = [{ prefix = "2001:db8:100::/48", delegated_length = 56 }]

[[reservation]]
remote_id = "0x0102"
enterprise = 3561
addresses = ["2001:db8:1::1001"]
"#;

fn config() -> Arc<Config> {
    static CONFIG_ONCE: OnceLock<Arc<Config>> = OnceLock::new();
    CONFIG_ONCE
        .get_or_init(|| {
            let mut c = Config::from_str(CONFIG, "fuzz").expect("fuzz config is valid");
            c.bind_interfaces(&[LocalInterface {
                name: "eth1".into(),
                ifindex: 2,
                addrs: vec![],
                up: true,
                loopback: false,
            }]);
            Arc::new(c)
        })
        .clone()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, payload)) = data.split_first() else {
        return;
    };
    let duid = Duid::new(&[0, 1, 0, 1, 1, 2, 3, 4, 0, 0, 0, 0, 0, 1]).expect("server DUID");
    let mut engine = Engine::new(config(), duid, ShardId { index: 0, count: 1 });
    if mode & 0x10 != 0 {
        let role = if mode & 0x20 != 0 { Role::Primary } else { Role::Secondary };
        engine.set_scope(ServiceScope {
            role: Some(role),
            state: ServerState::Normal,
            mclt: 300,
            partner_down_since: 0,
        });
    }
    let rx = match mode & 3 {
        0 => Received {
            src: SocketAddrV6::new("fe80::1".parse().expect("addr"), 546, 0, 2),
            dst: "ff02::1:2".parse().expect("addr"),
            ifindex: 2,
        },
        1 => Received {
            src: SocketAddrV6::new("fe80::1".parse().expect("addr"), 546, 0, 2),
            dst: "2001:db8:1::1".parse().expect("addr"),
            ifindex: 2,
        },
        _ => Received {
            src: SocketAddrV6::new("2001:db8:ffff::1".parse().expect("addr"), 547, 0, 0),
            dst: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x547),
            ifindex: 9,
        },
    };
    let mut table = MemoryTable::new();
    let mut out = Vec::new();
    for now in [1_800_000_000u64, 1_800_001_000] {
        match engine.handle(&rx, payload, Timestamp::from_secs(now), &mut table, &mut out) {
            Outcome::Drop(_) => assert!(out.is_empty()),
            Outcome::Reply { .. } => {
                assert!(tandem::wire::parse_relayed(&out).is_ok(), "reply does not parse")
            }
        }
    }
    engine.expire(Timestamp::from_secs(1_900_000_000), &mut table, 64);
    let _ = owner_shard(payload, 3);
});
