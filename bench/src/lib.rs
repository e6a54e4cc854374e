//! tandem's bench rig: the `tandem-bench` load generator (its own issue) and shared helpers
//! for the criterion micro-benchmarks in `benches/`.
