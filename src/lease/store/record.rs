//! WAL record codec. Each record is framed as
//!
//! ```text
//! len: u16 LE (body length) | body (len bytes) | crc32(len ‖ body): u32 LE
//! body[0] = kind: 1 Upsert (a whole lease), 2 Remove (a resource), 3 Commit (batch end)
//! ```
//!
//! A commit batch is its lease records followed by one `Commit { seq, count }`; replay applies
//! a batch only when its Commit record is intact, so a torn write never applies half a batch.
//! Every record carries the whole lease (not a diff), so replay is idempotent.

use std::net::Ipv6Addr;

use crate::lease::{BindingState, Duid, IaType, Lease, Resource, DUID_MAX_LEN};

pub const KIND_UPSERT: u8 = 1;
pub const KIND_REMOVE: u8 = 2;
pub const KIND_COMMIT: u8 = 3;

/// Upsert body without the DUID bytes.
const UPSERT_FIXED: usize = 1 + 16 + 1 + 1 + 1 + 1 + 4 * 4 + 8 * 3 + 1;
/// Largest frame: header + biggest upsert + crc.
pub const MAX_FRAME: usize = 2 + UPSERT_FIXED + DUID_MAX_LEN + 4;

/// One decoded WAL record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    Upsert(Lease),
    Remove(Resource),
    Commit { seq: u64, count: u32 },
}

/// Why a frame could not be decoded; replay stops at the first one (torn or corrupt tail).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the frame needs (end of a torn write, or end of the data).
    Truncated,
    /// The checksum does not match the bytes.
    BadCrc,
    /// The checksum matches but the body makes no sense (unknown kind, bad lengths/values).
    BadBody,
}

/// Length of the frame `encode` appends for `record` (room is checked before encoding).
pub fn frame_len(record: &Record) -> usize {
    let body = match record {
        Record::Upsert(l) => UPSERT_FIXED + l.duid.as_bytes().len(),
        Record::Remove(_) => 1 + 16 + 1,
        Record::Commit { .. } => 1 + 8 + 4,
    };
    2 + body + 4
}

/// Appends one frame for `record` to `out`. The frame is assembled in a stack buffer and
/// appended with one copy (this runs once per lease change on the packet path).
pub fn encode(record: &Record, out: &mut Vec<u8>) {
    let mut f = Frame {
        buf: [0u8; MAX_FRAME],
        len: 2,
    };
    match record {
        Record::Upsert(l) => {
            f.put(&[KIND_UPSERT]);
            f.put(&l.resource.addr.octets());
            f.put(&[
                l.resource.prefix_len,
                l.ia_type as u8,
                l.state as u8,
                u8::from(l.update_pending),
            ]);
            f.put(&l.iaid.to_le_bytes());
            f.put(&l.preferred_lifetime.to_le_bytes());
            f.put(&l.valid_lifetime.to_le_bytes());
            f.put(&l.subnet.to_le_bytes());
            f.put(&l.cltt.to_le_bytes());
            f.put(&l.expires_at.to_le_bytes());
            f.put(&l.partner_lifetime.to_le_bytes());
            let duid = l.duid.as_bytes();
            f.put(&[duid.len() as u8]); // <= DUID_MAX_LEN by construction of Duid
            f.put(duid);
        }
        Record::Remove(r) => {
            f.put(&[KIND_REMOVE]);
            f.put(&r.addr.octets());
            f.put(&[r.prefix_len]);
        }
        Record::Commit { seq, count } => {
            f.put(&[KIND_COMMIT]);
            f.put(&seq.to_le_bytes());
            f.put(&count.to_le_bytes());
        }
    }
    let body_len = (f.len - 2) as u16; // at most MAX_FRAME
    f.buf[..2].copy_from_slice(&body_len.to_le_bytes());
    let crc = crc32fast::hash(&f.buf[..f.len]);
    f.put(&crc.to_le_bytes());
    out.extend_from_slice(&f.buf[..f.len]);
}

/// A frame being assembled: `MAX_FRAME` bounds every record (a DUID is at most
/// `DUID_MAX_LEN`), so `put` never runs out of room.
struct Frame {
    buf: [u8; MAX_FRAME],
    len: usize,
}

impl Frame {
    fn put(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        if let Some(dst) = self.buf.get_mut(self.len..end) {
            dst.copy_from_slice(bytes);
            self.len = end;
        }
    }
}

/// Decodes the frame at the start of `buf`; returns the record and the frame length.
pub fn decode(buf: &[u8]) -> Result<(Record, usize), DecodeError> {
    let len_bytes: [u8; 2] = buf
        .get(..2)
        .and_then(|b| b.try_into().ok())
        .ok_or(DecodeError::Truncated)?;
    let body_len = usize::from(u16::from_le_bytes(len_bytes));
    if body_len == 0 {
        // Preallocated space is zero-filled: a zero length is the end of the written data.
        return Err(DecodeError::Truncated);
    }
    let frame_len = 2 + body_len + 4;
    let frame = buf.get(..frame_len).ok_or(DecodeError::Truncated)?;
    let (covered, crc_bytes) = frame.split_at(2 + body_len);
    let crc = u32::from_le_bytes(crc_bytes.try_into().map_err(|_| DecodeError::Truncated)?);
    if crc32fast::hash(covered) != crc {
        return Err(DecodeError::BadCrc);
    }
    let body = &covered[2..];
    let record = decode_body(body).ok_or(DecodeError::BadBody)?;
    Ok((record, frame_len))
}

