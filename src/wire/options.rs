//! The borrowed option iterator and typed views over option bodies (RFC 8415 §21).
//!
//! Every view is built with `new_checked` (or [`DhcpOption::parse`]) from an option body and
//! checks all lengths once; after that no getter can panic or read out of bounds.

use core::marker::PhantomData;
use core::net::Ipv6Addr;

use super::codes::*;
use super::domain::{DomainName, DomainNames};
use super::Error;

// RFC 8415 §21.1: option-code (2) + option-len (2) + option-data.
const OPTION_HEADER_LEN: usize = 4;

#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
fn addr(b: &[u8], at: usize) -> Ipv6Addr {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(octets)
}

/// One option as found on the wire: its code and its body (without the 4-octet header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawOption<'a> {
    pub code: u16,
    pub data: &'a [u8],
}

impl<'a> RawOption<'a> {
    /// Decodes the body into the typed view for its code.
    pub fn parse(self) -> Result<DhcpOption<'a>, Error> {
        DhcpOption::parse(self)
    }

    /// Bytes on the wire, header included.
    pub fn wire_len(&self) -> usize {
        OPTION_HEADER_LEN + self.data.len()
    }
}

/// Checks that `buf` is a whole sequence of options: each header complete and each length
/// inside `buf` (RFC 8415 §21.1). Does not look inside the bodies.
pub fn check_options(buf: &[u8]) -> Result<(), Error> {
    let mut pos = 0;
    while pos < buf.len() {
        if buf.len() - pos < OPTION_HEADER_LEN {
            return Err(Error::Truncated);
        }
        let code = be16(buf, pos);
        let len = usize::from(be16(buf, pos + 2));
        if buf.len() - pos - OPTION_HEADER_LEN < len {
            return Err(Error::OptionOverrun { code });
        }
        pos += OPTION_HEADER_LEN + len;
    }
    Ok(())
}

/// A borrowed iterator over a sequence of options (message body, IA body, relay body...).
///
/// Built checked ([`Options::new_checked`]), the iterator yields every option. Built
/// unchecked, it stops silently at the first malformed header; neither ever panics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options<'a> {
    rest: &'a [u8],
}

impl<'a> Options<'a> {
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, Error> {
        check_options(buf)?;
        Ok(Options { rest: buf })
    }

    pub const fn new_unchecked(buf: &'a [u8]) -> Self {
        Options { rest: buf }
    }

    /// The bytes not yet iterated.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.rest
    }

    /// The body of the first option with `code`.
    pub fn get(mut self, code: u16) -> Option<&'a [u8]> {
        Iterator::find(&mut self, |opt| opt.code == code).map(|opt| opt.data)
    }

    /// Every option with `code`, in order (e.g. several IA_NA).
    pub fn get_all(self, code: u16) -> impl Iterator<Item = &'a [u8]> {
        self.filter(move |opt| opt.code == code).map(|opt| opt.data)
    }

    /// Typed views of every option, in order. Unknown codes come out as
    /// [`DhcpOption::Unknown`]; a known code with a malformed body as `Err`.
    pub fn typed(self) -> impl Iterator<Item = Result<DhcpOption<'a>, Error>> {
        self.map(DhcpOption::parse)
    }
}

impl<'a> Iterator for Options<'a> {
    type Item = RawOption<'a>;

    #[inline]
    fn next(&mut self) -> Option<RawOption<'a>> {
        if self.rest.len() < OPTION_HEADER_LEN {
            self.rest = &[];
            return None;
        }
        let code = be16(self.rest, 0);
        let len = usize::from(be16(self.rest, 2));
        let tail = &self.rest[OPTION_HEADER_LEN..];
        if tail.len() < len {
            self.rest = &[];
            return None;
        }
        let (data, rest) = tail.split_at(len);
        self.rest = rest;
        Some(RawOption { code, data })
    }
}

/// Finds the first option with `code` while checking the whole sequence, so a match is never
/// reported from a malformed buffer. Cheaper than building typed views: the shard router uses
/// it on every packet.
pub fn find_option_checked(buf: &[u8], code: u16) -> Result<Option<&[u8]>, Error> {
    check_options(buf)?;
    Ok(Options::new_unchecked(buf).get(code))
}

fn exact(data: &[u8], len: usize, code: u16) -> Result<(), Error> {
    if data.len() == len {
        Ok(())
    } else {
        Err(Error::BadLength { code })
    }
}

fn at_least(data: &[u8], len: usize, code: u16) -> Result<(), Error> {
    if data.len() >= len {
        Ok(())
    } else {
        Err(Error::BadLength { code })
    }
}

