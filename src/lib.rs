//! # tandem — a DHCPv6 server for ISP access sites
//!
//! The module tree follows the data path of one packet:
//!
//! ```text
//! NIC queue ─► io (io_uring UDP socket | AF_XDP ring) ─► shard (one pinned thread per queue)
//!                 shard: wire::parse ─► engine (sans-IO, RFC 8415 §18.3) ─► lease table
//!                        ─► reply released when the lease batch is durable ─► io TX
//!                 shard ─► control (failover::Endpoint, TLS to the partner) ─► back to shards
//! ```
//!
//! * [`wire`]: zero-copy views and builders for DHCPv6 (RFC 8415) and failover (RFC 8156).
//! * [`engine`]: the per-shard server logic; takes `(request, now, lease table)`, returns a
//!   reply and lease changes. No sockets, clocks or threads.
//! * [`alloc`]: address hashing (bit-127 halves) and prefix free bitmaps; pure.
//! * [`lease`]: the lease model and the [`lease::LeaseTable`] interface, with the in-memory
//!   and durable implementations.
//! * [`failover`]: the sans-IO RFC 8156 endpoint state machine.
//! * [`io`]: the batch I/O interface and its io_uring and AF_XDP backends (the only place with
//!   `unsafe`, besides the store's mmap module).
//! * [`shard`]: the thread per NIC queue that runs io → engine → lease → io.
//! * [`config`]: the TOML file types and the validated configuration.
//!
//! docs/ARCHITECTURE.md describes which thread owns which state.
#![forbid(unsafe_op_in_unsafe_fn)]

pub mod alloc;
pub mod cli;
pub mod config;
pub mod engine;
pub mod failover;
pub mod io;
pub mod lease;
pub mod plan;
pub mod server;
pub mod shard;
pub mod time;
pub mod wire;
