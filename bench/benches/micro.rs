//! Criterion micro-benchmarks: one group per module, each module adds its own function
//! under bench/src/micro/ and one name below.
use criterion::{criterion_group, criterion_main};
use tandem_bench::micro;

criterion_group!(benches, micro::engine::benchmarks, micro::store::benchmarks);
criterion_main!(benches);
