//! Fuzzes the DHCPv6 codec (src/wire): the relay walk, every option view, the shard
//! router's `client_id`, the owned `Repr` and the Relay-repl writer. Beyond "never panics",
//! it checks that the cheap and the full parsers agree and that whatever parses re-emits to
//! the same bytes. Seeds: tests/vectors/*.bin (see docs/FUZZING.md).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem::wire::{
    client_id, parse_relayed, DhcpOption, Error, MessageType, Options, Repr, Writer,
    OPTION_CLIENTID,
};

/// Decodes every option in `options`, descending into containers, as the engine would.
fn walk(options: Options<'_>, depth: usize) {
    if depth > 8 {
        return;
    }
    for raw in options {
        let Ok(opt) = DhcpOption::parse(raw) else {
            continue;
        };
        assert_eq!(opt.code(), raw.code);
        match opt {
            DhcpOption::ClientId(d) | DhcpOption::ServerId(d) => {
                let _ = d.kind();
            }
            DhcpOption::IaNa(ia) => {
                let _ = (ia.iaid(), ia.t1(), ia.t2());
                for a in ia.addresses().flatten() {
                    let _ = (a.address(), a.preferred_lifetime(), a.valid_lifetime());
                    walk(a.options(), depth + 1);
                }
                walk(ia.options(), depth + 1);
            }
            DhcpOption::IaTa(ia) => walk(ia.options(), depth + 1),
            DhcpOption::IaPd(ia) => {
                for p in ia.prefixes().flatten() {
                    let _ = (p.prefix(), p.prefix_len(), p.pd_exclude());
                    walk(p.options(), depth + 1);
                }
                walk(ia.options(), depth + 1);
            }
            DhcpOption::IaAddr(a) => walk(a.options(), depth + 1),
            DhcpOption::IaPrefix(p) => walk(p.options(), depth + 1),
            DhcpOption::DomainList(names) => {
                for name in names {
                    let _ = name.to_string();
                }
            }
            DhcpOption::ClientFqdn { name, .. } => {
                let _ = name.labels().count();
            }
            DhcpOption::VendorOpts { options, .. } => walk(options, depth + 1),
            DhcpOption::UserClass(data) | DhcpOption::VendorClass { data, .. } => {
                let _ = data.iter().count();
            }
            DhcpOption::Oro(codes) | DhcpOption::Ero(codes) => {
                let _ = codes.iter().count();
            }
            DhcpOption::StatusCode(s) => {
                let _ = (s.status(), s.message_str());
            }
            _ => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let routed = client_id(data);
    match parse_relayed(data) {
        Ok(relayed) => {
            for layer in relayed.layers() {
                let _ = (
                    layer.hop_count(),
                    layer.link_address(),
                    layer.peer_address(),
                );
                let _ = (layer.relay_port(), layer.remote_id(), layer.subscriber_id());
                let _ = (layer.client_linklayer_addr(), layer.ero());
                walk(layer.options(), 0);
            }
            let message = relayed.message();
            walk(message.options(), 0);

            // The shard router's shortcut must agree with the full parse.
            let full = match message.client_id() {
                None => Err(Error::MissingOption {
                    code: OPTION_CLIENTID,
                }),
                Some(Err(e)) => Err(e),
                Some(Ok(duid)) => Ok(duid.as_bytes()),
            };
            assert_eq!(routed, full);

            // Answering through the relay chain mirrors every layer.
            let mut out = Vec::new();
            let mut w = Writer::relay_reply(&mut out, &relayed);
            w.header(MessageType::Reply, message.transaction_id());
            if w.finish().is_ok() {
                let reply = parse_relayed(&out).expect("our own Relay-repl parses");
                assert_eq!(reply.depth(), relayed.depth());
                for (q, r) in relayed.layers().iter().zip(reply.layers()) {
                    assert_eq!(q.interface_id(), r.interface_id());
                    assert_eq!(q.peer_address(), r.peer_address());
                }
            }
        }
        Err(_) => {
            // client_id may still succeed: it does not reject mixed relay chains.
        }
    }

    if let Ok(repr) = Repr::parse(data) {
        let mut out = Vec::new();
        repr.emit(&mut out).expect("a parsed Repr emits");
        assert_eq!(out, data, "parse -> emit is not byte-exact");
        assert_eq!(repr.buffer_len(), data.len());
    }
});
