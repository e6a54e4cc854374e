//! The server configuration the tests run with, and checks that a lease lies in its pool.
//!
//! Two subnets, like the shared Kea harness so results compare:
//! * `2001:db8:1::/64` on the server's veth (direct clients via ff02::1:2), addresses from
//!   [`DIRECT_POOL`], /56 prefixes from [`DIRECT_PD_POOL`];
//! * `2001:db8:2::/64` behind a relay (selected by the relay's link-address
//!   2001:db8:2::1), addresses from [`RELAYED_POOL`], /56s from [`RELAYED_PD_POOL`], with a
//!   reservation keyed by Remote-ID (enterprise 3561, "cpe-0001").

use std::net::Ipv6Addr;

use super::netns::SERVER_IF;

/// An address range `first..=last`.
#[derive(Clone, Copy, Debug)]
pub struct Pool {
    pub first: Ipv6Addr,
    pub last: Ipv6Addr,
}

impl Pool {
    pub fn contains(&self, addr: Ipv6Addr) -> bool {
        (u128::from(self.first)..=u128::from(self.last)).contains(&u128::from(addr))
    }
}

/// Prefixes of length `delegated` carved out of `prefix/len`.
#[derive(Clone, Copy, Debug)]
pub struct PdPool {
    pub prefix: Ipv6Addr,
    pub len: u8,
    pub delegated: u8,
}

impl PdPool {
    /// True when `prefix/len` is one of this pool's delegated prefixes: the right length,
    /// inside the pool, and no host bits set past the delegated length.
    pub fn contains(&self, prefix: Ipv6Addr, len: u8) -> bool {
        let p = u128::from(prefix);
        len == self.delegated
            && mask(p, self.len) == u128::from(self.prefix)
            && mask(p, self.delegated) == p
    }
}

fn mask(value: u128, len: u8) -> u128 {
    match len {
        0 => 0,
        l if l >= 128 => value,
        l => value & (u128::MAX << (128 - u32::from(l))),
    }
}

const fn addr(segments: [u16; 8]) -> Ipv6Addr {
    let [a, b, c, d, e, f, g, h] = segments;
    Ipv6Addr::new(a, b, c, d, e, f, g, h)
}

pub const DIRECT_POOL: Pool = Pool {
    first: addr([0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x1000]),
    last: addr([0x2001, 0xdb8, 1, 0, 0xffff, 0xffff, 0xffff, 0xffff]),
};
pub const DIRECT_PD_POOL: PdPool = PdPool {
    prefix: addr([0x2001, 0xdb8, 0x8000, 0, 0, 0, 0, 0]),
    len: 40,
    delegated: 56,
};
pub const RELAYED_POOL: Pool = Pool {
    first: addr([0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x1000]),
    last: addr([0x2001, 0xdb8, 2, 0, 0xffff, 0xffff, 0xffff, 0xffff]),
};
pub const RELAYED_PD_POOL: PdPool = PdPool {
    prefix: addr([0x2001, 0xdb8, 0x9000, 0, 0, 0, 0, 0]),
    len: 40,
    delegated: 56,
};

/// The reservation matched by the relay's Remote-ID (RFC 4649): enterprise 3561 (the
/// Broadband Forum's number), remote-id "cpe-0001".
pub const RESERVED_REMOTE_ID: &[u8] = b"cpe-0001";
pub const RESERVED_ENTERPRISE: u32 = 3561;
pub const RESERVED_ADDR: Ipv6Addr = addr([0x2001, 0xdb8, 2, 0, 0, 0, 0, 0xcafe]);
pub const RESERVED_PREFIX: Ipv6Addr = addr([0x2001, 0xdb8, 0x9000, 0xfe00, 0, 0, 0, 0]);

pub const DNS_SERVER: Ipv6Addr = addr([0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x53]);

