//! The failover endpoint: connection handshake (§6.1), keepalive (§6.5), the state machine
//! (§8) and the binding-update pipeline (§7), sans-IO in the quinn-proto style.
//!
//! Call order for a driver, after any input (message, connect, disconnect, timeout,
//! operator command): drain [`Endpoint::poll_event`], then call
//! [`Endpoint::poll_transmit`] until it returns `false`, then arm a timer for
//! [`Endpoint::poll_timeout`]. Every method takes `now`; none reads a clock.
//!
//! The binding database is the lease table (`&mut dyn LeaseTable`), passed into the calls
//! that read or change it. A BNDREPLY is held back until the table reports the batch with
//! the accepted update durable (§7.5.2: "MUST NOT send a BNDREPLY before the DB is
//! updated").

use std::collections::VecDeque;
use std::hash::BuildHasher;

// hashbrown's default hasher (foldhash), not std's SipHash: the keys are our own records, not
// attacker-chosen, and an UPDREQALL answer does several lookups per binding.
/// The endpoint's hash state: fixed, not seeded per process. Which update leaves first can
/// follow the order of these maps, and a sans-IO state machine's outputs must be a function
/// of its inputs alone: a simulation seed then replays exactly, and two runs of a pair on
/// the same history behave alike. Fixed seeds invite hash flooding only where an attacker
/// picks the keys; these are resources (addresses and prefixes the servers allocate from
/// their own pools), update keys built from them, and transaction ids, never raw client
/// input (DUIDs are hashed only into a sorted digest list, where a collision costs one
/// comparison).
type HashState = foldhash::fast::FixedState;
type HashMap<K, V> = hashbrown::HashMap<K, V, HashState>;
type HashSet<K> = hashbrown::HashSet<K, HashState>;

use super::binding::{self, Stored, Verdict};
use super::pool::{PoolStatus, PrefixPool};
use super::scope::ServiceScope;
use super::state::{self, *};
use super::{FailoverConfig, Role};
use crate::lease::{BindingState, CommitId, Duid, IaType, Lease, LeaseTable, Resource};
use crate::time::Timestamp;
use crate::wire::failover::{
    self as wire, BindingUpdateRepr, Builder, ConnectRepr, LeaseRecord, Message, MessageType,
    ServerFlags, ServerState, StateRepr, StatusCode, Subject, PROTOCOL_VERSION,
};

/// Why the endpoint asks the driver to close the TCP connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// FO_KEEPALIVE_TIMER ran out (§6.5).
    KeepaliveExpired,
    /// A message's sent-time differs from ours by more than 5 s (§7.1, §6.1.2).
    ExcessiveTimeSkew,
    /// The secondary rejected our CONNECT (§6.1.3).
    ConnectRejected(StatusCode),
    /// CONNECTREPLY did not echo our MCLT or version (§6.1.3).
    ConnectMismatch,
    /// Unparsable or out-of-sequence message.
    ProtocolError(wire::Error),
    /// The partner sent DISCONNECT (§5.3.9).
    PartnerDisconnected,
    /// §8.8.2: BNDUPDs unacknowledged for `ack_timeout`.
    AckTimeout,
    /// §8.5.2: no UPDDONE and no BNDUPD for `update_request_timeout`.
    UpdateRequestTimeout,
    /// We rejected the partner's CONNECT (after sending CONNECTREPLY with a status).
    RejectedPartner(StatusCode),
}

/// Conditions an operator should see (§8.9.1, §8.11.1 "SHOULD raise an alarm").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alarm {
    /// NORMAL → COMMUNICATIONS-INTERRUPTED.
    PartnerUnreachable,
    /// POTENTIAL-CONFLICT → RESOLUTION-INTERRUPTED.
    ResolutionInterrupted,
    /// The partner rejected an update with AddressInUse: the resource is bound to two
    /// clients across the pair (§7.5.4 accept(3)).
    AddressConflict(Resource),
}

/// What the driver must act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The endpoint state changed: refresh the shards' [`ServiceScope`].
    StateChanged {
        from: ServerState,
        to: ServerState,
    },
    /// [`Endpoint::persistent`] changed; save it (before sending, §6.3).
    PersistentStateChanged,
    /// The free-prefix split changed; the engines' prefix allocators must follow.
    PoolChanged,
    /// Close the TCP connection, then call [`Endpoint::handle_disconnected`].
    CloseConnection(CloseReason),
    Alarm(Alarm),
    /// The partner rejected our update of `resource`.
    UpdateRejected {
        resource: Resource,
        code: StatusCode,
    },
}

/// The operator partner-down command is not valid in the current state (§8.8.2, §8.9.2,
/// §8.11.2 list where it applies).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("partner-down is not allowed in state {0:?}")]
pub struct NotAllowed(pub ServerState);

/// Message and update counters (each a metric in the driver).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counters {
    /// Received messages by message type code (index = code, 0..=35).
    pub received: [u64; 36],
    /// Sent messages by message type code.
    pub sent: [u64; 36],
    /// Messages dropped because they could not be parsed.
    pub malformed: u64,
    /// Messages dropped because they are not valid in the connection's phase.
    pub unexpected: u64,
    /// Messages whose sent-time was more than 5 s off.
    pub skewed: u64,
    pub updates_accepted: u64,
    pub updates_rejected: u64,
    pub acks_received: u64,
    pub rejections_received: u64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            received: [0; 36],
            sent: [0; 36],
            malformed: 0,
            unexpected: 0,
            skewed: 0,
            updates_accepted: 0,
            updates_rejected: 0,
            acks_received: 0,
            rejections_received: 0,
        }
    }
}

/// Phase of the connection (§6.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    Down,
    /// TCP is up; primary: CONNECT sent, waiting for CONNECTREPLY; secondary: waiting for
    /// CONNECT.
    Handshake,
    /// CONNECT/CONNECTREPLY done. `partner` is `Some` once the partner's STATE arrived,
    /// which is "communications OK" (§6.1).
    Up {
        partner: Option<StateRepr>,
    },
}

/// A control message waiting for `poll_transmit`, built at transmission time so sent-time
/// is current (§7.1).
#[derive(Clone, Debug)]
enum Control {
    Connect,
    ConnectReply {
        xid: u32,
        status: Option<StatusCode>,
    },
    /// Built when queued: the first STATE of a connection must carry the COMMUNICATED
    /// flag as it was before this connection (the partner uses it to detect lost storage).
    State(StateRepr),
    Contact,
    Disconnect(StatusCode),
    UpdateRequest {
        xid: u32,
        all: bool,
    },
    UpdateDone {
        xid: u32,
    },
    PoolRequest,
    PoolResponse {
        xid: u32,
    },
    BindingReply {
        xid: u32,
        reply: Box<BindingUpdateRepr>,
        commit: Option<CommitId>,
    },
    BindingReplyError {
        xid: u32,
        code: StatusCode,
    },
}

/// What a queued update is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum UpdateKey {
    /// All of the client's bindings that hold this resource (one OPTION_CLIENT_DATA).
    Lease(Resource),
    /// A free delegable prefix moving between FREE and FREE-BACKUP (stand-alone IAPREFIX).
    Pool(Resource, PoolStatus),
}

/// The lease as it was when sent, so an ack only clears what the partner has seen.
#[derive(Clone, Copy, Debug)]
struct SentLease {
    resource: Resource,
    /// Where the record was in the table's storage order ([`LeaseTable::record_at`]), so
    /// the acknowledgement finds it without a hash lookup; `u32::MAX` when unknown.
    pos: u32,
    duid: Duid,
    state: BindingState,
    cltt: u64,
    expires_at: u64,
}

/// One run of a [`Resync`] plan: records of one client adjacent in storage order.
#[derive(Clone, Copy, Debug)]
struct Run {
    /// Index of its first entry in [`Resync::entries`]; it ends where the next run starts.
    start: u32,
    /// The client has an earlier run: this run's records go out with that run's BNDUPD.
    merged: bool,
    /// Digest of the client's DUID: a record given to another client since the plan was
    /// made must not stand for this client.
    digest: u64,
}

/// The answer to an UPDREQALL in progress (§5.3.6, §8.5.2: "send all binding
/// information"), walked one client at a time as the partner's window opens.
///
/// When the request arrives the table is read once in storage order
/// ([`LeaseTable::for_each`]) into a plan of resources by storage position: no lease is
/// copied and nothing is queued per binding. Adjacent records of one client form a run (a
/// Request writes a client's address and prefix together); a client whose records are not
/// adjacent (its prefix came later) gets its later runs merged into its first one, found by
/// sorting the runs' DUID digests, so every client is sent exactly once, with all its
/// records in one OPTION_CLIENT_DATA (§7.4). Each BNDUPD is built from the table's current
/// records, borrowed at their position ([`LeaseTable::record_at`], checked against the
/// resource; a record moved by a removal is looked up by resource instead).
///
/// Changes during the walk go through the ordinary queue (`lease_changed`), which is served
/// first; the walk does not send again what the queue sent since the request. Every BNDUPD
/// sent while the walk runs counts as part of the answer: UPDDONE goes out only after the
/// walk has finished and all of them are acknowledged (§5.3.7, §8.6).
#[derive(Debug)]
struct Resync {
    /// Sequence number of the answer's BNDUPDs (below the `answering` mark).
    seq: u64,
    /// The resource of every record, at its storage position when the plan was made.
    entries: Vec<Resource>,
    runs: Vec<Run>,
    /// `(first run, later run)` of clients with several runs, sorted: the walk visits first
    /// runs in order, so it reads this list front to back.
    extra: Vec<(u32, u32)>,
    next_run: usize,
    next_extra: usize,
    /// Resources the ordinary queue sent since the request: already up to date at the
    /// partner, so the walk skips them (usually empty).
    sent_by_queue: HashSet<Resource>,
}

impl Resync {
    /// Reads the plan from `table` (one sequential pass, then a sort of one digest per run).
    fn plan(table: &dyn LeaseTable, hasher: &HashState, seq: u64) -> Resync {
        let n = table.len();
        let mut entries: Vec<Resource> = Vec::with_capacity(n);
        let mut runs: Vec<Run> = Vec::with_capacity(n / 2 + 1);
        let mut digests: Vec<(u64, u32)> = Vec::with_capacity(n / 2 + 1);
        let mut prev: Option<Duid> = None;
        table.for_each(&mut |l: &Lease| {
            if prev.as_ref() != Some(&l.duid) {
                let digest = hasher.hash_one(l.duid.as_bytes());
                digests.push((digest, runs.len() as u32));
                runs.push(Run {
                    start: entries.len() as u32,
                    merged: false,
                    digest,
                });
                prev = Some(l.duid);
            }
            entries.push(l.resource);
        });
        // Runs of one client share a digest; runs with equal digests are compared by DUID
        // (two clients with one 64-bit digest only cost a comparison).
        digests.sort_unstable();
        let duid_of = |runs: &[Run], run: u32| {
            let pos = runs[run as usize].start;
            lookup(table, pos, &entries[pos as usize]).map(|l| l.duid)
        };
        let mut extra = Vec::new();
        for same in digests.chunk_by(|a, b| a.0 == b.0) {
            if same.len() < 2 {
                continue; // the client's only run
            }
            for (k, &(_, first)) in same.iter().enumerate() {
                if runs[first as usize].merged {
                    continue;
                }
                let client = duid_of(&runs, first);
                for &(_, later) in &same[k + 1..] {
                    if !runs[later as usize].merged && duid_of(&runs, later) == client {
                        runs[later as usize].merged = true;
                        extra.push((first, later));
                    }
                }
            }
        }
        extra.sort_unstable();
        Resync {
            seq,
            entries,
            runs,
            extra,
            next_run: 0,
            next_extra: 0,
            sent_by_queue: HashSet::default(),
        }
    }

    /// Clients not yet sent.
    fn remaining(&self) -> usize {
        self.runs.len() - self.next_run
    }

    /// The storage positions of run `i`'s records when the plan was made.
    fn run_positions(&self, i: usize) -> std::ops::Range<u32> {
        let end = self
            .runs
            .get(i + 1)
            .map_or(self.entries.len() as u32, |r| r.start);
        self.runs[i].start..end
    }
}

/// The record on `resource`, found at its storage position `pos` when it is still there.
fn lookup(table: &dyn LeaseTable, pos: u32, resource: &Resource) -> Option<Lease> {
    match table.record_at(pos as usize) {
        Some(l) if l.resource == *resource => Some(*l),
        _ => table.by_resource(resource),
    }
}

/// Appends `l` to a BNDUPD being built: its §7.4 record to `u` and what was sent to `sent`.
fn push_record(
    cfg: &FailoverConfig,
    u: &mut BindingUpdateRepr,
    sent: &mut Vec<SentLease>,
    l: &Lease,
    pos: u32,
    base: u64,
) {
    let desired = cfg
        .subnets
        .get(l.subnet as usize)
        .map_or(l.valid_lifetime, |s| s.desired_valid);
    // T1/T2 as sent are not in the lease model; RFC 8415 §21.4 defaults.
    let t1 = l.preferred_lifetime / 2;
    let t2 = (u64::from(l.preferred_lifetime) * 4 / 5) as u32;
    u.records.push(binding::record_of(l, desired, base, t1, t2));
    sent.push(SentLease {
        resource: l.resource,
        pos,
        duid: l.duid,
        state: l.state,
        cltt: l.cltt,
        expires_at: l.expires_at,
    });
}