/// A DUID (RFC 8415 §11): a 2-octet type and 1 to 128 octets of identifier.
///
/// Servers compare DUIDs as opaque byte strings (§11: "MUST only compare DUIDs for equality"),
/// so checking only the overall length is enough to accept one; [`DuidView::kind`] decodes
/// the typed forms for logs and reservations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DuidView<'a> {
    bytes: &'a [u8],
}

/// The decoded forms of a DUID (RFC 8415 §11.2-11.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuidKind<'a> {
    /// §11.2: hardware type, time (seconds since 2000-01-01 UTC), link-layer address.
    Llt {
        hardware_type: u16,
        time: u32,
        link_layer_address: &'a [u8],
    },
    /// §11.3: enterprise number and a vendor-assigned identifier.
    En {
        enterprise: u32,
        identifier: &'a [u8],
    },
    /// §11.4: hardware type and link-layer address.
    Ll {
        hardware_type: u16,
        link_layer_address: &'a [u8],
    },
    /// §11.5 (RFC 6355): a 128-bit UUID.
    Uuid([u8; 16]),
    /// A type this codec does not decode, with its identifier octets.
    Other {
        duid_type: u16,
        identifier: &'a [u8],
    },
}

impl<'a> DuidView<'a> {
    /// RFC 8415 §11.1: "at least 1 octet and at most 128 octets" after the 2-octet type.
    pub const MIN_LEN: usize = 3;
    pub const MAX_LEN: usize = 130;

    /// `code` is the option holding the DUID, for the error.
    pub fn new_checked(bytes: &'a [u8], code: u16) -> Result<Self, Error> {
        if (Self::MIN_LEN..=Self::MAX_LEN).contains(&bytes.len()) {
            Ok(DuidView { bytes })
        } else {
            Err(Error::BadDuid { code })
        }
    }

    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    pub fn duid_type(&self) -> DuidType {
        DuidType::from(be16(self.bytes, 0))
    }

    /// Decodes the typed form; `Err(BadDuid)` when the DUID is too short for its type.
    pub fn kind(&self) -> Result<DuidKind<'a>, Error> {
        let b = self.bytes;
        let bad = Error::BadDuid { code: 0 };
        Ok(match self.duid_type() {
            DuidType::Llt => {
                if b.len() < 9 {
                    return Err(bad);
                }
                DuidKind::Llt {
                    hardware_type: be16(b, 2),
                    time: be32(b, 4),
                    link_layer_address: &b[8..],
                }
            }
            DuidType::En => {
                if b.len() < 7 {
                    return Err(bad);
                }
                DuidKind::En {
                    enterprise: be32(b, 2),
                    identifier: &b[6..],
                }
            }
            DuidType::Ll => {
                if b.len() < 5 {
                    return Err(bad);
                }
                DuidKind::Ll {
                    hardware_type: be16(b, 2),
                    link_layer_address: &b[4..],
                }
            }
            DuidType::Uuid => {
                if b.len() != 18 {
                    return Err(bad);
                }
                let mut uuid = [0u8; 16];
                uuid.copy_from_slice(&b[2..18]);
                DuidKind::Uuid(uuid)
            }
            DuidType::Unknown(duid_type) => DuidKind::Other {
                duid_type,
                identifier: &b[2..],
            },
        })
    }
}

/// What tells the three IA options apart (RFC 8415 §21.4, §21.5, §21.21): their option
/// code, the fixed header before their options (IA_TA has no T1/T2) and the option that
/// carries their addresses or prefixes. Implemented by [`NonTemporary`], [`Temporary`] and
/// [`PrefixDelegation`]; [`Ia`] is generic over it so the three views share one body.
pub trait IaKind: Copy {
    /// OPTION_IA_NA, OPTION_IA_TA or OPTION_IA_PD.
    const CODE: u16;
    /// IAID (4) + T1 (4) + T2 (4) for IA_NA and IA_PD; IAID only for IA_TA.
    const HEADER_LEN: usize;
    /// OPTION_IAADDR or OPTION_IAPREFIX.
    const ENTRY_CODE: u16;
    /// Checks one entry body (an IAADDR or IAPREFIX) completely.
    fn check_entry(data: &[u8]) -> Result<(), Error>;
}

/// IA kinds with T1 and T2 in their header (IA_NA, IA_PD).
pub trait IaWithTimers: IaKind {}

/// IA kinds that hold addresses (IA_NA, IA_TA).
pub trait AddressIa: IaKind {}

/// IA_NA (RFC 8415 §21.4): non-temporary addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonTemporary {}
/// IA_TA (RFC 8415 §21.5): temporary addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Temporary {}
/// IA_PD (RFC 8415 §21.21): delegated prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixDelegation {}

