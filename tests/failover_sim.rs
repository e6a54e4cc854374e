//! Deterministic simulation of an RFC 8156 failover pair.
//!
//! Two [`Endpoint`]s, each with a lease table and the real DHCPv6 engine, talk over a
//! simulated TCP connection (in-order, latency, partitions that hold data like TCP does
//! until the connection is declared dead) on a simulated clock with per-server skew.
//! Simulated clients solicit, renew at T1, rebind at T2, release and come back. Scripted
//! scenarios replay the RFC's sequences (and a skew beyond 5 s, which keeps the pair
//! apart); random schedules mix partitions, crashes with and without loss of stable
//! storage, delays (which push the measured skew beyond 5 s), clock skew within §7.1's
//! 5 s, operator partner-down and client churn.
//!
//! Invariants checked after every step:
//! * no address or prefix is held by two clients at overlapping times (client ground truth);
//! * the MCLT rule at every grant outside PARTNER-DOWN (§4.4);
//! * lease stability: a client renewing or rebinding a valid lease at either server is
//!   never refused (NoBinding) and keeps its address and prefix;
//! * after heal, both lease databases converge.
//!
//! Run: `cargo test --release --test failover_sim -- --nocapture`, with
//! `TANDEM_SIM_SEEDS=1..500` and `TANDEM_SIM_STEPS=20000` for longer runs.
//!
//! Each server runs the real serving path: a [`tandem::engine::Engine`] (real allocator,
//! a [`MemoryTable`]) fed DHCPv6 messages built with the wire builders (Solicit with and
//! without Rapid Commit, Request, Renew, Rebind, Release; IA_NA and IA_PD) through a relay,
//! whose replies the clients parse. The engine and the endpoint are wired the way the
//! control core wires them: the endpoint's [`ServiceScope`] and prefix split go to the
//! engine on every change, the engine's committed lease changes go to the endpoint as
//! lazy BNDUPDs, and every record the endpoint writes or removes (partner bindings,
//! acknowledged releases) reaches the engine's prefix allocator through a [`ChangeLog`].

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{Ipv6Addr, SocketAddrV6};
use std::sync::Arc;

use tandem::config::Config;
use tandem::engine::{ChangeLog, Engine, Outcome as EngineOutcome, Received, ShardId};
use tandem::failover::{
    binding, mclt, Endpoint, Event, FailoverConfig, PdPool, PersistentState, PoolStatus, Role,
    ServerState, Subnet,
};
use tandem::lease::memory::MemoryTable;
use tandem::lease::{BindingState, Duid, Lease, LeaseTable, Resource};
use tandem::time::Timestamp;
use tandem::wire::{
    self, IaAddr, IaNa, IaPd, IaPrefix, MessageType, StatusCode, StatusView, Writer,
};

const MCLT: u32 = 60;
const DESIRED: u32 = 600;
const T0_MS: u64 = 1_800_000_000_000;
const CONNECT_RETRY_MS: u64 = 2_000;

/// splitmix64: tiny, seedable, the same on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    /// True with probability `per_mille` / 1000.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// The engines' configuration: the same link and pools as the endpoints' (RFC 8156 §4.1:
/// both servers configured alike). Rapid Commit is allowed on the link, so a Rebind of an
/// unknown binding may create it (RFC 8415 §18.3.5) as the partner of a failed server
/// must; desired valid lifetime [`DESIRED`], preferred 3/4 of it.
const ENGINE_CONFIG: &str = r#"
[[subnet]]
prefix = "2001:db8:1::/64"
rapid_commit = true
preferred_lifetime = 450
valid_lifetime = 600
pool = [{ start = "2001:db8:1::1000", end = "2001:db8:1::13ff" }]
pd_pool = [{ prefix = "2001:db8:100::/48", delegated_length = 56 }]
"#;

/// The relay every client sits behind (its link-address selects the subnet, §13.1).
const RELAY_LINK: &str = "2001:db8:1::1";

fn engine_config() -> Arc<Config> {
    Arc::new(Config::from_str(ENGINE_CONFIG, "failover_sim.toml").expect("sim config"))
}

fn server_duid(role: Role) -> Duid {
    let n = match role {
        Role::Primary => 1,
        Role::Secondary => 2,
    };
    Duid::new(&[0, 1, 0, 1, 0x5a, 0x5a, 0, n, 0xde, 0xad, 0xbe, 0xef, 0, n]).unwrap()
}

fn pd_pool() -> PdPool {
    PdPool {
        prefix: "2001:db8:100::".parse().unwrap(),
        prefix_len: 48,
        delegated_len: 56,
    }
}

fn config(role: Role) -> FailoverConfig {
    let mut c = FailoverConfig::new(role);
    c.relationship_name = Some("sim".into());
    c.mclt = if role == Role::Primary { MCLT } else { 1 };
    c.keepalive_time = 10;
    c.startup_time = 5;
    c.scan_interval = 15;
    c.ack_timeout = 30;
    c.update_request_timeout = 60;
    c.max_unacked_bndupd = 8;
    c.subnets = vec![Subnet {
        prefix: "2001:db8:1::".parse().unwrap(),
        prefix_len: 64,
        desired_valid: DESIRED,
    }];
    c.pd_pools = vec![pd_pool()];
    c.secondary_prefix_share = 30;
    c.rebalance_threshold = 2;
    c
}

/// One address or prefix in a parsed reply IA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Granted {
    resource: Resource,
    valid: u32,
}

/// One IA of a parsed Reply/Advertise: its entries and status.
#[derive(Clone, Debug, Default)]
struct IaResult {
    entries: Vec<Granted>,
    status: Option<StatusCode>,
}

/// A server's answer as the client reads it.
#[derive(Clone, Debug)]
struct Reply {
    msg_type: MessageType,
    server_id: Vec<u8>,
    t1: u32,
    t2: u32,
    na: Option<IaResult>,
    pd: Option<IaResult>,
}

/// Parses the message inside the engine's Relay-repl; the simulated client checks what a
/// real client checks (RFC 8415 §16, §18.2.10).
fn parse_reply(bytes: &[u8]) -> Reply {
    let relayed = wire::parse_relayed(bytes).expect("the engine's reply parses");
    let msg = relayed.message();
    let opts = msg.into_options();
    let status_of = |o: wire::Options<'_>| {
        o.get(wire::OPTION_STATUS_CODE)
            .map(|d| StatusView::new_checked(d).expect("status parses").status())
    };
    let mut r = Reply {
        msg_type: relayed.message().msg_type(),
        server_id: opts
            .clone()
            .get(wire::OPTION_SERVERID)
            .expect("SERVERID")
            .to_vec(),
        t1: 0,
        t2: 0,
        na: None,
        pd: None,
    };
    for d in opts.clone().get_all(wire::OPTION_IA_NA) {
        let ia = IaNa::new_checked(d).expect("IA_NA parses");
        r.t1 = ia.t1();
        r.t2 = ia.t2();
        let entries = ia
            .addresses()
            .map(|a| {
                let a: IaAddr<'_> = a.expect("IAADDR parses");
                Granted {
                    resource: Resource::address(a.address()),
                    valid: a.valid_lifetime(),
                }
            })
            .collect();
        r.na = Some(IaResult {
            entries,
            status: status_of(ia.options()),
        });
    }
    for d in opts.get_all(wire::OPTION_IA_PD) {
        let ia = IaPd::new_checked(d).expect("IA_PD parses");
        if r.na.as_ref().is_none_or(|n| n.entries.is_empty()) {
            r.t1 = ia.t1();
            r.t2 = ia.t2();
        }
        let entries = ia
            .prefixes()
            .map(|p| {
                let p: IaPrefix<'_> = p.expect("IAPREFIX parses");
                Granted {
                    resource: Resource::prefix(p.prefix(), p.prefix_len()),
                    valid: p.valid_lifetime(),
                }
            })
            .collect();
        r.pd = Some(IaResult {
            entries,
            status: status_of(ia.options()),
        });
    }
    r
}

