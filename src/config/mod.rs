//! Configuration: TOML file types (serde, in [`file`]) kept apart from the validated
//! [`Config`] the rest of the server uses.
//!
//! Sections and their owners:
//! * `[server]`, `[[subnet]]`, `[options]`, `[[reservation]]`: this module (engine inputs).
//! * `[io]` (backend, interfaces, shards, AF_XDP): [`io`].
//! * `[store]` (data directory, durability): [`store`].
//!
//! Every validation error names the file, the line, the column and the field
//! ([`ConfigError`]). Parsing goes TOML → [`file::FileConfig`] (syntax, types, unknown keys)
//! → [`Config`] (addresses, ranges, overlaps, lifetimes, reservations).
//!
//! An example:
//!
//! ```toml
//! [server]
//! preference = 255
//!
//! [options]
//! dns_servers = ["2001:db8::53"]
//! domain_list = ["isp.example"]
//!
//! [[subnet]]
//! prefix = "2001:db8:1::/64"
//! interfaces = ["eth1"]
//! preferred_lifetime = 14400
//! valid_lifetime = 21600
//! rapid_commit = true
//! pool = [{ start = "2001:db8:1::1000", end = "2001:db8:1::ffff:ffff" }]
//! pd_pool = [{ prefix = "2001:db8:100::/40", delegated_length = 56 }]
//!
//! [[reservation]]
//! remote_id = "0x0102030405"
//! enterprise = 3561
//! addresses = ["2001:db8:1::1:1"]
//! ```

pub mod file;
pub mod io;
pub mod store;
pub mod xdp;

use std::fmt;
use std::net::Ipv6Addr;
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;

use toml::Spanned;

use crate::lease::{stable_hash, Duid};

/// Default preferred lifetime when a subnet does not say (seconds).
pub const DEFAULT_PREFERRED_LIFETIME: u32 = 3600;
/// Default valid lifetime when a subnet does not say (seconds).
pub const DEFAULT_VALID_LIFETIME: u32 = 7200;
/// RFC 8415 §7.6 IRT_DEFAULT.
pub const IRT_DEFAULT: u32 = 86_400;
/// RFC 8415 §7.6 IRT_MINIMUM.
pub const IRT_MINIMUM: u32 = 600;
/// How long a declined address stays out of the pool by default (seconds).
pub const DEFAULT_DECLINE_QUARANTINE: u32 = 86_400;
/// Largest delegated-prefix index space per pool (2^24 prefixes): bounds the free bitmaps
/// at 2 MiB per pool across all shards.
pub const MAX_PD_POOL_BITS: u8 = 24;

/// A configuration error: where in which file, which field, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// File name (or another origin, e.g. `<embedded default>`).
    pub origin: String,
    /// 1-based line and column; 0 when the error has no position (e.g. the file is missing).
    pub line: usize,
    pub column: usize,
    /// Dotted path of the offending field, e.g. `subnet[1].pool[0].end`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}:{}: ", self.origin, self.line, self.column)?;
        } else {
            write!(f, "{}: ", self.origin)?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// An IPv6 prefix (address masked to its length).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    pub addr: Ipv6Addr,
    pub len: u8,
}

impl Prefix {
    /// `addr/len` with host bits cleared; `None` when `len > 128`.
    pub fn new(addr: Ipv6Addr, len: u8) -> Option<Prefix> {
        if len > 128 {
            return None;
        }
        Some(Prefix {
            addr: Ipv6Addr::from(u128::from(addr) & mask(len)),
            len,
        })
    }

    pub fn first(&self) -> u128 {
        u128::from(self.addr)
    }

    pub fn last(&self) -> u128 {
        self.first() | !mask(self.len)
    }

    pub fn contains(&self, a: Ipv6Addr) -> bool {
        u128::from(a) & mask(self.len) == self.first()
    }

    pub fn contains_prefix(&self, p: &Prefix) -> bool {
        p.len >= self.len && self.contains(p.addr)
    }

    pub fn overlaps(&self, p: &Prefix) -> bool {
        self.contains_prefix(p) || p.contains_prefix(self)
    }
}

/// The network mask of a `len`-bit prefix as a u128.
pub const fn mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else if len >= 128 {
        u128::MAX
    } else {
        !(u128::MAX >> len)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Prefix {
    type Err = String;
    fn from_str(s: &str) -> Result<Prefix, String> {
        let (a, l) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not a prefix (expected ADDRESS/LENGTH)"))?;
        let addr: Ipv6Addr = a
            .trim()
            .parse()
            .map_err(|_| format!("`{a}` is not an IPv6 address"))?;
        let len: u8 = l
            .trim()
            .parse()
            .ok()
            .filter(|&l| l <= 128)
            .ok_or_else(|| format!("`{l}` is not a prefix length (0..=128)"))?;
        let p = Prefix::new(addr, len).expect("len checked");
        if p.addr != addr {
            return Err(format!("`{s}` has host bits set (did you mean {p}?)"));
        }
        Ok(p)
    }
}

/// An inclusive IA_NA address range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool {
    pub start: Ipv6Addr,
    pub end: Ipv6Addr,
}

