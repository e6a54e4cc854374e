//! The configuration file as written: serde types that mirror the TOML one to one.
//!
//! Nothing here is validated beyond TOML syntax and types; [`super::Config::from_str`]
//! turns these into the validated [`super::Config`]. Every value that a semantic check may
//! reject is wrapped in [`Spanned`] so the error can name its line and column.
//! `deny_unknown_fields` everywhere: a misspelt key is an error, never silently ignored.

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: FileServer,
    #[serde(default)]
    pub options: FileOptions,
    #[serde(default)]
    pub subnet: Vec<FileSubnet>,
    #[serde(default)]
    pub reservation: Vec<FileReservation>,
    #[serde(default)]
    pub io: super::io::IoSection,
    #[serde(default)]
    pub store: super::store::StoreSection,
}

/// `[server]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileServer {
    /// Server DUID as hex (colons allowed); default: the one generated in the data directory.
    pub duid: Option<Spanned<String>>,
    /// RFC 8415 §21.8 Preference option value in Advertise.
    pub preference: Option<u8>,
    /// Default for subnets that do not say (RFC 8415 §18.3.1 Rapid Commit).
    pub rapid_commit: Option<bool>,
    /// RFC 8415 §21.12 Server Unicast: the address clients may unicast to. Unset: clients
    /// unicasting get UseMulticast (§18.4).
    pub unicast: Option<Spanned<String>>,
    /// Seconds a declined address stays out of the pool (RFC 8415 §18.3.8).
    pub decline_quarantine: Option<u32>,
    /// Create a binding for a Renew/Rebind of an unknown IA (RFC 8415 §18.3.4 SHOULD).
    pub renew_creates: Option<bool>,
}

/// `[options]`: what clients get when they ask (ORO).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOptions {
    #[serde(default)]
    pub dns_servers: Vec<Spanned<String>>,
    #[serde(default)]
    pub domain_list: Vec<Spanned<String>>,
    pub info_refresh_time: Option<Spanned<u32>>,
    pub sol_max_rt: Option<Spanned<u32>>,
    pub inf_max_rt: Option<Spanned<u32>>,
}

/// `[[subnet]]`: one link (RFC 8415 §13.1 link selection keys it).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSubnet {
    pub prefix: Spanned<String>,
    /// Interfaces whose direct clients are on this link.
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// Extra relay link-addresses that select this link (besides those inside `prefix`).
    #[serde(default)]
    pub relay_addresses: Vec<Spanned<String>>,
    /// Interface-ID option values (RFC 8415 §21.18) that select this link: text, or hex
    /// with a `0x` prefix.
    #[serde(default)]
    pub interface_ids: Vec<Spanned<String>>,
    #[serde(default, rename = "pool")]
    pub pools: Vec<FilePool>,
    #[serde(default, rename = "pd_pool")]
    pub pd_pools: Vec<FilePdPool>,
    /// Addresses inside the pools never handed out dynamically (e.g. the router's).
    #[serde(default)]
    pub exclude: Vec<Spanned<String>>,
    pub preferred_lifetime: Option<Spanned<u32>>,
    pub valid_lifetime: Option<Spanned<u32>>,
    pub t1: Option<Spanned<u32>>,
    pub t2: Option<Spanned<u32>>,
    pub rapid_commit: Option<bool>,
    /// Answer IA_TA from this subnet's pools (RFC 8415 §21.5); otherwise NoAddrsAvail.
    pub temporary_addresses: Option<bool>,
    pub dns_servers: Option<Vec<Spanned<String>>>,
    pub domain_list: Option<Vec<Spanned<String>>>,
}

/// `[[subnet.pool]]`: an inclusive IA_NA address range.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePool {
    pub start: Spanned<String>,
    pub end: Spanned<String>,
}

/// `[[subnet.pd_pool]]`: a prefix cut into delegated prefixes of one length.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePdPool {
    pub prefix: Spanned<String>,
    pub delegated_length: Spanned<u8>,
}

/// `[[reservation]]`: exactly one identifier and at least one address or prefix.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileReservation {
    pub duid: Option<Spanned<String>>,
    /// RFC 4649 Remote-ID: the remote-id bytes (text, or hex with `0x`), with `enterprise`.
    pub remote_id: Option<Spanned<String>>,
    pub enterprise: Option<u32>,
    /// RFC 4580 Subscriber-ID (text, or hex with `0x`).
    pub subscriber_id: Option<Spanned<String>>,
    /// RFC 6939 client link-layer address (MAC, `aa:bb:cc:dd:ee:ff`).
    pub link_layer: Option<Spanned<String>>,
    /// RFC 8415 §21.18 Interface-ID (text, or hex with `0x`), with `relay`.
    pub interface_id: Option<Spanned<String>>,
    /// The relay link-address the Interface-ID is scoped to.
    pub relay: Option<Spanned<String>>,
    #[serde(default)]
    pub addresses: Vec<Spanned<String>>,
    #[serde(default)]
    pub prefixes: Vec<Spanned<String>>,
}