struct Server {
    role: Role,
    cfg: FailoverConfig,
    ep: Option<Endpoint>,
    /// The DHCPv6 engine; exists while the server runs (with `ep`).
    engine: Option<Engine>,
    duid: Duid,
    table: MemoryTable,
    persisted: Option<PersistentState>,
    saved_pool: Vec<(Resource, PoolStatus)>,
    skew_ms: i64,
    conn: Option<u64>,
    /// Resources the endpoint's last call wrote or removed ([`ChangeLog`]).
    changed: Vec<Resource>,
}

impl Server {
    fn new(role: Role, now_ms: u64) -> Server {
        let cfg = config(role);
        let mut s = Server {
            role,
            ep: None,
            engine: None,
            duid: server_duid(role),
            cfg,
            table: MemoryTable::new(),
            persisted: None,
            saved_pool: Vec::new(),
            skew_ms: 0,
            conn: None,
            changed: Vec::new(),
        };
        s.start(Timestamp(now_ms));
        s
    }

    /// Starts (or restarts) the endpoint and the engine from stable storage: the engine
    /// gets the endpoint's scope first, then rebuilds its allocator from the table.
    fn start(&mut self, now: Timestamp) {
        let mut ep = Endpoint::new(self.cfg.clone(), self.persisted, now);
        ep.restore_prefix_pool(&self.saved_pool);
        let mut engine = Engine::new(engine_config(), self.duid, ShardId { index: 0, count: 1 });
        engine.set_scope(ep.scope());
        for (r, st) in ep.prefix_pool().iter() {
            engine.set_prefix_status(r, st);
        }
        engine.load(&self.table);
        self.ep = Some(ep);
        self.engine = Some(engine);
    }

    fn local(&self, global_ms: u64) -> Timestamp {
        Timestamp((global_ms as i64 + self.skew_ms).max(0) as u64)
    }

    fn state(&self) -> Option<ServerState> {
        self.ep.as_ref().map(|e| e.server_state())
    }

    /// Runs one endpoint call that is handed the lease table, then tells the engine about
    /// every record the endpoint wrote or removed.
    fn with_ep<R>(
        &mut self,
        now: Timestamp,
        f: impl FnOnce(&mut Endpoint, &mut dyn LeaseTable) -> R,
    ) -> Option<R> {
        let ep = self.ep.as_mut()?;
        let mut changed = std::mem::take(&mut self.changed);
        let r = f(ep, &mut ChangeLog::new(&mut self.table, &mut changed));
        if let Some(engine) = self.engine.as_mut() {
            for c in changed.drain(..) {
                engine.binding_changed(&c, &self.table, now);
            }
        }
        changed.clear();
        self.changed = changed;
        Some(r)
    }

    /// The control core's duty after endpoint events: a new scope (state, MCLT,
    /// PARTNER-DOWN entry) and, on `PoolChanged`, the prefix split.
    fn sync_engine(&mut self, pool_changed: bool) {
        let (Some(ep), Some(engine)) = (self.ep.as_ref(), self.engine.as_mut()) else {
            return;
        };
        if *engine.scope() != ep.scope() {
            engine.set_scope(ep.scope());
        }
        if pool_changed {
            for (r, st) in ep.prefix_pool().iter() {
                engine.set_prefix_status(r, st);
            }
        }
    }

    /// Hands the engine's committed lease changes to the endpoint (lazy BNDUPDs, §4.3).
    fn flush_updates(&mut self) {
        let (Some(ep), Some(engine)) = (self.ep.as_mut(), self.engine.as_mut()) else {
            return;
        };
        self.table.commit().unwrap();
        for r in engine.drain_binding_updates() {
            ep.lease_changed(r);
        }
    }
}

/// A resource a client holds and when its valid lifetime ends (global ms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Held {
    resource: Resource,
    end_at: u64,
}

#[derive(Clone, Copy, Debug)]
enum ClientState {
    Idle {
        next_at: u64,
    },
    Bound {
        server: usize,
        addr: Held,
        prefix: Option<Held>,
        t1_at: u64,
        t2_at: u64,
    },
}

/// What one exchange with one server gave the client.
#[derive(Clone, Debug)]
enum Answer {
    Reply(Reply),
    NoAnswer,
}

struct Client {
    duid: Duid,
    iaid: u32,
    state: ClientState,
}

struct InFlight {
    deliver_at: u64,
    to: usize,
    conn: u64,
    bytes: Vec<u8>,
}

#[derive(Default)]
struct Stats {
    violations: Vec<String>,
    visited: BTreeSet<ServerState>,
    transitions: [Vec<ServerState>; 2],
    grants: u64,
    renewals: u64,
    lost_leases: u64,
}

struct World {
    now: u64,
    servers: [Server; 2],
    clients: Vec<Client>,
    net_up: bool,
    heal_at: u64,
    restart_at: [u64; 2],
    lose_storage: [bool; 2],
    next_conn: u64,
    next_connect_try: u64,
    inflight: VecDeque<InFlight>,
    last_deliver: [u64; 2],
    latency_max_ms: u64,
    rng: Rng,
    stats: Stats,
    clients_active: bool,
    trace: VecDeque<String>,
    /// Most trace lines kept (`TANDEM_SIM_TRACE`, default 400: the last events).
    trace_limit: usize,
    /// `TANDEM_SIM_WATCH`: a resource whose records are traced at both servers.
    watch: Option<(Resource, [Option<Lease>; 2])>,
}

impl World {
    fn new(seed: u64, clients: usize) -> World {
        let mut rng = Rng(seed);
        let clients = (0..clients)
            .map(|i| Client {
                duid: Duid::new(&[0, 4, (i >> 8) as u8, i as u8, seed as u8, 0x5a]).unwrap(),
                iaid: i as u32,
                state: ClientState::Idle {
                    next_at: T0_MS + rng.range(1_000, 60_000),
                },
            })
            .collect();
        let mut stats = Stats::default();
        stats.visited.insert(ServerState::Startup);
        World {
            now: T0_MS,
            servers: [
                Server::new(Role::Primary, T0_MS),
                Server::new(Role::Secondary, T0_MS),
            ],
            clients,
            net_up: true,
            heal_at: 0,
            restart_at: [0; 2],
            lose_storage: [false; 2],
            next_conn: 0,
            next_connect_try: T0_MS,
            inflight: VecDeque::new(),
            last_deliver: [0; 2],
            latency_max_ms: 200,
            rng,
            stats,
            clients_active: true,
            trace: VecDeque::new(),
            trace_limit: trace_limit(),
            watch: watch_from_env().map(|r| (r, [None, None])),
        }
    }

