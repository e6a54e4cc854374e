//! The shard loop: one pinned thread per NIC queue running io → engine → lease table → io.
//!
//! A shard owns one [`PacketIo`] (an io_uring socket or an AF_XDP queue), one [`LeaseTable`]
//! (the leases of the clients whose DUID hashes to it) and one [`Service`] (the DHCPv6
//! engine, or the null reflector used as a benchmark baseline). It never takes a lock:
//!
//! * A datagram whose client belongs to another shard (multicast Solicits all arrive on shard
//!   0; the reuseport hash spreads relayed traffic by 4-tuple, not by client) is copied into
//!   that shard's bounded crossbeam channel and the owner is woken once per batch. When the
//!   channel is full the datagram is dropped and counted: the client retransmits (RFC 8415
//!   §15), which is better than blocking a shard on a slower one.
//! * Group commit (RFC 8415 §18.3: leases in stable storage before the Reply). After each
//!   receive batch the loop calls [`LeaseTable::commit`], tags the batch's replies with the
//!   returned id, and sends a reply only once [`LeaseTable::durable`] reaches its tag. The
//!   next batch is received and processed while the previous one is being made durable.
//! * Housekeeping between batches: lease expiry with a budget (so a mass expiry never stalls
//!   serving) and counters logged periodically and on exit.
//!
//! The loop is generic over the backend, the table and the service (static dispatch on the
//! hot path) and contains nothing socket-specific, so every backend plugs in unchanged.

mod engine;
pub mod reflect;

pub use reflect::Reflector;

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::io::{IoStats, PacketIo, RxMeta, TxMeta, Waker};
use crate::lease::{CommitId, LeaseTable, TableError};
use crate::time::Timestamp;

/// What a shard runs for each datagram it owns.
pub trait Service {
    /// The shard that must answer `payload` (the one holding its client's leases), or
    /// `None` when any shard may (a malformed packet is dropped and counted by whichever
    /// shard received it).
    fn owner(&self, payload: &[u8], shards: usize) -> Option<usize>;

    /// Answers one request received with `rx`: writes the reply into `out` and returns where
    /// it goes and whether it waits for stable storage, or `None` to drop (the service
    /// counts why).
    fn handle<T: LeaseTable>(
        &mut self,
        rx: &RxMeta,
        payload: &[u8],
        now: Timestamp,
        table: &mut T,
        out: &mut Vec<u8>,
    ) -> Option<Outgoing>;

    /// Ends leases whose time has come, changing at most `budget` records; returns how many
    /// it changed.
    fn expire<T: LeaseTable>(&mut self, now: Timestamp, table: &mut T, budget: usize) -> usize;

    /// Logs the service's own counters (per message type, per drop reason).
    fn log_counters(&self, shard: usize);
}

/// A reply the service wrote, and when it may leave.
#[derive(Clone, Copy, Debug)]
pub struct Outgoing {
    pub meta: TxMeta,
    pub durability: Durability,
}

/// Whether a reply waits for the lease store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// The reply grants or reports leases (RFC 8415 §18.3.1, §18.3.2: committed before the
    /// Reply is sent): it leaves only when the batch it was produced in, and every earlier
    /// one, is durable. Also for replies that changed nothing themselves, since they may
    /// report a lease an earlier, not yet durable batch granted.
    Required,
    /// The reply promises nothing about leases (an Advertise, a Reply to Confirm or
    /// Information-request, a reflected packet): it leaves with the batch's flush, without
    /// waiting for the store's sync. Under group commit this keeps a Solicit's round trip
    /// free of the fdatasync latency, which only the Request's Reply has to pay.
    NotRequired,
}

impl Outgoing {
    /// A reply that waits for stable storage.
    pub fn durable(meta: TxMeta) -> Outgoing {
        Outgoing {
            meta,
            durability: Durability::Required,
        }
    }

    /// A reply that may leave at once.
    pub fn immediate(meta: TxMeta) -> Outgoing {
        Outgoing {
            meta,
            durability: Durability::NotRequired,
        }
    }
}

/// Loop timing and bounds.
#[derive(Clone, Debug)]
pub struct ShardOptions {
    /// Longest wait for traffic when nothing is pending (also bounds how late a stop or a
    /// handoff is noticed by a backend without a waker).
    pub tick: Duration,
    /// How often expired leases are processed.
    pub expire_interval: Duration,
    /// Most lease records changed per expiry pass.
    pub expire_budget: usize,
    /// How often counters are logged (they are always logged on exit).
    pub log_interval: Duration,
    /// Most handed-off datagrams processed per loop iteration.
    pub handoff_batch: usize,
}