impl IaKind for NonTemporary {
    const CODE: u16 = OPTION_IA_NA;
    const HEADER_LEN: usize = 12;
    const ENTRY_CODE: u16 = OPTION_IAADDR;
    fn check_entry(data: &[u8]) -> Result<(), Error> {
        IaAddr::new_checked(data).map(|_| ())
    }
}
impl IaKind for Temporary {
    const CODE: u16 = OPTION_IA_TA;
    const HEADER_LEN: usize = 4;
    const ENTRY_CODE: u16 = OPTION_IAADDR;
    fn check_entry(data: &[u8]) -> Result<(), Error> {
        IaAddr::new_checked(data).map(|_| ())
    }
}
impl IaKind for PrefixDelegation {
    const CODE: u16 = OPTION_IA_PD;
    const HEADER_LEN: usize = 12;
    const ENTRY_CODE: u16 = OPTION_IAPREFIX;
    fn check_entry(data: &[u8]) -> Result<(), Error> {
        IaPrefix::new_checked(data).map(|_| ())
    }
}
impl IaWithTimers for NonTemporary {}
impl IaWithTimers for PrefixDelegation {}
impl AddressIa for NonTemporary {}
impl AddressIa for Temporary {}

/// An IA option body: IAID, T1 and T2 where the kind has them, then the IA's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ia<'a, K: IaKind> {
    data: &'a [u8],
    kind: PhantomData<K>,
}

/// IA_NA (RFC 8415 §21.4): IAID, T1, T2, IA_NA-options.
pub type IaNa<'a> = Ia<'a, NonTemporary>;
/// IA_TA (RFC 8415 §21.5): IAID and IA_TA-options (no T1/T2).
pub type IaTa<'a> = Ia<'a, Temporary>;
/// IA_PD (RFC 8415 §21.21): IAID, T1, T2, IA_PD-options. Same layout as IA_NA.
pub type IaPd<'a> = Ia<'a, PrefixDelegation>;

impl<'a, K: IaKind> Ia<'a, K> {
    pub const HEADER_LEN: usize = K::HEADER_LEN;

    /// Checks the header length and the structure of the IA's options (not their bodies;
    /// see [`Ia::check_entries`]).
    pub fn new_checked(data: &'a [u8]) -> Result<Self, Error> {
        at_least(data, K::HEADER_LEN, K::CODE)?;
        check_options(&data[K::HEADER_LEN..])?;
        Ok(Ia {
            data,
            kind: PhantomData,
        })
    }
    pub fn iaid(&self) -> u32 {
        be32(self.data, 0)
    }
    pub fn options(&self) -> Options<'a> {
        Options::new_unchecked(&self.data[K::HEADER_LEN..])
    }
    /// Checks every IAADDR / IAPREFIX body in the IA, so later views of them cannot fail.
    pub fn check_entries(&self) -> Result<(), Error> {
        self.options()
            .get_all(K::ENTRY_CODE)
            .try_for_each(K::check_entry)
    }
}

impl<K: IaWithTimers> Ia<'_, K> {
    pub fn t1(&self) -> u32 {
        be32(self.data, 4)
    }
    pub fn t2(&self) -> u32 {
        be32(self.data, 8)
    }
}

impl<'a, K: AddressIa> Ia<'a, K> {
    /// The IAADDR options (the addresses the client asks for or holds).
    pub fn addresses(&self) -> impl Iterator<Item = Result<IaAddr<'a>, Error>> {
        self.options()
            .get_all(OPTION_IAADDR)
            .map(IaAddr::new_checked)
    }
}

impl<'a> IaPd<'a> {
    /// The IAPREFIX options (the prefixes the client asks for or holds).
    pub fn prefixes(&self) -> impl Iterator<Item = Result<IaPrefix<'a>, Error>> {
        self.options()
            .get_all(OPTION_IAPREFIX)
            .map(IaPrefix::new_checked)
    }
}

/// IAADDR (RFC 8415 §21.6): address, preferred lifetime, valid lifetime, IAaddr-options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IaAddr<'a> {
    data: &'a [u8],
}

impl<'a> IaAddr<'a> {
    pub const HEADER_LEN: usize = 24;

    pub fn new_checked(data: &'a [u8]) -> Result<Self, Error> {
        at_least(data, Self::HEADER_LEN, OPTION_IAADDR)?;
        check_options(&data[Self::HEADER_LEN..])?;
        Ok(IaAddr { data })
    }
    pub fn address(&self) -> Ipv6Addr {
        addr(self.data, 0)
    }
    pub fn preferred_lifetime(&self) -> u32 {
        be32(self.data, 16)
    }
    pub fn valid_lifetime(&self) -> u32 {
        be32(self.data, 20)
    }
    pub fn options(&self) -> Options<'a> {
        Options::new_unchecked(&self.data[Self::HEADER_LEN..])
    }
}