    fn log(&mut self, s: String) {
        if self.trace.len() >= self.trace_limit {
            self.trace.pop_front();
        }
        self.trace
            .push_back(format!("t={:>7.1} {s}", (self.now - T0_MS) as f64 / 1000.0));
    }

    /// Traces every change of the watched resource's record (`TANDEM_SIM_WATCH`).
    fn watch(&mut self, what: &str) {
        let Some((r, mut seen)) = self.watch else {
            return;
        };
        let mut lines = Vec::new();
        for (server, last) in self.servers.iter().zip(seen.iter_mut()) {
            let now = server.table.by_resource(&r);
            if now != *last {
                *last = now;
                lines.push(format!("watch {:?} {r} after {what}: {now:?}", server.role));
            }
        }
        self.watch = Some((r, seen));
        for l in lines {
            self.log(l);
        }
    }

    fn violation(&mut self, s: String) {
        // One report per distinct violation (a double binding persists over many steps).
        if self.stats.violations.contains(&s) {
            return;
        }
        self.log(format!("VIOLATION {s}"));
        self.stats.violations.push(s);
    }

    // ----- connection ------------------------------------------------------------

    fn drain_events(&mut self, i: usize) {
        let mut pool_changed = false;
        while let Some(ev) = self.servers[i].ep.as_mut().and_then(|ep| ep.poll_event()) {
            match ev {
                Event::StateChanged { from, to } => {
                    self.stats.visited.insert(to);
                    self.stats.transitions[i].push(to);
                    self.log(format!(
                        "{:?} {} -> {}",
                        self.servers[i].role,
                        from.as_str(),
                        to.as_str()
                    ));
                }
                Event::CloseConnection(reason) => {
                    self.log(format!("{:?} closes: {reason:?}", self.servers[i].role));
                    self.close(i);
                }
                Event::PersistentStateChanged => self.persist(i),
                Event::Alarm(a) => self.log(format!("{:?} alarm {a:?}", self.servers[i].role)),
                Event::UpdateRejected { resource, code } => self.log(format!(
                    "{:?} update of {resource} rejected: {code:?}",
                    self.servers[i].role
                )),
                Event::PoolChanged => pool_changed = true,
            }
        }
        self.servers[i].sync_engine(pool_changed);
    }

    fn persist(&mut self, i: usize) {
        let s = &mut self.servers[i];
        if let Some(ep) = &s.ep {
            s.persisted = Some(ep.persistent());
            s.saved_pool = ep.prefix_pool().iter().collect();
        }
    }

    /// Side `i` closes its end; the peer sees the FIN at once when the network is up and
    /// otherwise finds out through its own keepalive (§6.5).
    fn close(&mut self, i: usize) {
        self.disconnect(i);
        if self.net_up {
            self.disconnect(1 - i);
        }
    }

    fn disconnect(&mut self, i: usize) {
        if self.servers[i].conn.take().is_none() {
            return;
        }
        let now = self.servers[i].local(self.now);
        self.servers[i].with_ep(now, |ep, t| ep.handle_disconnected(now, t));
        self.drain_events(i);
    }

    fn try_connect(&mut self) {
        let both_alive = self.servers.iter().all(|s| s.ep.is_some());
        let both_down = self.servers.iter().all(|s| s.conn.is_none());
        if !(both_alive && both_down && self.net_up && self.now >= self.next_connect_try) {
            return;
        }
        self.next_connect_try = self.now + CONNECT_RETRY_MS;
        self.next_conn += 1;
        let id = self.next_conn;
        for i in 0..2 {
            let now = self.servers[i].local(self.now);
            let s = &mut self.servers[i];
            s.conn = Some(id);
            s.ep.as_mut().unwrap().handle_connected(now);
            self.drain_events(i);
        }
    }

