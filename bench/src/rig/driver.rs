//! The emulated subscriber population and its scenarios, sans-IO.
//!
//! [`Driver`] is a pure state machine, in the shape of quinn-proto: the I/O loop passes the
//! current time in and asks it for the next datagram to send ([`Driver::poll_transmit`]),
//! hands it every datagram received ([`Driver::handle_datagram`]), lets it expire
//! transactions ([`Driver::handle_timeouts`]) and asks when to wake up next
//! ([`Driver::next_wakeup`]). No sockets or clocks in here, so the scenarios are unit-tested
//! against an in-process server.
//!
//! Memory: each subscriber is one 56-byte [`Subscriber`] record (the DUID is recomputed from
//! the index, see [`super::packet::duid`]); outstanding transactions add one 12-byte timer
//! entry each. 10M subscribers fit in ~560 MB, within the 200 B/subscriber budget.

use std::collections::VecDeque;
use std::net::Ipv6Addr;

use hdrhistogram::Histogram;

use super::packet::{self, msg, status, ClientMessage, ParseError, RelayInfo};

/// What the emulated population does during the measured phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Solicit, Advertise, Request, Reply (RFC 8415 §18.2.1, §18.2.2): one exchange.
    Sarr,
    /// Solicit with Rapid Commit answered by a Reply (RFC 8415 §18.3.1).
    Rapid,
    /// Bind everyone (warm-up), then steady Renew/Reply at `subscribers / T1` per second.
    Renew,
    /// Every subscriber solicits once within `--spread` seconds, as after a site outage,
    /// with RFC 8415 retransmission (clients back off as real CPEs do).
    Avalanche,
    /// Bind everyone (warm-up), then Release/Reply followed by a new Solicit..Reply.
    Churn,
    /// Bind everyone (warm-up), then a site's blend: 70% Renew, 10% Rebind, 10% Release and
    /// re-bind, 10% Information-request; unbound subscribers do a 4-message exchange.
    Mixed,
}

impl Scenario {
    /// Scenarios that start from a bound population.
    pub fn needs_warmup(self) -> bool {
        matches!(self, Scenario::Renew | Scenario::Churn | Scenario::Mixed)
    }
}

/// How the rig reaches the server.
#[derive(Clone, Copy, Debug)]
pub enum Path {
    /// Client messages straight on the link (to All_DHCP_Relay_Agents_and_Servers).
    Direct,
    /// Client messages inside Relay-forw from `relays` emulated relays whose link-addresses
    /// are `link_base + 1 ..= link_base + relays` (RFC 8415 §19.1.1).
    Relayed { link_base: Ipv6Addr, relays: u32 },
}

/// Run parameters (the CLI's, validated).
#[derive(Clone, Debug)]
pub struct Params {
    pub scenario: Scenario,
    pub subscribers: u32,
    /// New exchanges per second (open loop); `None` = as fast as the server answers, keeping
    /// at most `window` transactions outstanding (closed loop).
    pub rate: Option<f64>,
    pub window: u32,
    /// Measured phase length.
    pub duration_us: u64,
    pub path: Path,
    pub pd: bool,
    pub seed: u8,
    /// RFC 8415 §15 retransmission; without it a transaction is dropped after `timeout_us`.
    pub retransmit: bool,
    pub timeout_us: u64,
    /// Avalanche: window within which every subscriber sends its first Solicit.
    pub spread_us: u64,
    /// How long to wait for outstanding transactions once the measured phase ends.
    pub drain_us: u64,
}

const IDLE: u8 = 0;
const BOUND: u8 = 1;
const SOLICITING: u8 = 2;
const REQUESTING: u8 = 3;
const RENEWING: u8 = 4;
const REBINDING: u8 = 5;
const RELEASING: u8 = 6;
const INFORMING: u8 = 7;

/// Flag: after the Release completes, solicit again within the same exchange (churn).
const FLAG_RESOLICIT: u8 = 1;
/// Flag: the Solicit asks for Rapid Commit.
const FLAG_RAPID: u8 = 2;
/// Flag: this exchange belongs to the warm-up phase (not measured).
const FLAG_WARMUP: u8 = 4;

