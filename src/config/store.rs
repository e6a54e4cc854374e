//! `[store]`: where leases live and how durable they are.

use serde::Deserialize;

/// `[store]` as written in the file (filled in by the store's owner).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {}
