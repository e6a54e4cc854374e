//! The AF_XDP data plane on a real veth pair with two queues, below the DHCPv6 engine: the
//! XDP program, one AF_XDP socket per queue, frame parsing and reply framing, checked by the
//! client's own kernel (which drops a reply with a wrong checksum, address or VLAN tag).
//!
//! The test re-executes this test binary inside the namespaces (`ip netns exec`), in one of
//! two child roles selected by `TANDEM_XDP_CHILD`:
//! * `echo`: opens `XdpDataPlane` on the server veth and answers every datagram through
//!   `PacketIo` with "echo:" + payload, plus a TCP echo listener (to show the kernel still
//!   gets TCP); exits cleanly when its stdin closes, printing the counters.
//! * `client`: sends datagrams from many source ports to a given destination on port 547
//!   through a given interface and checks every echo (payload and source address).
//!
//! Topology: netns `txdp-<test>-<pid>-s` with `xsrv0` (2 RX/TX queues) ══ `xcli0` in
//! `txdp-<test>-<pid>-c`. Tagged (802.1Q, QinQ) clients are scapy (/usr/bin/python3) on a raw
//! socket on `xcli0`, since the test kernel has no VLAN interfaces.

// The AF_XDP backend is the `xdp` cargo feature (on by default).
#![cfg(feature = "xdp")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv6Addr, SocketAddrV6, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tandem::config::xdp::{AttachMode, XdpConfig};
use tandem::io::xdp::{XdpCounter, XdpDataPlane};
use tandem::io::{PacketIo, TxMeta};

const SERVER_IF: &str = "xsrv0";
const CLIENT_IF: &str = "xcli0";
const SERVER_LL: &str = "fe80::1";
const SERVER_GUA: &str = "2001:db8:1::1";
const CHILD_ENV: &str = "TANDEM_XDP_CHILD";
const TCP_PORT: u16 = 7547;