/// One emulated CPE. Times are microseconds since the run started, truncated to 32 bits
/// (differences use wrapping arithmetic; runs are far shorter than 71 minutes).
#[derive(Clone, Copy, Default)]
struct Subscriber {
    addr: [u8; 16],
    prefix: [u8; 16],
    xid: u32,
    exchange_us: u32,
    txn_us: u32,
    last_us: u32,
    state: u8,
    attempts: u8,
    prefix_len: u8,
    server: u8,
    flags: u8,
}

impl Subscriber {
    fn outstanding(&self) -> bool {
        self.state >= SOLICITING
    }
    fn stable_state(&self) -> u8 {
        if self.addr != [0; 16] || self.prefix_len != 0 {
            BOUND
        } else {
            IDLE
        }
    }
}

/// Everything counted during the measured phase.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Counters {
    /// Datagrams sent, including retransmissions.
    pub sent: u64,
    pub retransmits: u64,
    pub received: u64,
    /// Scenario exchanges completed (a 4-message exchange counts once).
    pub completed: u64,
    /// Request/reply transactions answered (a 4-message exchange counts twice).
    pub transactions: u64,
    /// Transactions abandoned: timed out (no retransmission) or retransmissions exhausted.
    pub drops: u64,
    pub no_addrs_avail: u64,
    pub no_prefix_avail: u64,
    pub no_binding: u64,
    /// Other non-success status codes (UnspecFail, NotOnLink, UseMulticast...).
    pub other_status: u64,
    /// Advertise/Reply with neither a lease nor a status code (a null server, e.g. the
    /// reflector): the exchange continues so the transport is still measured.
    pub empty_replies: u64,
    /// Solicits with Rapid Commit answered by an Advertise (server has rapid commit off).
    pub rapid_fallbacks: u64,
    /// Replies for no outstanding transaction (late, duplicated or wrong transaction-id).
    pub unexpected: u64,
    /// Datagrams that did not parse (length errors, not Advertise/Reply).
    pub malformed: u64,
    /// Well-formed replies for a DUID that is not one of this run's subscribers.
    pub not_ours: u64,
    /// Transactions still outstanding when the run ended.
    pub unfinished: u64,
}

/// One point of the per-second time series (for the SVG plots).
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Sample {
    pub t_secs: f64,
    pub exchanges_per_sec: f64,
    pub sent_per_sec: f64,
    pub drops: u64,
    pub outstanding: u64,
    pub p50_us: u64,
    pub p99_us: u64,
}

/// Phases of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Warmup,
    Measure,
    Drain,
    Done,
}

/// Timer entry: (subscriber, transaction-id, due time in ms).
type TimerEntry = (u32, u32, u32);

/// A hashed timing wheel with 1 ms slots; entries due beyond its horizon are re-inserted
/// when their slot comes round.
struct TimerWheel {
    slots: Vec<Vec<TimerEntry>>,
    next_ms: u64,
}

const WHEEL_SLOTS: usize = 1 << 14;

impl TimerWheel {
    fn new() -> Self {
        TimerWheel {
            slots: vec![Vec::new(); WHEEL_SLOTS],
            next_ms: 0,
        }
    }
    fn insert(&mut self, sub: u32, xid: u32, due_ms: u64) {
        let due = due_ms.max(self.next_ms);
        self.slots[(due as usize) % WHEEL_SLOTS].push((sub, xid, due as u32));
    }
    /// Calls `f` for every entry due at or before `now_ms`.
    fn expire(&mut self, now_ms: u64, mut f: impl FnMut(u32, u32)) {
        let mut later = Vec::new();
        while self.next_ms <= now_ms {
            let slot = (self.next_ms as usize) % WHEEL_SLOTS;
            let mut entries = std::mem::take(&mut self.slots[slot]);
            for &(sub, xid, due) in &entries {
                if u64::from(due) <= now_ms {
                    f(sub, xid);
                } else {
                    later.push((sub, xid, due));
                }
            }
            entries.clear();
            self.slots[slot] = entries;
            self.next_ms += 1;
        }
        for (sub, xid, due) in later {
            self.insert(sub, xid, u64::from(due));
        }
    }
}