    /// Moves messages both ways until nothing is due.
    fn pump(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            // Deliver what is due (in order per direction; held while partitioned).
            while self.net_up {
                let Some(pos) = self.inflight.iter().position(|m| m.deliver_at <= self.now) else {
                    break;
                };
                let m = self.inflight.remove(pos).unwrap();
                let to = m.to;
                if self.servers[to].conn != Some(m.conn) {
                    continue;
                }
                let now = self.servers[to].local(self.now);
                if let Some(used) =
                    self.servers[to].with_ep(now, |ep, t| ep.handle_stream(now, &m.bytes, t))
                {
                    assert_eq!(used, m.bytes.len(), "whole frames are sent");
                }
                self.drain_events(to);
                self.watch("rx");
                moved = true;
            }
            for i in 0..2 {
                let Some(conn) = self.servers[i].conn else {
                    continue;
                };
                let now = self.servers[i].local(self.now);
                let mut buf = Vec::new();
                self.servers[i].with_ep(now, |ep, t| while ep.poll_transmit(now, t, &mut buf) {});
                self.drain_events(i);
                self.watch("tx");
                if !buf.is_empty() {
                    let lat = self.rng.below(self.latency_max_ms + 1);
                    let at = (self.now + lat).max(self.last_deliver[i]);
                    self.last_deliver[i] = at;
                    self.inflight.push_back(InFlight {
                        deliver_at: at,
                        to: 1 - i,
                        conn,
                        bytes: buf,
                    });
                    moved = true;
                }
            }
            if !moved {
                return;
            }
        }
    }

    // ----- failures and commands ---------------------------------------------------

    fn partition(&mut self, until: u64) {
        self.net_up = false;
        self.heal_at = until;
        self.log("partition".into());
    }

    fn heal(&mut self) {
        self.net_up = true;
        self.log("heal".into());
    }

    fn crash(&mut self, i: usize, lose_storage: bool) {
        self.log(format!(
            "{:?} crashes{}",
            self.servers[i].role,
            if lose_storage {
                " and loses its storage"
            } else {
                ""
            }
        ));
        self.persist(i);
        self.servers[i].ep = None;
        self.servers[i].engine = None;
        self.servers[i].conn = None;
        if self.net_up {
            // The peer's TCP sees the reset.
            self.disconnect(1 - i);
        }
        if lose_storage {
            self.servers[i].table = MemoryTable::new();
            self.servers[i].persisted = None;
            self.servers[i].saved_pool.clear();
        }
    }

    fn restart(&mut self, i: usize) {
        let now = self.servers[i].local(self.now);
        self.servers[i].start(now);
        self.log(format!("{:?} restarts", self.servers[i].role));
        self.drain_events(i);
    }

    fn operator_partner_down(&mut self, i: usize) -> bool {
        let now = self.servers[i].local(self.now);
        let ok = self.servers[i]
            .with_ep(now, |ep, t| ep.partner_down(now, t).is_ok())
            .unwrap_or(false);
        if ok {
            self.log(format!("operator: {:?} partner-down", self.servers[i].role));
        }
        self.drain_events(i);
        ok
    }

    // ----- the serving path: each server's real engine -------------------------------

    /// Client `c`'s message: CLIENTID, SERVERID when directed, Elapsed Time, Rapid Commit
    /// when asked, one IA_NA and one IA_PD with the given hints.
    fn client_message(
        &mut self,
        c: usize,
        msg_type: MessageType,
        server: Option<&[u8]>,
        rapid: bool,
        addr: Option<Resource>,
        prefix: Option<Resource>,
    ) -> Vec<u8> {
        let xid = self.rng.below(1 << 24) as u32;
        let cl = &self.clients[c];
        let mut buf = Vec::new();
        let mut w = Writer::message(&mut buf, msg_type, xid);
        w.client_id(cl.duid.as_bytes());
        if let Some(sid) = server {
            w.server_id(sid);
        }
        w.elapsed_time(0);
        if rapid {
            w.rapid_commit();
        }
        w.ia_na(cl.iaid, 0, 0, |w| {
            if let Some(a) = addr {
                w.ia_addr(a.addr, 0, 0, |_| {});
            }
        });
        w.ia_pd(cl.iaid, 0, 0, |w| {
            if let Some(p) = prefix {
                w.ia_prefix(0, 0, p.prefix_len, p.addr, |_| {});
            }
        });
        w.finish().expect("client message fits");
        buf
    }

    /// Relays `inner` from client `c` to server `i`'s engine and returns what the client
    /// reads back. Then, as the shard loop does once the table batch is durable, hands the
    /// engine's lease changes to the endpoint, and checks the MCLT rule (§4.4) on every
    /// lifetime the reply gives.
    fn exchange(&mut self, i: usize, c: usize, inner: &[u8]) -> Answer {
        let now = self.servers[i].local(self.now);
        let mut payload = Vec::new();
        let mut w = Writer::relay(
            &mut payload,
            MessageType::RelayForw,
            0,
            RELAY_LINK.parse().unwrap(),
            Ipv6Addr::from((0xfe80_u128 << 112) | (c as u128 + 1)),
        );
        w.relay_msg(|w| {
            w.bytes(inner);
        });
        w.finish().expect("relay message fits");
        let rx = Received {
            src: SocketAddrV6::new(RELAY_LINK.parse().unwrap(), 547, 0, 0),
            dst: "2001:db8:1::547".parse().unwrap(),
            ifindex: 9,
        };
        let s = &mut self.servers[i];
        let Some(engine) = s.engine.as_mut() else {
            return Answer::NoAnswer;
        };
        let mut out = Vec::new();
        let outcome = engine.handle(&rx, &payload, now, &mut s.table, &mut out);
        let scope = *engine.scope();
        s.flush_updates();
        if let EngineOutcome::Drop(_) = outcome {
            return Answer::NoAnswer;
        }
        let reply = parse_reply(&out);
        let mut bad = Vec::new();
        if reply.server_id != s.duid.as_bytes() {
            bad.push(format!("{:?} answered with another SERVERID", s.role));
        }
        if reply.msg_type == MessageType::Reply {
            let now_s = now.secs();
            let granted = [&reply.na, &reply.pd]
                .into_iter()
                .flatten()
                .flat_map(|ia| ia.entries.iter())
                .filter(|g| g.valid > 0);
            for g in granted {
                let Some(mut l) = s.table.by_resource(&g.resource) else {
                    bad.push(format!(
                        "{:?} granted {} with no record",
                        s.role, g.resource
                    ));
                    continue;
                };
                // What the client was promised, against what the partner acknowledged.
                l.cltt = now_s;
                l.valid_lifetime = g.valid;
                if !mclt::respects_mclt(&l, now_s, scope.mclt, !scope.mclt_applies()) {
                    bad.push(format!(
                        "MCLT rule broken by {:?} for {}: {l:?}",
                        s.role, g.resource
                    ));
                }
            }
        }
        for b in bad {
            self.violation(b);
        }
        self.watch("client");
        Answer::Reply(reply)
    }

    /// Answers from `reply` for the resource of `held` (or, without one, anything granted).
    fn granted_in(ia: Option<&IaResult>) -> Option<Granted> {
        ia?.entries.iter().copied().find(|g| g.valid > 0)
    }

    /// Client `c` takes what a Reply to its Solicit (Rapid Commit) or Request gave it.
    fn bind(&mut self, c: usize, server: usize, reply: &Reply) -> bool {
        if reply.msg_type != MessageType::Reply {
            return false;
        }
        let Some(addr) = Self::granted_in(reply.na.as_ref()) else {
            return false;
        };
        let prefix = Self::granted_in(reply.pd.as_ref());
        let held = |g: Granted, now: u64| Held {
            resource: g.resource,
            end_at: now + u64::from(g.valid) * 1000,
        };
        let (t1, t2) = self.timers(reply, addr.valid);
        self.clients[c].state = ClientState::Bound {
            server,
            addr: held(addr, self.now),
            prefix: prefix.map(|p| held(p, self.now)),
            t1_at: self.now + t1,
            t2_at: self.now + t2,
        };
        self.stats.grants += 1;
        self.log(format!(
            "{:?} grants client {c}: {} {:?} for {} s",
            self.servers[server].role,
            addr.resource,
            prefix.map(|p| p.resource),
            addr.valid
        ));
        true
    }

    /// T1 and T2 in ms from the reply (RFC 8415 §18.2.4: 0 leaves them to the client,
    /// which uses 0.5 and 0.8 of the lifetime).
    fn timers(&self, reply: &Reply, valid: u32) -> (u64, u64) {
        let v = u64::from(valid) * 1000;
        if reply.t1 == 0 || reply.t2 == 0 {
            (v / 2, v * 4 / 5)
        } else {
            (u64::from(reply.t1) * 1000, u64::from(reply.t2) * 1000)
        }
    }

    /// Server `i`'s engine moves leases whose time is up (ACTIVE → EXPIRED, held for the
    /// partner's acknowledgement); the changes go to the endpoint.
    fn expire_leases(&mut self, i: usize) {
        let now = self.servers[i].local(self.now);
        let s = &mut self.servers[i];
        let Some(engine) = s.engine.as_mut() else {
            return;
        };
        while engine.expire(now, &mut s.table, 256) == 256 {}
        s.flush_updates();
    }

    // ----- clients ----------------------------------------------------------------

    /// An idle client solicits (with Rapid Commit half of the time) at the servers in a
    /// random order and takes the first that binds it (Advertise → Request otherwise).
    fn solicit(&mut self, c: usize) -> bool {
        let first = self.rng.below(2) as usize;
        let rapid = self.rng.chance(500);
        for i in [first, 1 - first] {
            let sol = self.client_message(c, MessageType::Solicit, None, rapid, None, None);
            let Answer::Reply(adv) = self.exchange(i, c, &sol) else {
                continue;
            };
            if adv.msg_type == MessageType::Reply {
                if self.bind(c, i, &adv) {
                    return true;
                }
                continue;
            }
            // RFC 8415 §18.2.2: Request what was advertised, to the advertising server.
            let Some(addr) = Self::granted_in(adv.na.as_ref()) else {
                continue;
            };
            let prefix = Self::granted_in(adv.pd.as_ref()).map(|g| g.resource);
            let req = self.client_message(
                c,
                MessageType::Request,
                Some(&adv.server_id),
                false,
                Some(addr.resource),
                prefix,
            );
            if let Answer::Reply(r) = self.exchange(i, c, &req) {
                if self.bind(c, i, &r) {
                    return true;
                }
            }
        }
        false
    }

    /// What a Renew/Rebind Reply did to the client's bindings (RFC 8415 §18.2.10.1):
    /// `Some(true)` extended, `Some(false)` answered without extending (try again later),
    /// violations recorded for a refused or moved valid lease.
    fn renewed(&mut self, c: usize, server: usize, reply: &Reply) {
        let ClientState::Bound {
            addr,
            prefix,
            t1_at,
            t2_at,
            ..
        } = self.clients[c].state
        else {
            return;
        };
        let role = self.servers[server].role;
        let mut extended = false;
        let mut violations = Vec::new();
        let mut update = |h: Held, ia: Option<&IaResult>, now: u64| -> Option<Held> {
            let Some(ia) = ia else {
                return Some(h);
            };
            if ia.status == Some(StatusCode::NoBinding) {
                violations.push(format!(
                    "lease stability: {role:?} refused client {c} ({}) valid for {} s more",
                    h.resource,
                    (h.end_at - now) / 1000
                ));
                return None;
            }
            if let Some(g) = ia.entries.iter().find(|g| g.resource == h.resource) {
                if g.valid == 0 {
                    violations.push(format!(
                        "lease stability: {role:?} ended client {c}'s {} valid for {} s more",
                        h.resource,
                        (h.end_at - now) / 1000
                    ));
                    return None;
                }
                extended = true;
                return Some(Held {
                    resource: h.resource,
                    end_at: now + u64::from(g.valid) * 1000,
                });
            }
            if let Some(g) = ia.entries.iter().find(|g| g.valid > 0) {
                violations.push(format!(
                    "lease stability: client {c} moved from {} to {} by {role:?}",
                    h.resource, g.resource
                ));
                extended = true;
                return Some(Held {
                    resource: g.resource,
                    end_at: now + u64::from(g.valid) * 1000,
                });
            }
            // NoAddrsAvail / NoPrefixAvail (RECOVER-DONE makes nothing new, §8.7.1): keep
            // the binding until it ends.
            Some(h)
        };
        let now = self.now;
        let new_addr = update(addr, reply.na.as_ref(), now);
        let new_prefix = match prefix {
            Some(p) => update(p, reply.pd.as_ref(), now),
            // A client without a prefix keeps asking for one (IA_PD with no hint).
            None => Self::granted_in(reply.pd.as_ref()).map(|g| Held {
                resource: g.resource,
                end_at: now + u64::from(g.valid) * 1000,
            }),
        };
        for v in violations {
            self.violation(v);
        }
        let Some(new_addr) = new_addr else {
            self.clients[c].state = ClientState::Idle {
                next_at: self.now + 1_000,
            };
            return;
        };
        if !extended {
            self.clients[c].state = ClientState::Bound {
                server: match self.clients[c].state {
                    ClientState::Bound { server, .. } => server,
                    ClientState::Idle { .. } => server,
                },
                addr: new_addr,
                prefix: new_prefix,
                t1_at,
                t2_at,
            };
            self.retry_later(c);
            return;
        }
        self.stats.renewals += 1;
        let valid = ((new_addr.end_at - now) / 1000) as u32;
        let (t1, t2) = self.timers(reply, valid);
        self.clients[c].state = ClientState::Bound {
            server,
            addr: new_addr,
            prefix: new_prefix,
            t1_at: now + t1,
            t2_at: now + t2,
        };
    }

    /// Retransmit later (RFC 8415 §18.2.4/§18.2.5 back-off, coarsened).
    fn retry_later(&mut self, c: usize) {
        let retry = self.now + 3_000;
        if let ClientState::Bound { t1_at, t2_at, .. } = &mut self.clients[c].state {
            if self.now >= *t2_at {
                *t2_at = retry;
            } else {
                *t1_at = retry.min(*t2_at);
            }
        }
    }

    fn client_step(&mut self, c: usize) {
        match self.clients[c].state {
            ClientState::Idle { next_at } => {
                if !self.clients_active || self.now < next_at {
                    return;
                }
                if !self.solicit(c) {
                    self.clients[c].state = ClientState::Idle {
                        next_at: self.now + 5_000,
                    };
                }
            }
            ClientState::Bound {
                server,
                addr,
                prefix,
                t1_at,
                t2_at,
            } => {
                if self.now >= addr.end_at {
                    // Nobody answered in time: the lease is gone (not a violation; e.g.
                    // both servers unresponsive while resolving a conflict).
                    self.stats.lost_leases += 1;
                    self.clients[c].state = ClientState::Idle {
                        next_at: self.now + 1_000,
                    };
                    return;
                }
                if prefix.is_some_and(|p| self.now >= p.end_at) {
                    self.stats.lost_leases += 1;
                    if let ClientState::Bound { prefix, .. } = &mut self.clients[c].state {
                        *prefix = None;
                    }
                }
                if self.clients_active && self.rng.chance(2) {
                    let sid = self.servers[server].duid;
                    let rel = self.client_message(
                        c,
                        MessageType::Release,
                        Some(sid.as_bytes()),
                        false,
                        Some(addr.resource),
                        prefix.map(|p| p.resource),
                    );
                    self.exchange(server, c, &rel);
                    self.clients[c].state = ClientState::Idle {
                        next_at: self.now + self.rng.range(1_000, 60_000),
                    };
                    return;
                }
                let (targets, directed): (Vec<usize>, bool) = if self.now >= t2_at {
                    let first = self.rng.below(2) as usize;
                    (vec![first, 1 - first], false)
                } else if self.now >= t1_at {
                    (vec![server], true)
                } else {
                    return;
                };
                let prefix = match self.clients[c].state {
                    ClientState::Bound { prefix, .. } => prefix,
                    ClientState::Idle { .. } => None,
                };
                for i in targets {
                    let (t, sid) = if directed {
                        (MessageType::Renew, Some(self.servers[i].duid))
                    } else {
                        (MessageType::Rebind, None)
                    };
                    let m = self.client_message(
                        c,
                        t,
                        sid.as_ref().map(|d| d.as_bytes()),
                        false,
                        Some(addr.resource),
                        prefix.map(|p| p.resource),
                    );
                    if let Answer::Reply(r) = self.exchange(i, c, &m) {
                        self.renewed(c, i, &r);
                        return;
                    }
                }
                self.retry_later(c);
            }
        }
    }

    // ----- invariants -------------------------------------------------------------

    fn check_no_double_binding(&mut self) {
        let mut holder: HashMap<Resource, usize> = HashMap::new();
        let mut bad = Vec::new();
        for (c, cl) in self.clients.iter().enumerate() {
            if let ClientState::Bound { addr, prefix, .. } = cl.state {
                for h in [Some(addr), prefix].into_iter().flatten() {
                    if h.end_at <= self.now {
                        continue;
                    }
                    if let Some(other) = holder.insert(h.resource, c) {
                        bad.push(format!("{} held by clients {other} and {c}", h.resource));
                    }
                }
            }
        }
        for b in bad {
            self.violation(b);
        }
    }

    fn active_set(table: &MemoryTable, now_s: u64) -> BTreeSet<(Resource, Vec<u8>)> {
        let mut set = BTreeSet::new();
        table.for_each(&mut |l: &Lease| {
            // Records that hold the resource (any non-free state). The two sides may differ
            // in state for a while by design: the sender of a lease expires it at the
            // client's end, the receiver at the partner lifetime (§3).
            // Acknowledged EXPIRED/RELEASED records that one side holds until a deadline
            // (after a partner recovering from lost storage acknowledged them) are free
            // for the pair; only their time of removal differs.
            let _ = now_s;
            let held_free = matches!(l.state, BindingState::Expired | BindingState::Released)
                && !l.update_pending;
            if binding::holds_resource(l) && !held_free {
                set.insert((l.resource, l.duid.as_bytes().to_vec()));
            }
        });
        set
    }

    // ----- the step ---------------------------------------------------------------

    fn step(&mut self, dt_ms: u64, random: bool) {
        self.now += dt_ms;
        if random {
            self.random_events();
        }
        for i in 0..2 {
            if let Some(ep) = self.servers[i].ep.as_ref() {
                let now = self.servers[i].local(self.now);
                if ep.poll_timeout().is_some_and(|t| t <= now) {
                    self.servers[i].with_ep(now, |ep, t| ep.handle_timeout(now, t));
                    self.drain_events(i);
                    self.watch("timeout");
                }
            }
        }
        self.try_connect();
        self.pump();
        for c in 0..self.clients.len() {
            self.client_step(c);
            self.watch("client");
        }
        for i in 0..2 {
            self.expire_leases(i);
            self.watch("expiry");
        }
        self.pump();
        for i in 0..2 {
            self.persist(i);
        }
        self.check_no_double_binding();
    }

    /// The pair can reach "communications OK": network up, clocks within the 5 s the
    /// protocol tolerates (with room for the delay), a restarted server will find its
    /// partner during STARTUP.
    fn can_talk(&self) -> bool {
        self.net_up && self.clocks_ok()
    }

    fn clocks_ok(&self) -> bool {
        (self.servers[0].skew_ms - self.servers[1].skew_ms).abs() <= 2_000
            && self.latency_max_ms <= 1_000
    }

    /// Whether `table` holds an ACTIVE lease not yet acknowledged by the partner whose
    /// lifetime goes beyond what the MCLT rule allows (granted in PARTNER-DOWN).
    fn holds_unclamped_updates(table: &MemoryTable) -> bool {
        let mut found = false;
        table.for_each(&mut |l: &Lease| {
            found |= l.update_pending
                && l.state == BindingState::Active
                && !mclt::respects_mclt(l, l.cltt, MCLT, false);
        });
        found
    }

    fn any_partner_down(&self) -> bool {
        self.servers
            .iter()
            .any(|s| s.state() == Some(ServerState::PartnerDown))
    }

    fn random_events(&mut self) {
        let alive = [self.servers[0].ep.is_some(), self.servers[1].ep.is_some()];
        // Partitions heal on schedule. §8.4: PARTNER-DOWN is only safe when the partner
        // is not operating, so a partition never starts while either side is in it, and
        // an operator who (wrongly) declares a reachable partner down during a partition
        // gets the partition healed within MCLT, before any PARTNER-DOWN-only action.
        if !self.net_up && self.now >= self.heal_at {
            self.heal();
        }
        if self.net_up && !self.any_partner_down() && self.rng.chance(4) {
            let until = self.now + self.rng.range(3_000, 120_000);
            self.partition(until);
        }
        if !self.net_up
            && alive == [true, true]
            && !self.any_partner_down()
            && self.clocks_ok()
            && self.rng.chance(5)
        {
            let i = self.rng.below(2) as usize;
            if self.servers[i].state() == Some(ServerState::CommunicationsInterrupted)
                && !Self::holds_unclamped_updates(&self.servers[1 - i].table)
                && self.operator_partner_down(i)
            {
                self.heal_at = self.heal_at.min(self.now + u64::from(MCLT) * 1000 / 2);
            }
        }
        if alive == [true, true] && self.rng.chance(2) {
            let i = self.rng.below(2) as usize;
            // Stable storage is only lost while the partner holds a full copy of the
            // bindings: not while it is itself still recovering one (STARTUP, RECOVER).
            // Losing both copies is a double fault no protocol survives; RECOVER-WAIT's
            // MCLT (§8.6.2) only covers what the lost server did alone.
            let partner_has_copy = !matches!(
                self.servers[1 - i].state(),
                Some(ServerState::Startup | ServerState::Recover)
            );
            // Likewise, leases granted in PARTNER-DOWN (no MCLT clamp, §8.4.1) that the
            // partner has not acknowledged exist nowhere else, and RECOVER-WAIT's MCLT does
            // not outlast them: losing them is a double fault too (partner down, then disk).
            let only_copy = Self::holds_unclamped_updates(&self.servers[i].table);
            let lose = self.rng.chance(300) && partner_has_copy && !only_copy;
            self.lose_storage[i] = lose;
            self.restart_at[i] = self.now + self.rng.range(2_000, 200_000);
            self.crash(i, lose);
        }
        for i in 0..2 {
            // A crashed partner: the operator may declare it down; it comes back only on
            // a working network (see above).
            // Not when the crashed partner holds leases it granted in PARTNER-DOWN (no MCLT
            // clamp) that we never acknowledged: the MCLT waits of our PARTNER-DOWN do not
            // cover them (§8.4.1 assumes the partner kept the MCLT rule). An operator must
            // not declare partner-down twice across the pair without a resynchronisation.
            if !alive[i]
                && alive[1 - i]
                && !Self::holds_unclamped_updates(&self.servers[i].table)
                && self.rng.chance(20)
            {
                self.operator_partner_down(1 - i);
            }
            if !alive[i] && self.can_talk() && self.now >= self.restart_at[i] {
                self.restart(i);
            }
        }
        // Clock skew within RFC 8156 §7.1's bound: each clock within 2.5 s of true time,
        // so the pair is within 5 s of each other. Skew beyond 5 s is outside the protocol
        // (§7.1 requires synchronized clocks; §7.5.1 only drops the connection): the
        // times stored while the clocks were apart can later be misordered by more than
        // the ±5 s tolerance, e.g. a Release at one server recorded as later than the
        // client's new grant at the other, which then frees a prefix the client holds
        // (seeds 146 and 179 did this; docs/FAILOVER.md "Clock skew beyond 5 s"). The
        // refusal to talk across such a skew is the scripted
        // `skew_beyond_five_seconds_keeps_the_pair_apart`. Long delays cut the pair apart
        // like a partition, so they follow its rule: not while a server is down or in
        // PARTNER-DOWN.
        let calm = alive == [true, true] && !self.any_partner_down();
        if self.rng.chance(3) {
            let i = self.rng.below(2) as usize;
            self.servers[i].skew_ms = self.rng.range(0, 5_000) as i64 - 2_500;
            self.log(format!(
                "{:?} clock skew {} ms",
                self.servers[i].role, self.servers[i].skew_ms
            ));
        }
        if self.rng.chance(10) {
            self.latency_max_ms = self.rng.range(0, if calm { 3_000 } else { 1_000 });
        }
    }

    /// Heals everything, lets the pair settle, then compares the databases.
    fn settle_and_compare(&mut self) {
        self.heal();
        self.servers[0].skew_ms = 0;
        self.servers[1].skew_ms = 0;
        for i in 0..2 {
            if self.servers[i].ep.is_none() {
                self.restart(i);
            }
        }
        self.clients_active = false;
        self.latency_max_ms = 200;
        let mut settled = false;
        let mut quiet = 0;
        for _ in 0..3_000 {
            self.step(1_000, false);
            let normal = self
                .servers
                .iter()
                .all(|s| s.state() == Some(ServerState::Normal));
            let idle = self
                .servers
                .iter()
                .all(|s| s.ep.as_ref().is_some_and(|e| e.is_idle()));
            // Idle for a few steps in a row: nothing queued, unacknowledged or unanswered
            // (CONTACTs keep flowing, so the wire itself is never empty for long).
            quiet = if normal && idle { quiet + 1 } else { 0 };
            if quiet == 5 {
                settled = true;
                break;
            }
        }
        if !settled {
            let st: Vec<_> = self
                .servers
                .iter()
                .map(|s| {
                    s.ep.as_ref().map(|e| {
                        (
                            e.server_state(),
                            e.queued_updates(),
                            e.unacked(),
                            e.is_idle(),
                        )
                    })
                })
                .collect();
            self.violation(format!(
                "pair did not settle in NORMAL after heal: (state, queued, unacked, idle) {st:?}, in flight {}",
                self.inflight.len()
            ));
            return;
        }
        let now_s = self.now / 1000;
        let a = Self::active_set(&self.servers[0].table, now_s);
        let b = Self::active_set(&self.servers[1].table, now_s);
        if a != b {
            let only_a: Vec<_> = a.difference(&b).map(|x| x.0).collect();
            let only_b: Vec<_> = b.difference(&a).map(|x| x.0).collect();
            self.violation(format!(
                "databases differ after heal: primary only {only_a:?}, secondary only {only_b:?}"
            ));
        }
    }
}

