//! Criterion micro-benchmarks: one group per module, each module adds its own function
//! under bench/src/micro/ and one name below.
use criterion::{criterion_group, criterion_main, Criterion};
use tandem_bench::micro;

criterion_group!(benches, micro::wire::benchmarks, micro::store::benchmarks);
criterion_group! {
    name = engine;
    // Thread CPU time: see bench/src/micro/cputime.rs for why.
    config = Criterion::default().with_measurement(micro::cputime::ThreadCpuTime::default());
    targets = micro::engine::benchmarks, micro::failover::benchmarks
}
criterion_main!(benches, engine);
