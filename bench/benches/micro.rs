//! Criterion micro-benchmarks: one group per module, each module adds its own function
//! (defined in bench/src/micro/<module>.rs) to the list below.
use criterion::{criterion_group, criterion_main};

criterion_group!(benches, tandem_bench::micro::wire::benchmarks);
criterion_main!(benches);
