//! The null reflector: a [`Service`] that answers every DHCPv6 client or relay message with
//! the same bytes, only the message type turned into the one a server answers with, doing
//! no other DHCPv6 work and touching no lease. Run through the same shard loop and backend as
//! the engine, it measures the ceiling of the I/O path alone: the baseline of the "one shard
//! answers at ≥ 0.8 of a null reflector" benchmark (issue 2, item 13). Load generators
//! (perfdhcp, `tandem-bench run`) match the answers to their transactions by type and
//! transaction id, which is why the type is turned rather than echoed.

use crate::io::{RxMeta, TxMeta};
use crate::lease::LeaseTable;
use crate::time::Timestamp;
use crate::wire::{
    MessageType, Options, HEADER_LEN as CLIENT_HEADER_LEN, MAX_RELAY_DEPTH as HOP_COUNT_LIMIT,
    OPTION_RAPID_COMMIT, OPTION_RELAY_MSG, RELAY_HEADER_LEN,
};

use super::{Outgoing, Service};

/// Answers each client message in place; see the module documentation.
#[derive(Clone, Copy, Debug, Default)]
pub struct Reflector {
    pub reflected: u64,
    /// Datagrams that were not client or relay messages (not answered).
    pub ignored: u64,
}

/// Turns `msg` into the server's answer type at every relay level (RFC 8415 §7.3: Solicit →
/// Advertise, or Reply with Rapid Commit §18.3.1; other client messages → Reply; Relay-forw →
/// Relay-repl, §19.3). Returns false, leaving the rest untouched, for anything else.
pub fn reflect_in_place(msg: &mut [u8]) -> bool {
    let mut off = 0usize;
    for _ in 0..=HOP_COUNT_LIMIT {
        let Some(&t) = msg.get(off) else {
            return false;
        };
        let Some(options_at) = off.checked_add(match MessageType::from(t) {
            MessageType::RelayForw => RELAY_HEADER_LEN,
            _ => CLIENT_HEADER_LEN,
        }) else {
            return false;
        };
        let Some(options) = msg
            .get(options_at..)
            .and_then(|b| Options::new_checked(b).ok())
        else {
            return false;
        };
        match MessageType::from(t) {
            MessageType::RelayForw => {
                // The Relay Message option's body starts 4 bytes after its header.
                let mut at = options_at;
                let mut inner = None;
                for o in options {
                    if o.code == OPTION_RELAY_MSG {
                        inner = Some(at + 4);
                        break;
                    }
                    at += o.wire_len();
                }
                let Some(inner) = inner else {
                    return false;
                };
                msg[off] = u8::from(MessageType::RelayRepl);
                off = inner;
            }
            MessageType::Solicit => {
                let rapid = options.clone().any(|o| o.code == OPTION_RAPID_COMMIT);
                msg[off] = u8::from(if rapid {
                    MessageType::Reply
                } else {
                    MessageType::Advertise
                });
                return true;
            }
            MessageType::Request
            | MessageType::Confirm
            | MessageType::Renew
            | MessageType::Rebind
            | MessageType::Release
            | MessageType::Decline
            | MessageType::InformationRequest => {
                msg[off] = u8::from(MessageType::Reply);
                return true;
            }
            _ => return false,
        }
    }
    false
}

impl Service for Reflector {
    fn owner(&self, _payload: &[u8], _shards: usize) -> Option<usize> {
        // Any shard may answer: no client state.
        None
    }

    fn handle<T: LeaseTable>(
        &mut self,
        rx: &RxMeta,
        payload: &[u8],
        _now: Timestamp,
        _table: &mut T,
        out: &mut Vec<u8>,
    ) -> Option<Outgoing> {
        out.extend_from_slice(payload);
        if !reflect_in_place(out) {
            self.ignored += 1;
            return None;
        }
        self.reflected += 1;
        // A reflected packet promises no lease.
        Some(Outgoing::immediate(TxMeta::reply_to(rx, rx.src)))
    }

    fn expire<T: LeaseTable>(&mut self, _now: Timestamp, _table: &mut T, _budget: usize) -> usize {
        0
    }

    fn log_counters(&self, shard: usize) {
        tracing::info!(
            shard,
            reflected = self.reflected,
            ignored = self.ignored,
            "reflector counters"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_get_the_server_type() {
        let mut m = vec![1, 0xaa, 0xbb, 0xcc, 0, 8, 0, 2, 0, 0];
        assert!(reflect_in_place(&mut m));
        assert_eq!(m[0], 2, "Solicit → Advertise");
        let mut m = vec![1, 0xaa, 0xbb, 0xcc, 0, 14, 0, 0];
        assert!(reflect_in_place(&mut m));
        assert_eq!(m[0], 7, "Solicit with Rapid Commit → Reply");
        for t in [3u8, 4, 5, 6, 8, 9, 11] {
            let mut m = vec![t, 1, 2, 3];
            assert!(reflect_in_place(&mut m));
            assert_eq!(m[0], 7);
        }
        for t in [2u8, 7, 10, 13, 200] {
            let mut m = vec![t, 1, 2, 3];
            assert!(!reflect_in_place(&mut m), "type {t} is not answered");
        }
    }

    #[test]
    fn relay_layers_become_relay_repl() {
        let inner = [3u8, 1, 2, 3];
        let mut relay = vec![12u8, 0];
        relay.extend_from_slice(&[0u8; 32]);
        relay.extend_from_slice(&[0, 18, 0, 2, 0x65, 0x30]); // Interface-ID first
        relay.extend_from_slice(&[0, 9, 0, inner.len() as u8]);
        relay.extend_from_slice(&inner);
        let mut outer = vec![12u8, 1];
        outer.extend_from_slice(&[0u8; 32]);
        outer.extend_from_slice(&[0, 9, 0, relay.len() as u8]);
        outer.extend_from_slice(&relay);
        assert!(reflect_in_place(&mut outer));
        assert_eq!(outer[0], 13);
        assert_eq!(outer[38], 13, "inner relay");
        assert_eq!(*outer.last().unwrap(), 3, "bytes unchanged");
        assert_eq!(outer[outer.len() - 4], 7, "Request → Reply");
    }

    #[test]
    fn malformed_relays_are_not_answered() {
        assert!(!reflect_in_place(&mut []));
        assert!(!reflect_in_place(&mut [12u8; 10]), "short relay header");
        let mut m = vec![12u8, 0];
        m.extend_from_slice(&[0u8; 32]);
        m.extend_from_slice(&[0, 9, 0, 40]); // Relay Message past the end
        assert!(!reflect_in_place(&mut m));
    }
}