fn sh(ns: Option<&str>, argv: &[&str]) -> String {
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).args(argv);
            c
        }
        None => {
            let mut c = Command::new(argv[0]);
            c.args(&argv[1..]);
            c
        }
    };
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("spawning {argv:?}: {e}"));
    assert!(
        out.status.success(),
        "{ns:?} {argv:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Two namespaces and the veth pair between them; removed on drop.
struct Topology {
    server: String,
    client: String,
}

impl Topology {
    fn new(test: &str) -> Topology {
        assert!(
            is_root(),
            "{test}: needs root (network namespaces, XDP, AF_XDP); run the tests as root"
        );
        let base = format!("txdp-{test}-");
        // Leftovers of an earlier run of this test that was killed before its Drop ran.
        let listed = sh(None, &["ip", "netns", "list"]);
        for name in listed.lines().filter_map(|l| l.split_whitespace().next()) {
            if let Some(rest) = name.strip_prefix(&base) {
                let pid = rest.trim_end_matches("-s").trim_end_matches("-c");
                if pid.parse::<u32>().is_ok()
                    && !std::path::Path::new(&format!("/proc/{pid}")).exists()
                {
                    let _ = Command::new("ip").args(["netns", "del", name]).status();
                }
            }
        }
        let pid = std::process::id();
        let topo = Topology {
            server: format!("{base}{pid}-s"),
            client: format!("{base}{pid}-c"),
        };
        for ns in [&topo.server, &topo.client] {
            sh(None, &["ip", "netns", "add", ns]);
            for key in ["all", "default"] {
                sh(
                    Some(ns),
                    &[
                        "sysctl",
                        "-qw",
                        &format!("net.ipv6.conf.{key}.accept_dad=0"),
                    ],
                );
                sh(
                    Some(ns),
                    &["sysctl", "-qw", &format!("net.ipv6.conf.{key}.accept_ra=0")],
                );
            }
            sh(None, &["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        sh(
            None,
            &[
                "ip",
                "-n",
                &topo.server,
                "link",
                "add",
                SERVER_IF,
                "numtxqueues",
                "2",
                "numrxqueues",
                "2",
                "type",
                "veth",
                "peer",
                "name",
                CLIENT_IF,
                "numtxqueues",
                "2",
                "numrxqueues",
                "2",
                "netns",
                &topo.client,
            ],
        );
        for (ns, ifname, ll, gua) in [
            (&topo.server, SERVER_IF, SERVER_LL, SERVER_GUA),
            (&topo.client, CLIENT_IF, "fe80::2", "2001:db8:1::2"),
        ] {
            sh(
                Some(ns),
                &[
                    "sysctl",
                    "-qw",
                    &format!("net.ipv6.conf.{ifname}.addr_gen_mode=1"),
                ],
            );
            for addr in [format!("{ll}/64"), format!("{gua}/64")] {
                sh(
                    None,
                    &["ip", "-n", ns, "addr", "add", &addr, "dev", ifname, "nodad"],
                );
            }
            // Complete UDP checksums from the client's kernel (the server verifies them),
            // and VLAN tags in the frame rather than in skb metadata, as on a real wire.
            sh(
                Some(ns),
                &["ethtool", "-K", ifname, "tx", "off", "txvlan", "off"],
            );
            sh(None, &["ip", "-n", ns, "link", "set", ifname, "up"]);
        }
        // Carrier comes up asynchronously.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ok = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &topo.client,
                    "ping",
                    "-6",
                    "-c1",
                    "-W1",
                    &format!("{SERVER_LL}%{CLIENT_IF}"),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                break;
            }
            assert!(Instant::now() < deadline, "veth link never came up");
            std::thread::sleep(Duration::from_millis(100));
        }
        // A working unicast ping does not mean multicast can be sent yet: the kernel adds
        // the interface's `multicast ff00::/8` route (local table) only when addrconf sees
        // the link operationally up, which the global linkwatch worker reports up to a
        // second after the carrier (longer when other namespaces are churning links). Until
        // then sending to ff02::1:2%xcli0 fails with ENETUNREACH, so wait for the route
        // itself on both ends.
        for (ns, ifname) in [(&topo.server, SERVER_IF), (&topo.client, CLIENT_IF)] {
            while !sh(
                None,
                &[
                    "ip", "-n", ns, "-6", "route", "show", "table", "local", "dev", ifname,
                ],
            )
            .lines()
            .any(|l| l.starts_with("multicast ff00::/8"))
            {
                assert!(
                    Instant::now() < deadline,
                    "{ifname} in {ns} never got its ff00::/8 multicast route"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        topo
    }

    fn xdp_attached(&self) -> bool {
        let out = sh(
            None,
            &["ip", "-n", &self.server, "-d", "link", "show", SERVER_IF],
        );
        out.contains("prog/xdp")
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in [&self.client, &self.server] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// The echo child, started in the server namespace.
struct EchoChild {
    child: Child,
    stdout: BufReader<std::process::ChildStdout>,
}

impl EchoChild {
    fn start(ns: &str, attach_mode: &str) -> EchoChild {
        let exe = std::env::current_exe().expect("test binary path");
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(exe)
            .args([
                "--exact",
                "child_role",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, "echo")
            .env("TANDEM_XDP_ATTACH", attach_mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning the echo child");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        loop {
            line.clear();
            let n = stdout.read_line(&mut line).expect("reading the echo child");
            assert!(n > 0, "echo child exited before it was ready");
            if line.contains("READY") {
                break;
            }
        }
        EchoChild { child, stdout }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes stdin (the child shuts down cleanly) and returns its final counter lines.
    fn finish(mut self) -> String {
        drop(self.child.stdin.take());
        let mut rest = String::new();
        self.stdout
            .read_to_string(&mut rest)
            .expect("reading the echo child");
        let status = self.child.wait().expect("waiting for the echo child");
        assert!(status.success(), "echo child failed: {status}\n{rest}");
        rest
    }
}

impl Drop for EchoChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_client(ns: &str, ifname: &str, dst: &str, flows: usize) {
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(exe)
        .args([
            "--exact",
            "child_role",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "client")
        .env("TANDEM_XDP_IF", ifname)
        .env("TANDEM_XDP_DST", dst)
        .env("TANDEM_XDP_FLOWS", flows.to_string())
        .stdin(Stdio::null())
        .output()
        .expect("spawning the client child");
    assert!(
        out.status.success(),
        "client on {ifname} -> {dst} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn counter(report: &str, name: &str) -> u64 {
    report
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("counter {name} missing in:\n{report}"))
}

#[test]
fn echo_through_both_queues_with_vlans_tcp_and_icmp() {
    for mode in ["native", "generic"] {
        let topo = Topology::new(&format!("echo-{mode}"));
        let echo = EchoChild::start(&topo.server, mode);
        assert!(
            topo.xdp_attached(),
            "no XDP program on {SERVER_IF} while serving"
        );

        // Link-local multicast (as clients send) and unicast to the global address (as
        // relays send), from 32 source ports so both queues get flows.
        run_client(&topo.client, CLIENT_IF, "ff02::1:2", 32);
        run_client(&topo.client, CLIENT_IF, SERVER_GUA, 32);
        // 802.1Q and QinQ clients are answered with their tags. This kernel has no 802.1Q
        // support (CONFIG_VLAN_8021Q off), so the tagged client is scapy on a raw socket.
        run_vlan_client(&topo.client, "100");
        run_vlan_client(&topo.client, "10,20");

        // The kernel still gets ICMPv6 and TCP.
        sh(
            Some(&topo.client),
            &["ping", "-6", "-c2", "-i0.2", "-W2", SERVER_GUA],
        );
        let tcp = run_tcp_probe(&topo.client);
        assert_eq!(tcp, "tcp-echo:hello");

        let report = echo.finish();
        eprintln!("[{mode}] {report}");
        assert!(counter(&report, "redirected") >= 80, "{report}");
        assert!(
            counter(&report, "pass_not_udp") > 0,
            "ICMPv6/TCP not counted as passed: {report}"
        );
        assert_eq!(counter(&report, "bad_checksum"), 0, "{report}");
        // Native mode: veth delivers each flow on the queue its sender hashed it to, so both
        // queues (one shard each) carried traffic. Generic mode on veth records no RX queue:
        // everything arrives on queue 0, which is why every queue gets a socket.
        if mode == "native" {
            assert!(
                counter(&report, "shard0_rx") > 0 && counter(&report, "shard1_rx") > 0,
                "{report}"
            );
        }
        assert_eq!(
            counter(&report, "shard0_rx") + counter(&report, "shard1_rx"),
            80,
            "{report}"
        );
        assert!(
            report.contains(&format!(
                "mode={}",
                if mode == "native" {
                    "Native"
                } else {
                    "Generic"
                }
            )),
            "{report}"
        );
        // Clean shutdown detached the program.
        assert!(!topo.xdp_attached(), "XDP program left after a clean exit");
    }
}

/// Sends tagged Solicit-sized datagrams from a raw socket and checks each echo carries the
/// same tag stack (TPIDs and VLAN ids), the reflected MACs, and a valid UDP checksum.
const VLAN_CLIENT: &str = r#"
import sys
from scapy.all import Ether, Dot1Q, Dot1AD, IPv6, UDP, Raw, AsyncSniffer, sendp, get_if_hwaddr
iface, tags = sys.argv[1], [int(t) for t in sys.argv[2].split(",")]
mac = get_if_hwaddr(iface)
def tagged(pkt):
    stack = []
    layer = pkt.payload
    while isinstance(layer, (Dot1Q, Dot1AD)):
        stack.append(("ad" if isinstance(layer, Dot1AD) or layer.name == "802_1AD" else "q", layer.vlan))
        layer = layer.payload
    return stack, layer
expected = [("ad", tags[0]), ("q", tags[1])] if len(tags) == 2 else [("q", tags[0])]
sniffer = AsyncSniffer(iface=iface, filter=None, lfilter=lambda p: p.haslayer(UDP) and p[UDP].sport == 547)
sniffer.start()
import time; time.sleep(0.5)
sent = []
for i in range(8):
    l2 = Ether(src=mac, dst="33:33:00:01:00:02")
    if len(tags) == 2:
        l2 = l2 / Dot1AD(vlan=tags[0]) / Dot1Q(vlan=tags[1])
    else:
        l2 = l2 / Dot1Q(vlan=tags[0])
    payload = ("vlan-%s-%d" % (sys.argv[2], i)).encode()
    sendp(l2 / IPv6(src="fe80::2", dst="ff02::1:2", hlim=1) / UDP(sport=546, dport=547) / Raw(payload), iface=iface, verbose=False)
    sent.append(payload)
    time.sleep(0.05)
time.sleep(1.0)
replies = sniffer.stop()
got = {}
for r in replies:
    stack, ip = tagged(r)
    if not isinstance(ip, IPv6):
        continue
    udp = ip[UDP]
    data = bytes(udp.payload)
    wire_sum = udp.chksum
    del udp.chksum
    rebuilt = IPv6(src=ip.src, dst=ip.dst) / UDP(sport=udp.sport, dport=udp.dport) / Raw(data)
    want_sum = IPv6(bytes(rebuilt))[UDP].chksum
    assert stack == expected, "tag stack %r, expected %r" % (stack, expected)
    assert r[Ether].dst == mac, "reply not to the client MAC: %s" % r[Ether].dst
    assert ip.dst == "fe80::2" and ip.src == "fe80::1", (ip.src, ip.dst)
    assert wire_sum == want_sum, "UDP checksum %#x, expected %#x" % (wire_sum, want_sum)
    got[data] = True
missing = [p for p in sent if b"echo:" + p not in got]
assert not missing, "no tagged echo for %r (replies: %d)" % (missing, len(replies))
print("VLAN OK", sys.argv[2], len(sent))
"#;

fn run_vlan_client(client_ns: &str, tags: &str) {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            client_ns,
            "/usr/bin/python3",
            "-c",
            VLAN_CLIENT,
            CLIENT_IF,
            tags,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("spawning the scapy VLAN client (python3-scapy)");
    assert!(
        out.status.success(),
        "VLAN client with tags {tags} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run_tcp_probe(client_ns: &str) -> String {
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new("ip")
        .args(["netns", "exec", client_ns])
        .arg(exe)
        .args([
            "--exact",
            "child_role",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "tcp")
        .stdin(Stdio::null())
        .output()
        .expect("spawning the TCP probe");
    assert!(
        out.status.success(),
        "TCP probe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.split_once("TCP ").map(|(_, rest)| rest))
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn no_program_left_after_sigkill_or_sigterm() {
    for signal in ["KILL", "TERM"] {
        let topo = Topology::new(&format!("kill-{signal}"));
        let echo = EchoChild::start(&topo.server, "native");
        assert!(topo.xdp_attached());
        sh(
            None,
            &["kill", &format!("-{signal}"), &echo.pid().to_string()],
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while topo.xdp_attached() {
            assert!(
                Instant::now() < deadline,
                "XDP program still attached 5 s after SIG{signal}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(echo);
        // The queue can be bound again right away (EBUSY is retried).
        let again = EchoChild::start(&topo.server, "native");
        assert!(topo.xdp_attached());
        again.finish();
    }
}

/// Entry point of the child roles; does nothing (and passes) when run directly.
#[test]
#[ignore = "child role of the other tests, run inside a namespace by them"]
fn child_role() {
    match std::env::var(CHILD_ENV).as_deref() {
        Ok("echo") => echo_role(),
        Ok("client") => client_role(),
        Ok("tcp") => tcp_role(),
        _ => {}
    }
}

fn echo_role() {
    let mode = match std::env::var("TANDEM_XDP_ATTACH").as_deref() {
        Ok("generic") => AttachMode::Generic,
        Ok("native") => AttachMode::Native,
        _ => AttachMode::Auto,
    };
    let config = XdpConfig {
        attach_mode: mode,
        frames_per_queue: 1024,
        ring_size: 256,
        ..XdpConfig::default()
    };
    let (plane, shards) = XdpDataPlane::open(&[SERVER_IF.to_owned()], &config, None, 547)
        .unwrap_or_else(|e| panic!("opening the data plane: {e}"));
    assert_eq!(shards.len(), 2, "one shard per veth queue");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut threads = Vec::new();
    for shard in shards {
        let stop = stop.clone();
        threads.push(std::thread::spawn(move || {
            let mut io = shard.io;
            let mut replies: Vec<(TxMeta, Vec<u8>)> = Vec::new();
            let mut received = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                io.recv_batch(Some(Duration::from_millis(20)), &mut |meta, payload| {
                    let mut reply = b"echo:".to_vec();
                    reply.extend_from_slice(payload);
                    replies.push((TxMeta::reply_to(meta, meta.src), reply));
                })
                .expect("recv_batch");
                received += replies.len() as u64;
                for (meta, reply) in replies.drain(..) {
                    io.send(&meta, &reply).expect("send");
                }
                io.flush().expect("flush");
            }
            (shard.index, received)
        }));
    }

    let listener = TcpListener::bind((Ipv6Addr::UNSPECIFIED, TCP_PORT)).expect("TCP listener");
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buf = [0u8; 64];
            let n = stream.read(&mut buf).unwrap_or(0);
            let _ = stream.write_all(b"tcp-echo:");
            let _ = stream.write_all(&buf[..n]);
        }
    });

    println!("READY");
    std::io::stdout().flush().unwrap();
    // Serve until the parent closes our stdin.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut report = String::new();
    for t in threads {
        let (index, received) = t.join().expect("shard thread");
        report.push_str(&format!("shard{index}_rx={received} "));
    }
    for (name, value) in plane.io_counters() {
        report.push_str(&format!("{name}={value} "));
    }
    for (_, counters) in plane.program_counters() {
        for c in XdpCounter::ALL {
            report.push_str(&format!("{}={} ", c.name(), counters.get(c)));
        }
    }
    for (ifname, mode) in plane.attach_modes() {
        report.push_str(&format!("if={ifname} mode={mode:?} "));
    }
    println!("{report}");
}

fn client_role() {
    let ifname = std::env::var("TANDEM_XDP_IF").expect("TANDEM_XDP_IF");
    let dst: Ipv6Addr = std::env::var("TANDEM_XDP_DST")
        .expect("dst")
        .parse()
        .expect("dst addr");
    let flows: usize = std::env::var("TANDEM_XDP_FLOWS")
        .expect("flows")
        .parse()
        .expect("flows");
    let ifindex: u32 = std::fs::read_to_string(format!("/sys/class/net/{ifname}/ifindex"))
        .expect("ifindex")
        .trim()
        .parse()
        .expect("ifindex");
    let scope = if dst.is_multicast() || dst.segments()[0] == 0xfe80 {
        ifindex
    } else {
        0
    };
    let target = SocketAddrV6::new(dst, 547, 0, scope);
    let expected_src: Ipv6Addr = if dst.is_multicast() {
        SERVER_LL
    } else {
        SERVER_GUA
    }
    .parse()
    .unwrap();
    for flow in 0..flows {
        let socket = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)).expect("client socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let payload = format!("flow-{flow}-via-{ifname}");
        let mut answered = false;
        // A few tries: the first frames on a fresh link can race neighbour discovery.
        for _ in 0..5 {
            socket.send_to(payload.as_bytes(), target).expect("send");
            let mut buf = [0u8; 256];
            match socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    assert_eq!(&buf[..n], format!("echo:{payload}").as_bytes());
                    let std::net::SocketAddr::V6(from) = from else {
                        panic!("v4 reply")
                    };
                    assert_eq!(*from.ip(), expected_src, "reply source");
                    assert_eq!(from.port(), 547, "reply source port");
                    answered = true;
                    break;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("recv: {e}"),
            }
        }
        assert!(answered, "no echo for flow {flow} via {ifname} to {dst}");
    }
    println!("CLIENT OK {flows}");
}

fn tcp_role() {
    let target = SocketAddrV6::new(SERVER_GUA.parse().unwrap(), TCP_PORT, 0, 0);
    let mut stream =
        TcpStream::connect_timeout(&target.into(), Duration::from_secs(3)).expect("TCP connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    stream.write_all(b"hello").expect("TCP write");
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("TCP read");
    println!("TCP {reply}");
}