/// RFC 8415 §7.6 transmission parameters (IRT, MRT, MRC) in ms for a message type.
fn retransmission(msg_type: u8) -> (u64, u64, u32) {
    match msg_type {
        msg::SOLICIT => (1_000, 3_600_000, 0), // SOL_TIMEOUT, SOL_MAX_RT
        msg::REQUEST => (1_000, 30_000, 10),   // REQ_TIMEOUT, REQ_MAX_RT, REQ_MAX_RC
        msg::RENEW => (10_000, 600_000, 0),    // REN_TIMEOUT, REN_MAX_RT
        msg::REBIND => (10_000, 600_000, 0),   // REB_TIMEOUT, REB_MAX_RT
        msg::RELEASE => (1_000, 0, 4),         // REL_TIMEOUT, REL_MAX_RC
        _ => (1_000, 3_600_000, 0),            // INF_TIMEOUT, INF_MAX_RT
    }
}

/// RFC 8415 §15: RT for transmission number `attempt` (0 = first), with RAND in
/// [-0.1, +0.1] drawn deterministically from `noise` so runs are reproducible.
fn retransmission_timeout_ms(msg_type: u8, attempt: u8, noise: u32) -> u64 {
    let (irt, mrt, _) = retransmission(msg_type);
    let rand = |k: u32| -> f64 {
        let h = (noise ^ k.wrapping_mul(0x9e37_79b9)).wrapping_mul(0x85eb_ca6b);
        (f64::from(h >> 8) / f64::from(1u32 << 24)) * 0.2 - 0.1
    };
    let mut rt = irt as f64 * (1.0 + rand(0));
    for k in 1..=u32::from(attempt) {
        rt = 2.0 * rt + rand(k) * rt;
        if mrt != 0 && rt > mrt as f64 {
            rt = mrt as f64 * (1.0 + rand(k));
        }
    }
    rt as u64
}

/// The emulated subscribers and the scenario that drives them.
pub struct Driver {
    p: Params,
    subs: Vec<Subscriber>,
    servers: Vec<Vec<u8>>,
    timers: TimerWheel,
    /// Subscribers with a message to send right away (follow-ups and retransmissions).
    ready: VecDeque<u32>,
    cursor: u64,
    next_xid: u32,
    outstanding: u64,
    phase: Phase,
    phase_start_us: u64,
    /// Exchanges started in this phase (for the open-loop rate).
    started: u64,
    /// Open-loop rate of the current phase, or closed loop.
    phase_rate: Option<f64>,
    pub counters: Counters,
    pub latency: Histogram<u64>,
    pub transaction_latency: Histogram<u64>,
    interval: Histogram<u64>,
    interval_start_us: u64,
    interval_completed: u64,
    interval_sent: u64,
    pub series: Vec<Sample>,
    measure_start_us: u64,
    measure_end_us: u64,
    last_activity_us: u64,
    pub warmup_us: u64,
    pub warmup_bound: u64,
    warmup_t1_sum: u64,
    warmup_t1_n: u64,
    avalanche_done: bool,
}