impl Default for ShardOptions {
    fn default() -> Self {
        ShardOptions {
            tick: Duration::from_millis(250),
            expire_interval: Duration::from_secs(1),
            expire_budget: 4096,
            log_interval: Duration::from_secs(60),
            handoff_batch: 1024,
        }
    }
}

/// A datagram handed from the shard that received it to the shard that owns its client.
pub struct Handoff {
    meta: RxMeta,
    payload: Vec<u8>,
}

/// A shard's ends of the handoff mesh: its own inbox and every shard's sender and waker.
pub struct Links {
    index: usize,
    inbox: Receiver<Handoff>,
    peers: Arc<[Peer]>,
}

struct Peer {
    tx: Sender<Handoff>,
    waker: Waker,
}

impl Links {
    /// The waker of this shard, to attach to its backend.
    pub fn waker(&self) -> &Waker {
        &self.peers[self.index].waker
    }

    pub fn index(&self) -> usize {
        self.index
    }

    pub fn count(&self) -> usize {
        self.peers.len()
    }
}

/// Builds the handoff mesh for `count` shards, each inbox holding up to `capacity` datagrams.
/// Also returns the wakers (the stop path wakes every shard).
pub fn mesh(count: usize, capacity: usize) -> io::Result<(Vec<Links>, Vec<Waker>)> {
    let mut inboxes = Vec::with_capacity(count);
    let mut peers = Vec::with_capacity(count);
    for _ in 0..count {
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        inboxes.push(rx);
        peers.push(Peer {
            tx,
            waker: Waker::new()?,
        });
    }
    let wakers = peers.iter().map(|p| p.waker.clone()).collect();
    let peers: Arc<[Peer]> = peers.into();
    let links = inboxes
        .into_iter()
        .enumerate()
        .map(|(index, inbox)| Links {
            index,
            inbox,
            peers: peers.clone(),
        })
        .collect();
    Ok((links, wakers))
}

/// What one shard counted (the service keeps its own, finer counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardCounters {
    /// Datagrams taken from the backend.
    pub received: u64,
    /// Datagrams this shard answered or dropped itself (received here or handed over).
    pub handled: u64,
    /// Replies transmitted (after their lease batch was durable).
    pub answered: u64,
    /// Datagrams passed to their owner shard.
    pub handed_off: u64,
    /// Datagrams received from other shards.
    pub handoff_received: u64,
    /// Datagrams dropped because the owner's inbox was full.
    pub handoff_dropped: u64,
    /// Replies withheld because their lease batch could not be stored.
    pub store_dropped: u64,
    /// Lease records changed by expiry.
    pub expired: u64,
    /// Transmit errors reported by `send`/`flush`.
    pub send_errors: u64,
}

/// What a shard reports when it stops.
#[derive(Clone, Copy, Debug, Default)]
pub struct ShardReport {
    pub index: usize,
    pub counters: ShardCounters,
    pub io: IoStats,
}

/// A reply waiting for its lease batch to become durable.
struct Pending {
    /// Commit id the reply depends on; `None` until the batch it was produced in is sealed.
    batch: Option<CommitId>,
    meta: TxMeta,
    bytes: Vec<u8>,
}

/// One shard; see the module documentation.
pub struct Shard<P: PacketIo, T: LeaseTable, S: Service> {
    io: P,
    table: T,
    service: S,
    links: Links,
    stop: Arc<AtomicBool>,
    opts: ShardOptions,
    has_waker: bool,
    // Per-loop state.
    pending: VecDeque<Pending>,
    /// Replies that promise nothing about leases ([`Durability::NotRequired`]): sent in the
    /// iteration that produced them.
    ready: Vec<Pending>,
    spare: Vec<Vec<u8>>,
    out: Vec<u8>,
    dirty_peers: Vec<bool>,
    last_commit: CommitId,
    counters: ShardCounters,
}

impl<P: PacketIo, T: LeaseTable, S: Service> Shard<P, T, S> {
    /// Assembles a shard; attaches the shard's waker to the backend.
    pub fn new(
        mut io: P,
        table: T,
        service: S,
        links: Links,
        stop: Arc<AtomicBool>,
        opts: ShardOptions,
    ) -> io::Result<Self> {
        let has_waker = io.attach_waker(links.waker())?;
        let peers = links.count();
        Ok(Shard {
            io,
            table,
            service,
            links,
            stop,
            opts,
            has_waker,
            pending: VecDeque::new(),
            ready: Vec::new(),
            spare: Vec::new(),
            out: Vec::with_capacity(1500),
            dirty_peers: vec![false; peers],
            last_commit: 0,
            counters: ShardCounters::default(),
        })
    }