fn seeds_from_env() -> (u64, u64) {
    let spec = std::env::var("TANDEM_SIM_SEEDS").unwrap_or_else(|_| "1..51".into());
    let (a, b) = spec
        .split_once("..")
        .unwrap_or_else(|| panic!("TANDEM_SIM_SEEDS must look like 1..500, got {spec:?}"));
    let a: u64 = a.trim().parse().expect("TANDEM_SIM_SEEDS start");
    let b: u64 = b.trim().parse().expect("TANDEM_SIM_SEEDS end");
    assert!(a < b, "TANDEM_SIM_SEEDS must be a non-empty range");
    (a, b)
}

fn steps_from_env() -> u64 {
    std::env::var("TANDEM_SIM_STEPS")
        .ok()
        .map(|s| s.parse().expect("TANDEM_SIM_STEPS must be a number"))
        .unwrap_or(3_000)
}

fn run_until(w: &mut World, max_steps: u64, cond: impl Fn(&World) -> bool) -> bool {
    for _ in 0..max_steps {
        if cond(w) {
            return true;
        }
        w.step(1_000, false);
    }
    cond(w)
}

fn dump(w: &World) -> String {
    format!(
        "{:?}\n{}",
        states(w),
        w.trace.iter().cloned().collect::<Vec<_>>().join("\n")
    )
}