#[derive(Clone, Debug)]
struct Outstanding {
    key: UpdateKey,
    seq: u64,
    sent_at: Timestamp,
    leases: Vec<SentLease>,
}

/// One RFC 8156 failover endpoint. See the module documentation for the call order.
pub struct Endpoint {
    cfg: FailoverConfig,
    persistent: PersistentState,
    state: State,
    link: Link,
    /// When this process started (Unix seconds): TIME-OF-FAILURE fallback (§8.6.2).
    started_at: u64,
    /// The persisted `communicated` before this run reached the partner.
    communicated_before: bool,
    /// COMMUNICATED flag of the partner's first STATE on this connection.
    partner_communicated: Option<bool>,
    partner_keepalive: u32,
    partner_max_unacked: u32,
    saw_partner_startup: bool,
    keepalive_deadline: Option<Timestamp>,
    send_deadline: Option<Timestamp>,
    next_scan: Timestamp,
    last_update_rx: Timestamp,
    next_xid: u32,
    control: VecDeque<Control>,
    queue: VecDeque<(UpdateKey, u64)>,
    queued: HashSet<UpdateKey>,
    next_seq: u64,
    outstanding: HashMap<u32, Outstanding>,
    /// Partner's UPDREQ/UPDREQALL being answered: its xid and the last queue sequence
    /// number that belongs to the answer (§5.3.7: UPDDONE once all are sent and acked).
    answering: Option<(u32, u64)>,
    /// The partner's UPDREQALL being answered by a walk over the table ([`Resync`]).
    resync: Option<Resync>,
    /// Digests of DUIDs for the resync plan (process-local, never stored or sent).
    hasher: HashState,
    /// Our own UPDREQ/UPDREQALL awaiting UPDDONE (its xid stays reserved, §5.4).
    update_request: Option<u32>,
    /// The partner asked for UPDREQALL (§8.5.2: it lost its stable storage) and has not
    /// reached NORMAL since. Its acknowledgements of EXPIRED/RELEASED leases do not free
    /// them ([`Endpoint::acknowledged`]).
    partner_lost_storage: bool,
    /// PARTNER-DOWN with the partner in RECOVER-DONE: our pending BNDUPDs are being sent
    /// before we enter NORMAL (docs/FAILOVER.md D11).
    draining_for_normal: bool,
    pool: PrefixPool,
    events: VecDeque<Event>,
    counters: Counters,
    scratch: BindingUpdateRepr,
    leases: Vec<Lease>,
    /// Buffers of sent BNDREPLYs and acknowledged BNDUPDs, reused so a resync of a million
    /// bindings does not allocate per binding (at most [`SPARE_BUFFERS`] of each are kept).
    // Boxes, not values: they move into `Control::BindingReply` and back without copying.
    #[allow(clippy::vec_box)]
    spare_replies: Vec<Box<BindingUpdateRepr>>,
    spare_sent: Vec<Vec<SentLease>>,
}

/// More than a window of MAX_UNACKED_BNDUPD in flight is never needed at once.
const SPARE_BUFFERS: usize = 256;

impl Endpoint {
    /// Starts an endpoint in STARTUP (§8.3). `persisted` is what the store saved from
    /// [`Endpoint::persistent`], `None` when stable storage holds nothing (§8.2).
    pub fn new(
        cfg: FailoverConfig,
        persisted: Option<PersistentState>,
        now: Timestamp,
    ) -> Endpoint {
        let now_s = now.secs();
        // §8.2 and §8.3.2 step 1 disagree for a primary with empty storage (PARTNER-DOWN
        // vs RECOVER); tandem takes RECOVER for both roles (docs/FAILOVER.md D2) and offers
        // the commissioning switch `partner_down_on_first_start`.
        let (previous, time_of_failure, persistent) = match persisted {
            Some(p) => (
                state::startup_previous(p.state),
                p.last_operating_time,
                PersistentState {
                    mclt: if cfg.role == Role::Primary {
                        cfg.mclt
                    } else {
                        p.mclt
                    },
                    ..p
                },
            ),
            None => (
                ServerState::Recover,
                0,
                PersistentState {
                    state: ServerState::Recover,
                    previous_state: ServerState::Recover,
                    start_time_of_state: now_s,
                    partner_state: None,
                    partner_start_time_of_state: 0,
                    last_partner_message: 0,
                    last_operating_time: now_s,
                    communicated: false,
                    mclt: cfg.mclt,
                    partner_down_time: 0,
                },
            ),
        };
        let fresh = persisted.is_none();
        let startup_end =
            now.saturating_add(std::time::Duration::from_secs(u64::from(cfg.startup_time)));
        let pool = PrefixPool::new(&cfg.pd_pools);
        let mut e = Endpoint {
            communicated_before: persistent.communicated,
            persistent,
            state: State::Startup(Startup {
                previous: if fresh && cfg.partner_down_on_first_start {
                    ServerState::PartnerDown
                } else {
                    previous
                },
                time_of_failure,
                ends_at: startup_end,
            }),
            link: Link::Down,
            started_at: now_s,
            partner_communicated: None,
            partner_keepalive: cfg.keepalive_time,
            partner_max_unacked: 1,
            saw_partner_startup: false,
            keepalive_deadline: None,
            send_deadline: None,
            next_scan: now,
            last_update_rx: now,
            next_xid: 1,
            control: VecDeque::new(),
            queue: VecDeque::new(),
            queued: HashSet::default(),
            next_seq: 0,
            outstanding: HashMap::default(),
            answering: None,
            resync: None,
            hasher: HashState::default(),
            update_request: None,
            partner_lost_storage: false,
            draining_for_normal: false,
            pool,
            events: VecDeque::new(),
            counters: Counters::default(),
            scratch: BindingUpdateRepr::default(),
            leases: Vec::new(),
            spare_replies: Vec::new(),
            spare_sent: Vec::new(),
            cfg,
        };
        e.persistent.last_operating_time = now_s;
        e
    }

    // ----- getters -------------------------------------------------------------------

