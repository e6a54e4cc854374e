//! Host reservations: which client gets which fixed addresses and prefixes, looked up by the
//! identifiers a request carries, without allocating on the lookup path.

use std::net::Ipv6Addr;

use hashbrown::{HashMap, HashSet};

use crate::config::{Reservation, ReservationKey};

/// The identifiers of one request that reservations can match, borrowed from the packet.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientKeys<'a> {
    /// CLIENTID (RFC 8415 §21.2).
    pub duid: &'a [u8],
    /// RFC 4649 Remote-ID from the relay closest to the client: (enterprise, remote-id).
    pub remote_id: Option<(u32, &'a [u8])>,
    /// RFC 4580 Subscriber-ID from the relay closest to the client.
    pub subscriber_id: Option<&'a [u8]>,
    /// RFC 6939 client link-layer address (address bytes only), or the one in a
    /// DUID-LL/DUID-LLT when no relay supplied it.
    pub link_layer: Option<&'a [u8]>,
    /// RFC 8415 §21.18 Interface-ID of the relay closest to the client, with that relay's
    /// link-address.
    pub interface_id: Option<(Ipv6Addr, &'a [u8])>,
}

/// Kinds of key, the first byte of every map key so one map serves them all.
const K_DUID: u8 = 1;
const K_REMOTE: u8 = 2;
const K_SUBSCRIBER: u8 = 3;
const K_LINK_LAYER: u8 = 4;
const K_INTERFACE: u8 = 5;

/// The configured reservations, indexed.
#[derive(Clone, Debug, Default)]
pub struct Reservations {
    list: Vec<Reservation>,
    by_key: HashMap<Box<[u8]>, usize>,
    addresses: HashSet<Ipv6Addr>,
    prefixes: HashSet<(Ipv6Addr, u8)>,
}

fn encode_key(key: &ReservationKey, out: &mut Vec<u8>) {
    out.clear();
    match key {
        ReservationKey::Duid(d) => {
            out.push(K_DUID);
            out.extend_from_slice(d);
        }
        ReservationKey::RemoteId { enterprise, id } => {
            out.push(K_REMOTE);
            out.extend_from_slice(&enterprise.to_be_bytes());
            out.extend_from_slice(id);
        }
        ReservationKey::SubscriberId(id) => {
            out.push(K_SUBSCRIBER);
            out.extend_from_slice(id);
        }
        ReservationKey::LinkLayer(mac) => {
            out.push(K_LINK_LAYER);
            out.extend_from_slice(mac);
        }
        ReservationKey::InterfaceId { relay, id } => {
            out.push(K_INTERFACE);
            out.extend_from_slice(&relay.octets());
            out.extend_from_slice(id);
        }
    }
}

impl Reservations {
    pub fn new(list: &[Reservation]) -> Reservations {
        let mut r = Reservations {
            list: list.to_vec(),
            ..Reservations::default()
        };
        let mut buf = Vec::new();
        for (i, res) in list.iter().enumerate() {
            encode_key(&res.key, &mut buf);
            r.by_key.insert(buf.clone().into_boxed_slice(), i);
            r.addresses.extend(res.addresses.iter().copied());
            r.prefixes
                .extend(res.prefixes.iter().map(|p| (p.addr, p.len)));
        }
        r
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The reservation for a client, trying its identifiers in a fixed order of
    /// specificity: DUID, Remote-ID, Subscriber-ID, link-layer address, Interface-ID.
    /// `scratch` is reused across calls so the lookup does not allocate once warm.
    pub fn lookup(&self, keys: &ClientKeys<'_>, scratch: &mut Vec<u8>) -> Option<&Reservation> {
        if self.list.is_empty() {
            return None;
        }
        let mut probe = |kind: u8, parts: &[&[u8]]| -> Option<usize> {
            scratch.clear();
            scratch.push(kind);
            for p in parts {
                scratch.extend_from_slice(p);
            }
            self.by_key.get(scratch.as_slice()).copied()
        };
        let hit = probe(K_DUID, &[keys.duid])
            .or_else(|| {
                keys.remote_id
                    .and_then(|(e, id)| probe(K_REMOTE, &[&e.to_be_bytes(), id]))
            })
            .or_else(|| keys.subscriber_id.and_then(|id| probe(K_SUBSCRIBER, &[id])))
            .or_else(|| keys.link_layer.and_then(|mac| probe(K_LINK_LAYER, &[mac])))
            .or_else(|| {
                keys.interface_id
                    .and_then(|(relay, id)| probe(K_INTERFACE, &[&relay.octets(), id]))
            });
        hit.map(|i| &self.list[i])
    }

    /// Whether `a` is reserved for some client (so dynamic allocation must skip it).
    pub fn is_reserved_address(&self, a: Ipv6Addr) -> bool {
        self.addresses.contains(&a)
    }

    pub fn is_reserved_prefix(&self, p: Ipv6Addr, len: u8) -> bool {
        self.prefixes.contains(&(p, len))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Reservation> {
        self.list.iter()
    }
}

/// The link-layer address inside a DUID-LLT (type 1) or DUID-LL (type 3), RFC 8415 §11.2,
/// §11.4: the fallback for link-layer reservations when no relay added RFC 6939's option.
pub fn duid_link_layer(duid: &[u8]) -> Option<&[u8]> {
    match duid {
        [0, 1, _, _, _, _, _, _, rest @ ..] if !rest.is_empty() => Some(rest),
        [0, 3, _, _, rest @ ..] if !rest.is_empty() => Some(rest),
        _ => None,
    }
}