impl Pool {
    pub fn contains(&self, a: Ipv6Addr) -> bool {
        (u128::from(self.start)..=u128::from(self.end)).contains(&u128::from(a))
    }

    /// Number of addresses in the range (saturating at u128::MAX for ::/0).
    pub fn size(&self) -> u128 {
        (u128::from(self.end) - u128::from(self.start)).saturating_add(1)
    }
}

/// A prefix-delegation pool: `prefix` cut into prefixes of `delegated_length`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PdPool {
    pub prefix: Prefix,
    pub delegated_length: u8,
}

impl PdPool {
    /// How many delegated prefixes the pool holds (validated to fit in 2^24).
    pub fn count(&self) -> u32 {
        1u32 << (self.delegated_length - self.prefix.len)
    }

    /// The delegated prefix with index `idx` (caller keeps `idx < count()`).
    pub fn nth(&self, idx: u32) -> Ipv6Addr {
        let shift = 128 - u32::from(self.delegated_length);
        Ipv6Addr::from(self.prefix.first() | (u128::from(idx) << shift))
    }

    /// The index of the delegated prefix `p/len`, if it is one of this pool's.
    pub fn index_of(&self, p: Ipv6Addr, len: u8) -> Option<u32> {
        if len != self.delegated_length || !self.prefix.contains(p) {
            return None;
        }
        let a = u128::from(p);
        if a & !mask(len) != 0 {
            return None;
        }
        let shift = 128 - u32::from(self.delegated_length);
        Some(((a - self.prefix.first()) >> shift) as u32)
    }
}

/// One link (RFC 8415 §13.1) and what its clients get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subnet {
    /// Position in [`Config::subnets`]; stored in leases ([`crate::lease::Lease::subnet`]).
    pub index: u32,
    pub prefix: Prefix,
    pub interfaces: Vec<String>,
    /// Receiving interface indexes bound to this link (see [`Config::bind_interfaces`]).
    pub ifindexes: Vec<u32>,
    pub relay_addresses: Vec<Ipv6Addr>,
    pub interface_ids: Vec<Vec<u8>>,
    pub pools: Vec<Pool>,
    pub pd_pools: Vec<PdPool>,
    pub exclude: Vec<Ipv6Addr>,
    pub preferred_lifetime: u32,
    pub valid_lifetime: u32,
    /// Explicit T1/T2; `None`: 0.5 / 0.8 of the shortest preferred lifetime (RFC 8415 §21.4).
    pub t1: Option<u32>,
    pub t2: Option<u32>,
    pub rapid_commit: bool,
    pub temporary_addresses: bool,
    pub dns_servers: Option<Vec<Ipv6Addr>>,
    /// Domain search list already in RFC 1035 wire form (RFC 3646 §4).
    pub domain_list: Option<Vec<u8>>,
}

impl Subnet {
    /// Whether `a` is appropriate for this link (RFC 8415 §18.3.3/§18.3.4 "on link").
    pub fn on_link(&self, a: Ipv6Addr) -> bool {
        self.prefix.contains(a) || self.pools.iter().any(|p| p.contains(a))
    }

    /// Whether the delegated prefix `p/len` is one this link hands out.
    pub fn owns_prefix(&self, p: Ipv6Addr, len: u8) -> bool {
        self.pd_pools
            .iter()
            .any(|pool| pool.index_of(p, len).is_some())
    }
}

/// `[server]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    /// Configured server DUID; `None`: the one kept in the data directory.
    pub duid: Option<Duid>,
    pub preference: u8,
    pub rapid_commit: bool,
    pub unicast: Option<Ipv6Addr>,
    pub decline_quarantine: u32,
    pub renew_creates: bool,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            duid: None,
            preference: 0,
            rapid_commit: false,
            unicast: None,
            decline_quarantine: DEFAULT_DECLINE_QUARANTINE,
            renew_creates: true,
        }
    }
}

/// `[options]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub dns_servers: Vec<Ipv6Addr>,
    /// RFC 1035 wire form of the search list (empty: not configured).
    pub domain_list: Vec<u8>,
    pub info_refresh_time: u32,
    pub sol_max_rt: Option<u32>,
    pub inf_max_rt: Option<u32>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dns_servers: Vec::new(),
            domain_list: Vec::new(),
            info_refresh_time: IRT_DEFAULT,
            sol_max_rt: None,
            inf_max_rt: None,
        }
    }
}

