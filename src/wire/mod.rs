//! DHCPv6 (RFC 8415) and failover (RFC 8156) wire codecs: zero-copy views and builders.
pub mod failover;
