//! Fuzzes the RFC 8156 failover codec (src/wire/failover.rs) and the endpoint that consumes
//! it. The input is a TCP byte stream: frames are split, every message is viewed and its
//! reprs decoded; whatever decodes as a BNDUPD/BNDREPLY re-emits and decodes to the same
//! repr. Then the same stream is fed to a live secondary endpoint (after a connect), which
//! must never panic whatever arrives.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem::failover::{Endpoint, FailoverConfig, Role};
use tandem::lease::memory::MemoryTable;
use tandem::time::Timestamp;
use tandem::wire::failover::{
    split_frame, top_status, BindingUpdateRepr, Builder, ConnectRepr, Frame, Message, MessageType,
    StateRepr,
};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let mut repr = BindingUpdateRepr::default();
    while let Ok(Frame::Complete { message, consumed }) = split_frame(rest) {
        rest = &rest[consumed..];
        let Ok(m) = Message::new_checked(message) else {
            continue;
        };
        let _ = (m.msg_type(), m.transaction_id(), m.sent_time());
        let opts = m.options();
        let _ = opts.into_iter().count();
        let _ = (ConnectRepr::parse(opts), StateRepr::parse(opts), top_status(opts));
        for reply in [false, true] {
            if repr.parse(opts, reply).is_ok() {
                let mut out = Vec::new();
                let kind = if reply { MessageType::Bndreply } else { MessageType::Bndupd };
                let mut b = Builder::new(&mut out, kind, m.transaction_id(), m.sent_time());
                repr.emit(&mut b, reply);
                if b.finish().is_ok() {
                    let Ok(Frame::Complete { message: again, .. }) = split_frame(&out) else {
                        panic!("our own frame splits");
                    };
                    let mut back = BindingUpdateRepr::default();
                    back.parse(Message::new_checked(again).unwrap().options(), reply)
                        .expect("our own update parses");
                    if !reply {
                        // A BNDUPD carries no status codes (§7.4): compare without them.
                        let strip = |r: &BindingUpdateRepr| {
                            let mut r = r.clone();
                            r.top_status = None;
                            r.records.iter_mut().for_each(|x| x.status_code = None);
                            r
                        };
                        assert_eq!(strip(&back), strip(&repr), "emit -> parse changed the update");
                    }
                }
            }
        }
    }

    let now = Timestamp(1_800_000_000_000);
    let mut ep = Endpoint::new(FailoverConfig::new(Role::Secondary), None, now);
    let mut table = MemoryTable::new();
    ep.handle_connected(now);
    ep.handle_stream(now, data, &mut table);
    let mut out = Vec::new();
    while ep.poll_transmit(now, &mut table, &mut out) {}
    while ep.poll_event().is_some() {}
});
