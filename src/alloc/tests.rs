use super::*;
use crate::config::{PdPool, Prefix, Reservation, ReservationKey};
use hashbrown::HashSet;
use proptest::prelude::*;

fn pool(start: u128, len: u128) -> Pool {
    Pool {
        start: Ipv6Addr::from(start),
        end: Ipv6Addr::from(start + len - 1),
    }
}

const BASE: u128 = 0x2001_0db8_0001_0000_0000_0000_0000_0000;

fn ownership() -> impl Strategy<Value = Ownership> {
    prop_oneof![
        Just(Ownership::Any),
        Just(Ownership::Odd),
        Just(Ownership::Even)
    ]
}

#[test]
fn partition_halves_and_shards_are_disjoint() {
    let a = Ipv6Addr::from(BASE | 0b1011);
    // iid = 11: bit 0 = 1 (primary), (11 >> 1) % 4 = 1.
    assert!(Partition::new(1, 4, Ownership::Odd).owns_address(a));
    assert!(!Partition::new(1, 4, Ownership::Even).owns_address(a));
    assert!(!Partition::new(2, 4, Ownership::Any).owns_address(a));
}

#[test]
fn same_client_same_address() {
    let p = pool(BASE, 1 << 64);
    let part = Partition::new(0, 1, Ownership::Any);
    let a = na_candidate(b"\x00\x03\x00\x01abcdef", 7, 0, &p, &part).unwrap();
    assert_eq!(
        na_candidate(b"\x00\x03\x00\x01abcdef", 7, 0, &p, &part),
        Some(a)
    );
    assert_ne!(
        na_candidate(b"\x00\x03\x00\x01abcdef", 8, 0, &p, &part),
        Some(a)
    );
}

#[test]
fn small_pool_fills_to_the_last_address() {
    let p = pool(BASE | 0x100, 40);
    let part = Partition::new(1, 3, Ownership::Even);
    let owned: HashSet<Ipv6Addr> = (0..40u128)
        .map(|i| Ipv6Addr::from(BASE | (0x100 + i)))
        .filter(|a| part.owns_address(*a))
        .collect();
    let mut taken = HashSet::new();
    for c in 0u32.. {
        match allocate_na(&c.to_be_bytes(), 1, &p, &part, |a| !taken.contains(&a)) {
            Some(a) => assert!(taken.insert(a)),
            None => break,
        }
    }
    assert_eq!(taken, owned);
}

#[test]
fn bitmap_exhausts_and_recovers() {
    let pd = PdPool {
        prefix: "2001:db8:100::/40".parse().unwrap(),
        delegated_length: 48,
    };
    let part = Partition::new(2, 3, Ownership::Any);
    let mut bm = PrefixBitmap::new(pd, &part);
    assert_eq!(bm.owned(), 85); // indices 2, 5, ..., 254
    let mut got = Vec::new();
    while let Some(i) = bm.allocate(|_| true) {
        assert!(part.owns_prefix_index(i));
        got.push(i);
    }
    assert_eq!(got.len(), 85);
    assert_eq!(bm.free(), 0);
    assert!(bm.release(got[40]));
    assert!(!bm.release(got[40]));
    assert_eq!(bm.allocate(|_| true), Some(got[40]));
    assert!(!bm.take(0), "index 0 is shard 0's");
    assert_eq!(bm.index_of(bm.prefix_at(5), 48), Some(5));
    assert_eq!(bm.index_of(bm.prefix_at(6), 48), None);
}

#[test]
fn reservation_lookup_order() {
    let list = vec![
        Reservation {
            key: ReservationKey::RemoteId {
                enterprise: 3561,
                id: b"port1".to_vec(),
            },
            addresses: vec!["2001:db8::1".parse().unwrap()],
            prefixes: vec![],
        },
        Reservation {
            key: ReservationKey::Duid(b"\x00\x03\x00\x01aabbcc".to_vec()),
            addresses: vec!["2001:db8::2".parse().unwrap()],
            prefixes: vec![Prefix::new("2001:db8:1::".parse().unwrap(), 56).unwrap()],
        },
        Reservation {
            key: ReservationKey::LinkLayer(b"aabbcc".to_vec()),
            addresses: vec!["2001:db8::3".parse().unwrap()],
            prefixes: vec![],
        },
    ];
    let r = Reservations::new(&list);
    let mut s = Vec::new();
    let mut keys = ClientKeys {
        duid: b"\x00\x03\x00\x01zzz",
        remote_id: Some((3561, b"port1")),
        ..ClientKeys::default()
    };
    assert_eq!(r.lookup(&keys, &mut s), Some(&list[0]));
    keys.remote_id = Some((9, b"port1"));
    assert_eq!(r.lookup(&keys, &mut s), None);
    keys.link_layer = duid_link_layer(b"\x00\x03\x00\x01aabbcc");
    assert_eq!(r.lookup(&keys, &mut s), Some(&list[2]));
    keys.duid = b"\x00\x03\x00\x01aabbcc";
    assert_eq!(r.lookup(&keys, &mut s), Some(&list[1]));
    assert!(r.is_reserved_address("2001:db8::3".parse().unwrap()));
    assert!(r.is_reserved_prefix("2001:db8:1::".parse().unwrap(), 56));
}