fn states(w: &World) -> [Option<ServerState>; 2] {
    [w.servers[0].state(), w.servers[1].state()]
}

fn both(s: ServerState) -> impl Fn(&World) -> bool {
    move |w| states(w) == [Some(s), Some(s)]
}

fn assert_clean(w: &World, what: &str) {
    assert!(
        w.stats.violations.is_empty(),
        "{what}: {:?}\ntrace:\n{}",
        w.stats.violations,
        w.trace.iter().cloned().collect::<Vec<_>>().join("\n")
    );
}

/// A fresh pair reaches NORMAL, the secondary gets its share of prefixes, clients bind.
fn warm_up(seed: u64) -> World {
    let mut w = World::new(seed, 24);
    assert!(
        run_until(&mut w, 120, both(ServerState::Normal)),
        "fresh pair reaches NORMAL: {}",
        dump(&w)
    );
    for _ in 0..240 {
        w.step(1_000, false);
    }
    assert!(w.stats.grants > 10, "clients were served");
    w
}

#[test]
fn figure_9_potential_conflict_resolution() {
    let mut w = warm_up(9);
    let backup = w.servers[1]
        .ep
        .as_ref()
        .unwrap()
        .prefix_pool()
        .iter()
        .filter(|(_, s)| *s == PoolStatus::FreeBackup)
        .count();
    assert!(
        backup > 0,
        "POOLREQ gave the secondary FREE-BACKUP prefixes"
    );
    w.partition(u64::MAX);
    assert!(run_until(
        &mut w,
        60,
        both(ServerState::CommunicationsInterrupted)
    ));
    // The operator (wrongly) declares the secondary down; the partition heals within MCLT.
    assert!(w.operator_partner_down(0));
    for _ in 0..20 {
        w.step(1_000, false);
    }
    w.heal();
    let sent_before = w.servers[0].ep.as_ref().unwrap().counters().sent[28];
    assert!(
        run_until(&mut w, 300, both(ServerState::Normal)),
        "{}",
        dump(&w)
    );
    // Figure 9: P: PARTNER-DOWN → POTENTIAL-CONFLICT → CONFLICT-DONE → NORMAL;
    // S: COMMUNICATIONS-INTERRUPTED → POTENTIAL-CONFLICT → NORMAL; each side sent UPDREQ.
    let p = &w.stats.transitions[0];
    let s = &w.stats.transitions[1];
    let tail = |v: &Vec<ServerState>, n: usize| v[v.len() - n..].to_vec();
    assert_eq!(
        tail(p, 4),
        vec![
            ServerState::PartnerDown,
            ServerState::PotentialConflict,
            ServerState::ConflictDone,
            ServerState::Normal
        ]
    );
    assert_eq!(
        tail(s, 2),
        vec![ServerState::PotentialConflict, ServerState::Normal]
    );
    assert_eq!(
        w.servers[0].ep.as_ref().unwrap().counters().sent[28],
        sent_before + 1
    );
    assert!(w.servers[1].ep.as_ref().unwrap().counters().sent[28] >= 1);
    // POOLREQ after the secondary's return to NORMAL is answered.
    for _ in 0..30 {
        w.step(1_000, false);
    }
    assert!(
        w.servers[0].ep.as_ref().unwrap().counters().sent[27] >= 2,
        "POOLRESP"
    );
    w.settle_and_compare();
    assert_clean(&w, "figure 9");
}

