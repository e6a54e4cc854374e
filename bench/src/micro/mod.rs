//! Criterion micro-benchmarks, one module per tandem module; `benches/micro.rs` calls each
//! module's `benchmarks(c)`.

pub mod engine;
pub mod store;