/// What identifies a reserved client.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ReservationKey {
    /// The client's DUID (CLIENTID, RFC 8415 §21.2).
    Duid(Vec<u8>),
    /// RFC 4649 Remote-ID: enterprise number and opaque remote-id.
    RemoteId { enterprise: u32, id: Vec<u8> },
    /// RFC 4580 Subscriber-ID (opaque).
    SubscriberId(Vec<u8>),
    /// RFC 6939 client link-layer address (the address bytes, any hardware type).
    LinkLayer(Vec<u8>),
    /// RFC 8415 §21.18 Interface-ID, scoped to the relay with this link-address.
    InterfaceId { relay: Ipv6Addr, id: Vec<u8> },
}

/// A `[[reservation]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub key: ReservationKey,
    pub addresses: Vec<Ipv6Addr>,
    pub prefixes: Vec<Prefix>,
}

/// A local interface as the caller discovered it (for the embedded default and to bind
/// subnets to receiving interfaces).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalInterface {
    pub name: String,
    pub ifindex: u32,
    pub addrs: Vec<Ipv6Addr>,
    pub up: bool,
    pub loopback: bool,
}

/// The validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Where it came from (file name or `<embedded default>`), for messages.
    pub origin: String,
    pub server: Server,
    pub options: Options,
    pub subnets: Vec<Subnet>,
    pub reservations: Vec<Reservation>,
    pub io: io::IoSection,
    pub store: store::StoreSection,
}

/// Line/column lookup over the source text.
struct Source<'a> {
    origin: &'a str,
    text: &'a str,
}

impl Source<'_> {
    fn err(
        &self,
        span: Option<Range<usize>>,
        field: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = match span {
            Some(r) => line_col(self.text, r.start),
            None => (0, 0),
        };
        ConfigError {
            origin: self.origin.to_string(),
            line,
            column,
            field: field.to_string(),
            message: message.into(),
        }
    }

    fn at<T>(&self, v: &Spanned<T>, field: &str, message: impl Into<String>) -> ConfigError {
        self.err(Some(v.span()), field, message)
    }

    fn addr(&self, v: &Spanned<String>, field: &str) -> Result<Ipv6Addr, ConfigError> {
        v.get_ref().trim().parse().map_err(|_| {
            self.at(
                v,
                field,
                format!("`{}` is not an IPv6 address", v.get_ref()),
            )
        })
    }

    fn prefix(&self, v: &Spanned<String>, field: &str) -> Result<Prefix, ConfigError> {
        v.get_ref().parse().map_err(|m| self.at(v, field, m))
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

/// Parses hex bytes, optionally separated by `:` or `-` (DUIDs, MACs).
pub fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let s = s.trim();
    let s = s.strip_prefix("0x").unwrap_or(s);
    let digits: Vec<u8> = s.bytes().filter(|b| !matches!(b, b':' | b'-')).collect();
    if digits.is_empty() || digits.len() % 2 != 0 {
        return Err(format!("`{s}` is not an even number of hex digits"));
    }
    digits
        .chunks(2)
        .map(|c| {
            let hi = (c[0] as char).to_digit(16);
            let lo = (c[1] as char).to_digit(16);
            match (hi, lo) {
                (Some(h), Some(l)) => Ok((h * 16 + l) as u8),
                _ => Err(format!(
                    "`{s}` contains a character that is not a hex digit"
                )),
            }
        })
        .collect()
}

/// Opaque identifiers: `0x…` is hex, anything else is the text's bytes.
pub fn parse_opaque(s: &str) -> Result<Vec<u8>, String> {
    if s.starts_with("0x") {
        parse_hex(s)
    } else if s.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(s.as_bytes().to_vec())
    }
}

