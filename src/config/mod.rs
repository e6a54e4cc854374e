//! Configuration: TOML file types (serde, in `file` form) kept apart from the validated
//! [`Config`] the rest of the server uses.
//!
//! Sections and their owners:
//! * `[server]`, `[[subnet]]`, `[options]`, reservations: this module (engine inputs).
//! * `[io]` (backend, interfaces, shards, AF_XDP): [`io`].
//! * `[store]` (data directory, durability): [`store`].
//!
//! Every validation error names the file, the line and the field.

pub mod io;
pub mod store;
pub mod xdp;