/// IAPREFIX (RFC 8415 §21.22): preferred lifetime, valid lifetime, prefix-length, prefix,
/// IAprefix-options (note the field order differs from IAADDR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IaPrefix<'a> {
    data: &'a [u8],
}

impl<'a> IaPrefix<'a> {
    pub const HEADER_LEN: usize = 25;

    pub fn new_checked(data: &'a [u8]) -> Result<Self, Error> {
        at_least(data, Self::HEADER_LEN, OPTION_IAPREFIX)?;
        if data[8] > 128 {
            return Err(Error::BadValue {
                code: OPTION_IAPREFIX,
            });
        }
        check_options(&data[Self::HEADER_LEN..])?;
        Ok(IaPrefix { data })
    }
    pub fn preferred_lifetime(&self) -> u32 {
        be32(self.data, 0)
    }
    pub fn valid_lifetime(&self) -> u32 {
        be32(self.data, 4)
    }
    pub fn prefix_len(&self) -> u8 {
        self.data[8]
    }
    pub fn prefix(&self) -> Ipv6Addr {
        addr(self.data, 9)
    }
    pub fn options(&self) -> Options<'a> {
        Options::new_unchecked(&self.data[Self::HEADER_LEN..])
    }
    /// The excluded prefix of an RFC 6603 PD_EXCLUDE inside this IAPREFIX, if any.
    pub fn pd_exclude(&self) -> Option<Result<(Ipv6Addr, u8), Error>> {
        let body = self.options().get(OPTION_PD_EXCLUDE)?;
        Some(
            PdExclude::new_checked(body)
                .and_then(|ex| ex.excluded_prefix(self.prefix(), self.prefix_len())),
        )
    }
}

/// PD_EXCLUDE (RFC 6603 §4.2): prefix-len, then the IPv6 subnet ID: the bits of the excluded
/// prefix after the delegated prefix's length, in ceil((prefix-len - delegated-len) / 8)
/// octets. Its meaning depends on the enclosing IAPREFIX, hence
/// [`PdExclude::excluded_prefix`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PdExclude<'a> {
    data: &'a [u8],
}

impl<'a> PdExclude<'a> {
    pub fn new_checked(data: &'a [u8]) -> Result<Self, Error> {
        // RFC 6603 §4.2: option-len is 1 + length of the subnet ID, which is at least 1.
        if data.len() < 2 || data.len() > 17 {
            return Err(Error::BadLength {
                code: OPTION_PD_EXCLUDE,
            });
        }
        if data[0] > 128 {
            return Err(Error::BadValue {
                code: OPTION_PD_EXCLUDE,
            });
        }
        Ok(PdExclude { data })
    }
    pub fn prefix_len(&self) -> u8 {
        self.data[0]
    }
    pub fn subnet_id(&self) -> &'a [u8] {
        &self.data[1..]
    }

    /// Rebuilds the excluded prefix from the delegated one (RFC 6603 §4.2): the subnet ID
    /// bits are placed right after `delegated_len`. Fails if the excluded prefix is not
    /// longer than the delegated one or the subnet ID has the wrong number of octets.
    pub fn excluded_prefix(
        &self,
        delegated: Ipv6Addr,
        delegated_len: u8,
    ) -> Result<(Ipv6Addr, u8), Error> {
        let bad = Error::BadValue {
            code: OPTION_PD_EXCLUDE,
        };
        let len = self.prefix_len();
        if len <= delegated_len || delegated_len > 128 {
            return Err(bad);
        }
        let bits = u32::from(len - delegated_len);
        if self.subnet_id().len() != bits.div_ceil(8) as usize {
            return Err(Error::BadLength {
                code: OPTION_PD_EXCLUDE,
            });
        }
        // The subnet ID is left-aligned in its octets; take its top `bits` bits.
        let mut id: u128 = 0;
        for &b in self.subnet_id() {
            id = (id << 8) | u128::from(b);
        }
        let id = id >> (self.subnet_id().len() as u32 * 8 - bits);
        let base = u128::from(delegated) & mask(delegated_len);
        let excluded = base | (id << (128 - u32::from(len)));
        Ok((Ipv6Addr::from(excluded), len))
    }
}

/// The network mask of a prefix length (0..=128).
pub(crate) fn mask(len: u8) -> u128 {
    match len {
        0 => 0,
        l if l >= 128 => u128::MAX,
        l => u128::MAX << (128 - u32::from(l)),
    }
}

/// A list of 16-bit option codes: ORO (RFC 8415 §21.7) and ERO (RFC 4994 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionCodes<'a> {
    data: &'a [u8],
}