/// Appends `name` in RFC 1035 §3.1 wire form (labels, then the root) to `out`.
pub fn encode_domain(name: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let trimmed = name.trim().trim_end_matches('.');
    if trimmed.is_empty() {
        return Err("empty domain name".into());
    }
    let start = out.len();
    for label in trimmed.split('.') {
        if label.is_empty() || label.len() > 63 {
            out.truncate(start);
            return Err(format!("`{name}`: labels must be 1..=63 octets"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            out.truncate(start);
            return Err(format!("`{name}`: `{label}` is not a valid DNS label"));
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    if out.len() - start > 255 {
        out.truncate(start);
        return Err(format!("`{name}` is longer than 255 octets"));
    }
    Ok(())
}

fn duid_from(src: &Source<'_>, v: &Spanned<String>, field: &str) -> Result<Duid, ConfigError> {
    let bytes = parse_hex(v.get_ref()).map_err(|m| src.at(v, field, m))?;
    // RFC 8415 §11.1: 2-octet type plus 1..=128 octets.
    if bytes.len() < 3 {
        return Err(src.at(
            v,
            field,
            "a DUID has a 2-octet type and at least one more octet",
        ));
    }
    Duid::new(&bytes).ok_or_else(|| src.at(v, field, "a DUID is at most 130 octets"))
}

impl Config {
    /// Reads and validates `path`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            origin: origin.clone(),
            line: 0,
            column: 0,
            field: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        Config::from_str(&text, &origin)
    }

    /// Parses and validates TOML `text`; `origin` names it in errors.
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let src = Source { origin, text };
        let file: file::FileConfig = toml::from_str(text).map_err(|e| {
            let field = unknown_field_hint(e.message());
            src.err(e.span(), &field, e.message().trim_end().to_string())
        })?;
        Config::validate(file, &src)
    }

    fn validate(f: file::FileConfig, src: &Source<'_>) -> Result<Config, ConfigError> {
        let server = Server {
            duid: match &f.server.duid {
                Some(v) => Some(duid_from(src, v, "server.duid")?),
                None => None,
            },
            preference: f.server.preference.unwrap_or(0),
            rapid_commit: f.server.rapid_commit.unwrap_or(false),
            unicast: match &f.server.unicast {
                Some(v) => {
                    let a = src.addr(v, "server.unicast")?;
                    if a.is_multicast() || a.is_unspecified() {
                        return Err(src.at(v, "server.unicast", "must be a unicast address"));
                    }
                    Some(a)
                }
                None => None,
            },
            decline_quarantine: f
                .server
                .decline_quarantine
                .unwrap_or(DEFAULT_DECLINE_QUARANTINE),
            renew_creates: f.server.renew_creates.unwrap_or(true),
        };

        let options = Options {
            dns_servers: dns_list(src, &f.options.dns_servers, "options.dns_servers")?,
            domain_list: domain_list(src, &f.options.domain_list, "options.domain_list")?,
            info_refresh_time: match &f.options.info_refresh_time {
                // RFC 8415 §21.23: a client never uses less than IRT_MINIMUM, so a smaller
                // value is a configuration mistake, not a policy.
                Some(v) if *v.get_ref() < IRT_MINIMUM => {
                    return Err(src.at(
                        v,
                        "options.info_refresh_time",
                        format!("must be at least {IRT_MINIMUM} s (RFC 8415 IRT_MINIMUM)"),
                    ))
                }
                Some(v) => *v.get_ref(),
                None => IRT_DEFAULT,
            },
            sol_max_rt: max_rt(src, &f.options.sol_max_rt, "options.sol_max_rt")?,
            inf_max_rt: max_rt(src, &f.options.inf_max_rt, "options.inf_max_rt")?,
        };

        let mut subnets: Vec<Subnet> = Vec::with_capacity(f.subnet.len());
        // Spans of every pool and PD pool, for overlap errors across subnets.
        let mut na_ranges: Vec<(u128, u128, String)> = Vec::new();
        let mut pd_ranges: Vec<(Prefix, String)> = Vec::new();
        for (i, s) in f.subnet.iter().enumerate() {
            let name = format!("subnet[{i}]");
            let prefix = src.prefix(&s.prefix, &format!("{name}.prefix"))?;
            if let Some(other) = subnets.iter().find(|o| o.prefix.overlaps(&prefix)) {
                return Err(src.at(
                    &s.prefix,
                    &format!("{name}.prefix"),
                    format!(
                        "{prefix} overlaps subnet[{}] ({})",
                        other.index, other.prefix
                    ),
                ));
            }
            let mut pools = Vec::new();
            for (j, p) in s.pools.iter().enumerate() {
                let field = format!("{name}.pool[{j}]");
                let start = src.addr(&p.start, &format!("{field}.start"))?;
                let end = src.addr(&p.end, &format!("{field}.end"))?;
                if u128::from(start) > u128::from(end) {
                    return Err(src.at(
                        &p.end,
                        &format!("{field}.end"),
                        format!("{end} is before start {start}"),
                    ));
                }
                if !prefix.contains(start) || !prefix.contains(end) {
                    return Err(src.at(
                        &p.start,
                        &field,
                        format!("pool {start}-{end} is not inside the subnet prefix {prefix}"),
                    ));
                }
                let (a, b) = (u128::from(start), u128::from(end));
                if let Some((_, _, other)) = na_ranges.iter().find(|(x, y, _)| a <= *y && *x <= b) {
                    return Err(src.at(
                        &p.start,
                        &field,
                        format!("pool {start}-{end} overlaps {other}"),
                    ));
                }
                na_ranges.push((a, b, field));
                pools.push(Pool { start, end });
            }
            let mut pd_pools = Vec::new();
            for (j, p) in s.pd_pools.iter().enumerate() {
                let field = format!("{name}.pd_pool[{j}]");
                let pp = src.prefix(&p.prefix, &format!("{field}.prefix"))?;
                let d = *p.delegated_length.get_ref();
                if d < pp.len || d > 128 {
                    return Err(src.at(
                        &p.delegated_length,
                        &format!("{field}.delegated_length"),
                        format!("must be between the pool's length {} and 128", pp.len),
                    ));
                }
                if d - pp.len > MAX_PD_POOL_BITS {
                    return Err(src.at(
                        &p.delegated_length,
                        &format!("{field}.delegated_length"),
                        format!(
                            "{pp} cut into /{d} is 2^{} prefixes; at most 2^{MAX_PD_POOL_BITS} per pool (split it)",
                            d - pp.len
                        ),
                    ));
                }
                if let Some((_, other)) = pd_ranges.iter().find(|(o, _)| o.overlaps(&pp)) {
                    return Err(src.at(&p.prefix, &field, format!("{pp} overlaps {other}")));
                }
                if let Some((_, _, other)) = na_ranges
                    .iter()
                    .find(|(x, y, _)| pp.first() <= *y && *x <= pp.last())
                {
                    return Err(src.at(
                        &p.prefix,
                        &field,
                        format!("{pp} overlaps address {other}"),
                    ));
                }
                pd_ranges.push((pp, field));
                pd_pools.push(PdPool {
                    prefix: pp,
                    delegated_length: d,
                });
            }
            let preferred = s
                .preferred_lifetime
                .as_ref()
                .map_or(DEFAULT_PREFERRED_LIFETIME, |v| *v.get_ref());
            let valid = s
                .valid_lifetime
                .as_ref()
                .map_or(DEFAULT_VALID_LIFETIME.max(preferred), |v| *v.get_ref());
            if preferred > valid {
                let at = s.preferred_lifetime.as_ref().map(|v| v.span());
                return Err(src.err(
                    at.or(s.valid_lifetime.as_ref().map(|v| v.span())),
                    &format!("{name}.preferred_lifetime"),
                    format!("preferred lifetime {preferred} is longer than the valid lifetime {valid} (RFC 8415 §21.6)"),
                ));
            }
            if valid == 0 {
                return Err(src.err(
                    s.valid_lifetime.as_ref().map(|v| v.span()),
                    &format!("{name}.valid_lifetime"),
                    "must be greater than 0",
                ));
            }
            let t1 = s.t1.as_ref().map(|v| *v.get_ref());
            let t2 = s.t2.as_ref().map(|v| *v.get_ref());
            // RFC 8415 §21.4: T1 <= T2 whenever both are non-zero (a server MUST NOT send
            // T1 > T2); when only one is given the other is derived, so check the pair.
            let (eff_t1, eff_t2) = (
                t1.unwrap_or(preferred / 2),
                t2.unwrap_or((u64::from(preferred) * 4 / 5) as u32),
            );
            if eff_t1 > eff_t2 && eff_t2 != 0 {
                let at = s.t1.as_ref().or(s.t2.as_ref()).map(|v| v.span());
                return Err(src.err(
                    at,
                    &format!("{name}.t1"),
                    format!("T1 {eff_t1} is greater than T2 {eff_t2} (RFC 8415 §21.4)"),
                ));
            }
            if let Some(v) = &s.t2 {
                if *v.get_ref() > valid {
                    return Err(src.at(
                        v,
                        &format!("{name}.t2"),
                        format!(
                            "T2 {} is longer than the valid lifetime {valid}",
                            v.get_ref()
                        ),
                    ));
                }
            }
            let mut relay_addresses = Vec::new();
            for (j, v) in s.relay_addresses.iter().enumerate() {
                let field = format!("{name}.relay_addresses[{j}]");
                let a = src.addr(v, &field)?;
                if a.is_unspecified() {
                    return Err(src.at(v, &field, "`::` never selects a link (RFC 8415 §13.1)"));
                }
                relay_addresses.push(a);
            }
            let mut interface_ids = Vec::new();
            for (j, v) in s.interface_ids.iter().enumerate() {
                let field = format!("{name}.interface_ids[{j}]");
                interface_ids.push(parse_opaque(v.get_ref()).map_err(|m| src.at(v, &field, m))?);
            }
            let mut exclude = Vec::new();
            for (j, v) in s.exclude.iter().enumerate() {
                exclude.push(src.addr(v, &format!("{name}.exclude[{j}]"))?);
            }
            subnets.push(Subnet {
                index: i as u32,
                prefix,
                interfaces: s.interfaces.clone(),
                ifindexes: Vec::new(),
                relay_addresses,
                interface_ids,
                pools,
                pd_pools,
                exclude,
                preferred_lifetime: preferred,
                valid_lifetime: valid,
                t1,
                t2,
                rapid_commit: s.rapid_commit.unwrap_or(server.rapid_commit),
                temporary_addresses: s.temporary_addresses.unwrap_or(false),
                dns_servers: match &s.dns_servers {
                    Some(l) => Some(dns_list(src, l, &format!("{name}.dns_servers"))?),
                    None => None,
                },
                domain_list: match &s.domain_list {
                    Some(l) => Some(domain_list(src, l, &format!("{name}.domain_list"))?),
                    None => None,
                },
            });
        }
        // The same relay link-address or Interface-ID selecting two links is ambiguous.
        for (i, s) in f.subnet.iter().enumerate() {
            for (j, v) in s.relay_addresses.iter().enumerate() {
                let a = subnets[i].relay_addresses[j];
                if let Some(o) = subnets.iter().find(|o| {
                    o.index as usize != i
                        && (o.relay_addresses.contains(&a) || o.prefix.contains(a))
                }) {
                    return Err(src.at(
                        v,
                        &format!("subnet[{i}].relay_addresses[{j}]"),
                        format!("{a} already selects subnet[{}]", o.index),
                    ));
                }
            }
            for (j, v) in s.interface_ids.iter().enumerate() {
                let id = &subnets[i].interface_ids[j];
                if let Some(o) = subnets
                    .iter()
                    .find(|o| o.index as usize != i && o.interface_ids.contains(id))
                {
                    return Err(src.at(
                        v,
                        &format!("subnet[{i}].interface_ids[{j}]"),
                        format!("already selects subnet[{}]", o.index),
                    ));
                }
            }
        }

        let mut reservations: Vec<Reservation> = Vec::new();
        for (i, r) in f.reservation.iter().enumerate() {
            reservations.push(reservation(src, r, i, &subnets, &reservations)?);
        }

        Ok(Config {
            origin: src.origin.to_string(),
            server,
            options,
            subnets,
            reservations,
            io: f.io,
            store: f.store,
        })
    }

    /// Binds subnets to receiving interfaces (RFC 8415 §13.1, direct clients): a subnet is
    /// on an interface when it names it in `interfaces`, or when it names none and one of
    /// the interface's addresses lies in the subnet's prefix. Call once the interfaces are
    /// known (the I/O layer discovers them); the engine then selects by ifindex.
    pub fn bind_interfaces(&mut self, interfaces: &[LocalInterface]) {
        for s in &mut self.subnets {
            s.ifindexes = interfaces
                .iter()
                .filter(|i| {
                    if s.interfaces.is_empty() {
                        i.addrs.iter().any(|a| s.prefix.contains(*a))
                    } else {
                        s.interfaces.contains(&i.name)
                    }
                })
                .map(|i| i.ifindex)
                .collect();
        }
    }

    /// Names in the config's `interfaces` lists that none of `interfaces` has (for a
    /// startup warning or error by the caller).
    pub fn unknown_interfaces<'a>(&'a self, interfaces: &[LocalInterface]) -> Vec<&'a str> {
        self.subnets
            .iter()
            .flat_map(|s| s.interfaces.iter())
            .filter(|n| !interfaces.iter().any(|i| &i.name == *n))
            .map(|n| n.as_str())
            .collect()
    }

    /// The constructor-mode default (no config file): on every up, non-loopback interface,
    /// serve the /64 of each global or ULA address configured there, or a stable ULA /64
    /// derived from `seed` (e.g. the server DUID) when it has none; plus IA_PD /56s from a
    /// stable ULA /48 per interface. Direct clients arrive on ff02::1:2 of that interface;
    /// relayed ones by unicast with a link-address inside one of these /64s. Interfaces
    /// with the same /64 share one subnet.
    pub fn embedded_default(interfaces: &[LocalInterface], seed: &[u8]) -> Config {
        let mut subnets: Vec<Subnet> = Vec::new();
        for ifc in interfaces.iter().filter(|i| i.up && !i.loopback) {
            let mut prefixes: Vec<Prefix> = ifc
                .addrs
                .iter()
                .filter(|a| is_global_or_ula(a))
                .filter_map(|a| Prefix::new(*a, 64))
                .collect();
            prefixes.dedup();
            if prefixes.is_empty() {
                let g = ula_global_id(seed, b"na");
                let subnet_id = (stable_hash(ifc.name.as_bytes()) & 0xffff) as u128;
                let a = (0xfdu128 << 120) | (g << 80) | (subnet_id << 64);
                prefixes.push(Prefix::new(Ipv6Addr::from(a), 64).expect("64 <= 128"));
            }
            for p in prefixes {
                if let Some(s) = subnets.iter_mut().find(|s| s.prefix == p) {
                    s.interfaces.push(ifc.name.clone());
                    s.ifindexes.push(ifc.ifindex);
                    s.exclude
                        .extend(ifc.addrs.iter().filter(|a| p.contains(**a)));
                    continue;
                }
                // A per-link /48 for delegation, derived from the seed and the /64 so it
                // stays the same across restarts and interface renumbering.
                let mut key = seed.to_vec();
                key.extend_from_slice(&p.addr.octets());
                let g = ula_global_id(&key, b"pd");
                let pd48 = Ipv6Addr::from((0xfdu128 << 120) | (g << 80));
                let index = subnets.len() as u32;
                subnets.push(Subnet {
                    index,
                    prefix: p,
                    interfaces: vec![ifc.name.clone()],
                    ifindexes: vec![ifc.ifindex],
                    relay_addresses: Vec::new(),
                    interface_ids: Vec::new(),
                    // Skip the low /112-ish region where routers and servers usually sit.
                    pools: vec![Pool {
                        start: Ipv6Addr::from(p.first() | 0x1_0000),
                        end: Ipv6Addr::from(p.last() - 1),
                    }],
                    pd_pools: vec![PdPool {
                        prefix: Prefix::new(pd48, 48).expect("48 <= 128"),
                        delegated_length: 56,
                    }],
                    exclude: ifc
                        .addrs
                        .iter()
                        .copied()
                        .filter(|a| p.contains(*a))
                        .collect(),
                    preferred_lifetime: DEFAULT_PREFERRED_LIFETIME,
                    valid_lifetime: DEFAULT_VALID_LIFETIME,
                    t1: None,
                    t2: None,
                    rapid_commit: false,
                    temporary_addresses: false,
                    dns_servers: None,
                    domain_list: None,
                });
            }
        }
        Config {
            origin: "<embedded default>".to_string(),
            server: Server::default(),
            options: Options::default(),
            subnets,
            reservations: Vec::new(),
            io: io::IoSection::default(),
            store: store::StoreSection::default(),
        }
    }

    /// A short human summary (for `tandem check-config`).
    pub fn summary(&self) -> String {
        let mut s = String::new();
        for sub in &self.subnets {
            let pools: Vec<String> = sub
                .pools
                .iter()
                .map(|p| format!("{}-{}", p.start, p.end))
                .collect();
            let pds: Vec<String> = sub
                .pd_pools
                .iter()
                .map(|p| {
                    format!(
                        "{} /{} ({} prefixes)",
                        p.prefix,
                        p.delegated_length,
                        p.count()
                    )
                })
                .collect();
            s.push_str(&format!(
                "subnet[{}] {}: pools [{}], pd_pools [{}], lifetimes {}/{} s{}\n",
                sub.index,
                sub.prefix,
                pools.join(", "),
                pds.join(", "),
                sub.preferred_lifetime,
                sub.valid_lifetime,
                if sub.rapid_commit {
                    ", rapid commit"
                } else {
                    ""
                },
            ));
        }
        s.push_str(&format!("{} reservation(s)\n", self.reservations.len()));
        s
    }
}

