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
    /// Renew without `rate`: renew at `subscribers / T1` (the site's steady state) instead
    /// of as fast as the server answers.
    pub renew_at_t1: bool,
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

/// Longest warm-up (binding the population before renew/churn/mixed).
const WARMUP_LIMIT_US: u64 = 120_000_000;

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
                // dropped. A server that never answers some of them does not hold the run
                // hostage: after WARMUP_LIMIT_US the measured phase starts anyway.
                let all_tried = self.cursor >= u64::from(self.p.subscribers);
                if (all_tried && self.outstanding == 0)
                    || now_us >= self.phase_start_us + WARMUP_LIMIT_US
                {
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
            (Scenario::Renew, None) if self.p.renew_at_t1 => self
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

    /// The parameters this driver runs.
    pub fn params(&self) -> &Params {
        &self.p
    }

    fn sample(&mut self, now_us: u64) {
        let secs = (now_us - self.interval_start_us) as f64 / 1e6;
        // A last sliver of an interval (the drain's end) would plot as noise.
        if secs < 0.1 {
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
        // Warm-up always retransmits: the measured phase needs the population bound.
        let retry = (self.p.retransmit || s.flags & FLAG_WARMUP != 0)
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
        // A client whose Solicit/Request or Release failed holds no binding (an address
        // from an Advertise is only an offer, RFC 8415 §18.2.2); a failed Renew/Rebind
        // keeps its binding until the valid lifetime ends.
        if matches!(s.state, SOLICITING | REQUESTING | RELEASING) {
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
        // Open loop: after a stall (the rig descheduled), catch up at most 50 ms (or 10
        // exchanges) of backlog rather than bursting everything missed at once; the
        // report's exchanges/s then shows the rate actually offered.
        if let (Phase::Measure, Some(rate)) = (self.phase, self.phase_rate) {
            let due = ((now_us - self.phase_start_us) as f64 / 1e6 * rate) as u64;
            let cap = (rate / 20.0).max(10.0) as u64;
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
        let timeout_ms = if self.p.retransmit || s.flags & FLAG_WARMUP != 0 {
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
        if !outcome_ok && matches!(s.state, SOLICITING | REQUESTING) {
            s.addr = [0; 16];
            s.prefix_len = 0;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rig::packet::{opt, options};

    /// A minimal DHCPv6 server for driving the state machine: grants 2001:db8::<n> and
    /// 2001:db8:8000:<n>::/56 to subscriber n (or refuses with NoAddrsAvail/NoPrefixAvail),
    /// answers relayed messages with a Relay-repl, echoes nothing else.
    struct TestServer {
        grant: bool,
        seen: Vec<u8>,
        renew_addrs: Vec<Ipv6Addr>,
    }

    impl TestServer {
        fn new(grant: bool) -> Self {
            TestServer {
                grant,
                seen: Vec::new(),
                renew_addrs: Vec::new(),
            }
        }

        fn respond(&mut self, req: &[u8]) -> Option<Vec<u8>> {
            if req[0] == msg::RELAY_FORW {
                let inner = options(&req[34..])
                    .filter_map(Result::ok)
                    .find(|(c, _)| *c == opt::RELAY_MSG)?
                    .1;
                let r = self.respond(inner)?;
                let mut out = req[..34].to_vec();
                out[0] = msg::RELAY_REPL;
                out.extend_from_slice(&opt::RELAY_MSG.to_be_bytes());
                out.extend_from_slice(&(r.len() as u16).to_be_bytes());
                out.extend_from_slice(&r);
                return Some(out);
            }
            let t = req[0];
            self.seen.push(t);
            let mut client = None;
            let (mut na, mut pd, mut rapid) = (false, false, false);
            for (code, body) in options(&req[4..]).map(Result::unwrap) {
                match code {
                    opt::CLIENTID => client = Some(body.to_vec()),
                    opt::IA_NA => {
                        na = true;
                        if t == msg::RENEW && body.len() >= 12 + 28 {
                            let a: [u8; 16] = body[16..32].try_into().unwrap();
                            self.renew_addrs.push(Ipv6Addr::from(a));
                        }
                    }
                    opt::IA_PD => pd = true,
                    opt::RAPID_COMMIT => rapid = true,
                    _ => {}
                }
            }
            let client = client?;
            let n = packet::subscriber_of(1, &client)?;
            let reply_type = if t == msg::SOLICIT && !rapid {
                msg::ADVERTISE
            } else {
                msg::REPLY
            };
            let mut r = vec![reply_type, req[1], req[2], req[3]];
            let mut put = |code: u16, body: &[u8]| {
                r.extend_from_slice(&code.to_be_bytes());
                r.extend_from_slice(&(body.len() as u16).to_be_bytes());
                r.extend_from_slice(body);
            };
            put(opt::CLIENTID, &client);
            put(opt::SERVERID, &[0, 1, 2, 3]);
            if t == msg::RELEASE {
                put(opt::STATUS_CODE, &[0, 0]);
                return Some(r);
            }
            let head = [0, 0, 0, 1, 0, 0, 0, 50, 0, 0, 0, 80];
            if na {
                let mut ia = head.to_vec();
                if self.grant {
                    let a = Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(n));
                    ia.extend_from_slice(&[0, 5, 0, 24]);
                    ia.extend_from_slice(&a.octets());
                    ia.extend_from_slice(&[0, 0, 0, 100, 0, 0, 0, 200]);
                } else {
                    ia.extend_from_slice(&[0, 13, 0, 2, 0, 2]);
                }
                put(opt::IA_NA, &ia);
            }
            if pd {
                let mut ia = head.to_vec();
                if self.grant {
                    let p = Ipv6Addr::from((0x2001_0db8_8000_u128 << 80) | (u128::from(n) << 72));
                    ia.extend_from_slice(&[0, 26, 0, 25, 0, 0, 0, 100, 0, 0, 0, 200, 56]);
                    ia.extend_from_slice(&p.octets());
                } else {
                    ia.extend_from_slice(&[0, 13, 0, 2, 0, 6]);
                }
                put(opt::IA_PD, &ia);
            }
            Some(r)
        }
    }

    fn params(scenario: Scenario, subscribers: u32) -> Params {
        Params {
            scenario,
            subscribers,
            rate: None,
            renew_at_t1: true,
            window: 16,
            duration_us: 200_000,
            path: Path::Relayed {
                link_base: "2001:db8:2::".parse().unwrap(),
                relays: 4,
            },
            pd: true,
            seed: 1,
            retransmit: false,
            timeout_us: 100_000,
            spread_us: 500_000,
            drain_us: 200_000,
        }
    }

    /// Runs the driver on a virtual clock in 100 µs steps; `answer(k)` decides whether the
    /// k-th request reaches the server.
    fn drive(d: &mut Driver, srv: &mut TestServer, mut answer: impl FnMut(u64) -> bool) -> u64 {
        let mut buf = [0u8; packet::MAX_PACKET];
        let mut now = 0u64;
        let mut k = 0u64;
        while d.phase() != Phase::Done {
            d.handle_timeouts(now);
            // Replies arrive after the tick's sends, as over a network.
            let mut replies = Vec::new();
            while let Some(n) = d.poll_transmit(now, &mut buf) {
                k += 1;
                if answer(k) {
                    replies.extend(srv.respond(&buf[..n]));
                }
            }
            for r in replies {
                d.handle_datagram(now + 50, &r);
            }
            now += 100;
            assert!(now < 600_000_000, "run did not end");
        }
        now
    }

    #[test]
    fn subscriber_state_fits_the_memory_budget() {
        assert!(
            Driver::bytes_per_subscriber() <= 64,
            "{}",
            Driver::bytes_per_subscriber()
        );
    }

    #[test]
    fn sarr_completes_four_message_exchanges() {
        let mut d = Driver::new(params(Scenario::Sarr, 1000));
        let mut srv = TestServer::new(true);
        drive(&mut d, &mut srv, |_| true);
        let c = &d.counters;
        assert!(c.completed > 1000, "{c:?}");
        // Closed loop: never more than `window` transactions out.
        assert!(d.series.iter().all(|x| x.outstanding <= 16));
        assert_eq!(c.transactions, 2 * c.completed);
        assert_eq!(
            (c.drops, c.unexpected, c.no_addrs_avail, c.empty_replies),
            (0, 0, 0, 0)
        );
        assert_eq!(d.latency.len(), c.completed);
        assert!(srv.seen.contains(&msg::REQUEST));
    }

    #[test]
    fn rapid_commit_is_one_transaction() {
        let mut d = Driver::new(params(Scenario::Rapid, 100));
        let mut srv = TestServer::new(true);
        drive(&mut d, &mut srv, |_| true);
        assert_eq!(d.counters.transactions, d.counters.completed);
        assert!(!srv.seen.contains(&msg::REQUEST));
    }

    #[test]
    fn open_loop_rate_is_kept() {
        let mut p = params(Scenario::Rapid, 100_000);
        p.rate = Some(20_000.0);
        p.duration_us = 1_000_000;
        let mut d = Driver::new(p);
        drive(&mut d, &mut TestServer::new(true), |_| true);
        // 1 s at 20k/s, ± one 10 ms catch-up slice.
        let done = d.counters.completed as f64;
        assert!((done - 20_000.0).abs() <= 200.0, "{done}");
    }

    #[test]
    fn lost_requests_are_drops_without_retransmission() {
        let mut d = Driver::new(params(Scenario::Rapid, 500));
        drive(&mut d, &mut TestServer::new(true), |k| k % 10 != 0);
        let c = &d.counters;
        assert!(c.drops > 0 && c.retransmits == 0, "{c:?}");
        // Every request is answered, dropped, or still out at the end.
        assert_eq!(c.sent, c.completed + c.drops + c.unfinished);
    }

    #[test]
    fn retransmission_recovers_lost_requests() {
        let mut p = params(Scenario::Avalanche, 300);
        p.retransmit = true;
        p.duration_us = 10_000_000;
        p.drain_us = 60_000_000;
        let mut d = Driver::new(p);
        drive(&mut d, &mut TestServer::new(true), |k| k % 5 != 0);
        let c = &d.counters;
        assert_eq!(c.completed, 300, "{c:?}");
        assert!(c.retransmits > 0 && c.drops == 0, "{c:?}");
        // RFC 8415 §15: the first retransmission comes after ~1 s (IRT ± 10%).
        assert!(d.latency.max() >= 900_000, "{}", d.latency.max());
    }

    #[test]
    fn renew_carries_the_granted_leases() {
        let mut p = params(Scenario::Renew, 200);
        p.rate = Some(1000.0);
        let mut d = Driver::new(p);
        let mut srv = TestServer::new(true);
        drive(&mut d, &mut srv, |_| true);
        assert_eq!(d.warmup_bound, 200);
        // 0.2 s at 1000/s.
        assert!(d.counters.completed >= 195, "{:?}", d.counters);
        assert!(!srv.renew_addrs.is_empty());
        for a in &srv.renew_addrs {
            let n = (u128::from(*a) & 0xffff_ffff) as u32;
            assert_eq!(u128::from(*a), 0x2001_0db8_u128 << 96 | u128::from(n));
        }
    }

    #[test]
    fn renew_defaults_to_subscribers_over_t1() {
        let mut d = Driver::new(params(Scenario::Renew, 500));
        drive(&mut d, &mut TestServer::new(true), |_| true);
        // T1 = 50 s from the server: 500 / 50 = 10 renewals per second.
        assert_eq!(d.mean_t1_secs(), Some(50.0));
        assert_eq!(d.rate(), Some(10.0));
        // Calibration renews as fast as the server answers instead.
        let mut p = params(Scenario::Renew, 500);
        p.renew_at_t1 = false;
        let mut d = Driver::new(p);
        drive(&mut d, &mut TestServer::new(true), |_| true);
        assert_eq!(d.rate(), None);
        assert!(d.counters.completed > 1000, "{:?}", d.counters);
    }

    #[test]
    fn churn_releases_then_binds_again() {
        let mut d = Driver::new(params(Scenario::Churn, 100));
        let mut srv = TestServer::new(true);
        drive(&mut d, &mut srv, |_| true);
        let c = &d.counters;
        assert!(c.completed > 0);
        // Release + Solicit + Request per churn exchange.
        assert_eq!(c.transactions, 3 * c.completed, "{c:?}");
        assert!(srv.seen.contains(&msg::RELEASE));
    }

    #[test]
    fn mixed_sends_every_kind_of_message() {
        let mut d = Driver::new(params(Scenario::Mixed, 2000));
        let mut srv = TestServer::new(true);
        drive(&mut d, &mut srv, |_| true);
        for t in [
            msg::RENEW,
            msg::REBIND,
            msg::RELEASE,
            msg::INFORMATION_REQUEST,
        ] {
            assert!(srv.seen.contains(&t), "message type {t} never sent");
        }
        assert_eq!(d.counters.drops, 0);
    }

    #[test]
    fn refusals_are_counted_and_bind_nothing() {
        let mut d = Driver::new(params(Scenario::Sarr, 100));
        drive(&mut d, &mut TestServer::new(false), |_| true);
        let c = &d.counters;
        assert_eq!(c.completed, 0);
        assert!(
            c.no_addrs_avail > 0 && c.no_prefix_avail == c.no_addrs_avail,
            "{c:?}"
        );
        assert!(d.subs.iter().all(|s| s.stable_state() == IDLE));
    }

    #[test]
    fn reflected_packets_complete_as_empty_replies() {
        let mut d = Driver::new(params(Scenario::Sarr, 100));
        let mut buf = [0u8; packet::MAX_PACKET];
        let mut now = 0;
        while d.phase() != Phase::Done {
            d.handle_timeouts(now);
            let mut replies = Vec::new();
            while let Some(n) = d.poll_transmit(now, &mut buf) {
                assert!(packet::reflect_in_place(&mut buf[..n]));
                replies.push(buf[..n].to_vec());
            }
            for r in replies {
                d.handle_datagram(now + 50, &r);
            }
            now += 100;
        }
        assert!(d.counters.completed > 0);
        assert_eq!(d.counters.empty_replies, 2 * d.counters.completed);
    }

    #[test]
    fn retransmission_timeouts_follow_rfc8415() {
        for attempt in 0..3u8 {
            let rt = retransmission_timeout_ms(msg::SOLICIT, attempt, 12345);
            let base = 1000 << attempt;
            assert!(rt as f64 >= base as f64 * 0.9f64.powi(i32::from(attempt) + 1) - 1.0);
            assert!(rt as f64 <= base as f64 * 1.1f64.powi(i32::from(attempt) + 1) + 1.0);
        }
        // REQ_MAX_RT caps the Request back-off at 30 s (± RAND).
        assert!(retransmission_timeout_ms(msg::REQUEST, 9, 1) <= 33_000);
    }
}