    pub fn counters(&self) -> &ShardCounters {
        &self.counters
    }

    pub fn table(&self) -> &T {
        &self.table
    }

    /// Runs until the stop flag is set, then releases what it can and reports.
    pub fn run(mut self) -> io::Result<ShardReport> {
        let index = self.links.index;
        let mut next_expire = Instant::now();
        let mut next_log = Instant::now() + self.opts.log_interval;
        // Without a waker a handoff waits for the tick: keep the tick short then.
        let idle_wait = if self.has_waker || self.links.count() == 1 {
            self.opts.tick
        } else {
            self.opts.tick.min(Duration::from_millis(1))
        };
        while !self.stop.load(Ordering::Relaxed) {
            let wait = if self.pending.is_empty() {
                idle_wait
            } else {
                Duration::ZERO
            };
            self.poll_once(Some(wait))?;

            let now_instant = Instant::now();
            if now_instant >= next_expire {
                let changed =
                    self.service
                        .expire(Timestamp::now(), &mut self.table, self.opts.expire_budget);
                self.counters.expired += changed as u64;
                // A full budget means more is due: come back on the next iteration.
                next_expire = if changed >= self.opts.expire_budget {
                    now_instant
                } else {
                    now_instant + self.opts.expire_interval
                };
            }
            if now_instant >= next_log {
                self.log_counters();
                next_log = now_instant + self.opts.log_interval;
            }
        }
        self.drain();
        self.log_counters();
        Ok(ShardReport {
            index,
            counters: self.counters,
            io: self.io.stats(),
        })
    }

    /// One iteration: receive a batch, process handoffs, commit, release durable replies,
    /// flush. Returns how many datagrams were processed. Public so tests and benchmarks can
    /// step a shard without a thread.
    pub fn poll_once(&mut self, wait: Option<Duration>) -> io::Result<usize> {
        let now = Timestamp::now();
        let first_new = self.pending.len();
        let me = self.links.index;
        let shards = self.links.count();
        let Shard {
            io,
            table,
            service,
            links,
            pending,
            ready,
            spare,
            out,
            dirty_peers,
            counters,
            ..
        } = self;

        let mut received = 0usize;
        io.recv_batch(wait, &mut |meta, payload| {
            received += 1;
            counters.received += 1;
            match service_owner(service, payload, shards) {
                Some(owner) if owner != me => {
                    let h = Handoff {
                        meta: *meta,
                        payload: payload.to_vec(),
                    };
                    match links.peers[owner].tx.try_send(h) {
                        Ok(()) => {
                            counters.handed_off += 1;
                            dirty_peers[owner] = true;
                        }
                        Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                            counters.handoff_dropped += 1;
                        }
                    }
                }
                _ => {
                    counters.handled += 1;
                    let queues = Queues {
                        pending,
                        ready,
                        spare,
                    };
                    answer(service, table, queues, out, now, meta, payload);
                }
            }
        })?;
        // One wake per peer per batch, not per datagram.
        for (peer, dirty) in dirty_peers.iter_mut().enumerate() {
            if std::mem::take(dirty) {
                links.peers[peer].waker.wake();
            }
        }
        let mut handed = 0usize;
        while handed < self.opts.handoff_batch {
            let Ok(h) = self.links.inbox.try_recv() else {
                break;
            };
            handed += 1;
            self.counters.handoff_received += 1;
            self.counters.handled += 1;
            let queues = Queues {
                pending: &mut self.pending,
                ready: &mut self.ready,
                spare: &mut self.spare,
            };
            answer(
                &mut self.service,
                &mut self.table,
                queues,
                &mut self.out,
                now,
                &h.meta,
                &h.payload,
            );
        }