proptest! {
    #[test]
    fn candidate_is_in_pool_partition_and_half(
        start in any::<u128>(),
        len in 1u128..1_000_000,
        shards in 1usize..9,
        shard_seed in any::<usize>(),
        own in ownership(),
        duid in proptest::collection::vec(any::<u8>(), 1..20),
        iaid in any::<u32>(),
        attempt in 0u32..16,
    ) {
        let start = start.min(u128::MAX - len);
        let p = pool(start, len);
        let part = Partition::new(shard_seed % shards, shards, own);
        if let Some(a) = na_candidate(&duid, iaid, attempt, &p, &part) {
            prop_assert!(p.contains(a));
            prop_assert!(part.owns_address(a));
        }
    }

    #[test]
    fn never_two_leases_on_one_address(
        len in 1u128..300,
        shards in 1usize..4,
        own in ownership(),
        ops in proptest::collection::vec((any::<u16>(), any::<bool>()), 1..400),
    ) {
        let p = pool(BASE | 0x1000, len);
        // Every shard of one server allocates against its own taken set; the union must
        // never hold an address twice, and every address is in its shard's partition.
        let parts: Vec<Partition> = (0..shards).map(|i| Partition::new(i, shards, own)).collect();
        let mut taken: Vec<HashSet<Ipv6Addr>> = vec![HashSet::new(); shards];
        let mut held: Vec<(usize, Ipv6Addr)> = Vec::new();
        for (client, free) in ops {
            if free && !held.is_empty() {
                let (s, a) = held.swap_remove(usize::from(client) % held.len());
                prop_assert!(taken[s].remove(&a));
                continue;
            }
            let s = usize::from(client) % shards;
            let t = &taken[s];
            if let Some(a) = allocate_na(&client.to_be_bytes(), 0, &p, &parts[s], |a| !t.contains(&a)) {
                prop_assert!(p.contains(a) && parts[s].owns_address(a));
                for (k, other) in taken.iter().enumerate() {
                    prop_assert!(!other.contains(&a), "{a} already held in shard {k}");
                }
                taken[s].insert(a);
                held.push((s, a));
            }
        }
    }

    #[test]
    fn bitmap_round_trips(
        pool_len in 40u8..56,
        deleg in 0u8..10,
        shards in 1usize..5,
        ops in proptest::collection::vec(any::<(bool, u16)>(), 1..300),
    ) {
        let pd = PdPool {
            prefix: Prefix::new("2001:db8::".parse().unwrap(), pool_len).unwrap(),
            delegated_length: pool_len + deleg,
        };
        let mut held: Vec<u32> = Vec::new();
        let mut all: HashSet<u32> = HashSet::new();
        let mut maps: Vec<PrefixBitmap> = (0..shards)
            .map(|i| PrefixBitmap::new(pd, &Partition::new(i, shards, Ownership::Any)))
            .collect();
        prop_assert_eq!(maps.iter().map(|m| m.owned()).sum::<u32>(), pd.count());
        for (alloc, x) in ops {
            let s = usize::from(x) % shards;
            if alloc || held.is_empty() {
                if let Some(i) = maps[s].allocate(|_| true) {
                    prop_assert!(i < pd.count() && i as usize % shards == s);
                    prop_assert!(all.insert(i), "index {} handed out twice", i);
                    held.push(i);
                } else {
                    prop_assert_eq!(maps[s].free(), 0);
                }
            } else {
                let i = held.swap_remove(usize::from(x) % held.len());
                prop_assert!(maps[i as usize % shards].release(i));
                all.remove(&i);
            }
        }
        let free: u32 = maps.iter().map(|m| m.free()).sum();
        prop_assert_eq!(free as usize + held.len(), pd.count() as usize);
    }
}
