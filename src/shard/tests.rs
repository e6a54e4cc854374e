//! Shard-loop tests over real io_uring sockets on [::1]. The service here is a minimal
//! lease-writing responder (first payload byte = owner shard) so the tests exercise the
//! loop's own contracts: handoff, group commit before reply, bounded inboxes, stop.

use super::*;
use crate::io::uring::{UringIo, UringOptions};
use crate::lease::memory::MemoryTable;
use crate::lease::{BindingState, Duid, IaType, Lease, Resource};
use std::collections::VecDeque;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::sync::atomic::AtomicU64;

/// Records one lease per request (resource ::N for payload byte 1 = N; 0xff records nothing;
/// 0xfe records nothing and answers without waiting for the store) and answers
/// `[shard index, payload...]`.
struct Recorder {
    index: u8,
}

impl Service for Recorder {
    fn owner(&self, payload: &[u8], _shards: usize) -> Option<usize> {
        payload.first().map(|&b| usize::from(b))
    }

    fn handle<T: LeaseTable>(
        &mut self,
        rx: &RxMeta,
        payload: &[u8],
        now: Timestamp,
        table: &mut T,
        out: &mut Vec<u8>,
    ) -> Option<Outgoing> {
        let n = *payload.get(1)?;
        if n == 0xfe {
            // Like an Advertise: promises no lease, leaves without waiting for the store.
            out.push(self.index);
            out.extend_from_slice(payload);
            return Some(Outgoing::immediate(TxMeta::reply_to(rx, rx.src)));
        }
        if n == 0xff {
            out.push(self.index);
            out.extend_from_slice(payload);
            return Some(Outgoing::durable(TxMeta::reply_to(rx, rx.src)));
        }
        // A third byte 0xee asks for a lease that ends right away (expiry tests).
        let ends = if payload.get(2) == Some(&0xee) {
            0
        } else {
            200
        };
        let lease = test_lease(
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, n.into()),
            &[0, 3, 0, 1, n],
            now,
            now.secs() + ends,
        );
        table.upsert(lease).ok()?;
        out.push(self.index);
        out.extend_from_slice(payload);
        Some(Outgoing::durable(TxMeta::reply_to(rx, rx.src)))
    }

    fn expire<T: LeaseTable>(&mut self, now: Timestamp, table: &mut T, budget: usize) -> usize {
        table.expire(now.secs(), budget, &mut Vec::new())
    }

    fn log_counters(&self, _shard: usize) {}
}

/// A memory table whose durability point is set by the test, like a store whose fsync
/// completes when the test says so; with `commits`, it also publishes how many batches
/// were committed.
struct Lagging {
    inner: MemoryTable,
    durable: Arc<AtomicU64>,
    commits: Option<Arc<AtomicU64>>,
}

impl Lagging {
    fn new(durable: &Arc<AtomicU64>) -> Lagging {
        Lagging {
            inner: MemoryTable::new(),
            durable: durable.clone(),
            commits: None,
        }
    }
}

impl LeaseTable for Lagging {
    fn ia_leases(&self, duid: &Duid, ia_type: IaType, iaid: u32, out: &mut Vec<Lease>) {
        self.inner.ia_leases(duid, ia_type, iaid, out)
    }
    fn client_leases(&self, duid: &Duid, out: &mut Vec<Lease>) {
        self.inner.client_leases(duid, out)
    }
    fn by_resource(&self, resource: &Resource) -> Option<Lease> {
        self.inner.by_resource(resource)
    }
    fn upsert(&mut self, lease: Lease) -> Result<(), TableError> {
        self.inner.upsert(lease)
    }
    fn remove(&mut self, resource: &Resource) -> Result<(), TableError> {
        self.inner.remove(resource)
    }
    fn expire(&mut self, now_secs: u64, budget: usize, freed: &mut Vec<Lease>) -> usize {
        self.inner.expire(now_secs, budget, freed)
    }
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn for_each(&self, f: &mut dyn FnMut(&Lease)) {
        self.inner.for_each(f)
    }
    fn commit(&mut self) -> Result<Option<CommitId>, TableError> {
        let r = self.inner.commit();
        if let (Ok(Some(id)), Some(commits)) = (r, &self.commits) {
            commits.store(id, Ordering::SeqCst);
        }
        r
    }
    fn durable(&mut self, _wait: bool) -> Result<CommitId, TableError> {
        Ok(self.durable.load(Ordering::SeqCst))
    }
}