        self.seal_batch(first_new);
        self.send_ready();
        let idle = received == 0 && handed == 0;
        self.release(idle);
        if let Err(e) = self.io.flush() {
            self.counters.send_errors += 1;
            tracing::warn!(shard = me, error = %e, "flush failed");
        }
        Ok(received + handed)
    }

    /// Commits the batch's lease changes and tags the replies produced since `first_new`.
    fn seal_batch(&mut self, first_new: usize) {
        match self.table.commit() {
            Ok(Some(id)) => self.last_commit = id,
            Ok(None) => {}
            Err(e) => {
                // The batch's leases may not be stored: its replies must not promise them.
                self.fail_pending(first_new, e);
                return;
            }
        }
        // Replies that changed nothing still wait for earlier batches: they may report a
        // lease granted in a batch that is not durable yet.
        for p in self.pending.range_mut(first_new..) {
            p.batch = Some(self.last_commit);
        }
    }

    /// Sends the replies that need no stable storage.
    fn send_ready(&mut self) {
        let mut ready = std::mem::take(&mut self.ready);
        for p in ready.drain(..) {
            self.transmit(p);
        }
        // Keep the allocation for the next iteration.
        self.ready = ready;
    }

    /// Hands one reply to the backend and keeps its buffer for reuse.
    fn transmit(&mut self, p: Pending) {
        match self.io.send(&p.meta, &p.bytes) {
            Ok(()) => self.counters.answered += 1,
            Err(e) => {
                self.counters.send_errors += 1;
                tracing::debug!(error = %e, "send failed");
            }
        }
        self.spare.push(p.bytes);
    }

    /// Sends every reply whose batch is durable; with `idle`, waits for the store if replies
    /// are pending.
    fn release(&mut self, idle: bool) {
        if self.pending.is_empty() {
            return;
        }
        let durable = match self.table.durable(idle) {
            Ok(d) => d,
            Err(e) => {
                self.fail_pending(0, e);
                return;
            }
        };
        while let Some(front) = self.pending.front() {
            match front.batch {
                Some(b) if b <= durable => {}
                _ => break,
            }
            let p = self.pending.pop_front().expect("front exists");
            self.transmit(p);
        }
    }

    /// Drops the pending replies from `from` on after a store failure.
    fn fail_pending(&mut self, from: usize, e: TableError) {
        let dropped = self.pending.len().saturating_sub(from);
        tracing::error!(
            shard = self.links.index,
            error = %e,
            replies = dropped,
            "lease store failed; withholding replies"
        );
        for p in self.pending.drain(from..) {
            self.spare.push(p.bytes);
        }
        self.counters.store_dropped += dropped as u64;
    }

    /// On stop: seal what was processed and wait (bounded) for it to become durable.
    fn drain(&mut self) {
        self.seal_batch(self.pending.len());
        self.send_ready();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.pending.is_empty() && Instant::now() < deadline {
            self.release(true);
        }
        let _ = self.io.flush();
        if !self.pending.is_empty() {
            tracing::warn!(
                shard = self.links.index,
                replies = self.pending.len(),
                "stopping with replies whose leases are not durable; not sent"
            );
        }
    }

    fn log_counters(&self) {
        let c = &self.counters;
        let io = self.io.stats();
        tracing::info!(
            shard = self.links.index,
            received = c.received,
            handled = c.handled,
            answered = c.answered,
            handed_off = c.handed_off,
            handoff_received = c.handoff_received,
            handoff_dropped = c.handoff_dropped,
            store_dropped = c.store_dropped,
            expired = c.expired,
            send_errors = c.send_errors,
            leases = self.table.len(),
            io_rx = io.rx_packets,
            io_rx_truncated = io.rx_truncated,
            io_rx_errors = io.rx_errors,
            io_rx_rearms = io.rx_rearms,
            io_rx_foreign_multicast = io.rx_foreign_multicast,
            io_rx_gro_buffers = io.rx_gro_buffers,
            io_tx = io.tx_packets,
            io_tx_errors = io.tx_errors,
            io_tx_gso_sends = io.tx_gso_sends,
            io_tx_gso_fallbacks = io.tx_gso_fallbacks,
            "shard counters"
        );
        self.service.log_counters(self.links.index);
    }
}

/// Where [`answer`] puts a reply (split borrows of the shard's fields).
struct Queues<'a> {
    pending: &'a mut VecDeque<Pending>,
    ready: &'a mut Vec<Pending>,
    spare: &'a mut Vec<Vec<u8>>,
}

/// Runs the service on one datagram and queues its reply (if any): held for the store when
/// it promises leases, ready to send otherwise.
fn answer<T: LeaseTable, S: Service>(
    service: &mut S,
    table: &mut T,
    queues: Queues<'_>,
    out: &mut Vec<u8>,
    now: Timestamp,
    meta: &RxMeta,
    payload: &[u8],
) {
    out.clear();
    if let Some(reply) = service.handle(meta, payload, now, table, out) {
        let mut bytes = queues.spare.pop().unwrap_or_default();
        bytes.clear();
        bytes.extend_from_slice(out);
        let p = Pending {
            batch: None,
            meta: reply.meta,
            bytes,
        };
        match reply.durability {
            Durability::Required => queues.pending.push_back(p),
            Durability::NotRequired => queues.ready.push(p),
        }
    }
}

fn service_owner<S: Service>(service: &S, payload: &[u8], shards: usize) -> Option<usize> {
    if shards <= 1 {
        return None;
    }
    service.owner(payload, shards).filter(|&o| o < shards)
}

#[cfg(test)]
mod tests;