impl Driver {
    pub fn new(p: Params) -> Driver {
        let hist = || Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static bounds");
        let warm = p.scenario.needs_warmup();
        let phase_rate = match (warm, p.scenario) {
            (true, _) => None,
            (false, Scenario::Avalanche) => {
                Some(f64::from(p.subscribers) / (p.spread_us.max(1) as f64 / 1e6))
            }
            (false, _) => p.rate,
        };
        Driver {
            subs: vec![Subscriber::default(); p.subscribers as usize],
            servers: Vec::new(),
            timers: TimerWheel::new(),
            ready: VecDeque::new(),
            cursor: 0,
            next_xid: 1,
            outstanding: 0,
            phase: if warm { Phase::Warmup } else { Phase::Measure },
            phase_start_us: 0,
            started: 0,
            phase_rate,
            counters: Counters::default(),
            latency: hist(),
            transaction_latency: hist(),
            interval: hist(),
            interval_start_us: 0,
            interval_completed: 0,
            interval_sent: 0,
            series: Vec::new(),
            measure_start_us: 0,
            measure_end_us: 0,
            last_activity_us: 0,
            warmup_us: 0,
            warmup_bound: 0,
            warmup_t1_sum: 0,
            warmup_t1_n: 0,
            avalanche_done: false,
            p,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }
    pub fn outstanding(&self) -> u64 {
        self.outstanding
    }
    /// Length of the measured phase including the drain, in seconds.
    pub fn measured_secs(&self) -> f64 {
        let end = if self.measure_end_us != 0 {
            self.measure_end_us
        } else {
            self.last_activity_us
        };
        (end.saturating_sub(self.measure_start_us)) as f64 / 1e6
    }
    /// Bytes of subscriber state per emulated subscriber.
    pub fn bytes_per_subscriber() -> usize {
        std::mem::size_of::<Subscriber>()
    }

    fn new_xid(&mut self) -> u32 {
        let x = self.next_xid & 0x00ff_ffff;
        self.next_xid = self.next_xid.wrapping_add(1);
        x
    }

    fn measuring(&self) -> bool {
        self.phase == Phase::Measure || self.phase == Phase::Drain
    }

    /// Moves between phases; call on every loop iteration.
    pub fn handle_timeouts(&mut self, now_us: u64) {
        self.last_activity_us = now_us;
        let mut expired = Vec::new();
        self.timers
            .expire(now_us / 1000, |s, x| expired.push((s, x)));
        for (sub, xid) in expired {
            self.expire(sub, xid);
        }
        match self.phase {
            Phase::Warmup => {
                // Warm-up ends when every subscriber has had its bind attempt answered or
                // dropped.
                if self.cursor >= u64::from(self.p.subscribers) && self.outstanding == 0 {
                    self.warmup_us = now_us;
                    self.warmup_bound = self
                        .subs
                        .iter()
                        .filter(|s| s.stable_state() == BOUND)
                        .count() as u64;
                    self.start_measure(now_us);
                }
            }
            Phase::Measure => {
                if now_us >= self.measure_start_us + self.p.duration_us || self.avalanche_done {
                    self.phase = Phase::Drain;
                    self.phase_start_us = now_us;
                }
            }
            Phase::Drain => {
                if self.outstanding == 0 || now_us >= self.phase_start_us + self.p.drain_us {
                    self.counters.unfinished = self.outstanding;
                    self.measure_end_us = now_us;
                    self.sample(now_us);
                    self.phase = Phase::Done;
                }
            }
            Phase::Done => {}
        }
        if self.measuring() && now_us >= self.interval_start_us + 1_000_000 {
            self.sample(now_us);
        }
    }

    /// Ends the measured phase now (SIGINT): outstanding transactions still drain.
    pub fn interrupt(&mut self, now_us: u64) {
        if self.phase == Phase::Warmup {
            self.start_measure(now_us);
        }
        if self.phase == Phase::Measure {
            self.phase = Phase::Drain;
            self.phase_start_us = now_us;
        }
    }

    fn start_measure(&mut self, now_us: u64) {
        self.phase = Phase::Measure;
        self.phase_start_us = now_us;
        self.measure_start_us = now_us;
        self.interval_start_us = now_us;
        self.started = 0;
        self.cursor = 0;
        self.counters = Counters::default();
        self.phase_rate = match (self.p.scenario, self.p.rate) {
            // "Steady renewals": every bound subscriber renews once per T1, so the site's
            // renewal rate is subscribers / T1 (T1 as the server granted it in warm-up).
            (Scenario::Renew, None) => self
                .mean_t1_secs()
                .map(|t1| self.warmup_bound.max(1) as f64 / t1),
            (_, rate) => rate,
        };
    }

    /// Mean T1 the server granted during warm-up, in seconds (`None` without warm-up or
    /// when the server left T1 to the client).
    pub fn mean_t1_secs(&self) -> Option<f64> {
        (self.warmup_t1_n != 0 && self.warmup_t1_sum != 0)
            .then(|| self.warmup_t1_sum as f64 / self.warmup_t1_n as f64)
    }

    /// The open-loop rate of the current phase (`None` = closed loop).
    pub fn rate(&self) -> Option<f64> {
        self.phase_rate
    }

    fn sample(&mut self, now_us: u64) {
        let secs = (now_us - self.interval_start_us) as f64 / 1e6;
        if secs <= 0.0 {
            return;
        }
        self.series.push(Sample {
            t_secs: (now_us - self.measure_start_us) as f64 / 1e6,
            exchanges_per_sec: self.interval_completed as f64 / secs,
            sent_per_sec: self.interval_sent as f64 / secs,
            drops: self.counters.drops,
            outstanding: self.outstanding,
            p50_us: self.interval.value_at_quantile(0.5),
            p99_us: self.interval.value_at_quantile(0.99),
        });
        self.interval.reset();
        self.interval_completed = 0;
        self.interval_sent = 0;
        self.interval_start_us = now_us;
    }

    fn expire(&mut self, sub: u32, xid: u32) {
        let Some(s) = self.subs.get_mut(sub as usize) else {
            return;
        };
        if !s.outstanding() || s.xid != xid {
            return;
        }
        let msg_type = message_for(s.state);
        let (_, _, mrc) = retransmission(msg_type);
        let retry = self.p.retransmit
            && self.phase != Phase::Done
            && !(mrc != 0 && u32::from(s.attempts) + 1 >= mrc);
        if retry {
            s.attempts = s.attempts.saturating_add(1);
            self.ready.push_back(sub);
            if self.measuring() {
                self.counters.retransmits += 1;
            }
            return;
        }
        // RFC 8415 §18.2.7: a Release that is never answered still ends the binding.
        let released = s.state == RELEASING;
        if released {
            s.addr = [0; 16];
            s.prefix_len = 0;
        }
        s.state = s.stable_state();
        s.flags = 0;
        self.outstanding -= 1;
        if self.measuring() {
            self.counters.drops += 1;
        }
    }

    /// When the I/O loop should call in again if nothing arrives (µs since start).
    pub fn next_wakeup(&self, now_us: u64) -> u64 {
        if !self.ready.is_empty() {
            return now_us;
        }
        let mut t = now_us + 1_000;
        if let (Some(rate), Phase::Measure | Phase::Warmup) = (self.phase_rate, self.phase) {
            let next = self.phase_start_us + ((self.started + 1) as f64 / rate * 1e6) as u64;
            t = t.min(next.max(now_us));
        }
        t
    }

    /// Whether a new exchange may start now (open-loop budget or closed-loop window).
    fn may_start(&self, now_us: u64) -> bool {
        match self.phase {
            Phase::Warmup => self.outstanding < u64::from(self.p.window),
            Phase::Measure => match self.phase_rate {
                Some(rate) => {
                    let due = ((now_us - self.phase_start_us) as f64 / 1e6 * rate) as u64;
                    self.started < due
                }
                None => self.outstanding < u64::from(self.p.window),
            },
            Phase::Drain | Phase::Done => false,
        }
    }

    /// Writes the next datagram to send now into `buf`; `None` when there is nothing to send.
    pub fn poll_transmit(&mut self, now_us: u64, buf: &mut [u8]) -> Option<usize> {
        while let Some(sub) = self.ready.pop_front() {
            if self.subs[sub as usize].outstanding() {
                return self.transmit(now_us, sub, buf);
            }
        }
        // Open loop: catch up at most 10 ms of backlog after a stall rather than bursting.
        if let (Phase::Measure, Some(rate)) = (self.phase, self.phase_rate) {
            let due = ((now_us - self.phase_start_us) as f64 / 1e6 * rate) as u64;
            let cap = (rate / 100.0).max(1.0) as u64;
            if due > self.started + cap {
                self.started = due - cap;
            }
        }
        let n = u64::from(self.p.subscribers);
        // Try a bounded number of subscribers: some may be busy with an earlier exchange.
        for _ in 0..16 {
            if !self.may_start(now_us) || n == 0 {
                return None;
            }
            let once = self.phase == Phase::Warmup || self.p.scenario == Scenario::Avalanche;
            if once && self.cursor >= n {
                if self.p.scenario == Scenario::Avalanche && self.phase == Phase::Measure {
                    self.avalanche_done = self.outstanding == 0;
                }
                return None;
            }
            let sub = (self.cursor % n) as u32;
            self.cursor += 1;
            if self.start(now_us, sub) {
                self.started += 1;
                return self.transmit(now_us, sub, buf);
            }
        }
        None
    }

    /// Starts the scenario's next exchange for `sub`; false when it cannot start one.
    fn start(&mut self, now_us: u64, sub: u32) -> bool {
        let warm = self.phase == Phase::Warmup;
        let mix = mix_choice(sub, self.cursor);
        let rapid_default = self.p.scenario == Scenario::Rapid;
        let xid = self.new_xid();
        let s = &mut self.subs[sub as usize];
        if s.outstanding() {
            return false;
        }
        let bound = s.stable_state() == BOUND;
        let (state, flags) = if warm {
            (SOLICITING, FLAG_WARMUP)
        } else {
            match self.p.scenario {
                Scenario::Sarr | Scenario::Avalanche => (SOLICITING, 0),
                Scenario::Rapid => (SOLICITING, FLAG_RAPID),
                Scenario::Renew if bound => (RENEWING, 0),
                // Subscribers whose warm-up bind failed are not renewed; counted as skipped
                // by the caller through `warmup_bound`.
                Scenario::Renew => return false,
                Scenario::Churn if bound => (RELEASING, FLAG_RESOLICIT),
                Scenario::Churn => (SOLICITING, 0),
                Scenario::Mixed if !bound => {
                    (SOLICITING, if rapid_default { FLAG_RAPID } else { 0 })
                }
                Scenario::Mixed => match mix {
                    0..=6 => (RENEWING, 0),
                    7 => (REBINDING, 0),
                    8 => (RELEASING, FLAG_RESOLICIT),
                    _ => (INFORMING, 0),
                },
            }
        };
        s.state = state;
        s.flags = flags;
        s.attempts = 0;
        s.exchange_us = now_us as u32;
        s.txn_us = now_us as u32;
        s.xid = xid;
        self.outstanding += 1;
        true
    }

    fn transmit(&mut self, now_us: u64, sub: u32, buf: &mut [u8]) -> Option<usize> {
        let s = self.subs[sub as usize];
        let msg_type = message_for(s.state);
        let elapsed_cs = ((now_us as u32).wrapping_sub(s.txn_us) / 10_000).min(0xffff) as u16;
        let with_server = matches!(msg_type, msg::REQUEST | msg::RENEW | msg::RELEASE);
        let server_id = if with_server {
            self.servers.get(usize::from(s.server)).map(Vec::as_slice)
        } else {
            None
        };
        let leased = msg_type != msg::SOLICIT;
        let ia_na = if msg_type == msg::INFORMATION_REQUEST {
            None
        } else if leased {
            // Only IAs the server granted are carried on (RFC 8415 §18.2.2).
            (s.addr != [0; 16]).then_some(Some(Ipv6Addr::from(s.addr)))
        } else {
            Some(None)
        };
        let ia_pd = if !self.p.pd || msg_type == msg::INFORMATION_REQUEST {
            None
        } else if leased {
            (s.prefix_len != 0).then_some(Some((s.prefix_len, Ipv6Addr::from(s.prefix))))
        } else {
            Some(None)
        };
        let m = ClientMessage {
            msg_type,
            xid: s.xid,
            seed: self.p.seed,
            subscriber: sub,
            elapsed_cs,
            server_id,
            ia_na,
            ia_pd,
            rapid_commit: msg_type == msg::SOLICIT && s.flags & FLAG_RAPID != 0,
        };
        let relay = match self.p.path {
            Path::Direct => None,
            Path::Relayed { link_base, relays } => {
                let k = sub % relays.max(1);
                Some(RelayInfo {
                    link_address: Ipv6Addr::from(u128::from(link_base) + u128::from(k) + 1),
                    peer_address: packet::peer_address(self.p.seed, sub),
                    relay: k,
                    subscriber: sub,
                })
            }
        };
        let len = packet::emit(&m, relay.as_ref(), buf)?;
        let timeout_ms = if self.p.retransmit {
            retransmission_timeout_ms(msg_type, s.attempts, s.xid ^ sub)
        } else {
            self.p.timeout_us / 1000
        };
        let st = &mut self.subs[sub as usize];
        st.last_us = now_us as u32;
        self.timers
            .insert(sub, s.xid, now_us / 1000 + timeout_ms.max(1));
        if self.measuring() {
            self.counters.sent += 1;
            self.interval_sent += 1;
        }
        Some(len)
    }

    fn server_index(&mut self, id: &[u8]) -> u8 {
        if let Some(i) = self.servers.iter().position(|s| s == id) {
            return i as u8;
        }
        if self.servers.len() < 255 {
            self.servers.push(id.to_vec());
            return (self.servers.len() - 1) as u8;
        }
        255
    }

    /// Handles one received datagram.
    pub fn handle_datagram(&mut self, now_us: u64, bytes: &[u8]) {
        let measuring = self.measuring();
        if measuring {
            self.counters.received += 1;
        }
        let v = match packet::parse_reply(self.p.seed, bytes) {
            Ok(v) => v,
            Err(ParseError::NotOurs) => {
                self.counters.not_ours += u64::from(measuring);
                return;
            }
            Err(_) => {
                self.counters.malformed += u64::from(measuring);
                return;
            }
        };
        let sub = v.subscriber;
        let Some(&s) = self.subs.get(sub as usize) else {
            self.counters.not_ours += u64::from(measuring);
            return;
        };
        if !s.outstanding() || s.xid != v.xid {
            self.counters.unexpected += u64::from(measuring);
            return;
        }
        let counted = measuring && s.flags & FLAG_WARMUP == 0;
        let txn_latency = u64::from((now_us as u32).wrapping_sub(s.txn_us)).max(1);
        if counted {
            self.counters.transactions += 1;
            let _ = self.transaction_latency.record(txn_latency);
        }
        let server = self.server_index(v.server_id);
        let next_xid = self.new_xid();
        let s = &mut self.subs[sub as usize];
        // RFC 8415 §21.13: a top-level status other than Success fails the transaction.
        let top_fail = matches!(v.status, Some(c) if c != status::SUCCESS);
        let mut outcome_ok = !top_fail;
        let mut next_state = None;
        match (s.state, v.msg_type) {
            (SOLICITING | REQUESTING | RENEWING | REBINDING, msg::ADVERTISE | msg::REPLY)
                if !top_fail && (v.msg_type == msg::REPLY || s.state == SOLICITING) =>
            {
                let grant = Grant::of(&v, self.p.pd);
                if counted {
                    self.counters.no_addrs_avail += u64::from(grant.no_addrs);
                    self.counters.no_prefix_avail += u64::from(grant.no_prefix);
                    self.counters.no_binding += u64::from(grant.no_binding);
                    self.counters.empty_replies += u64::from(grant.empty());
                    self.counters.other_status += u64::from(grant.other);
                }
                // RFC 8415 §18.2.10.1: the client keeps what was granted and drops IAs the
                // server refused; in Renew/Rebind an IA the server did not mention keeps
                // its binding (IAs missing from the reply are retried, not lost).
                let renewal = matches!(s.state, RENEWING | REBINDING);
                if grant.na.is_some() || !renewal || grant.no_binding {
                    s.addr = grant.na.map_or([0; 16], |a| a.octets());
                }
                if self.p.pd && (grant.pd.is_some() || !renewal || grant.no_binding) {
                    (s.prefix_len, s.prefix) =
                        grant.pd.map_or((0, [0; 16]), |(l, p)| (l, p.octets()));
                }
                if s.state != RENEWING {
                    // Advertise, rapid-commit Reply, Request's Reply and Rebind's Reply name
                    // the server that now holds the binding (RFC 8415 §18.2.5).
                    s.server = server;
                }
                outcome_ok = grant.usable();
                if outcome_ok && v.msg_type == msg::ADVERTISE {
                    if s.flags & FLAG_RAPID != 0 && counted {
                        self.counters.rapid_fallbacks += 1;
                    }
                    next_state = Some(REQUESTING);
                }
            }
            (RELEASING, msg::REPLY) => {
                // RFC 8415 §18.2.7: the binding is gone whatever the status says.
                s.addr = [0; 16];
                s.prefix_len = 0;
                outcome_ok = true;
                if s.flags & FLAG_RESOLICIT != 0 {
                    s.flags &= !FLAG_RESOLICIT;
                    next_state = Some(SOLICITING);
                }
            }
            (INFORMING, msg::REPLY) => {}
            (_, msg::ADVERTISE | msg::REPLY) if top_fail => {}
            _ => {
                // A reply type that does not answer the outstanding message.
                self.counters.unexpected += u64::from(measuring);
                return;
            }
        }
        if top_fail && counted {
            match v.status {
                Some(status::NO_ADDRS_AVAIL) => self.counters.no_addrs_avail += 1,
                Some(status::NO_BINDING) => self.counters.no_binding += 1,
                _ => self.counters.other_status += 1,
            }
        }
        if let (Some(ns), true) = (next_state, outcome_ok) {
            // Next transaction of the same exchange, sent right away.
            s.state = ns;
            s.attempts = 0;
            s.txn_us = now_us as u32;
            s.xid = next_xid;
            self.ready.push_back(sub);
            return;
        }
        let exchange_latency = u64::from((now_us as u32).wrapping_sub(s.exchange_us)).max(1);
        s.state = s.stable_state();
        s.flags = 0;
        self.outstanding -= 1;
        if counted && outcome_ok {
            self.counters.completed += 1;
            self.interval_completed += 1;
            let _ = self.latency.record(exchange_latency);
            let _ = self.interval.record(exchange_latency);
        }
        if self.phase == Phase::Warmup {
            self.warmup_t1_sum += u64::from(v.na_t1.max(v.pd_t1));
            self.warmup_t1_n += 1;
        }
    }
}

/// What one Advertise/Reply granted or refused.
struct Grant {
    na: Option<Ipv6Addr>,
    pd: Option<(u8, Ipv6Addr)>,
    no_addrs: bool,
    no_prefix: bool,
    no_binding: bool,
    /// An IA status other than Success, NoAddrsAvail, NoPrefixAvail or NoBinding.
    other: bool,
}

impl Grant {
    fn of(v: &packet::ReplyView<'_>, pd: bool) -> Grant {
        let ok = |st: Option<u16>| st.is_none_or(|c| c == status::SUCCESS);
        Grant {
            na: v.na.filter(|_| ok(v.na_status)),
            pd: v.pd.filter(|_| pd && ok(v.pd_status)),
            no_addrs: v.na_status == Some(status::NO_ADDRS_AVAIL),
            no_prefix: pd && v.pd_status == Some(status::NO_PREFIX_AVAIL),
            no_binding: v.na_status == Some(status::NO_BINDING)
                || v.pd_status == Some(status::NO_BINDING),
            other: [v.na_status, v.pd_status].into_iter().flatten().any(|c| {
                !matches!(
                    c,
                    status::SUCCESS
                        | status::NO_ADDRS_AVAIL
                        | status::NO_PREFIX_AVAIL
                        | status::NO_BINDING
                )
            }),
        }
    }
    fn refused(&self) -> bool {
        self.no_addrs || self.no_prefix || self.no_binding || self.other
    }
    /// Neither a lease nor a refusal: what a null server (the reflector) answers. The
    /// exchange goes on so the transport is measured, and the reply is counted apart.
    fn empty(&self) -> bool {
        self.na.is_none() && self.pd.is_none() && !self.refused()
    }
    /// The exchange goes on: something was granted, or nothing was refused.
    fn usable(&self) -> bool {
        self.na.is_some() || self.pd.is_some() || !self.refused()
    }
}

/// The message a subscriber sends in `state`.
fn message_for(state: u8) -> u8 {
    match state {
        SOLICITING => msg::SOLICIT,
        REQUESTING => msg::REQUEST,
        RENEWING => msg::RENEW,
        REBINDING => msg::REBIND,
        RELEASING => msg::RELEASE,
        _ => msg::INFORMATION_REQUEST,
    }
}

/// Deterministic 0..=9 choice for the mixed scenario.
fn mix_choice(sub: u32, round: u64) -> u32 {
    let h = (u64::from(sub) ^ round.rotate_left(32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    ((h >> 32) % 10) as u32
}
