//! `[io]`: which backend, which interfaces, how many shards.

use serde::Deserialize;

/// `[io]` as written in the file (filled in by the I/O backends' owners).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IoSection {}