impl<'a> OptionCodes<'a> {
    pub fn new_checked(data: &'a [u8], code: u16) -> Result<Self, Error> {
        if data.len() % 2 != 0 {
            return Err(Error::BadLength { code });
        }
        Ok(OptionCodes { data })
    }
    pub fn contains(&self, code: u16) -> bool {
        self.iter().any(|c| c == code)
    }
    pub fn iter(&self) -> impl Iterator<Item = u16> + 'a {
        self.data
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
    }
    pub fn len(&self) -> usize {
        self.data.len() / 2
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// STATUS_CODE (RFC 8415 §21.13): status code and a UTF-8 message for humans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusView<'a> {
    data: &'a [u8],
}

impl<'a> StatusView<'a> {
    pub fn new_checked(data: &'a [u8]) -> Result<Self, Error> {
        at_least(data, 2, OPTION_STATUS_CODE)?;
        Ok(StatusView { data })
    }
    pub fn status(&self) -> StatusCode {
        StatusCode::from(be16(self.data, 0))
    }
    /// The message octets; RFC 8415 says UTF-8 but a server must not trust that.
    pub fn message(&self) -> &'a [u8] {
        &self.data[2..]
    }
    pub fn message_str(&self) -> Option<&'a str> {
        core::str::from_utf8(self.message()).ok()
    }
}

/// The class-data list of USER_CLASS and VENDOR_CLASS (RFC 8415 §21.15-16): each item a
/// 2-octet length and opaque data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassData<'a> {
    data: &'a [u8],
}

impl<'a> ClassData<'a> {
    pub fn new_checked(data: &'a [u8], code: u16) -> Result<Self, Error> {
        let mut pos = 0;
        while pos < data.len() {
            if data.len() - pos < 2 {
                return Err(Error::BadLength { code });
            }
            let len = usize::from(be16(data, pos));
            if data.len() - pos - 2 < len {
                return Err(Error::OptionOverrun { code });
            }
            pos += 2 + len;
        }
        Ok(ClassData { data })
    }
    pub fn as_bytes(&self) -> &'a [u8] {
        self.data
    }
    pub fn iter(&self) -> ClassDataIter<'a> {
        ClassDataIter { rest: self.data }
    }
}

/// Iterator over the items of [`ClassData`].
#[derive(Debug, Clone)]
pub struct ClassDataIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for ClassDataIter<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.len() < 2 {
            self.rest = &[];
            return None;
        }
        let len = usize::from(be16(self.rest, 0));
        let tail = &self.rest[2..];
        if tail.len() < len {
            self.rest = &[];
            return None;
        }
        let (item, rest) = tail.split_at(len);
        self.rest = rest;
        Some(item)
    }
}

/// A list of IPv6 addresses (DNS_SERVERS, RFC 3646 §3; also SNTP/NTP-style lists).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressList<'a> {
    data: &'a [u8],
}