/// The active IA_NA lease on `resource` of client `duid` that the test services record.
fn test_lease(resource: Ipv6Addr, duid: &[u8], now: Timestamp, expires_at: u64) -> Lease {
    Lease {
        resource: Resource::address(resource),
        ia_type: IaType::Na,
        duid: Duid::new(duid).unwrap(),
        iaid: 1,
        state: BindingState::Active,
        preferred_lifetime: 100,
        valid_lifetime: 200,
        cltt: now.secs(),
        expires_at,
        subnet: 0,
        partner_lifetime: 0,
        update_pending: false,
    }
}

fn socket() -> (UringIo, SocketAddrV6) {
    let mut opts = UringOptions::new(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 0, 0, 0));
    opts.rx_buffers = 16;
    opts.tx_slots = 8;
    let io = UringIo::new(&opts).unwrap();
    let addr = io.local_addr().unwrap();
    (io, addr)
}

fn client() -> UdpSocket {
    let c = UdpSocket::bind("[::1]:0").unwrap();
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    c
}

fn recv(c: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = [0u8; 512];
    c.recv_from(&mut buf)
        .ok()
        .map(|(n, a)| (buf[..n].to_vec(), a))
}

const WAIT: Option<Duration> = Some(Duration::from_millis(200));

/// One shard over a [`Lagging`] table (durable point set by the test through the returned
/// counter), answering with a [`Recorder`] on a fresh socket.
fn lagging_shard() -> (
    Shard<UringIo, Lagging, Recorder>,
    SocketAddrV6,
    Arc<AtomicU64>,
) {
    let (io, addr) = socket();
    let durable = Arc::new(AtomicU64::new(0));
    let table = Lagging::new(&durable);
    let (mut links, _) = mesh(1, 8).unwrap();
    let shard = Shard::new(
        io,
        table,
        Recorder { index: 0 },
        links.remove(0),
        Arc::new(AtomicBool::new(false)),
        ShardOptions::default(),
    )
    .unwrap();
    (shard, addr, durable)
}

#[test]
fn reply_waits_until_its_lease_batch_is_durable() {
    let (mut shard, addr, durable) = lagging_shard();
    let c = client();
    c.send_to(&[0, 7], addr).unwrap();
    assert_eq!(shard.poll_once(WAIT).unwrap(), 1);
    assert_eq!(shard.table().len(), 1, "lease recorded");
    assert_eq!(recv(&c), None, "reply released before its batch is durable");
    // Idle iterations keep it held.
    shard.poll_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(recv(&c), None);
    durable.store(1, Ordering::SeqCst);
    shard.poll_once(Some(Duration::ZERO)).unwrap();
    let (reply, from) = recv(&c).expect("reply after durability");
    assert_eq!(reply, vec![0, 0, 7]);
    assert_eq!(from, SocketAddr::V6(addr));
    assert_eq!(shard.counters().answered, 1);
}

#[test]
fn a_reply_that_changes_nothing_still_waits_for_earlier_batches() {
    let (mut shard, addr, durable) = lagging_shard();
    let c = client();
    c.send_to(&[0, 9], addr).unwrap();
    shard.poll_once(WAIT).unwrap();
    // 0xff: answered without touching the table, in a later batch.
    c.send_to(&[0, 0xff], addr).unwrap();
    shard.poll_once(WAIT).unwrap();
    assert_eq!(recv(&c), None, "neither reply before batch 1 is durable");
    durable.store(1, Ordering::SeqCst);
    shard.poll_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(recv(&c).map(|r| r.0), Some(vec![0, 0, 9]));
    assert_eq!(recv(&c).map(|r| r.0), Some(vec![0, 0, 0xff]));
}