#[test]
fn recovery_after_total_database_loss_uses_updreqall() {
    let mut w = warm_up(17);
    let before = World::active_set(&w.servers[0].table, w.now / 1000);
    assert!(!before.is_empty());
    w.crash(1, true);
    for _ in 0..10 {
        w.step(1_000, false);
    }
    w.restart(1);
    assert!(
        run_until(&mut w, 400, both(ServerState::Normal)),
        "{}",
        dump(&w)
    );
    let s = &w.stats.transitions[1];
    let n = s.len();
    assert_eq!(
        s[n - 4..].to_vec(),
        vec![
            ServerState::Recover,
            ServerState::RecoverWait,
            ServerState::RecoverDone,
            ServerState::Normal
        ]
    );
    // The secondary lost its storage while the primary remembers talking to it: UPDREQALL.
    assert_eq!(
        w.servers[1].ep.as_ref().unwrap().counters().sent[29],
        1,
        "UPDREQALL sent"
    );
    assert_eq!(w.servers[0].ep.as_ref().unwrap().counters().received[29], 1);
    // RECOVER-WAIT lasted MCLT (§8.6.2).
    w.settle_and_compare();
    assert_clean(&w, "total database loss");
}

#[test]
fn partner_down_after_crash_keeps_leases_stable() {
    let mut w = warm_up(23);
    // Auto-partner-down on the secondary (§8.9.2).
    w.crash(0, false);
    let now = w.servers[1].local(w.now);
    {
        let s = &mut w.servers[1];
        let mut cfg = s.cfg.clone();
        cfg.auto_partner_down = Some(30);
        s.cfg = cfg.clone();
        let mut ep = Endpoint::new(cfg, s.persisted, now);
        ep.restore_prefix_pool(&s.saved_pool);
        s.ep = Some(ep);
    }
    assert!(run_until(&mut w, 120, |w| w.servers[1].state()
        == Some(ServerState::PartnerDown)));
    // Clients renew and rebind at the secondary across the primary's absence.
    let renewals = w.stats.renewals;
    for _ in 0..(3 * MCLT as u64) {
        w.step(1_000, false);
    }
    assert!(w.stats.renewals > renewals);
    w.restart(0);
    assert!(
        run_until(&mut w, 400, both(ServerState::Normal)),
        "{}",
        dump(&w)
    );
    assert!(w.stats.transitions[0].contains(&ServerState::Recover));
    w.settle_and_compare();
    assert_clean(&w, "partner down after crash");
}