/// A bounds-checked little-endian reader over a record body.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)?.try_into().ok().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)?.try_into().ok().map(u64::from_le_bytes)
    }
    fn resource(&mut self) -> Option<Resource> {
        let addr: [u8; 16] = self.take(16)?.try_into().ok()?;
        let prefix_len = self.u8()?;
        if prefix_len > 128 {
            return None;
        }
        Some(Resource {
            addr: Ipv6Addr::from(addr),
            prefix_len,
        })
    }
}

fn decode_body(body: &[u8]) -> Option<Record> {
    let mut r = Reader { buf: body };
    let record = match r.u8()? {
        KIND_UPSERT => {
            let resource = r.resource()?;
            let ia_type = IaType::from_u8(r.u8()?)?;
            let state = BindingState::from_u8(r.u8()?)?;
            let update_pending = match r.u8()? {
                0 => false,
                1 => true,
                _ => return None,
            };
            let iaid = r.u32()?;
            let preferred_lifetime = r.u32()?;
            let valid_lifetime = r.u32()?;
            let subnet = r.u32()?;
            let cltt = r.u64()?;
            let expires_at = r.u64()?;
            let partner_lifetime = r.u64()?;
            let duid_len = usize::from(r.u8()?);
            let duid = Duid::new(r.take(duid_len)?)?;
            Record::Upsert(Lease {
                resource,
                ia_type,
                duid,
                iaid,
                state,
                preferred_lifetime,
                valid_lifetime,
                cltt,
                expires_at,
                subnet,
                partner_lifetime,
                update_pending,
            })
        }
        KIND_REMOVE => Record::Remove(r.resource()?),
        KIND_COMMIT => Record::Commit {
            seq: r.u64()?,
            count: r.u32()?,
        },
        _ => return None,
    };
    // Trailing bytes inside a CRC-valid body mean a writer we do not understand.
    if !r.buf.is_empty() {
        return None;
    }
    Some(record)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub fn arb_lease() -> impl Strategy<Value = Lease> {
        (
            any::<u128>(),
            prop_oneof![Just(128u8), 48u8..=64],
            prop::collection::vec(any::<u8>(), 1..=DUID_MAX_LEN),
            any::<u32>(),
            1u8..=8,
            any::<(u32, u32, u64, u64, u32, u64, bool)>(),
        )
            .prop_map(|(addr, plen, duid, iaid, state, t)| Lease {
                resource: Resource {
                    addr: Ipv6Addr::from(addr),
                    prefix_len: plen,
                },
                ia_type: if plen == 128 { IaType::Na } else { IaType::Pd },
                duid: Duid::new(&duid).unwrap(),
                iaid,
                state: BindingState::from_u8(state).unwrap(),
                preferred_lifetime: t.0,
                valid_lifetime: t.1,
                cltt: t.2,
                expires_at: t.3,
                subnet: t.4,
                partner_lifetime: t.5,
                update_pending: t.6,
            })
    }

    proptest! {
        #[test]
        fn upsert_round_trips(lease in arb_lease()) {
            let mut buf = Vec::new();
            encode(&Record::Upsert(lease), &mut buf);
            prop_assert!(buf.len() <= MAX_FRAME);
            prop_assert_eq!(frame_len(&Record::Upsert(lease)), buf.len());
            let (rec, used) = decode(&buf).unwrap();
            prop_assert_eq!(used, buf.len());
            prop_assert_eq!(rec, Record::Upsert(lease));
        }

        #[test]
        fn every_prefix_is_truncated_and_every_flip_is_caught(
            lease in arb_lease(), flip in any::<prop::sample::Index>(), bit in 0u8..8)
        {
            let mut buf = Vec::new();
            encode(&Record::Upsert(lease), &mut buf);
            for cut in 0..buf.len() {
                prop_assert!(decode(&buf[..cut]).is_err());
            }
            let i = flip.index(buf.len());
            buf[i] ^= 1 << bit;
            // A flipped length byte may make the frame look longer (Truncated) or shorter
            // (BadCrc); a flipped body or CRC byte is always caught by the CRC.
            prop_assert!(decode(&buf).is_err());
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn remove_and_commit_round_trip() {
        let mut buf = Vec::new();
        let r = Resource::prefix("2001:db8:100::".parse().unwrap(), 56);
        encode(&Record::Remove(r), &mut buf);
        assert_eq!(frame_len(&Record::Remove(r)), buf.len());
        encode(&Record::Commit { seq: 7, count: 1 }, &mut buf);
        assert_eq!(
            frame_len(&Record::Commit { seq: 7, count: 1 }),
            buf.len() - frame_len(&Record::Remove(r))
        );
        let (a, n) = decode(&buf).unwrap();
        assert_eq!(a, Record::Remove(r));
        let (b, m) = decode(&buf[n..]).unwrap();
        assert_eq!(b, Record::Commit { seq: 7, count: 1 });
        assert_eq!(n + m, buf.len());
        assert_eq!(decode(&[0u8; 16]), Err(DecodeError::Truncated));
    }
}
