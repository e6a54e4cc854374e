//! `[store]`: where leases live and how durable they are.