#[test]
fn skew_beyond_five_seconds_keeps_the_pair_apart() {
    let mut w = World::new(5, 8);
    w.servers[1].skew_ms = 8_000;
    for _ in 0..60 {
        w.step(1_000, false);
    }
    assert!(!w.servers[0].ep.as_ref().unwrap().comms_ok());
    assert!(w.servers[1].ep.as_ref().unwrap().counters().skewed > 0);
    w.servers[1].skew_ms = 3_000;
    assert!(
        run_until(&mut w, 120, both(ServerState::Normal)),
        "{}",
        dump(&w)
    );
    assert_clean(&w, "skew");
}

/// The simulation is only worth its seeds if a seed replays exactly: the same schedule gives
/// the same history. Runs random schedules several times in one process and compares the
/// whole trace. The endpoint once iterated hash maps with per-instance random seeds: seed
/// 261 then diverged (one server left RECOVER three seconds earlier in one run than in the
/// other) in about a third of the repetitions, so eight runs catch such a regression
/// nearly always.
#[test]
fn a_seed_replays_exactly() {
    let run = |seed: u64| {
        let mut w = World::new(seed, 32);
        w.trace_limit = usize::MAX;
        for _ in 0..1_500 {
            let dt = w.rng.range(200, 3_000);
            w.step(dt, true);
        }
        w.settle_and_compare();
        let s = &w.stats;
        (
            s.grants,
            s.renewals,
            s.lost_leases,
            s.transitions.clone(),
            w.trace.iter().cloned().collect::<Vec<_>>(),
        )
    };
    for seed in [261, 17] {
        let first = run(seed);
        for _ in 1..8 {
            let again = run(seed);
            if again != first {
                let at = first
                    .4
                    .iter()
                    .zip(&again.4)
                    .find(|(a, b)| a != b)
                    .map(|(a, b)| format!("\n  first run: {a}\n  again:     {b}"))
                    .unwrap_or_default();
                panic!("seed {seed} replays differently{at}");
            }
        }
    }
}

#[test]
fn random_schedules() {
    let (a, b) = seeds_from_env();
    let steps = steps_from_env();
    let mut violations = 0usize;
    let mut visited = BTreeSet::new();
    let (mut grants, mut renewals, mut lost) = (0, 0, 0);
    let mut first_failure = None;
    for seed in a..b {
        let mut w = World::new(seed, 32);
        for _ in 0..steps {
            let dt = w.rng.range(200, 3_000);
            w.step(dt, true);
        }
        w.settle_and_compare();
        violations += w.stats.violations.len();
        visited.extend(w.stats.visited.iter().copied());
        grants += w.stats.grants;
        renewals += w.stats.renewals;
        lost += w.stats.lost_leases;
        if !w.stats.violations.is_empty() {
            eprintln!("seed {seed}: {}", w.stats.violations[0]);
        }
        if !w.stats.violations.is_empty() && first_failure.is_none() {
            first_failure = Some((
                seed,
                w.stats.violations.clone(),
                w.trace.iter().cloned().collect::<Vec<_>>().join("\n"),
            ));
        }
    }
    println!(
        "failover_sim: seeds {a}..{b} ({} runs), steps {steps} per seed, grants {grants}, renewals {renewals}, leases lost to unresponsive pair {lost}, violations {violations}, states visited: {}/10 {:?}",
        b - a,
        visited.len(),
        visited.iter().map(|s| s.as_str()).collect::<Vec<_>>()
    );
    if let Some((seed, v, trace)) = first_failure {
        panic!("seed {seed}: {v:?}\ntrace (last events):\n{trace}");
    }
}

fn watch_from_env() -> Option<Resource> {
    let spec = std::env::var("TANDEM_SIM_WATCH").ok()?;
    Some(match spec.split_once('/') {
        Some((a, l)) => Resource::prefix(a.parse().ok()?, l.parse().ok()?),
        None => Resource::address(spec.parse().ok()?),
    })
}

/// How many trace lines a failing run prints (`TANDEM_SIM_TRACE`, default 400).
fn trace_limit() -> usize {
    std::env::var("TANDEM_SIM_TRACE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400)
}
