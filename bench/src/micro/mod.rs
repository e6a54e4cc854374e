//! Criterion micro-benchmarks, one module per tandem module; `benches/micro.rs` calls each
//! module's `benchmarks(c)`. Inputs are the golden vectors in tests/vectors.

pub mod cputime;
pub mod engine;
pub mod failover;
pub mod store;
pub mod wire;