#[test]
fn a_reply_that_promises_no_lease_leaves_without_waiting_for_the_store() {
    let (mut shard, addr, durable) = lagging_shard();
    let c = client();
    c.send_to(&[0, 9], addr).unwrap();
    shard.poll_once(WAIT).unwrap();
    // 0xfe (an Advertise, say) in a later batch overtakes the held grant.
    c.send_to(&[0, 0xfe], addr).unwrap();
    shard.poll_once(WAIT).unwrap();
    assert_eq!(recv(&c).map(|r| r.0), Some(vec![0, 0, 0xfe]));
    assert_eq!(recv(&c), None, "the grant still waits for its batch");
    assert_eq!(shard.counters().answered, 1);
    durable.store(1, Ordering::SeqCst);
    shard.poll_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(recv(&c).map(|r| r.0), Some(vec![0, 0, 9]));
    assert_eq!(shard.counters().answered, 2);
}

#[test]
fn packets_are_handed_to_their_owner_shard() {
    let (io0, addr0) = socket();
    let (io1, addr1) = socket();
    let (links, _) = mesh(2, 8).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut links = links.into_iter();
    let mut s0 = Shard::new(
        io0,
        MemoryTable::new(),
        Recorder { index: 0 },
        links.next().unwrap(),
        stop.clone(),
        ShardOptions::default(),
    )
    .unwrap();
    let mut s1 = Shard::new(
        io1,
        MemoryTable::new(),
        Recorder { index: 1 },
        links.next().unwrap(),
        stop,
        ShardOptions::default(),
    )
    .unwrap();
    let c = client();
    // Owned by shard 1, received by shard 0's socket.
    c.send_to(&[1, 5], addr0).unwrap();
    assert_eq!(s0.poll_once(WAIT).unwrap(), 1);
    assert_eq!(s0.counters().handed_off, 1);
    assert_eq!(
        s0.table().len(),
        0,
        "shard 0 must not record shard 1's client"
    );
    // Shard 1 is woken by the handoff (its waker makes the wait return at once).
    let start = Instant::now();
    assert_eq!(s1.poll_once(Some(Duration::from_secs(5))).unwrap(), 1);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "woken, not timed out"
    );
    assert_eq!(s1.table().len(), 1);
    let (reply, from) = recv(&c).expect("owner's reply");
    assert_eq!(reply, vec![1, 1, 5]);
    assert_eq!(
        from,
        SocketAddr::V6(addr1),
        "sent through the owner's socket"
    );
    // Owned by shard 0: answered locally.
    c.send_to(&[0, 6], addr0).unwrap();
    s0.poll_once(WAIT).unwrap();
    assert_eq!(recv(&c).map(|r| r.0), Some(vec![0, 0, 6]));
    // A malformed request (no owner) is handled where it arrived.
    c.send_to(&[], addr1).unwrap();
    s1.poll_once(WAIT).unwrap();
    assert_eq!(s1.counters().handled, 2);
}

#[test]
fn full_inbox_drops_and_counts() {
    let (io0, addr0) = socket();
    let (links, _) = mesh(2, 1).unwrap();
    let mut links = links.into_iter();
    let mut s0 = Shard::new(
        io0,
        MemoryTable::new(),
        Recorder { index: 0 },
        links.next().unwrap(),
        Arc::new(AtomicBool::new(false)),
        ShardOptions::default(),
    )
    .unwrap();
    let _shard1_links = links.next().unwrap();
    let c = client();
    for n in 0..3 {
        c.send_to(&[1, n], addr0).unwrap();
    }
    let mut got = 0;
    while got < 3 {
        let n = s0.poll_once(WAIT).unwrap();
        assert!(n > 0);
        got += n;
    }
    assert_eq!(s0.counters().handed_off, 1);
    assert_eq!(s0.counters().handoff_dropped, 2);
}