impl<'a> AddressList<'a> {
    pub fn new_checked(data: &'a [u8], code: u16) -> Result<Self, Error> {
        if data.len() % 16 != 0 {
            return Err(Error::BadLength { code });
        }
        Ok(AddressList { data })
    }
    pub fn iter(&self) -> impl Iterator<Item = Ipv6Addr> + 'a {
        self.data.chunks_exact(16).map(|c| addr(c, 0))
    }
    pub fn len(&self) -> usize {
        self.data.len() / 16
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// Every option this codec decodes, as a typed view borrowing the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhcpOption<'a> {
    /// §21.2.
    ClientId(DuidView<'a>),
    /// §21.3.
    ServerId(DuidView<'a>),
    IaNa(IaNa<'a>),
    IaTa(IaTa<'a>),
    IaAddr(IaAddr<'a>),
    /// §21.7.
    Oro(OptionCodes<'a>),
    /// §21.8: 0-255, 255 = take this server now.
    Preference(u8),
    /// §21.9: hundredths of a second since the client began the exchange.
    ElapsedTime(u16),
    /// §21.10: a whole relayed message.
    RelayMsg(&'a [u8]),
    /// §21.11: protocol, algorithm, RDM, replay detection, authentication information.
    Auth(&'a [u8]),
    /// §21.12.
    Unicast(Ipv6Addr),
    StatusCode(StatusView<'a>),
    /// §21.14.
    RapidCommit,
    UserClass(ClassData<'a>),
    /// §21.16.
    VendorClass {
        enterprise: u32,
        data: ClassData<'a>,
    },
    /// §21.17: vendor options in the same code/length/value format.
    VendorOpts {
        enterprise: u32,
        options: Options<'a>,
    },
    /// §21.18: opaque, echoed verbatim in the Relay-repl.
    InterfaceId(&'a [u8]),
    /// §21.19: the message type the client should send (Renew, Rebind, Information-request).
    ReconfMsg(u8),
    /// §21.20.
    ReconfAccept,
    /// RFC 3646 §3.
    DnsServers(AddressList<'a>),
    /// RFC 3646 §4.
    DomainList(DomainNames<'a>),
    IaPd(IaPd<'a>),
    IaPrefix(IaPrefix<'a>),
    /// §21.23: seconds.
    InformationRefreshTime(u32),
    /// RFC 4649 §3.
    RemoteId {
        enterprise: u32,
        remote_id: &'a [u8],
    },
    /// RFC 4580 §2.
    SubscriberId(&'a [u8]),
    /// RFC 4704 §4: flags (S, O, N) and a possibly partial domain name.
    ClientFqdn {
        flags: u8,
        name: DomainName<'a>,
    },
    /// RFC 4994 §3.
    Ero(OptionCodes<'a>),
    PdExclude(PdExclude<'a>),
    /// RFC 6939 §4.
    ClientLinklayerAddr {
        link_layer_type: u16,
        address: &'a [u8],
    },
    /// §21.24.
    SolMaxRt(u32),
    /// §21.25.
    InfMaxRt(u32),
    /// RFC 8357 §5: the downstream relay's UDP source port (0 = 547).
    RelayPort(u16),
    /// Any other option: a server MUST NOT discard a message because of it (§16).
    Unknown(RawOption<'a>),
}

impl<'a> DhcpOption<'a> {
    pub fn parse(raw: RawOption<'a>) -> Result<Self, Error> {
        let RawOption { code, data } = raw;
        Ok(match code {
            OPTION_CLIENTID => DhcpOption::ClientId(DuidView::new_checked(data, code)?),
            OPTION_SERVERID => DhcpOption::ServerId(DuidView::new_checked(data, code)?),
            OPTION_IA_NA => DhcpOption::IaNa(IaNa::new_checked(data)?),
            OPTION_IA_TA => DhcpOption::IaTa(IaTa::new_checked(data)?),
            OPTION_IAADDR => DhcpOption::IaAddr(IaAddr::new_checked(data)?),
            OPTION_ORO => DhcpOption::Oro(OptionCodes::new_checked(data, code)?),
            OPTION_PREFERENCE => {
                exact(data, 1, code)?;
                DhcpOption::Preference(data[0])
            }
            OPTION_ELAPSED_TIME => {
                exact(data, 2, code)?;
                DhcpOption::ElapsedTime(be16(data, 0))
            }
            OPTION_RELAY_MSG => DhcpOption::RelayMsg(data),
            OPTION_AUTH => {
                // §21.11: protocol(1) algorithm(1) RDM(1) replay detection(8).
                at_least(data, 11, code)?;
                DhcpOption::Auth(data)
            }
            OPTION_UNICAST => {
                exact(data, 16, code)?;
                DhcpOption::Unicast(addr(data, 0))
            }
            OPTION_STATUS_CODE => DhcpOption::StatusCode(StatusView::new_checked(data)?),
            OPTION_RAPID_COMMIT => {
                exact(data, 0, code)?;
                DhcpOption::RapidCommit
            }
            OPTION_USER_CLASS => DhcpOption::UserClass(ClassData::new_checked(data, code)?),
            OPTION_VENDOR_CLASS => {
                at_least(data, 4, code)?;
                DhcpOption::VendorClass {
                    enterprise: be32(data, 0),
                    data: ClassData::new_checked(&data[4..], code)?,
                }
            }
            OPTION_VENDOR_OPTS => {
                at_least(data, 4, code)?;
                DhcpOption::VendorOpts {
                    enterprise: be32(data, 0),
                    options: Options::new_checked(&data[4..]).map_err(|_| Error::BadValue {
                        code: OPTION_VENDOR_OPTS,
                    })?,
                }
            }
            OPTION_INTERFACE_ID => DhcpOption::InterfaceId(data),
            OPTION_RECONF_MSG => {
                exact(data, 1, code)?;
                DhcpOption::ReconfMsg(data[0])
            }
            OPTION_RECONF_ACCEPT => {
                exact(data, 0, code)?;
                DhcpOption::ReconfAccept
            }
            OPTION_DNS_SERVERS => DhcpOption::DnsServers(AddressList::new_checked(data, code)?),
            OPTION_DOMAIN_LIST => DhcpOption::DomainList(DomainNames::new_checked(data, code)?),
            OPTION_IA_PD => DhcpOption::IaPd(IaPd::new_checked(data)?),
            OPTION_IAPREFIX => DhcpOption::IaPrefix(IaPrefix::new_checked(data)?),
            OPTION_INFORMATION_REFRESH_TIME => {
                exact(data, 4, code)?;
                DhcpOption::InformationRefreshTime(be32(data, 0))
            }
            OPTION_REMOTE_ID => {
                // RFC 4649 §3: enterprise-number (4) + remote-id (at least 1).
                at_least(data, 5, code)?;
                DhcpOption::RemoteId {
                    enterprise: be32(data, 0),
                    remote_id: &data[4..],
                }
            }
            OPTION_SUBSCRIBER_ID => {
                // RFC 4580 §2: "The subscriber-id MUST be at least one octet".
                at_least(data, 1, code)?;
                DhcpOption::SubscriberId(data)
            }
            OPTION_CLIENT_FQDN => {
                at_least(data, 1, code)?;
                DhcpOption::ClientFqdn {
                    flags: data[0],
                    name: DomainName::new_checked(&data[1..], true, code)?,
                }
            }
            OPTION_ERO => DhcpOption::Ero(OptionCodes::new_checked(data, code)?),
            OPTION_PD_EXCLUDE => DhcpOption::PdExclude(PdExclude::new_checked(data)?),
            OPTION_CLIENT_LINKLAYER_ADDR => {
                // RFC 6939 §4: link-layer type (2) + address (variable, non-empty).
                at_least(data, 3, code)?;
                DhcpOption::ClientLinklayerAddr {
                    link_layer_type: be16(data, 0),
                    address: &data[2..],
                }
            }
            OPTION_SOL_MAX_RT => {
                exact(data, 4, code)?;
                DhcpOption::SolMaxRt(be32(data, 0))
            }
            OPTION_INF_MAX_RT => {
                exact(data, 4, code)?;
                DhcpOption::InfMaxRt(be32(data, 0))
            }
            OPTION_RELAY_PORT => {
                exact(data, 2, code)?;
                DhcpOption::RelayPort(be16(data, 0))
            }
            _ => DhcpOption::Unknown(raw),
        })
    }

    /// The option code this view came from.
    pub fn code(&self) -> u16 {
        match self {
            DhcpOption::ClientId(_) => OPTION_CLIENTID,
            DhcpOption::ServerId(_) => OPTION_SERVERID,
            DhcpOption::IaNa(_) => OPTION_IA_NA,
            DhcpOption::IaTa(_) => OPTION_IA_TA,
            DhcpOption::IaAddr(_) => OPTION_IAADDR,
            DhcpOption::Oro(_) => OPTION_ORO,
            DhcpOption::Preference(_) => OPTION_PREFERENCE,
            DhcpOption::ElapsedTime(_) => OPTION_ELAPSED_TIME,
            DhcpOption::RelayMsg(_) => OPTION_RELAY_MSG,
            DhcpOption::Auth(_) => OPTION_AUTH,
            DhcpOption::Unicast(_) => OPTION_UNICAST,
            DhcpOption::StatusCode(_) => OPTION_STATUS_CODE,
            DhcpOption::RapidCommit => OPTION_RAPID_COMMIT,
            DhcpOption::UserClass(_) => OPTION_USER_CLASS,
            DhcpOption::VendorClass { .. } => OPTION_VENDOR_CLASS,
            DhcpOption::VendorOpts { .. } => OPTION_VENDOR_OPTS,
            DhcpOption::InterfaceId(_) => OPTION_INTERFACE_ID,
            DhcpOption::ReconfMsg(_) => OPTION_RECONF_MSG,
            DhcpOption::ReconfAccept => OPTION_RECONF_ACCEPT,
            DhcpOption::DnsServers(_) => OPTION_DNS_SERVERS,
            DhcpOption::DomainList(_) => OPTION_DOMAIN_LIST,
            DhcpOption::IaPd(_) => OPTION_IA_PD,
            DhcpOption::IaPrefix(_) => OPTION_IAPREFIX,
            DhcpOption::InformationRefreshTime(_) => OPTION_INFORMATION_REFRESH_TIME,
            DhcpOption::RemoteId { .. } => OPTION_REMOTE_ID,
            DhcpOption::SubscriberId(_) => OPTION_SUBSCRIBER_ID,
            DhcpOption::ClientFqdn { .. } => OPTION_CLIENT_FQDN,
            DhcpOption::Ero(_) => OPTION_ERO,
            DhcpOption::PdExclude(_) => OPTION_PD_EXCLUDE,
            DhcpOption::ClientLinklayerAddr { .. } => OPTION_CLIENT_LINKLAYER_ADDR,
            DhcpOption::SolMaxRt(_) => OPTION_SOL_MAX_RT,
            DhcpOption::InfMaxRt(_) => OPTION_INF_MAX_RT,
            DhcpOption::RelayPort(_) => OPTION_RELAY_PORT,
            DhcpOption::Unknown(raw) => raw.code,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iterates_options_and_stops_on_garbage() {
        let buf = [0, 1, 0, 2, 0xaa, 0xbb, 0, 14, 0, 0, 0, 9];
        assert_eq!(check_options(&buf), Err(Error::Truncated));
        let opts: Vec<_> = Options::new_unchecked(&buf).collect();
        assert_eq!(
            opts,
            [
                RawOption {
                    code: 1,
                    data: &[0xaa, 0xbb]
                },
                RawOption {
                    code: 14,
                    data: &[]
                }
            ]
        );
        let overrun = [0, 3, 0, 12, 0, 0];
        assert_eq!(
            Options::new_checked(&overrun).unwrap_err(),
            Error::OptionOverrun { code: 3 }
        );
        assert_eq!(Options::new_unchecked(&overrun).count(), 0);
    }

    #[test]
    fn ia_na_with_address() {
        let mut b = vec![0, 0, 0, 7, 0, 0, 0, 100, 0, 0, 0, 200];
        b.extend([0, 5, 0, 24]);
        b.extend(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).octets());
        b.extend([0, 0, 1, 0, 0, 0, 2, 0]);
        let ia = IaNa::new_checked(&b).unwrap();
        assert_eq!((ia.iaid(), ia.t1(), ia.t2()), (7, 100, 200));
        let a = ia.addresses().next().unwrap().unwrap();
        assert_eq!(a.address(), Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        assert_eq!((a.preferred_lifetime(), a.valid_lifetime()), (256, 512));
        assert_eq!(
            IaNa::new_checked(&b[..11]),
            Err(Error::BadLength { code: OPTION_IA_NA })
        );
        assert_eq!(
            IaNa::new_checked(&b[..b.len() - 1]),
            Err(Error::OptionOverrun {
                code: OPTION_IAADDR
            })
        );
    }

    #[test]
    fn pd_exclude_rebuilds_the_excluded_prefix() {
        // RFC 6603 §4.2 example style: delegated 2001:db8:0:ff00::/56, exclude /64 with
        // subnet id 0x01 (8 bits) -> 2001:db8:0:ff01::/64.
        let delegated: Ipv6Addr = "2001:db8:0:ff00::".parse().unwrap();
        let ex = PdExclude::new_checked(&[64, 0x01]).unwrap();
        assert_eq!(
            ex.excluded_prefix(delegated, 56).unwrap(),
            ("2001:db8:0:ff01::".parse().unwrap(), 64)
        );
        // /60 out of a /56: 4 bits, left-aligned in one octet.
        let ex = PdExclude::new_checked(&[60, 0xa0]).unwrap();
        assert_eq!(
            ex.excluded_prefix(delegated, 56).unwrap(),
            ("2001:db8:0:ffa0::".parse().unwrap(), 60)
        );
        assert!(ex.excluded_prefix(delegated, 60).is_err());
        assert!(PdExclude::new_checked(&[64, 1, 2])
            .unwrap()
            .excluded_prefix(delegated, 56)
            .is_err());
    }

    #[test]
    fn duid_kinds() {
        let llt = [0, 1, 0, 1, 0x2a, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef, 0, 1];
        let d = DuidView::new_checked(&llt, OPTION_CLIENTID).unwrap();
        assert_eq!(
            d.kind().unwrap(),
            DuidKind::Llt {
                hardware_type: 1,
                time: 0x2a00_0001,
                link_layer_address: &[0xde, 0xad, 0xbe, 0xef, 0, 1]
            }
        );
        assert!(DuidView::new_checked(&[0, 3], OPTION_CLIENTID).is_err());
        assert!(DuidView::new_checked(&[0; 131], OPTION_CLIENTID).is_err());
        let short_uuid = DuidView::new_checked(&[0, 4, 1, 2, 3], 1).unwrap();
        assert!(short_uuid.kind().is_err());
    }

    #[test]
    fn fixed_size_options_check_their_length() {
        let bad = RawOption {
            code: OPTION_ELAPSED_TIME,
            data: &[1, 2, 3],
        };
        assert_eq!(
            bad.parse(),
            Err(Error::BadLength {
                code: OPTION_ELAPSED_TIME
            })
        );
        let oro = RawOption {
            code: OPTION_ORO,
            data: &[0, 23, 0, 24],
        };
        match oro.parse().unwrap() {
            DhcpOption::Oro(codes) => {
                assert!(codes.contains(OPTION_DOMAIN_LIST));
                assert_eq!(codes.iter().collect::<Vec<_>>(), [23, 24]);
            }
            other => panic!("{other:?}"),
        }
    }
}
