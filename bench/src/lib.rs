//! tandem's bench rig: the `tandem-bench` load generator ([`rig`]) and shared helpers for the
//! criterion micro-benchmarks in `benches/`.

pub mod micro;
pub mod rig;