#[test]
fn run_answers_until_stopped_and_reports() {
    let (io, addr) = socket();
    let (mut links, wakers) = mesh(1, 8).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let shard = Shard::new(
        io,
        MemoryTable::new(),
        Reflector::default(),
        links.remove(0),
        stop.clone(),
        ShardOptions {
            tick: Duration::from_secs(30),
            ..ShardOptions::default()
        },
    )
    .unwrap();
    let t = std::thread::spawn(move || shard.run());
    let c = client();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // A Request (type 3, transaction id 1 2 3) comes back as a Reply.
    c.send_to(&[3, 1, 2, 3], addr).unwrap();
    assert_eq!(recv(&c).map(|r| r.0), Some(vec![7, 1, 2, 3]));
    let start = Instant::now();
    stop.store(true, Ordering::SeqCst);
    wakers[0].wake();
    let report = t.join().unwrap().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "stop noticed through the waker, not the 30 s tick"
    );
    assert_eq!(report.counters.received, 1);
    assert_eq!(report.counters.answered, 1);
    assert_eq!(report.io.tx_packets, 1);
}

#[test]
fn run_expires_leases_between_batches() {
    let (io, addr) = socket();
    let (mut links, wakers) = mesh(1, 8).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let shard = Shard::new(
        io,
        MemoryTable::new(),
        Recorder { index: 0 },
        links.remove(0),
        stop.clone(),
        ShardOptions {
            tick: Duration::from_millis(10),
            expire_interval: Duration::from_millis(10),
            ..ShardOptions::default()
        },
    )
    .unwrap();
    let t = std::thread::spawn(move || shard.run());
    let c = client();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.send_to(&[0, 4, 0xee], addr).unwrap();
    assert!(recv(&c).is_some());
    // The lease ends at its grant time (whole seconds): the next expiry pass, within
    // 10 ms, moves it Active → Expired.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    wakers[0].wake();
    let report = t.join().unwrap().unwrap();
    assert!(report.counters.expired >= 1, "{:?}", report.counters);
}

/// A [`PacketIo`] over in-memory queues, for the property test of the loop's release
/// rule: each reply carries (in its bytes) the commit id it depends on, and `send` checks it
/// against the table's durable id at that moment.
struct QueueIo {
    inbox: VecDeque<(RxMeta, Vec<u8>)>,
    batch: usize,
    durable: Arc<AtomicU64>,
    sent: Vec<u32>,
    violations: Vec<String>,
}

impl PacketIo for QueueIo {
    fn recv_batch(
        &mut self,
        _timeout: Option<Duration>,
        f: &mut dyn FnMut(&RxMeta, &[u8]),
    ) -> io::Result<usize> {
        let mut n = 0;
        while n < self.batch {
            let Some((m, p)) = self.inbox.pop_front() else {
                break;
            };
            f(&m, &p);
            n += 1;
        }
        Ok(n)
    }