    pub fn role(&self) -> Role {
        self.cfg.role
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn server_state(&self) -> ServerState {
        self.state.name()
    }

    /// What §8.2 says to persist; save it on `Event::PersistentStateChanged` and
    /// periodically (its `last_operating_time` advances with every call).
    pub fn persistent(&self) -> PersistentState {
        self.persistent
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn prefix_pool(&self) -> &PrefixPool {
        &self.pool
    }

    /// Replaces the pool split with a saved one (store restart).
    pub fn restore_prefix_pool(&mut self, saved: &[(Resource, PoolStatus)]) {
        for (r, s) in saved {
            self.pool.set(r, *s);
        }
    }

    /// "Communications OK" (§6.1): connected, handshake done and the partner's STATE seen.
    pub fn comms_ok(&self) -> bool {
        matches!(self.link, Link::Up { partner: Some(_) })
    }

    pub fn partner_state(&self) -> Option<ServerState> {
        match self.link {
            Link::Up { partner: Some(p) } => Some(p.state),
            _ => None,
        }
    }

    /// The MCLT in force (seconds).
    pub fn mclt(&self) -> u32 {
        self.persistent.mclt
    }

    /// What the engines may do now; hand a copy to every shard on `StateChanged`.
    pub fn scope(&self) -> ServiceScope {
        ServiceScope {
            role: Some(self.cfg.role),
            state: self.state.name(),
            mclt: self.persistent.mclt,
            partner_down_since: match self.state {
                State::PartnerDown(pd) => pd.since,
                _ => 0,
            },
        }
    }

    /// Number of BNDUPDs sent and not yet acknowledged.
    pub fn unacked(&self) -> usize {
        self.outstanding.len()
    }

    /// Number of updates waiting to be sent (queued changes plus the clients an UPDREQALL
    /// answer has still to send).
    pub fn queued_updates(&self) -> usize {
        self.queued.len() + self.resync.as_ref().map_or(0, Resync::remaining)
    }

    /// True when nothing is queued, outstanding or unanswered (used by tests and the
    /// simulation to detect quiescence).
    pub fn is_idle(&self) -> bool {
        self.nothing_to_send()
            && self.control.is_empty()
            && self.answering.is_none()
            && self.update_request.is_none()
    }

    // ----- inputs --------------------------------------------------------------------

    /// The engine changed `lease` (granted, renewed, released, expired, declined): queue a
    /// lazy BNDUPD for its client (§4.3: after the client's Reply). The lease must have
    /// `update_pending` set in the table.
    pub fn lease_changed(&mut self, resource: Resource) {
        self.enqueue(UpdateKey::Lease(resource));
    }

    /// The TCP (and TLS, RFC 7653) connection to the partner is up.
    pub fn handle_connected(&mut self, now: Timestamp) {
        self.link = Link::Handshake;
        self.partner_communicated = None;
        self.saw_partner_startup = false;
        self.keepalive_deadline = Some(self.after(now, self.cfg.keepalive_time));
        if self.cfg.role == Role::Primary {
            // §6.1: the primary opens with CONNECT.
            self.control.push_back(Control::Connect);
        }
    }

    /// The connection is gone (closed by either side or by us after `CloseConnection`).
    pub fn handle_disconnected(&mut self, now: Timestamp, table: &mut dyn LeaseTable) {
        if self.link == Link::Down {
            return;
        }
        let was_ok = self.comms_ok();
        self.link = Link::Down;
        self.keepalive_deadline = None;
        self.send_deadline = None;
        self.control.clear();
        self.answering = None;
        // An unfinished UPDREQALL walk is kept: it goes on as ordinary updates on the next
        // connection, so a partner rebuilding its database from it still gets every binding
        // even if it asks with UPDREQ next time (after a restart, say).
        self.update_request = None;
        self.draining_for_normal = false;
        // Unacknowledged updates stay flagged in the table; queue them for the next
        // connection (§8.8: "on entry to NORMAL send all unacked BNDUPDs").
        // In the order they were first sent, not the map's: the hash order is seeded per
        // process, and the endpoint's outputs must follow from its inputs alone (a
        // simulation seed replays exactly; two runs of a pair behave alike).
        let mut lost: Vec<Outstanding> = self.outstanding.drain().map(|(_, o)| o).collect();
        lost.sort_unstable_by_key(|o| o.seq);
        for o in lost {
            match o.key {
                UpdateKey::Pool(r, PoolStatus::Free) => {
                    self.pool.set(&r, PoolStatus::FreeBackup);
                    self.events.push_back(Event::PoolChanged);
                }
                key => self.enqueue(key),
            }
        }
        match &mut self.state {
            State::Recover(r) => {
                r.update_request = None;
            }
            State::PotentialConflict(p) => p.update_request = None,
            _ => {}
        }
        if was_ok {
            let next = state::comms_failed(self.state.name());
            self.transition(now, table, next);
        }
    }

    /// Operator command: the partner is down (§8.8.2, §8.9.2, §8.11.2 "external command").
    /// Only valid when the partner is truly not operating (§8.4).
    pub fn partner_down(
        &mut self,
        now: Timestamp,
        table: &mut dyn LeaseTable,
    ) -> Result<(), NotAllowed> {
        match self.state.name() {
            ServerState::Normal
            | ServerState::CommunicationsInterrupted
            | ServerState::ResolutionInterrupted
            | ServerState::PartnerDown => {
                self.transition(now, table, ServerState::PartnerDown);
                Ok(())
            }
            other => Err(NotAllowed(other)),
        }
    }

    /// Timers: startup, keepalive, CONTACT, auto-partner-down, RECOVER-WAIT, ack and
    /// UPDREQ timeouts, and the periodic update scan.
    pub fn handle_timeout(&mut self, now: Timestamp, table: &mut dyn LeaseTable) {
        let now_s = now.secs();
        self.persistent.last_operating_time = self.persistent.last_operating_time.max(now_s);
        if let State::Startup(s) = self.state {
            if now >= s.ends_at {
                // §8.3.2 step 6.
                self.transition(now, table, s.previous);
            }
        }
        if self.keepalive_deadline.is_some_and(|d| now >= d) && self.link != Link::Down {
            self.close(CloseReason::KeepaliveExpired);
            self.handle_disconnected(now, table);
        }
        if self.send_deadline.is_some_and(|d| now >= d) && matches!(self.link, Link::Up { .. }) {
            // §6.5: FO_SEND_TIMER expired without other traffic.
            self.control.push_back(Control::Contact);
            self.send_deadline = Some(self.after(now, self.send_time()));
        }
        if let State::CommunicationsInterrupted(c) = self.state {
            if c.auto_partner_down_at.is_some_and(|d| now >= d) {
                self.transition(now, table, ServerState::PartnerDown);
            }
        }
        if let State::RecoverWait(w) = self.state {
            if now_s >= w.until {
                self.transition(now, table, ServerState::RecoverDone);
            }
        }
        if self.comms_ok() {
            let oldest = self.outstanding.values().map(|o| o.sent_at).min();
            if self.state.name() == ServerState::Normal
                && oldest.is_some_and(|t| now >= self.after(t, self.cfg.ack_timeout))
            {
                self.close(CloseReason::AckTimeout);
                self.handle_disconnected(now, table);
                return;
            }
            if self.update_request.is_some()
                && now >= self.after(self.last_update_rx, self.cfg.update_request_timeout)
            {
                self.close(CloseReason::UpdateRequestTimeout);
                self.handle_disconnected(now, table);
                return;
            }
        }
        if now >= self.next_scan {
            self.next_scan = self.after(now, self.cfg.scan_interval);
            self.scan(now, table);
        }
    }

    /// Consumes whole frames from a TCP receive buffer and returns how many octets were
    /// used. A framing error asks the driver to close the connection.
    pub fn handle_stream(
        &mut self,
        now: Timestamp,
        data: &[u8],
        table: &mut dyn LeaseTable,
    ) -> usize {
        let mut used = 0;
        loop {
            match wire::split_frame(&data[used..]) {
                Ok(wire::Frame::Complete { message, consumed }) => {
                    self.handle_message(now, message, table);
                    used += consumed;
                }
                Ok(wire::Frame::Incomplete { .. }) => return used,
                Err(e) => {
                    self.counters.malformed += 1;
                    self.close(CloseReason::ProtocolError(e));
                    return data.len();
                }
            }
        }
    }

    /// Handles one failover message (without its 2-octet length prefix).
    pub fn handle_message(&mut self, now: Timestamp, message: &[u8], table: &mut dyn LeaseTable) {
        let msg = match Message::new_checked(message) {
            Ok(m) => m,
            Err(_) => {
                self.counters.malformed += 1;
                return;
            }
        };
        let code = msg.msg_type_raw();
        self.counters.received[usize::from(code).min(35)] += 1;
        let Some(kind) = msg.msg_type() else {
            self.counters.unexpected += 1;
            return;
        };
        if self.link == Link::Down {
            self.counters.unexpected += 1;
            return;
        }
        // §6.5: every received message resets FO_KEEPALIVE_TIMER.
        self.keepalive_deadline = Some(self.after(now, self.cfg.keepalive_time));
        self.persistent.last_partner_message = now.secs();
        // §7.1: more than 5 s of skew drops the connection (CONNECT answers with
        // ExcessiveTimeSkew first, §6.1.2).
        let skew = (msg.sent_time().wrapping_sub(now.secs_since_2000()) as i32).unsigned_abs();
        if u64::from(skew) > binding::SKEW_TOLERANCE_SECS {
            self.counters.skewed += 1;
            if kind == MessageType::Connect && self.link == Link::Handshake {
                self.control.push_back(Control::ConnectReply {
                    xid: msg.transaction_id(),
                    status: Some(StatusCode::ExcessiveTimeSkew),
                });
                self.close(CloseReason::RejectedPartner(StatusCode::ExcessiveTimeSkew));
            } else {
                self.close(CloseReason::ExcessiveTimeSkew);
                self.handle_disconnected(now, table);
            }
            return;
        }
        let xid = msg.transaction_id();
        let result = match (kind, self.link) {
            (MessageType::Connect, Link::Handshake) if self.cfg.role == Role::Secondary => {
                self.on_connect(now, xid, msg.options())
            }
            (MessageType::Connectreply, Link::Handshake) if self.cfg.role == Role::Primary => {
                self.on_connect_reply(now, msg.options())
            }
            (_, Link::Handshake) => {
                self.counters.unexpected += 1;
                Ok(())
            }
            (MessageType::State, _) => {
                StateRepr::parse(msg.options()).map(|s| self.on_state(now, table, s))
            }
            (MessageType::Contact, _) => Ok(()),
            (MessageType::Disconnect, _) => {
                self.close(CloseReason::PartnerDisconnected);
                self.handle_disconnected(now, table);
                Ok(())
            }
            (_, Link::Up { partner: None }) => {
                // Before the partner's STATE nothing else is expected (§6.1).
                self.counters.unexpected += 1;
                Ok(())
            }
            (MessageType::Bndupd, _) => {
                self.last_update_rx = now;
                self.on_bndupd(now, table, xid, msg.options());
                Ok(())
            }
            (MessageType::Bndreply, _) => self.on_bndreply(now, table, xid, msg.options()),
            (MessageType::Updreq | MessageType::Updreqall, _) => {
                if kind == MessageType::Updreqall {
                    self.partner_lost_storage = true;
                }
                self.on_update_request(table, xid, kind == MessageType::Updreqall);
                Ok(())
            }
            (MessageType::Upddone, _) => {
                self.on_update_done(now, table, xid);
                Ok(())
            }
            (MessageType::Poolreq, _) if self.cfg.role == Role::Primary => {
                self.control.push_back(Control::PoolResponse { xid });
                self.rebalance(table);
                Ok(())
            }
            (MessageType::Poolresp, _) => Ok(()),
            _ => {
                self.counters.unexpected += 1;
                Ok(())
            }
        };
        if let Err(e) = result {
            self.counters.malformed += 1;
            self.close(CloseReason::ProtocolError(e));
            self.handle_disconnected(now, table);
        }
    }

    // ----- outputs -------------------------------------------------------------------

    /// Appends the next framed message to `buf`; `false` when there is nothing to send.
    /// Control messages go first, then BNDUPDs within the partner's MAX_UNACKED_BNDUPD.
    pub fn poll_transmit(
        &mut self,
        now: Timestamp,
        table: &mut dyn LeaseTable,
        buf: &mut Vec<u8>,
    ) -> bool {
        if self.link == Link::Down {
            return false;
        }
        let durable = table.durable(false).unwrap_or(0);
        let pos = self.control.iter().position(|c| match c {
            Control::BindingReply {
                commit: Some(id), ..
            } => *id <= durable,
            _ => true,
        });
        if let Some(pos) = pos {
            if let Some(c) = self.control.remove(pos) {
                let sent = self.emit_control(now, &c, buf);
                if let Control::BindingReply { reply, .. } = c {
                    if self.spare_replies.len() < SPARE_BUFFERS {
                        self.spare_replies.push(reply);
                    }
                }
                if let Some(t) = sent {
                    self.sent(now, t);
                    return true;
                }
            }
        }
        if self.may_send_updates() {
            while self.outstanding.len() < self.partner_max_unacked as usize {
                let Some((key, seq)) = self.queue.pop_front() else {
                    break;
                };
                if !self.queued.remove(&key) {
                    continue;
                }
                if self.emit_update(now, table, key, seq, buf) {
                    self.sent(now, MessageType::Bndupd);
                    return true;
                }
            }
            if self.outstanding.len() < self.partner_max_unacked as usize
                && self.emit_resync(now, table, buf)
            {
                self.sent(now, MessageType::Bndupd);
                return true;
            }
        }
        self.maybe_update_done();
        if let Some(pos) = self
            .control
            .iter()
            .position(|c| matches!(c, Control::UpdateDone { .. }))
        {
            if let Some(c) = self.control.remove(pos) {
                if let Some(t) = self.emit_control(now, &c, buf) {
                    self.sent(now, t);
                    return true;
                }
            }
        }
        false
    }

    /// The earliest time [`Endpoint::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let mut t: Option<Timestamp> = None;
        let mut consider = |x: Option<Timestamp>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        if let State::Startup(s) = self.state {
            consider(Some(s.ends_at));
        }
        if let State::CommunicationsInterrupted(c) = self.state {
            consider(c.auto_partner_down_at);
        }
        if let State::RecoverWait(w) = self.state {
            consider(Some(Timestamp::from_secs(w.until)));
        }
        consider(self.keepalive_deadline);
        consider(self.send_deadline);
        consider(Some(self.next_scan));
        if self.comms_ok() {
            if self.state.name() == ServerState::Normal {
                let oldest = self.outstanding.values().map(|o| o.sent_at).min();
                consider(oldest.map(|o| self.after(o, self.cfg.ack_timeout)));
            }
            if self.update_request.is_some() {
                consider(Some(
                    self.after(self.last_update_rx, self.cfg.update_request_timeout),
                ));
            }
        }
        t
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ----- handshake -----------------------------------------------------------------

    fn on_connect(
        &mut self,
        now: Timestamp,
        xid: u32,
        opts: wire::Options<'_>,
    ) -> Result<(), wire::Error> {
        let c = ConnectRepr::parse(opts)?;
        // §6.1.2: version, relationship (§6.2) and flags must fit.
        let status = if c.protocol_version.0 != PROTOCOL_VERSION.0 {
            Some(StatusCode::NotSupported)
        } else if c.relationship_name != self.cfg.relationship_name.as_deref() {
            Some(StatusCode::ConfigurationConflict)
        } else {
            None
        };
        self.control
            .push_back(Control::ConnectReply { xid, status });
        if let Some(code) = status {
            self.close(CloseReason::RejectedPartner(code));
            return Ok(());
        }
        // §6.1.2: adopt the primary's MCLT; remember its keepalive and window.
        if self.persistent.mclt != c.mclt {
            self.persistent.mclt = c.mclt;
            self.events.push_back(Event::PersistentStateChanged);
        }
        self.partner_keepalive = c.keepalive_time.max(1);
        self.partner_max_unacked = c.max_unacked_bndupd.max(1);
        self.link = Link::Up { partner: None };
        self.send_deadline = Some(self.after(now, self.send_time()));
        // §6.1.2: "after an accepting CONNECTREPLY the secondary MUST send STATE".
        self.push_state();
        Ok(())
    }

    fn on_connect_reply(
        &mut self,
        now: Timestamp,
        opts: wire::Options<'_>,
    ) -> Result<(), wire::Error> {
        if let Some(code) = wire::top_status(opts)? {
            if code != StatusCode::Success {
                self.close(CloseReason::ConnectRejected(code));
                return Ok(());
            }
        }
        let c = ConnectRepr::parse(opts)?;
        // §6.1.3: an MCLT that differs from ours or an unsupported version: DISCONNECT.
        if c.mclt != self.persistent.mclt || c.protocol_version.0 != PROTOCOL_VERSION.0 {
            self.control
                .push_back(Control::Disconnect(StatusCode::ConfigurationConflict));
            self.close(CloseReason::ConnectMismatch);
            return Ok(());
        }
        self.partner_keepalive = c.keepalive_time.max(1);
        self.partner_max_unacked = c.max_unacked_bndupd.max(1);
        self.link = Link::Up { partner: None };
        self.send_deadline = Some(self.after(now, self.send_time()));
        // §6.1.3: "MUST send STATE".
        self.push_state();
        Ok(())
    }

    // ----- state machine -------------------------------------------------------------

    fn on_state(&mut self, now: Timestamp, table: &mut dyn LeaseTable, s: StateRepr) {
        let first = matches!(self.link, Link::Up { partner: None });
        if first {
            self.partner_communicated = Some(s.flags.has(ServerFlags::COMMUNICATED));
        }
        self.link = Link::Up { partner: Some(s) };
        let partner_start = binding::to_unix(s.start_time_of_state);
        self.persistent.partner_state = Some(s.state);
        self.persistent.partner_start_time_of_state = partner_start;
        if s.state == ServerState::Normal {
            // The partner's recovery is over (§8.7.2): RECOVER-WAIT let the leases it
            // granted before losing its storage expire or reach us.
            self.partner_lost_storage = false;
        }
        if !self.persistent.communicated {
            self.persistent.communicated = true;
        }
        self.events.push_back(Event::PersistentStateChanged);
        let starting = s.flags.has(ServerFlags::STARTUP);
        if let State::Startup(st) = self.state {
            // §8.3.2 step 5.
            let target =
                state::leave_startup(st.previous, st.time_of_failure, s.state, partner_start);
            self.transition(now, table, target);
        } else if starting {
            // §8.4.2: a partner still in STARTUP reports its previous state; wait for its
            // real one, but acknowledge it (ACK_STARTUP) so it knows we are here.
            self.saw_partner_startup = true;
            self.push_state();
            return;
        }
        if starting && first {
            self.saw_partner_startup = true;
            self.push_state();
        }
        self.follow_partner(now, table);
    }

    /// Applies the comms-OK transition for the partner's last state until it settles,
    /// then performs the actions the resulting state takes while communications are OK.
    fn follow_partner(&mut self, now: Timestamp, table: &mut dyn LeaseTable) {
        for _ in 0..4 {
            let Some(p) = self.partner_state() else {
                return;
            };
            if self.partner_in_startup() {
                break;
            }
            let me = self.state.name();
            let next = match (me, p) {
                // D13 (below): a server that recovered from lost storage while its partner
                // resolved a conflict finds it in CONFLICT-DONE, waiting for this server's
                // UPDREQ (Figure 9). §8.7.2 lists no transition for that; joining
                // POTENTIAL-CONFLICT, as §8.5.2 does from RECOVER, completes the resolution.
                (ServerState::RecoverDone, ServerState::ConflictDone) => {
                    ServerState::PotentialConflict
                }
                _ => state::partner_state_transition(me, p),
            };
            if next == me {
                break;
            }
            if me == ServerState::Recover
                && next == ServerState::PotentialConflict
                && self.lost_storage()
            {
                // §8.5.2 has RECOVER join a partner resolving a conflict. A server that
                // lost its stable storage has nothing to resolve with: the UPDREQ of
                // POTENTIAL-CONFLICT brings only the partner's unacknowledged updates, and
                // CONFLICT-DONE would then allocate from an empty database (found by the
                // simulation, docs/FAILOVER.md D13). It stays in RECOVER until its
                // UPDREQALL is answered and RECOVER-WAIT has run, then joins from
                // RECOVER-DONE (§8.7.2).
                break;
            }
            if me == ServerState::PartnerDown && next == ServerState::Normal {
                // §8.4.2 says NORMAL at once when the partner is in RECOVER-DONE. But the
                // partner answered its UPDREQ before, and if communications failed after
                // that we kept allocating in PARTNER-DOWN (the partner's prefixes too,
                // after MCLT). Once we say NORMAL the partner allocates from its pool at
                // once, before our BNDUPDs for those leases reach it: send them first and
                // enter NORMAL when all are acknowledged (docs/FAILOVER.md D11).
                if !self.draining_for_normal {
                    self.draining_for_normal = true;
                    self.queue_pending(table);
                }
                if !self.nothing_to_send() {
                    break;
                }
                self.draining_for_normal = false;
            }
            self.transition(now, table, next);
        }
        self.comms_ok_actions();
    }

    fn partner_in_startup(&self) -> bool {
        matches!(self.link, Link::Up { partner: Some(p) } if p.flags.has(ServerFlags::STARTUP))
    }

    fn comms_ok_actions(&mut self) {
        if !self.comms_ok() || self.partner_in_startup() {
            return;
        }
        let partner = self.partner_state();
        let role = self.cfg.role;
        // §8.5.2: UPDREQALL when we have no record of ever talking to the partner but the
        // partner has one (we lost stable storage); UPDREQ otherwise.
        let all = self.lost_storage();
        match &mut self.state {
            State::Recover(r) if r.update_request.is_none() => {
                let xid =
                    Self::alloc_xid(&mut self.next_xid, &self.outstanding, self.update_request);
                r.update_request = Some(xid);
                r.all = all;
                self.update_request = Some(xid);
                self.control.push_back(Control::UpdateRequest { xid, all });
            }
            State::PotentialConflict(p) if p.update_request.is_none() => {
                // §8.10: the primary asks first; the secondary once the primary is
                // CONFLICT-DONE (Figure 9).
                let go = role == Role::Primary || partner == Some(ServerState::ConflictDone);
                if go {
                    let xid =
                        Self::alloc_xid(&mut self.next_xid, &self.outstanding, self.update_request);
                    p.update_request = Some(xid);
                    self.update_request = Some(xid);
                    self.control
                        .push_back(Control::UpdateRequest { xid, all: false });
                }
            }
            State::Normal(n) if role == Role::Secondary && !n.pool_requested => {
                // §8.8: on entering NORMAL the secondary sends POOLREQ.
                n.pool_requested = true;
                self.control.push_back(Control::PoolRequest);
            }
            _ => {}
        }
    }

    fn transition(&mut self, now: Timestamp, table: &mut dyn LeaseTable, to: ServerState) {
        let from = self.state.name();
        if from == to && !matches!(self.state, State::Startup(_)) && to != ServerState::PartnerDown
        {
            return;
        }
        if from == to && to == ServerState::PartnerDown {
            return;
        }
        let now_s = now.secs();
        let mclt = u64::from(self.persistent.mclt);
        let time_of_failure = match self.state {
            State::Startup(s) => s.time_of_failure,
            _ => 0,
        };
        self.state = match to {
            ServerState::Startup => return,
            ServerState::Normal => State::Normal(Normal::default()),
            ServerState::CommunicationsInterrupted => {
                if from == ServerState::Normal {
                    self.events
                        .push_back(Event::Alarm(Alarm::PartnerUnreachable));
                }
                State::CommunicationsInterrupted(CommunicationsInterrupted {
                    auto_partner_down_at: self.cfg.auto_partner_down.map(|s| self.after(now, s)),
                })
            }
            ServerState::PartnerDown => State::PartnerDown(PartnerDown {
                // Re-entering PARTNER-DOWN after a restart keeps the original entry time,
                // so the MCLT waits do not start over (§6.3 PARTNER_DOWN_TIME).
                since: if self.persistent.state == ServerState::PartnerDown
                    && self.persistent.partner_down_time != 0
                {
                    self.persistent.partner_down_time
                } else {
                    now_s
                },
            }),
            ServerState::PotentialConflict => {
                State::PotentialConflict(PotentialConflict::default())
            }
            ServerState::Recover => State::Recover(Recover::default()),
            ServerState::RecoverWait => {
                // §8.6.2: TIME-OF-FAILURE (or our start) + MCLT; no wait when this server
                // never ran failover, judged with the partner's COMMUNICATED flag because
                // our own storage may be what was lost.
                let never = !self.communicated_before && self.partner_communicated == Some(false);
                let base = if self.persistent.previous_state == ServerState::Recover
                    && time_of_failure == 0
                {
                    self.started_at
                } else {
                    time_of_failure.max(self.started_at)
                };
                State::RecoverWait(RecoverWait {
                    until: if never {
                        now_s
                    } else {
                        base.saturating_add(mclt)
                    },
                })
            }
            ServerState::RecoverDone => State::RecoverDone(RecoverDone),
            ServerState::ResolutionInterrupted => {
                self.events
                    .push_back(Event::Alarm(Alarm::ResolutionInterrupted));
                State::ResolutionInterrupted(ResolutionInterrupted)
            }
            ServerState::ConflictDone => State::ConflictDone(ConflictDone),
        };
        self.update_request = None;
        self.draining_for_normal = false;
        if from != ServerState::Startup {
            self.persistent.previous_state = from;
        }
        let keep_start = to == ServerState::PartnerDown
            && self.persistent.state == ServerState::PartnerDown
            && self.persistent.partner_down_time != 0;
        if !keep_start {
            self.persistent.start_time_of_state = now_s;
        }
        self.persistent.state = to;
        self.persistent.partner_down_time = match self.state {
            State::PartnerDown(pd) => pd.since,
            _ => 0,
        };
        self.events.push_back(Event::StateChanged { from, to });
        self.events.push_back(Event::PersistentStateChanged);
        if matches!(self.link, Link::Up { .. }) {
            // §6.3: STATE on every state change.
            self.push_state();
        }
        match to {
            ServerState::Normal => {
                // §8.8: "on entry send all unacked BNDUPDs".
                self.queue_pending(table);
            }
            ServerState::RecoverWait => {
                if let State::RecoverWait(w) = self.state {
                    if now_s >= w.until {
                        self.transition(now, table, ServerState::RecoverDone);
                        return;
                    }
                }
            }
            _ => {}
        }
        if to == ServerState::RecoverDone || to == ServerState::Normal {
            self.follow_partner(now, table);
        } else {
            self.comms_ok_actions();
        }
    }

    // ----- binding updates -----------------------------------------------------------

    fn on_bndupd(
        &mut self,
        now: Timestamp,
        table: &mut dyn LeaseTable,
        xid: u32,
        opts: wire::Options<'_>,
    ) {
        let mut u = std::mem::take(&mut self.scratch);
        if u.parse(opts, false).is_err() {
            // §7.5.3: insufficient information.
            self.counters.updates_rejected += 1;
            self.control.push_back(Control::BindingReplyError {
                xid,
                code: StatusCode::MissingBindingInformation,
            });
            self.scratch = u;
            return;
        }
        let now_s = now.secs();
        let mut reply = self.spare_replies.pop().unwrap_or_default();
        reply.subject = u.subject;
        reply.base_time = 0;
        reply.top_status = None;
        reply.records.clear();
        match u.subject {
            Subject::Client(duid) => {
                for rec in &u.records {
                    let code = self.apply_client_record(table, &duid, rec, u.base_time, now_s);
                    reply.records.push(Self::echo(rec, code));
                }
            }
            Subject::Prefix => {
                if let Some(rec) = u.records.first() {
                    let code = self.apply_pool_record(table, rec);
                    reply.records.push(Self::echo(rec, code));
                    reply.top_status = code;
                }
            }
        }
        self.scratch = u;
        // §7.5.2: the BNDREPLY waits until the accepted data is durable.
        let commit = table.commit().ok().flatten();
        self.control
            .push_back(Control::BindingReply { xid, reply, commit });
    }

    fn echo(rec: &LeaseRecord, code: Option<StatusCode>) -> LeaseRecord {
        LeaseRecord {
            partner_lifetime_sent: rec.partner_lifetime,
            status_code: code,
            ..*rec
        }
    }

    fn subnet_of(&self, r: &Resource) -> Option<u32> {
        if self.cfg.subnets.is_empty() {
            return Some(0);
        }
        self.cfg
            .subnets
            .iter()
            .position(|s| s.contains(r.addr) && (!r.is_prefix() || r.prefix_len >= s.prefix_len))
            .map(|i| i as u32)
            .or_else(|| self.pool.contains(r).then_some(0))
    }

    /// The configured ("desired", §4.4) valid lifetime for `l`'s subnet.
    fn desired_for(&self, l: &Lease) -> u32 {
        self.cfg
            .subnets
            .get(l.subnet as usize)
            .map_or(l.valid_lifetime, |s| s.desired_valid.max(l.valid_lifetime))
    }

    /// Whether this server is rebuilding a lost database from its partner (RECOVER with an
    /// UPDREQALL, §8.5.2).
    /// §8.5.2: we have no record of ever talking to the partner, but it has one: we lost
    /// our stable storage (and recover with UPDREQALL).
    fn lost_storage(&self) -> bool {
        !self.communicated_before && self.partner_communicated == Some(true)
    }

    fn recovering_lost_storage(&self) -> bool {
        matches!(self.state, State::Recover(r) if r.all && r.update_request.is_some())
    }

    /// §7.5.4 and §7.5.5 for one lease of an OPTION_CLIENT_DATA; returns the error status.
    fn apply_client_record(
        &mut self,
        table: &mut dyn LeaseTable,
        duid: &Duid,
        rec: &LeaseRecord,
        base_time: u32,
        now_s: u64,
    ) -> Option<StatusCode> {
        let Some(subnet) = self.subnet_of(&rec.resource) else {
            self.counters.updates_rejected += 1;
            return Some(StatusCode::ConfigurationConflict);
        };
        let local = table.by_resource(&rec.resource);
        match binding::resolve(local.as_ref(), duid, rec, base_time, self.cfg.role, now_s) {
            Verdict::Accept => {
                self.counters.updates_accepted += 1;
                let res = match binding::store(local.as_ref(), duid, rec, base_time, subnet) {
                    Stored::Upsert(lease) => table.upsert(lease),
                    Stored::Remove => {
                        if rec.resource.is_prefix() && self.pool.contains(&rec.resource) {
                            // Delegated prefixes return to the primary (§4.2.2).
                            self.pool.set(&rec.resource, PoolStatus::Free);
                            self.events.push_back(Event::PoolChanged);
                        }
                        if matches!(rec.status, BindingState::Expired | BindingState::Released)
                            && self.recovering_lost_storage()
                        {
                            // We lost our storage: before that we may have renewed this
                            // client without the partner knowing. Hold the resource until
                            // such a lost grant has ended (`mclt::recovery_hold`); the
                            // record is acknowledged (not flagged) and the scan frees it.
                            let mut l = binding::held_record(duid, rec, base_time, subnet);
                            l.expires_at = super::mclt::recovery_hold(
                                &l,
                                now_s,
                                self.persistent.mclt,
                                self.desired_for(&l),
                            );
                            table.upsert(l)
                        } else if local.is_some() {
                            table.remove(&rec.resource)
                        } else {
                            Ok(())
                        }
                    }
                };
                // Our own newer data for this resource is superseded.
                if !self.queued.is_empty() {
                    self.queued.remove(&UpdateKey::Lease(rec.resource));
                }
                match res {
                    Ok(()) => None,
                    Err(_) => Some(StatusCode::UnspecFail),
                }
            }
            Verdict::Reject(code) => {
                self.counters.updates_rejected += 1;
                if code == StatusCode::OutdatedBindingInformation {
                    if let Some(mut l) = local {
                        // §7.5.4: set "update partner"; send at once only if it was clear,
                        // else leave it to the periodic scan (no update storms).
                        if !l.update_pending {
                            l.update_pending = true;
                            let _ = table.upsert(l);
                            self.enqueue(UpdateKey::Lease(l.resource));
                        }
                    }
                }
                Some(code)
            }
        }
    }

    /// A stand-alone IAPREFIX: the primary moving a free delegable prefix (§4.2.2).
    fn apply_pool_record(
        &mut self,
        table: &mut dyn LeaseTable,
        rec: &LeaseRecord,
    ) -> Option<StatusCode> {
        if !self.pool.contains(&rec.resource) {
            self.counters.updates_rejected += 1;
            return Some(StatusCode::ConfigurationConflict);
        }
        let delegated = table
            .by_resource(&rec.resource)
            .is_some_and(|l| binding::holds_resource(&l));
        match rec.status {
            BindingState::FreeBackup if !delegated => {
                self.pool.set(&rec.resource, PoolStatus::FreeBackup);
                self.events.push_back(Event::PoolChanged);
            }
            BindingState::Free => {
                // §4.2.2: the secondary MUST reject taking back a prefix it delegated.
                if delegated {
                    self.counters.updates_rejected += 1;
                    return Some(StatusCode::AddressInUse);
                }
                self.pool.set(&rec.resource, PoolStatus::Free);
                self.events.push_back(Event::PoolChanged);
            }
            _ => {}
        }
        self.counters.updates_accepted += 1;
        None
    }

    fn on_bndreply(
        &mut self,
        now: Timestamp,
        table: &mut dyn LeaseTable,
        xid: u32,
        opts: wire::Options<'_>,
    ) -> Result<(), wire::Error> {
        let Some(out) = self.outstanding.remove(&xid) else {
            self.counters.unexpected += 1;
            return Ok(());
        };
        let mut u = std::mem::take(&mut self.scratch);
        let parsed = u.parse(opts, true);
        if parsed.is_err() {
            // A reply with only a top-level status (e.g. MissingBindingInformation).
            let code = wire::top_status(opts)?.unwrap_or(StatusCode::UnspecFail);
            u.records.clear();
            u.top_status = Some(code);
        }
        match out.key {
            UpdateKey::Pool(r, status) => {
                let code = u
                    .records
                    .first()
                    .and_then(|x| x.status_code)
                    .or(u.top_status);
                let ok = code.is_none_or(|c| c == StatusCode::Success);
                if status == PoolStatus::Free {
                    // Reclaim acknowledged (or refused: the secondary delegated it).
                    let back = if ok {
                        PoolStatus::Free
                    } else {
                        PoolStatus::FreeBackup
                    };
                    self.pool.set(&r, back);
                    self.events.push_back(Event::PoolChanged);
                }
                self.count_ack(ok);
            }
            UpdateKey::Lease(_) => {
                for sent in &out.leases {
                    let rec = u.records.iter().find(|x| x.resource == sent.resource);
                    let code = match rec {
                        Some(x) => x.status_code,
                        None if u.top_status.is_some() => u.top_status,
                        // Not mentioned: not acknowledged; keep it flagged for the scan.
                        None => continue,
                    };
                    let ok = code.is_none_or(|c| c == StatusCode::Success);
                    self.count_ack(ok);
                    if ok {
                        let sent_plt = rec
                            .and_then(|x| x.partner_lifetime_sent)
                            .map(binding::to_unix);
                        self.acknowledged(now, table, sent, sent_plt);
                    } else if let Some(code) = code {
                        self.rejected(sent, code);
                    }
                }
            }
        }
        self.scratch = u;
        let _ = table.commit();
        if self.spare_sent.len() < SPARE_BUFFERS {
            let mut leases = out.leases;
            leases.clear();
            self.spare_sent.push(leases);
        }
        if self.draining_for_normal && self.nothing_to_send() {
            self.follow_partner(now, table);
        }
        Ok(())
    }

    fn count_ack(&mut self, ok: bool) {
        if ok {
            self.counters.acks_received += 1;
        } else {
            self.counters.rejections_received += 1;
        }
    }

    /// §7.7 accepted: acknowledged partner lifetime stored; "update partner" cleared if the
    /// lease did not change since; EXPIRED/RELEASED leases become free (Figure 2, (4)).
    fn acknowledged(
        &mut self,
        now: Timestamp,
        table: &mut dyn LeaseTable,
        sent: &SentLease,
        plt: Option<u64>,
    ) {
        let Some(stored) = lookup(&*table, sent.pos, &sent.resource) else {
            return;
        };
        let mut l = stored;
        if l.duid != sent.duid {
            return;
        }
        if let Some(p) = plt {
            l.partner_lifetime = l.partner_lifetime.max(p);
        }
        let unchanged =
            l.state == sent.state && l.cltt == sent.cltt && l.expires_at == sent.expires_at;
        if unchanged {
            l.update_pending = false;
            if matches!(l.state, BindingState::Expired | BindingState::Released)
                && self.partner_lost_storage
            {
                // A partner recovering from lost storage acknowledges from the database we
                // just sent it (UPDREQALL). Before the loss it may have renewed this very
                // client (say, from an ACTIVE copy while we were apart and the client
                // released here), within MCLT of the partner lifetime it held; that grant
                // is gone from its storage but not from the client. §8.6.2 has the
                // recovering server wait MCLT so that such leases "contact the other
                // server or time out": this server must hold the resource for that long,
                // as in PARTNER-DOWN (§8.4.1), or it could give it to a second client.
                // The record stays (acknowledged), the scan frees it at the deadline
                // (`mclt::recovery_hold`). The prefix returns to the primary now, as the
                // partner has just done.
                let desired = self.desired_for(&l);
                l.expires_at =
                    super::mclt::recovery_hold(&l, now.secs(), self.persistent.mclt, desired);
                if l.resource.is_prefix() && self.pool.contains(&l.resource) {
                    self.pool.set(&l.resource, PoolStatus::Free);
                    self.events.push_back(Event::PoolChanged);
                }
                let _ = table.upsert(l);
                return;
            }
            if matches!(l.state, BindingState::Expired | BindingState::Released) {
                // PENDING-FREE → FREE / FREE-BACKUP: an address returns to its bit-127
                // owner implicitly; a delegated prefix returns to the primary (§4.2.2,
                // following the text, not Figure 3: docs/FAILOVER.md D1).
                if l.resource.is_prefix() && self.pool.contains(&l.resource) {
                    self.pool.set(&l.resource, PoolStatus::Free);
                    self.events.push_back(Event::PoolChanged);
                }
                let _ = table.remove(&l.resource);
                return;
            }
        }
        // An acknowledgement of a lease whose flag was clear and whose partner lifetime did
        // not grow (every binding of an UPDREQALL answer, usually) changes nothing to store.
        if l != stored {
            let _ = table.upsert(l);
        }
    }

    fn rejected(&mut self, sent: &SentLease, code: StatusCode) {
        self.events.push_back(Event::UpdateRejected {
            resource: sent.resource,
            code,
        });
        if code == StatusCode::AddressInUse {
            self.events
                .push_back(Event::Alarm(Alarm::AddressConflict(sent.resource)));
        }
        // §7.7: rejections are only remembered. The lease keeps its "update partner" flag,
        // so the periodic scan (not an immediate resend) retries until one side's data is
        // clearly newer; the partner, which set its own flag when rejecting (§7.5.4),
        // sends its version meanwhile. Accepting that version clears our flag.
    }

    fn on_update_request(&mut self, table: &mut dyn LeaseTable, xid: u32, all: bool) {
        // §5.3.5/§5.3.6: UPDREQ = everything not yet acknowledged; UPDREQALL = everything.
        // A new UPDREQALL replaces a walk in progress; an UPDREQ waits for it too (below).
        if all {
            // The walk sends every client with its current records: the queued changes
            // are part of it.
            self.queue.retain(|(k, _)| matches!(k, UpdateKey::Pool(..)));
            self.queued.retain(|k| matches!(k, UpdateKey::Pool(..)));
            let seq = self.next_seq;
            self.next_seq += 1;
            self.resync = Some(Resync::plan(&*table, &self.hasher, seq));
        } else {
            let mut keys = Vec::new();
            table.for_each(&mut |l: &Lease| {
                if l.update_pending {
                    keys.push(l.resource);
                }
            });
            for r in keys {
                self.enqueue(UpdateKey::Lease(r));
            }
        }
        if self.cfg.role == Role::Primary {
            let moves: Vec<(Resource, PoolStatus)> = self
                .pool
                .iter()
                .filter(|(_, s)| *s == PoolStatus::FreeBackup)
                .collect();
            for (r, s) in moves {
                self.enqueue(UpdateKey::Pool(r, s));
            }
        }
        self.answering = Some((xid, self.next_seq));
    }

    fn maybe_update_done(&mut self) {
        let Some((xid, mark)) = self.answering else {
            return;
        };
        if self.resync.is_some() {
            return;
        }
        let queued_before = self
            .queue
            .iter()
            .any(|(k, s)| *s < mark && self.queued.contains(k));
        let outstanding_before = self.outstanding.values().any(|o| o.seq < mark);
        if !queued_before && !outstanding_before {
            self.answering = None;
            self.control.push_back(Control::UpdateDone { xid });
        }
    }

    fn on_update_done(&mut self, now: Timestamp, table: &mut dyn LeaseTable, xid: u32) {
        if self.update_request != Some(xid) {
            self.counters.unexpected += 1;
            return;
        }
        self.update_request = None;
        match (self.state.name(), self.cfg.role) {
            (ServerState::Recover, _) => self.transition(now, table, ServerState::RecoverWait),
            (ServerState::PotentialConflict, Role::Primary) => {
                self.transition(now, table, ServerState::ConflictDone)
            }
            (ServerState::PotentialConflict, Role::Secondary) => {
                self.transition(now, table, ServerState::Normal)
            }
            _ => {}
        }
    }

    /// BNDUPDs flow whenever communications are OK, except that a server resolving a
    /// conflict or recovering only sends what its partner asked for (Figure 9 order).
    fn may_send_updates(&self) -> bool {
        if !self.comms_ok() {
            return false;
        }
        match self.state.name() {
            ServerState::Startup => false,
            ServerState::PotentialConflict | ServerState::Recover => self.answering.is_some(),
            _ => true,
        }
    }

    /// No update waiting (queued or in an UPDREQALL walk) and none unacknowledged.
    fn nothing_to_send(&self) -> bool {
        self.queued.is_empty() && self.resync.is_none() && self.outstanding.is_empty()
    }

    fn queue_pending(&mut self, table: &mut dyn LeaseTable) {
        let mut keys = Vec::new();
        table.for_each(&mut |l: &Lease| {
            if l.update_pending {
                keys.push(l.resource);
            }
        });
        for r in keys {
            self.enqueue(UpdateKey::Lease(r));
        }
    }

    fn enqueue(&mut self, key: UpdateKey) {
        if self.queued.insert(key) {
            self.queue.push_back((key, self.next_seq));
            self.next_seq += 1;
        }
    }

    /// Periodic work (§7.5.4 scan, §4.2.2 rebalancing, §8.4.1 PARTNER-DOWN reclamation).
    fn scan(&mut self, now: Timestamp, table: &mut dyn LeaseTable) {
        // During an UPDREQALL walk the flagged leases go out with it.
        if self.comms_ok() && self.queued.is_empty() && self.resync.is_none() {
            let inflight: HashSet<Resource> = self
                .outstanding
                .values()
                .flat_map(|o| o.leases.iter().map(|l| l.resource))
                .collect();
            let mut keys = Vec::new();
            table.for_each(&mut |l: &Lease| {
                if l.update_pending && !inflight.contains(&l.resource) {
                    keys.push(l.resource);
                }
            });
            for r in keys {
                self.enqueue(UpdateKey::Lease(r));
            }
            if self.cfg.role == Role::Primary && self.state.name() == ServerState::Normal {
                self.rebalance(table);
            }
        }
        // Acknowledged EXPIRED/RELEASED records held past a recovering partner's
        // acknowledgement ([`Endpoint::acknowledged`]) become free at their deadline.
        let now_s = now.secs();
        let mut held = Vec::new();
        table.for_each(&mut |l: &Lease| {
            if matches!(l.state, BindingState::Expired | BindingState::Released)
                && !l.update_pending
                && l.expires_at <= now_s
            {
                held.push(l.resource);
            }
        });
        if !held.is_empty() {
            for r in held {
                let _ = table.remove(&r);
            }
            let _ = table.commit();
        }
        if let State::PartnerDown(pd) = self.state {
            // Figure 2 (4): in PARTNER-DOWN an EXPIRED/RELEASED lease becomes free once
            // MCLT has passed, bounded below by §8.4.1's reuse time.
            let mclt = self.persistent.mclt;
            let subnets = &self.cfg.subnets;
            let mut free = Vec::new();
            table.for_each(&mut |l: &Lease| {
                if matches!(l.state, BindingState::Expired | BindingState::Released) {
                    let client_end = l.cltt.saturating_add(u64::from(l.valid_lifetime));
                    let start = binding::start_time_of_state(l);
                    let desired = subnets
                        .get(l.subnet as usize)
                        .map_or(l.valid_lifetime, |s| s.desired_valid.max(l.valid_lifetime));
                    let at =
                        super::mclt::reuse_time(l, client_end.max(start), pd.since, mclt, desired);
                    if now_s >= at {
                        free.push(*l);
                    }
                }
            });
            for l in free {
                if l.resource.is_prefix() && self.pool.contains(&l.resource) {
                    self.pool.set(&l.resource, PoolStatus::Free);
                    self.events.push_back(Event::PoolChanged);
                }
                // Keep the record flagged until acknowledged? It no longer exists: the
                // partner learns the resource is free from its own expiry or from our
                // database after recovery (UPDREQ sends what is flagged; a freed
                // resource needs no update).
                let _ = table.remove(&l.resource);
            }
            let _ = table.commit();
        }
    }

    fn rebalance(&mut self, table: &mut dyn LeaseTable) {
        if self.cfg.role != Role::Primary || self.cfg.pd_pools.is_empty() {
            return;
        }
        let mut moves = Vec::new();
        let is_free = |r: &Resource| {
            table
                .by_resource(r)
                .is_none_or(|l| !binding::holds_resource(&l))
        };
        self.pool.rebalance(
            self.cfg.secondary_prefix_share,
            self.cfg.rebalance_threshold,
            &is_free,
            &mut moves,
        );
        if !moves.is_empty() {
            self.events.push_back(Event::PoolChanged);
        }
        for (r, s) in moves {
            self.enqueue(UpdateKey::Pool(r, s));
        }
    }

    // ----- emitting ------------------------------------------------------------------

    fn emit_update(
        &mut self,
        now: Timestamp,
        table: &mut dyn LeaseTable,
        key: UpdateKey,
        seq: u64,
        buf: &mut Vec<u8>,
    ) -> bool {
        let base = now.secs();
        let mut u = std::mem::take(&mut self.scratch);
        u.records.clear();
        u.top_status = None;
        u.base_time = binding::to_wire(base);
        let mut sent = self.spare_sent.pop().unwrap_or_default();
        match key {
            UpdateKey::Pool(r, status) => {
                u.subject = Subject::Prefix;
                let st = match status {
                    PoolStatus::FreeBackup => BindingState::FreeBackup,
                    _ => BindingState::Free,
                };
                u.records.push(LeaseRecord {
                    ia_type: IaType::Pd,
                    iaid: 0,
                    t1: 0,
                    t2: 0,
                    resource: r,
                    preferred_lifetime: 0,
                    valid_lifetime: 0,
                    status: st,
                    start_time_of_state: Some(u.base_time),
                    state_expiration_time: None,
                    clt_time: None,
                    partner_lifetime: None,
                    partner_raw_clt_time: None,
                    expiration_time: None,
                    partner_lifetime_sent: None,
                    status_code: None,
                });
            }
            UpdateKey::Lease(r) => {
                let Some(lease) = table.by_resource(&r) else {
                    self.scratch = u;
                    return false;
                };
                // One OPTION_CLIENT_DATA with every binding of the client (§7.4).
                self.leases.clear();
                table.client_leases(&lease.duid, &mut self.leases);
                self.leases.sort_by_key(|l| (l.ia_type, l.iaid, l.resource));
                u.subject = Subject::Client(lease.duid);
                for l in &self.leases {
                    self.queued.remove(&UpdateKey::Lease(l.resource));
                    if let Some(w) = &mut self.resync {
                        // Sent after the UPDREQALL: the walk need not send it again.
                        w.sent_by_queue.insert(l.resource);
                    }
                    push_record(&self.cfg, &mut u, &mut sent, l, u32::MAX, base);
                }
                if u.records.is_empty() {
                    self.scratch = u;
                    return false;
                }
            }
        }
        // While an UPDREQALL walk runs, every BNDUPD belongs to the answer: UPDDONE waits
        // for its acknowledgement too (a change the queue sent instead of the walk).
        let seq = self.resync.as_ref().map_or(seq, |w| w.seq);
        self.send_update(now, key, seq, u, sent, buf)
    }

    /// Frames the BNDUPD in `u` (the scratch record set, returned to `self.scratch`) and
    /// records it as outstanding.
    fn send_update(
        &mut self,
        now: Timestamp,
        key: UpdateKey,
        seq: u64,
        u: BindingUpdateRepr,
        sent: Vec<SentLease>,
        buf: &mut Vec<u8>,
    ) -> bool {
        let xid = Self::alloc_xid(&mut self.next_xid, &self.outstanding, self.update_request);
        let mut b = Builder::new(buf, MessageType::Bndupd, xid, now.secs_since_2000());
        u.emit(&mut b, false);
        let ok = b.finish().is_ok();
        self.scratch = u;
        if ok {
            self.outstanding.insert(
                xid,
                Outstanding {
                    key,
                    seq,
                    sent_at: now,
                    leases: sent,
                },
            );
        } else if self.spare_sent.len() < SPARE_BUFFERS {
            self.spare_sent.push(sent);
        }
        ok
    }

    /// The next client of an UPDREQALL walk ([`Resync`]) as one BNDUPD; `false` once the
    /// walk is over (every client of the plan sent, or gone from the table).
    fn emit_resync(
        &mut self,
        now: Timestamp,
        table: &mut dyn LeaseTable,
        buf: &mut Vec<u8>,
    ) -> bool {
        let Some(mut w) = self.resync.take() else {
            return false;
        };
        let base = now.secs();
        let mut u = std::mem::take(&mut self.scratch);
        u.top_status = None;
        u.base_time = binding::to_wire(base);
        let mut sent = self.spare_sent.pop().unwrap_or_default();
        let mut emitted = false;
        while w.next_run < w.runs.len() {
            let run = w.next_run;
            w.next_run += 1;
            if w.runs[run].merged {
                continue;
            }
            // This client's later runs, if its records are not all adjacent.
            let first_extra = w.next_extra;
            while w.next_extra < w.extra.len() && w.extra[w.next_extra].0 as usize == run {
                w.next_extra += 1;
            }
            u.records.clear();
            sent.clear();
            let digest = w.runs[run].digest;
            let mut client: Option<Duid> = None;
            let runs = std::iter::once(run).chain(
                w.extra[first_extra..w.next_extra]
                    .iter()
                    .map(|&(_, r)| r as usize),
            );
            for r in runs {
                for pos in w.run_positions(r) {
                    let resource = w.entries[pos as usize];
                    let copy;
                    let l: &Lease = match table.record_at(pos as usize) {
                        Some(l) if l.resource == resource => l,
                        // Moved by a removal since the plan was made.
                        _ => match table.by_resource(&resource) {
                            Some(l) => {
                                copy = l;
                                &copy
                            }
                            None => continue,
                        },
                    };
                    match &client {
                        // The resource went to another client since: that change is queued,
                        // and the planned client is found by its other records.
                        None if self.hasher.hash_one(l.duid.as_bytes()) != digest => continue,
                        None => client = Some(l.duid),
                        Some(c) if *c != l.duid => continue,
                        Some(_) => {}
                    }
                    if !w.sent_by_queue.is_empty() && w.sent_by_queue.contains(&resource) {
                        continue;
                    }
                    push_record(&self.cfg, &mut u, &mut sent, l, pos, base);
                }
            }
            let Some(duid) = client else {
                continue; // every record of the client is gone
            };
            if !self.queued.is_empty() {
                // Changes are waiting: the client may hold records the plan does not know
                // (granted since the request). §7.4: all of a client's bindings in one
                // OPTION_CLIENT_DATA, so send its whole current set, queued changes
                // included.
                u.records.clear();
                sent.clear();
                let mut leases = std::mem::take(&mut self.leases);
                leases.clear();
                table.client_leases(&duid, &mut leases);
                for l in &leases {
                    if w.sent_by_queue.contains(&l.resource) {
                        continue;
                    }
                    self.queued.remove(&UpdateKey::Lease(l.resource));
                    push_record(&self.cfg, &mut u, &mut sent, l, u32::MAX, base);
                }
                self.leases = leases;
            }
            let Some(first) = sent.first().map(|s| s.resource) else {
                continue;
            };
            u.records.sort_by_key(|r| (r.ia_type, r.iaid, r.resource));
            u.subject = Subject::Client(duid);
            let seq = w.seq;
            let sent = std::mem::take(&mut sent);
            emitted = self.send_update(now, UpdateKey::Lease(first), seq, u, sent, buf);
            u = std::mem::take(&mut self.scratch);
            if emitted {
                break;
            }
        }
        self.scratch = u;
        if sent.capacity() > 0 && self.spare_sent.len() < SPARE_BUFFERS {
            self.spare_sent.push(sent);
        }
        if w.remaining() > 0 {
            self.resync = Some(w);
        }
        emitted
    }

    fn emit_control(
        &mut self,
        now: Timestamp,
        c: &Control,
        buf: &mut Vec<u8>,
    ) -> Option<MessageType> {
        let t = now.secs_since_2000();
        let (kind, xid) = match c {
            Control::Connect => (
                MessageType::Connect,
                Self::alloc_xid(&mut self.next_xid, &self.outstanding, self.update_request),
            ),
            Control::ConnectReply { xid, .. } => (MessageType::Connectreply, *xid),
            Control::State(_) => (
                MessageType::State,
                Self::alloc_xid(&mut self.next_xid, &self.outstanding, self.update_request),
            ),
            Control::Contact => (
                MessageType::Contact,
                Self::alloc_xid(&mut self.next_xid, &self.outstanding, self.update_request),
            ),
            Control::Disconnect(_) => (
                MessageType::Disconnect,
                Self::alloc_xid(&mut self.next_xid, &self.outstanding, self.update_request),
            ),
            Control::UpdateRequest { xid, all } => (
                // §8.5.2: the UPDDONE timeout runs from the request (and each BNDUPD).
                {
                    self.last_update_rx = now;
                    if *all {
                        MessageType::Updreqall
                    } else {
                        MessageType::Updreq
                    }
                },
                *xid,
            ),
            Control::UpdateDone { xid } => (MessageType::Upddone, *xid),
            Control::PoolRequest => (
                MessageType::Poolreq,
                Self::alloc_xid(&mut self.next_xid, &self.outstanding, self.update_request),
            ),
            Control::PoolResponse { xid } => (MessageType::Poolresp, *xid),
            Control::BindingReply { xid, .. } | Control::BindingReplyError { xid, .. } => {
                (MessageType::Bndreply, *xid)
            }
        };
        let mut b = Builder::new(buf, kind, xid, t);
        match c {
            Control::Connect | Control::ConnectReply { status: None, .. } => {
                self.connect_repr().emit(&mut b)
            }
            Control::ConnectReply {
                status: Some(code), ..
            } => {
                b.status(*code, "");
            }
            Control::State(s) => s.emit(&mut b),
            Control::Disconnect(code) => {
                b.status(*code, "");
            }
            Control::BindingReply { reply, .. } => reply.emit(&mut b, true),
            Control::BindingReplyError { code, .. } => {
                b.status(*code, "");
            }
            Control::Contact
            | Control::UpdateRequest { .. }
            | Control::UpdateDone { .. }
            | Control::PoolRequest
            | Control::PoolResponse { .. } => {}
        }
        b.finish().ok().map(|_| kind)
    }

    fn connect_repr(&self) -> ConnectRepr<'_> {
        ConnectRepr {
            protocol_version: PROTOCOL_VERSION,
            mclt: self.persistent.mclt,
            keepalive_time: self.cfg.keepalive_time,
            max_unacked_bndupd: self.cfg.max_unacked_bndupd,
            relationship_name: self.cfg.relationship_name.as_deref(),
            connect_flags: self.cfg.connect_flags,
        }
    }

    fn push_state(&mut self) {
        let s = self.state_repr();
        self.control.push_back(Control::State(s));
    }

    fn state_repr(&self) -> StateRepr {
        let mut flags = 0;
        if self.persistent.communicated {
            flags |= ServerFlags::COMMUNICATED;
        }
        let (state, start) = match self.state {
            // §6.3: in STARTUP, the previous state with the STARTUP flag.
            State::Startup(s) => {
                flags |= ServerFlags::STARTUP;
                (s.previous, self.persistent.start_time_of_state)
            }
            _ => (self.state.name(), self.persistent.start_time_of_state),
        };
        if self.saw_partner_startup {
            flags |= ServerFlags::ACK_STARTUP;
        }
        StateRepr {
            state,
            flags: ServerFlags(flags),
            start_time_of_state: binding::to_wire(start),
            partner_down_time: match self.state {
                State::PartnerDown(pd) => Some(binding::to_wire(pd.since)),
                _ => None,
            },
        }
    }

    fn sent(&mut self, now: Timestamp, kind: MessageType) {
        self.counters.sent[kind as usize] += 1;
        // §6.5: every sent message resets FO_SEND_TIMER.
        if matches!(self.link, Link::Up { .. }) {
            self.send_deadline = Some(self.after(now, self.send_time()));
        }
    }

    /// FO_SEND_TIME = partner's keepalive / FO_CONTACT_PER_KEEPALIVE_TIME (§6.5).
    fn send_time(&self) -> u32 {
        (self.partner_keepalive / self.cfg.contacts_per_keepalive.max(1)).max(1)
    }

    fn after(&self, t: Timestamp, secs: u32) -> Timestamp {
        t.saturating_add(std::time::Duration::from_secs(u64::from(secs)))
    }

    fn close(&mut self, reason: CloseReason) {
        self.events.push_back(Event::CloseConnection(reason));
    }

    /// 24-bit transaction ids (§5.4), skipping ids in use by outstanding BNDUPDs and by our
    /// own outstanding UPDREQ/UPDREQALL.
    fn alloc_xid(
        next: &mut u32,
        outstanding: &HashMap<u32, Outstanding>,
        reserved: Option<u32>,
    ) -> u32 {
        loop {
            let xid = *next & 0x00ff_ffff;
            *next = next.wrapping_add(1);
            if xid != 0 && !outstanding.contains_key(&xid) && Some(xid) != reserved {
                return xid;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::memory::MemoryTable;

    const T0: u64 = 1_800_000_000_000;

    struct Side {
        ep: Endpoint,
        table: MemoryTable,
    }

    fn pair(mclt: u32) -> (Side, Side) {
        let mut pc = FailoverConfig::new(Role::Primary);
        pc.mclt = mclt;
        let mut sc = FailoverConfig::new(Role::Secondary);
        sc.mclt = 1;
        let now = Timestamp(T0);
        (
            Side {
                ep: Endpoint::new(pc, None, now),
                table: MemoryTable::new(),
            },
            Side {
                ep: Endpoint::new(sc, None, now),
                table: MemoryTable::new(),
            },
        )
    }

    /// `secs` seconds after the tests' epoch.
    fn t(secs: u64) -> Timestamp {
        Timestamp(T0 + secs * 1000)
    }

    /// A pair that connected at `t(1)` and exchanged everything it had to say (NORMAL).
    fn connected_pair(mclt: u32) -> (Side, Side) {
        let (mut p, mut s) = pair(mclt);
        p.ep.handle_connected(t(1));
        s.ep.handle_connected(t(1));
        drive(&mut p, &mut s, t(1));
        (p, s)
    }

    /// Delivers everything both sides want to send until both are quiet.
    fn drive(a: &mut Side, b: &mut Side, now: Timestamp) {
        fn step(x: &mut Side, y: &mut Side, now: Timestamp) -> bool {
            let mut buf = Vec::new();
            let mut moved = false;
            while x.ep.poll_transmit(now, &mut x.table, &mut buf) {
                moved = true;
            }
            let used = y.ep.handle_stream(now, &buf, &mut y.table);
            assert_eq!(used, buf.len());
            while let Some(e) = x.ep.poll_event() {
                eprintln!("{:?}: {e:?}", x.ep.role());
            }
            moved
        }
        for _ in 0..10_000 {
            let m1 = step(a, b, now);
            let m2 = step(b, a, now);
            if !m1 && !m2 {
                return;
            }
        }
        panic!("pair did not settle");
    }

    #[test]
    fn fresh_pair_reaches_normal_without_waiting() {
        let (p, s) = connected_pair(600);
        assert_eq!(p.ep.server_state(), ServerState::Normal);
        assert_eq!(s.ep.server_state(), ServerState::Normal);
        // The secondary adopted the primary's MCLT (§6.1.2).
        assert_eq!(s.ep.mclt(), 600);
        assert!(p.ep.persistent().communicated && s.ep.persistent().communicated);
    }

    #[test]
    fn excessive_skew_rejects_connect() {
        let (mut p, mut s) = pair(600);
        p.ep.handle_connected(Timestamp(T0));
        s.ep.handle_connected(Timestamp(T0 + 6000));
        let mut buf = Vec::new();
        assert!(p.ep.poll_transmit(Timestamp(T0), &mut p.table, &mut buf));
        s.ep.handle_stream(Timestamp(T0 + 6000), &buf, &mut s.table);
        let mut closed = false;
        while let Some(e) = s.ep.poll_event() {
            closed |= e
                == Event::CloseConnection(CloseReason::RejectedPartner(
                    StatusCode::ExcessiveTimeSkew,
                ));
        }
        assert!(closed);
        assert_eq!(s.ep.counters().skewed, 1);
    }
    /// Regression (simulation seeds 37 and 129): a partner that lost its storage and
    /// recovers with UPDREQALL may have renewed a client before the loss whose lease this
    /// server has as RELEASED. Neither its acknowledgement here nor its own copy may free
    /// the resource before such a lost grant has ended (`mclt::recovery_hold`).
    #[test]
    fn released_lease_stays_held_across_a_partner_storage_loss() {
        // The secondary of this pair is replaced below by one that lost its storage.
        let (mut p, _) = connected_pair(60);
        assert_eq!(p.ep.server_state(), ServerState::Normal);
        // Apart; the client releases its prefix at the primary.
        p.ep.handle_disconnected(t(10), &mut p.table);
        let r = Resource::prefix("2001:db8:100:300::".parse().unwrap(), 56);
        let mut l = Lease {
            resource: r,
            ia_type: IaType::Pd,
            duid: Duid::new(&[0, 4, 5]).unwrap(),
            iaid: 5,
            state: BindingState::Active,
            preferred_lifetime: 300,
            valid_lifetime: 600,
            cltt: T0 / 1000 - 100,
            expires_at: T0 / 1000 + 500,
            subnet: 0,
            partner_lifetime: T0 / 1000 + 800,
            update_pending: false,
        };
        binding::release(&mut l, T0 / 1000 + 20);
        p.table.upsert(l).unwrap();
        p.ep.lease_changed(r);
        // The secondary loses its storage and comes back empty: RECOVER, UPDREQALL.
        let mut sc = FailoverConfig::new(Role::Secondary);
        sc.mclt = 1;
        let mut s = Side {
            ep: Endpoint::new(sc, None, t(30)),
            table: MemoryTable::new(),
        };
        p.ep.handle_connected(t(40));
        s.ep.handle_connected(t(40));
        drive(&mut p, &mut s, t(40));
        assert_eq!(s.ep.counters().sent[29], 1, "UPDREQALL");
        let now_s = T0 / 1000 + 40;
        let hold = now_s + 600 * 3 / 2 + 60;
        for (side, who) in [(&p, "answering primary"), (&s, "recovering secondary")] {
            let got = side.table.by_resource(&r).expect(who);
            assert_eq!(got.state, BindingState::Released, "{who}");
            assert!(!got.update_pending, "{who}: acknowledged");
            assert!(
                got.expires_at >= hold,
                "{who}: held until {}",
                got.expires_at
            );
            assert!(binding::holds_resource(&got), "{who}");
        }
        // The periodic scan frees it at the deadline, not before.
        for side in [&mut p, &mut s] {
            let deadline = side.table.by_resource(&r).unwrap().expires_at;
            side.ep
                .handle_timeout(Timestamp((deadline - 1) * 1000), &mut side.table);
            assert!(side.table.by_resource(&r).is_some());
            side.ep
                .handle_timeout(Timestamp(deadline * 1000 + 120_000), &mut side.table);
            assert!(side.table.by_resource(&r).is_none());
        }
    }
    /// Regression (simulation seed 263, docs/FAILOVER.md D13): a server that lost its
    /// storage and meets a partner resolving a conflict recovers with UPDREQALL and waits
    /// out RECOVER-WAIT before it joins, instead of joining POTENTIAL-CONFLICT at once and
    /// allocating from an empty database in CONFLICT-DONE.
    #[test]
    fn lost_storage_recovers_before_joining_a_conflict_resolution() {
        let (mut p, mut s) = connected_pair(60);
        // Apart; the operator (wrongly) declares the primary down: the pair meets in
        // POTENTIAL-CONFLICT, and is cut apart again before it resolves anything.
        p.ep.handle_disconnected(t(10), &mut p.table);
        s.ep.handle_disconnected(t(10), &mut s.table);
        s.ep.partner_down(t(11), &mut s.table).unwrap();
        p.ep.handle_connected(t(12));
        s.ep.handle_connected(t(12));
        for _ in 0..20 {
            if p.ep.server_state() == ServerState::PotentialConflict
                && s.ep.server_state() == ServerState::PotentialConflict
            {
                break;
            }
            fn one(x: &mut Side, y: &mut Side, now: Timestamp) {
                let mut buf = Vec::new();
                if x.ep.poll_transmit(now, &mut x.table, &mut buf) {
                    y.ep.handle_stream(now, &buf, &mut y.table);
                }
                while x.ep.poll_event().is_some() {}
            }
            one(&mut p, &mut s, t(12));
            one(&mut s, &mut p, t(12));
        }
        assert_eq!(s.ep.server_state(), ServerState::PotentialConflict);
        s.ep.handle_disconnected(t(13), &mut s.table);
        assert_eq!(s.ep.server_state(), ServerState::ResolutionInterrupted);
        let r = Resource::address("2001:db8:1::2".parse().unwrap());
        s.table
            .upsert(Lease {
                resource: r,
                ia_type: IaType::Na,
                duid: Duid::new(&[0, 4, 9]).unwrap(),
                iaid: 1,
                state: BindingState::Active,
                preferred_lifetime: 300,
                valid_lifetime: 600,
                cltt: T0 / 1000 + 12,
                expires_at: T0 / 1000 + 612,
                subnet: 0,
                partner_lifetime: 0,
                update_pending: false,
            })
            .unwrap();
        // The primary loses its storage and comes back while the secondary resolves.
        let mut pc = FailoverConfig::new(Role::Primary);
        pc.mclt = 60;
        pc.startup_time = 5;
        p = Side {
            ep: Endpoint::new(pc, None, t(30)),
            table: MemoryTable::new(),
        };
        p.ep.handle_connected(t(31));
        s.ep.handle_connected(t(31));
        drive(&mut p, &mut s, t(31));
        p.ep.handle_timeout(t(36), &mut p.table);
        drive(&mut p, &mut s, t(36));
        assert_eq!(s.ep.server_state(), ServerState::PotentialConflict);
        assert_eq!(p.ep.counters().sent[29], 1, "UPDREQALL");
        assert_eq!(p.ep.server_state(), ServerState::RecoverWait);
        assert!(
            p.table.by_resource(&r).is_some(),
            "the secondary's lease arrived"
        );
        // After RECOVER-WAIT the resolution completes.
        for secs in (40..=120).step_by(5) {
            p.ep.handle_timeout(t(secs), &mut p.table);
            s.ep.handle_timeout(t(secs), &mut s.table);
            drive(&mut p, &mut s, t(secs));
        }
        assert_eq!(p.ep.server_state(), ServerState::Normal);
        assert_eq!(s.ep.server_state(), ServerState::Normal);
    }
    /// Regression (simulation seed 433, docs/FAILOVER.md D11): a server in PARTNER-DOWN
    /// whose partner reached RECOVER-DONE while they were apart sends the leases it granted
    /// meanwhile before it enters NORMAL, so the partner never allocates in NORMAL without
    /// knowing them (here after a restart, when they are only flagged in the table).
    #[test]
    fn partner_down_sends_its_leases_before_normal() {
        let (mut p, mut s) = connected_pair(60);
        // The primary crashes; the operator declares it down at the secondary.
        s.ep.handle_disconnected(t(10), &mut s.table);
        s.ep.partner_down(t(11), &mut s.table).unwrap();
        let persisted = p.ep.persistent();
        let mut pc = FailoverConfig::new(Role::Primary);
        pc.mclt = 60;
        p.ep = Endpoint::new(pc, Some(persisted), t(20));
        p.ep.handle_connected(t(21));
        s.ep.handle_connected(t(21));
        drive(&mut p, &mut s, t(21));
        assert_eq!(p.ep.server_state(), ServerState::RecoverWait);
        assert_eq!(s.ep.server_state(), ServerState::PartnerDown);
        // Apart again; the secondary keeps serving in PARTNER-DOWN.
        p.ep.handle_disconnected(t(30), &mut p.table);
        s.ep.handle_disconnected(t(30), &mut s.table);
        let r = Resource::prefix("2001:db8:100:400::".parse().unwrap(), 56);
        let now_s = T0 / 1000 + 40;
        s.table
            .upsert(Lease {
                resource: r,
                ia_type: IaType::Pd,
                duid: Duid::new(&[0, 4, 30]).unwrap(),
                iaid: 30,
                state: BindingState::Active,
                preferred_lifetime: 300,
                valid_lifetime: 600,
                cltt: now_s,
                expires_at: now_s + 600,
                subnet: 0,
                partner_lifetime: 0,
                update_pending: true,
            })
            .unwrap();
        // The secondary restarts (storage intact): the lease is only flagged in its table.
        let persisted = s.ep.persistent();
        let mut sc = FailoverConfig::new(Role::Secondary);
        sc.mclt = 1;
        s.ep = Endpoint::new(sc, Some(persisted), t(50));
        p.ep.handle_timeout(t(200), &mut p.table);
        assert_eq!(p.ep.server_state(), ServerState::RecoverDone);
        p.ep.handle_connected(t(201));
        s.ep.handle_connected(t(201));
        // Step by step: whenever the primary is in NORMAL it knows the lease.
        // One frame at a time (RFC 5460 framing: 2-octet length first), checking after each.
        fn one_way(x: &mut Side, y: &mut Side, now: Timestamp, r: &Resource) -> bool {
            let mut buf = Vec::new();
            while x.ep.poll_transmit(now, &mut x.table, &mut buf) {}
            let mut at = 0;
            while at + 2 <= buf.len() {
                let end = at + 2 + usize::from(u16::from_be_bytes([buf[at], buf[at + 1]]));
                y.ep.handle_stream(now, &buf[at..end], &mut y.table);
                while y.ep.poll_event().is_some() {}
                if y.ep.role() == Role::Primary && y.ep.server_state() == ServerState::Normal {
                    assert!(y.table.by_resource(r).is_some(), "NORMAL before the BNDUPD");
                }
                at = end;
            }
            !buf.is_empty()
        }
        for _ in 0..100 {
            let a = one_way(&mut s, &mut p, t(201), &r);
            let b = one_way(&mut p, &mut s, t(201), &r);
            if !a && !b {
                break;
            }
        }
        assert_eq!(p.ep.server_state(), ServerState::Normal);
        assert_eq!(s.ep.server_state(), ServerState::Normal);
    }
}

/// The UPDREQALL walk ([`Resync`]) against a model: what was sent, when, and in which
/// window.
#[cfg(test)]
mod resync_tests {
    use super::*;
    use crate::lease::memory::MemoryTable;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const T0: u64 = 1_800_000_000_000;

    fn duid(c: u16) -> Duid {
        let b = c.to_be_bytes();
        Duid::new(&[0, 3, 0, 1, 0x02, 0x42, 0xac, 0x11, b[0], b[1]]).unwrap()
    }

    fn lease(c: u16, pd: bool, cltt: u64) -> Lease {
        let n = u128::from(c);
        Lease {
            resource: if pd {
                Resource::prefix((0x2001_0db8_0100_0000u128 << 64 | n << 72).into(), 56)
            } else {
                Resource::address((0x2001_0db8_0001_0000u128 << 64 | n << 1 | 1).into())
            },
            ia_type: if pd { IaType::Pd } else { IaType::Na },
            duid: duid(c),
            iaid: u32::from(pd),
            state: BindingState::Active,
            preferred_lifetime: 1800,
            valid_lifetime: 3600,
            cltt,
            expires_at: cltt + 3600,
            subnet: 0,
            partner_lifetime: cltt + 3600,
            update_pending: false,
        }
    }

    /// Something the engine or the table does to the answering server mid-resync.
    #[derive(Clone, Debug)]
    enum Change {
        /// The client renews lease `i` of the initial set (flagged, `lease_changed`).
        Renew(usize),
        /// Record `i` disappears (e.g. a declined address's quarantine ends): the table
        /// moves its last record into the hole.
        Remove(usize),
        /// A new client is granted an address.
        NewClient(u16),
        /// The connection drops and comes back: the partner, still in RECOVER, asks
        /// again with UPDREQALL.
        Reconnect,
        /// Record `i` is released and given to a new client (flagged, `lease_changed`).
        Reassign(usize, u16),
    }

    struct Side {
        ep: Endpoint,
        table: MemoryTable,
    }

    fn side(role: Role, window: u32, now: Timestamp) -> Side {
        let mut c = FailoverConfig::new(role);
        c.mclt = 60;
        c.max_unacked_bndupd = window;
        Side {
            ep: Endpoint::new(c, None, now),
            table: MemoryTable::new(),
        }
    }

    /// Everything `x` has to send (framed messages), delivered to `y`.
    fn flush(x: &mut Side, y: &mut Side, now: Timestamp) -> bool {
        let mut buf = Vec::new();
        while x.ep.poll_transmit(now, &mut x.table, &mut buf) {}
        while x.ep.poll_event().is_some() {}
        y.ep.handle_stream(now, &buf, &mut y.table);
        while y.ep.poll_event().is_some() {}
        !buf.is_empty()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Every binding the primary holds when the UPDREQALL arrives goes out exactly once
        /// unless it changes; a changed one goes out again after its change; a client's
        /// records travel together; never more than the partner's MAX_UNACKED_BNDUPD are
        /// unacknowledged; UPDDONE comes last, once every BNDUPD is acknowledged; and the
        /// partner ends with the primary's bindings.
        #[test]
        fn updreqall_walk(
            // Per client: 0 = address only, 1 = prefix only, 2 = both; whether the prefix
            // was granted later (records not adjacent).
            clients in proptest::collection::vec((0u8..3, any::<bool>()), 1..40),
            window in 1u32..6,
            burst in 1usize..5,
            changes in proptest::collection::vec((0usize..40, 0u8..5, 0usize..80), 0..8),
        ) {
            let now = Timestamp(T0);
            let now_s = now.secs();
            let mut p = side(Role::Primary, 8, now);
            let mut s = side(Role::Secondary, window, now);
            p.ep.handle_connected(now);
            s.ep.handle_connected(now);
            while flush(&mut p, &mut s, now) | flush(&mut s, &mut p, now) {}
            prop_assert_eq!(p.ep.server_state(), ServerState::Normal);

            // The primary's bindings, in grant order.
            let mut initial = Vec::new();
            let mut later = Vec::new();
            for (c, &(kind, split)) in clients.iter().enumerate() {
                let c = c as u16;
                let cltt = now_s - 600 + u64::from(c);
                if kind != 1 {
                    initial.push(lease(c, false, cltt));
                }
                if kind != 0 {
                    if split && kind == 2 {
                        later.push(lease(c, true, cltt));
                    } else {
                        initial.push(lease(c, true, cltt));
                    }
                }
            }
            initial.extend(later);
            for l in &initial {
                p.table.upsert(*l).unwrap();
            }
            // The secondary loses its storage: RECOVER, UPDREQALL.
            s = side(Role::Secondary, window, now);
            p.ep.handle_disconnected(now, &mut p.table);
            p.ep.handle_connected(now);
            s.ep.handle_connected(now);

            let mut changes: Vec<(usize, Change)> = changes
                .into_iter()
                .map(|(i, kind, at)| {
                    let i = i % initial.len();
                    let change = match kind {
                        0 => Change::Renew(i),
                        1 => Change::Remove(i),
                        2 => Change::NewClient(1000 + at as u16),
                        3 => Change::Reconnect,
                        _ => Change::Reassign(i, 2000 + at as u16),
                    };
                    (at, change)
                })
                .collect();
            changes.sort_by_key(|c| c.0);

            let mut sends: BTreeMap<Resource, Vec<usize>> = BTreeMap::new();
            let mut changed_at: BTreeMap<Resource, usize> = BTreeMap::new();
            let mut removed = Vec::new();
            let mut updreqall_seen = false;
            let mut upddone_at = None;
            let mut reconnected = false;
            let mut last_request = 0;
            let mut answer_xids = Vec::new();
            let mut acked = Vec::new();
            let mut step = 0usize;
            let mut next_change = 0;
            for _round in 0..10_000 {
                // The primary sends up to `burst` messages, one at a time.
                let mut buf = Vec::new();
                let mut n = 0;
                while n < burst {
                    let before = buf.len();
                    if !p.ep.poll_transmit(now, &mut p.table, &mut buf) {
                        break;
                    }
                    n += 1;
                    prop_assert!(p.ep.unacked() <= window as usize, "window");
                    let Ok(wire::Frame::Complete { message, .. }) = wire::split_frame(&buf[before..]) else {
                        panic!("one frame");
                    };
                    let m = Message::new_checked(message).unwrap();
                    match m.msg_type() {
                        Some(MessageType::Bndupd) if updreqall_seen => {
                            let mut u = BindingUpdateRepr::default();
                            u.parse(m.options(), false).unwrap();
                            let Subject::Client(d) = u.subject else { panic!("client update") };
                            let client_changed = changed_at.keys().any(|c| {
                                p.table.by_resource(c).is_some_and(|x| x.duid == d)
                            });
                            // Part of the answer: UPDDONE must wait for its BNDREPLY.
                            if upddone_at.is_none() && !client_changed {
                                answer_xids.push(m.transaction_id());
                            }
                            // §7.4: the client's records, all of them, in one update
                            // (those the queue already sent since the request aside).
                            let mut all = Vec::new();
                            p.table.client_leases(&d, &mut all);
                            for rec in &u.records {
                                prop_assert!(all.iter().any(|l| l.resource == rec.resource));
                                // After UPDDONE only clients changed since flow.
                                prop_assert!(
                                    upddone_at.is_none()
                                        || changed_at.keys().any(|c| {
                                            p.table.by_resource(c).is_some_and(|x| x.duid == d)
                                        }),
                                    "{} sent after UPDDONE", rec.resource
                                );
                                sends.entry(rec.resource).or_default().push(step);
                            }
                            if changed_at.is_empty() && removed.is_empty() {
                                prop_assert_eq!(u.records.len(), all.len(), "whole client");
                            }
                        }
                        Some(MessageType::Upddone) => {
                            prop_assert!(upddone_at.is_none(), "one UPDDONE");
                            for x in &answer_xids {
                                prop_assert!(acked.contains(x), "UPDDONE before the ack of {}", x);
                            }
                            upddone_at = Some(step);
                        }
                        _ => {}
                    }
                    step += 1;
                }
                while p.ep.poll_event().is_some() {}
                s.ep.handle_stream(now, &buf, &mut s.table);
                while s.ep.poll_event().is_some() {}
                let mut back = Vec::new();
                while s.ep.poll_transmit(now, &mut s.table, &mut back) {}
                while s.ep.poll_event().is_some() {}
                let mut at = 0;
                while let Ok(wire::Frame::Complete { message, consumed }) = wire::split_frame(&back[at..]) {
                    let m = Message::new_checked(message).unwrap();
                    if m.msg_type() == Some(MessageType::Bndreply) {
                        acked.push(m.transaction_id());
                    }
                    at += consumed;
                }
                let requests = p.ep.counters().received[MessageType::Updreqall as usize];
                p.ep.handle_stream(now, &back, &mut p.table);
                if p.ep.counters().received[MessageType::Updreqall as usize] > requests {
                    last_request = step;
                }
                let from_s = !back.is_empty();
                if s.ep.counters().sent[MessageType::Updreqall as usize] > 0 {
                    updreqall_seen = true;
                }
                // Changes on the primary while it answers.
                while updreqall_seen && next_change < changes.len() && changes[next_change].0 <= step {
                    match changes[next_change].1 {
                        Change::Renew(i) => {
                            let r = initial[i].resource;
                            if let Some(mut l) = p.table.by_resource(&r) {
                                l.cltt = now_s;
                                l.expires_at = now_s + 3600;
                                l.update_pending = true;
                                p.table.upsert(l).unwrap();
                                p.ep.lease_changed(r);
                                changed_at.insert(r, step);
                            }
                        }
                        Change::Remove(i) => {
                            let r = initial[i].resource;
                            if !changed_at.contains_key(&r) {
                                p.table.remove(&r).unwrap();
                                removed.push(r);
                            }
                        }
                        Change::Reassign(i, c) => {
                            let r = initial[i].resource;
                            if let Some(mut l) = p.table.by_resource(&r) {
                                l.duid = duid(c);
                                l.cltt = now_s;
                                l.expires_at = now_s + 3600;
                                l.update_pending = true;
                                p.table.upsert(l).unwrap();
                                p.ep.lease_changed(r);
                                changed_at.insert(r, step);
                            }
                        }
                        Change::Reconnect => {
                            p.ep.handle_disconnected(now, &mut p.table);
                            s.ep.handle_disconnected(now, &mut s.table);
                            while p.ep.poll_event().is_some() {}
                            while s.ep.poll_event().is_some() {}
                            p.ep.handle_connected(now);
                            s.ep.handle_connected(now);
                            reconnected = true;
                            // Only the answer to the request on the new connection counts.
                            answer_xids.clear();
                        }
                        Change::NewClient(c) => {
                            let mut l = lease(c, false, now_s);
                            l.update_pending = true;
                            if p.table.by_resource(&l.resource).is_none() {
                                p.table.upsert(l).unwrap();
                                p.ep.lease_changed(l.resource);
                                changed_at.insert(l.resource, step);
                            }
                        }
                    }
                    next_change += 1;
                }
                if n == 0 && !from_s && p.ep.is_idle() && s.ep.is_idle() {
                    break;
                }
            }
            prop_assert!(updreqall_seen);
            prop_assert!(upddone_at.is_some(), "UPDDONE sent");
            prop_assert_eq!(s.ep.server_state(), ServerState::RecoverWait);
            for l in &initial {
                let r = l.resource;
                if removed.contains(&r) {
                    continue;
                }
                let sent = sends.get(&r).map_or(&[][..], |v| &v[..]);
                // A change sends the client's whole record set again (§7.4).
                let client_changed = changed_at
                    .keys()
                    .any(|c| p.table.by_resource(c).is_some_and(|x| x.duid == l.duid));
                match changed_at.get(&r) {
                    None if client_changed => prop_assert!(!sent.is_empty(), "{} sent", r),
                    // After a reconnection the partner asked again: the new answer has
                    // it (the first one may have sent it too).
                    None if reconnected => prop_assert!(
                        sent.iter().any(|&x| x >= last_request),
                        "{} sent after the last UPDREQALL", r
                    ),
                    None => prop_assert_eq!(sent.len(), 1, "{} sent exactly once", r),
                    Some(&at) => prop_assert!(sent.iter().any(|&x| x >= at), "{} sent after its change", r),
                }
            }
            for (r, &at) in &changed_at {
                let sent = sends.get(r).map_or(&[][..], |v| &v[..]);
                prop_assert!(sent.iter().any(|&x| x >= at), "{} sent after its change", r);
            }
            // The partner holds what the primary holds.
            let mut want = Vec::new();
            p.table.for_each(&mut |l| want.push(*l));
            s.table.for_each(&mut |l| {
                assert!(
                    p.table.by_resource(&l.resource).is_some() || removed.contains(&l.resource),
                    "{} only at the partner", l.resource
                );
            });
            for l in want {
                let got = s.table.by_resource(&l.resource).unwrap();
                prop_assert_eq!(got.duid, l.duid);
                prop_assert_eq!(got.cltt, l.cltt);
                prop_assert!(!p.table.by_resource(&l.resource).unwrap().update_pending, "acknowledged");
            }
        }
    }
}