fn is_global_or_ula(a: &Ipv6Addr) -> bool {
    let first = a.segments()[0];
    // 2000::/3 global unicast, fc00::/7 unique local (RFC 4193).
    (first & 0xe000) == 0x2000 || (first & 0xfe00) == 0xfc00
}

/// A 40-bit ULA Global ID (RFC 4193 §3.2) derived from `seed` and a purpose tag: stable,
/// pseudo-random, and different for the NA and PD ranges.
fn ula_global_id(seed: &[u8], tag: &[u8]) -> u128 {
    let mut key = seed.to_vec();
    key.extend_from_slice(tag);
    u128::from(stable_hash(&key) & 0xff_ffff_ffff)
}

fn dns_list(
    src: &Source<'_>,
    l: &[Spanned<String>],
    field: &str,
) -> Result<Vec<Ipv6Addr>, ConfigError> {
    l.iter()
        .enumerate()
        .map(|(i, v)| {
            let f = format!("{field}[{i}]");
            let a = src.addr(v, &f)?;
            if a.is_unspecified() || a.is_multicast() {
                return Err(src.at(v, &f, "a DNS server must be a unicast address"));
            }
            Ok(a)
        })
        .collect()
}

fn domain_list(
    src: &Source<'_>,
    l: &[Spanned<String>],
    field: &str,
) -> Result<Vec<u8>, ConfigError> {
    let mut out = Vec::new();
    for (i, v) in l.iter().enumerate() {
        encode_domain(v.get_ref(), &mut out).map_err(|m| src.at(v, &format!("{field}[{i}]"), m))?;
    }
    if out.len() > usize::from(u16::MAX) {
        return Err(src.err(None, field, "the domain list does not fit in one option"));
    }
    Ok(out)
}