    fn send(&mut self, _meta: &TxMeta, payload: &[u8]) -> io::Result<()> {
        let id = u32::from_be_bytes(payload[..4].try_into().unwrap());
        let need = u64::from_be_bytes(payload[4..12].try_into().unwrap());
        let durable = self.durable.load(Ordering::SeqCst);
        if need > durable {
            self.violations.push(format!(
                "reply {id} needs batch {need}, durable is {durable}"
            ));
        }
        self.sent.push(id);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Answers `[id u32][needed commit u64]`: a request with an even id records a lease (its
/// reply needs the batch that will hold it, `commits + 1`); an odd id changes nothing (its
/// reply needs every batch issued so far, `commits`).
struct Promiser {
    commits: Arc<AtomicU64>,
}

impl Service for Promiser {
    fn owner(&self, _payload: &[u8], _shards: usize) -> Option<usize> {
        None
    }

    fn handle<T: LeaseTable>(
        &mut self,
        rx: &RxMeta,
        payload: &[u8],
        now: Timestamp,
        table: &mut T,
        out: &mut Vec<u8>,
    ) -> Option<Outgoing> {
        let id = u32::from_be_bytes(payload.try_into().ok()?);
        let need = if id % 2 == 0 {
            let b = id.to_be_bytes();
            table
                .upsert(test_lease(
                    Ipv6Addr::from(u128::from(id)),
                    &[0, 4, b[0], b[1], b[2], b[3]],
                    now,
                    now.secs() + 200,
                ))
                .ok()?;
            self.commits.load(Ordering::SeqCst) + 1
        } else {
            self.commits.load(Ordering::SeqCst)
        };
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&need.to_be_bytes());
        Some(Outgoing::durable(TxMeta::reply_to(rx, rx.src)))
    }

    fn expire<T: LeaseTable>(&mut self, _now: Timestamp, _table: &mut T, _budget: usize) -> usize {
        0
    }

    fn log_counters(&self, _shard: usize) {}
}

#[derive(Clone, Debug)]
enum Step {
    /// Queue this many requests.
    Arrive(u8),
    /// One loop iteration.
    Poll,
    /// The store completes every batch committed so far.
    Sync,
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        (1u8..12).prop_map(Step::Arrive),
        Just(Step::Poll),
        Just(Step::Poll),
        Just(Step::Sync),
    ]
}

proptest::proptest! {
    /// Whatever the interleaving of arrivals, loop iterations and store completions: no
    /// reply leaves before the batch it depends on is durable, replies leave in arrival
    /// order, and once the store catches up every request is answered exactly once.
    #[test]
    fn replies_never_overtake_durability(
        steps in proptest::collection::vec(step(), 1..60),
        batch in 1usize..8,
    ) {
        let durable = Arc::new(AtomicU64::new(0));
        let commits = Arc::new(AtomicU64::new(0));
        let io = QueueIo {
            inbox: VecDeque::new(),
            batch,
            durable: durable.clone(),
            sent: Vec::new(),
            violations: Vec::new(),
        };
        let table = Lagging { commits: Some(commits.clone()), ..Lagging::new(&durable) };
        let (mut links, _) = mesh(1, 8).unwrap();
        let mut shard = Shard::new(
            io,
            table,
            Promiser { commits: commits.clone() },
            links.remove(0),
            Arc::new(AtomicBool::new(false)),
            ShardOptions::default(),
        )
        .unwrap();
        let meta = RxMeta {
            src: SocketAddrV6::new(Ipv6Addr::LOCALHOST, 546, 0, 0),
            dst: Ipv6Addr::LOCALHOST,
            ifindex: 1,
            hop_limit: None,
            l2: None,
            queue: 0,
        };
        let mut next_id = 0u32;
        for s in &steps {
            match s {
                Step::Arrive(n) => {
                    for _ in 0..*n {
                        shard.io.inbox.push_back((meta, next_id.to_be_bytes().to_vec()));
                        next_id += 1;
                    }
                }
                Step::Poll => {
                    shard.poll_once(Some(Duration::ZERO)).unwrap();
                }
                Step::Sync => durable.store(commits.load(Ordering::SeqCst), Ordering::SeqCst),
            }
        }
        // Drain: process everything left, then let the store catch up.
        while !shard.io.inbox.is_empty() {
            shard.poll_once(Some(Duration::ZERO)).unwrap();
        }
        durable.store(commits.load(Ordering::SeqCst), Ordering::SeqCst);
        shard.poll_once(Some(Duration::ZERO)).unwrap();
        proptest::prop_assert!(shard.io.violations.is_empty(), "{:?}", shard.io.violations);
        proptest::prop_assert_eq!(&shard.io.sent, &(0..next_id).collect::<Vec<_>>());
        proptest::prop_assert_eq!(shard.counters().answered, u64::from(next_id));
    }
}