/// Knobs the tests turn; everything else is the fixed topology above.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub rapid_commit: bool,
    pub shards: usize,
    pub preferred_lifetime: u32,
    pub valid_lifetime: u32,
    /// Renew (T1) and rebind (T2) times; `None`: the server's default (0.5 / 0.8 of the
    /// preferred lifetime, RFC 8415 §21.4).
    pub t1: Option<u32>,
    pub t2: Option<u32>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            rapid_commit: false,
            shards: 2,
            preferred_lifetime: 3000,
            valid_lifetime: 4000,
            t1: None,
            t2: None,
        }
    }
}

impl ServerConfig {
    /// The TOML text of this configuration (the format `tandem check-config` validates).
    pub fn toml(&self) -> String {
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let timers = [("t1", self.t1), ("t2", self.t2)]
            .iter()
            .filter_map(|(k, v)| v.map(|v| format!("{k} = {v}\n")))
            .collect::<String>();
        format!(
            r#"# Written by the integration test harness (tests/common/config.rs).
[server]
preference = 255

[options]
dns_servers = ["{DNS_SERVER}"]
domain_list = ["access.example.net"]

# The link of the server's veth: direct clients.
[[subnet]]
prefix = "2001:db8:1::/64"
interfaces = ["{SERVER_IF}"]
preferred_lifetime = {pref}
valid_lifetime = {valid}
rapid_commit = {rapid}
{timers}pool = [{{ start = "{dp_first}", end = "{dp_last}" }}]
pd_pool = [{{ prefix = "{dpd}/{dpd_len}", delegated_length = {dpd_del} }}]

# The link behind the relay agents (selected by relay link-address 2001:db8:2::1).
[[subnet]]
prefix = "2001:db8:2::/64"
preferred_lifetime = {pref}
valid_lifetime = {valid}
rapid_commit = {rapid}
pool = [{{ start = "{rp_first}", end = "{rp_last}" }}]
pd_pool = [{{ prefix = "{rpd}/{rpd_len}", delegated_length = {rpd_del} }}]

[[reservation]]
remote_id = "0x{remote_id}"
enterprise = {enterprise}
addresses = ["{reserved_addr}"]
prefixes = ["{reserved_prefix}/56"]
"#,
            pref = self.preferred_lifetime,
            valid = self.valid_lifetime,
            rapid = self.rapid_commit,
            dp_first = DIRECT_POOL.first,
            dp_last = DIRECT_POOL.last,
            dpd = DIRECT_PD_POOL.prefix,
            dpd_len = DIRECT_PD_POOL.len,
            dpd_del = DIRECT_PD_POOL.delegated,
            rp_first = RELAYED_POOL.first,
            rp_last = RELAYED_POOL.last,
            rpd = RELAYED_PD_POOL.prefix,
            rpd_len = RELAYED_PD_POOL.len,
            rpd_del = RELAYED_PD_POOL.delegated,
            remote_id = hex(RESERVED_REMOTE_ID),
            enterprise = RESERVED_ENTERPRISE,
            reserved_addr = RESERVED_ADDR,
            reserved_prefix = RESERVED_PREFIX,
        )
    }
}

/// Parses "2001:db8::/56" into (prefix, length).
pub fn parse_prefix(text: &str) -> Option<(Ipv6Addr, u8)> {
    let (addr, len) = text.trim().split_once('/')?;
    Some((addr.parse().ok()?, len.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_membership() {
        assert!(DIRECT_POOL.contains("2001:db8:1::1000".parse().unwrap()));
        assert!(!DIRECT_POOL.contains("2001:db8:1::fff".parse().unwrap()));
        assert!(DIRECT_PD_POOL.contains("2001:db8:80ff:ff00::".parse().unwrap(), 56));
        assert!(!DIRECT_PD_POOL.contains("2001:db8:8000:1::".parse().unwrap(), 56));
        assert!(!DIRECT_PD_POOL.contains("2001:db8:8100::".parse().unwrap(), 56));
        assert!(!DIRECT_PD_POOL.contains("2001:db8:8000::".parse().unwrap(), 48));
    }
}
