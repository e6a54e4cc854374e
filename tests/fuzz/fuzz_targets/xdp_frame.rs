//! Fuzzes the AF_XDP frame parser (src/io/xdp/frame.rs): Ethernet, up to two VLAN tags,
//! IPv6, UDP, with and without checksum verification. Beyond "never panics": the payload
//! lies inside the frame, and whatever parses is re-framed by the reply builder into a frame
//! that parses back to the same addresses, ports, tags and payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem::io::xdp::frame::{parse, write_reply, ReplyFraming};

fuzz_target!(|data: &[u8]| {
    for verify in [false, true] {
        let Ok(rx) = parse(data, 1, verify) else {
            continue;
        };
        let start = rx.payload.as_ptr() as usize - data.as_ptr() as usize;
        assert!(start + rx.payload.len() <= data.len());

        // Frame it again as if the client had sent it to us (unicast so the group filter
        // does not apply), then parse it back.
        let mut dst = rx.dst.octets();
        dst[0] = 0x20;
        let dst = std::net::Ipv6Addr::from(dst);
        let mut buf = vec![0u8; data.len() + 64];
        let framing = ReplyFraming {
            own_mac: rx.l2.src_mac,
            request_l2: &rx.l2,
            src: *rx.src.ip(),
            dst: std::net::SocketAddrV6::new(dst, 547, 0, 0),
            src_port: rx.src.port(),
            hop_limit: rx.hop_limit,
        };
        let n = write_reply(&mut buf, &framing, rx.payload).expect("fits: same payload, same tags");
        let back = parse(&buf[..n], 1, true).expect("our own frame parses with its checksum");
        assert_eq!(back.payload, rx.payload);
        assert_eq!(back.src, rx.src);
        assert_eq!(back.l2.vlans, rx.l2.vlans);
        assert_eq!(back.l2.vlan_count, rx.l2.vlan_count);
    }
});