fn max_rt(
    src: &Source<'_>,
    v: &Option<Spanned<u32>>,
    field: &str,
) -> Result<Option<u32>, ConfigError> {
    match v {
        // RFC 8415 §21.24/§21.25: valid values are 60..=86400; clients ignore others.
        Some(v) if !(60..=86_400).contains(v.get_ref()) => Err(src.at(
            v,
            field,
            "must be between 60 and 86400 seconds (RFC 8415 §21.24)",
        )),
        Some(v) => Ok(Some(*v.get_ref())),
        None => Ok(None),
    }
}

fn reservation(
    src: &Source<'_>,
    r: &file::FileReservation,
    i: usize,
    subnets: &[Subnet],
    earlier: &[Reservation],
) -> Result<Reservation, ConfigError> {
    let name = format!("reservation[{i}]");
    let mut keys: Vec<(ReservationKey, Range<usize>)> = Vec::new();
    if let Some(v) = &r.duid {
        let d = duid_from(src, v, &format!("{name}.duid"))?;
        keys.push((ReservationKey::Duid(d.as_bytes().to_vec()), v.span()));
    }
    if let Some(v) = &r.remote_id {
        let f = format!("{name}.remote_id");
        let id = parse_opaque(v.get_ref()).map_err(|m| src.at(v, &f, m))?;
        let enterprise = r.enterprise.ok_or_else(|| {
            src.at(
                v,
                &format!("{name}.enterprise"),
                "a remote_id needs its enterprise number (RFC 4649)",
            )
        })?;
        keys.push((ReservationKey::RemoteId { enterprise, id }, v.span()));
    } else if r.enterprise.is_some() {
        return Err(src.err(
            None,
            &format!("{name}.enterprise"),
            "enterprise is only meaningful with remote_id",
        ));
    }
    if let Some(v) = &r.subscriber_id {
        let id = parse_opaque(v.get_ref())
            .map_err(|m| src.at(v, &format!("{name}.subscriber_id"), m))?;
        keys.push((ReservationKey::SubscriberId(id), v.span()));
    }
    if let Some(v) = &r.link_layer {
        let mac =
            parse_hex(v.get_ref()).map_err(|m| src.at(v, &format!("{name}.link_layer"), m))?;
        keys.push((ReservationKey::LinkLayer(mac), v.span()));
    }
    if let Some(v) = &r.interface_id {
        let f = format!("{name}.interface_id");
        let id = parse_opaque(v.get_ref()).map_err(|m| src.at(v, &f, m))?;
        let relay = match &r.relay {
            Some(rv) => src.addr(rv, &format!("{name}.relay"))?,
            None => {
                return Err(src.at(
                    v,
                    &format!("{name}.relay"),
                    "an interface_id reservation needs the relay's link-address",
                ))
            }
        };
        keys.push((ReservationKey::InterfaceId { relay, id }, v.span()));
    } else if let Some(rv) = &r.relay {
        return Err(src.at(
            rv,
            &format!("{name}.relay"),
            "relay is only meaningful with interface_id",
        ));
    }
    let (key, key_span) =
        match keys.len() {
            1 => keys.pop().expect("one key"),
            0 => return Err(src.err(
                None,
                &name,
                "needs one identifier: duid, remote_id, subscriber_id, link_layer or interface_id",
            )),
            _ => {
                return Err(src.err(
                    Some(keys[1].1.clone()),
                    &name,
                    "has more than one identifier; use one per reservation",
                ))
            }
        };
    if let Some(j) = earlier.iter().position(|e| e.key == key) {
        return Err(src.err(
            Some(key_span),
            &name,
            format!("duplicates the identifier of reservation[{j}]"),
        ));
    }
    let mut addresses = Vec::new();
    for (j, v) in r.addresses.iter().enumerate() {
        let f = format!("{name}.addresses[{j}]");
        let a = src.addr(v, &f)?;
        if !subnets
            .iter()
            .any(|s| s.pools.iter().any(|p| p.contains(a)))
        {
            return Err(src.at(v, &f, format!("{a} is outside every pool")));
        }
        if let Some(k) = earlier.iter().position(|e| e.addresses.contains(&a)) {
            return Err(src.at(
                v,
                &f,
                format!("{a} is already reserved by reservation[{k}]"),
            ));
        }
        addresses.push(a);
    }
    let mut prefixes = Vec::new();
    for (j, v) in r.prefixes.iter().enumerate() {
        let f = format!("{name}.prefixes[{j}]");
        let p = src.prefix(v, &f)?;
        if !subnets.iter().any(|s| s.owns_prefix(p.addr, p.len)) {
            return Err(src.at(
                v,
                &f,
                format!(
                    "{p} is not a delegated prefix of any pd_pool (check the delegated_length)"
                ),
            ));
        }
        if let Some(k) = earlier.iter().position(|e| e.prefixes.contains(&p)) {
            return Err(src.at(
                v,
                &f,
                format!("{p} is already reserved by reservation[{k}]"),
            ));
        }
        prefixes.push(p);
    }
    if addresses.is_empty() && prefixes.is_empty() {
        return Err(src.err(
            Some(key_span),
            &name,
            "reserves nothing: add addresses or prefixes",
        ));
    }
    Ok(Reservation {
        key,
        addresses,
        prefixes,
    })
}

/// serde reports unknown keys as "unknown field `x`, expected ..."; surface `x` as the field.
fn unknown_field_hint(message: &str) -> String {
    message
        .split_once("unknown field `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(name, _)| name.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
