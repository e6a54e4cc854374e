//! A criterion measurement of the benchmark thread's CPU time (CLOCK_THREAD_CPUTIME_ID)
//! instead of wall-clock time.
//!
//! The development and CI machines have 2 cores shared by many processes; wall-clock
//! samples then include the time the benchmark thread waited for a core, which swings the
//! results by several times between runs. Thread CPU time counts only the time this
//! thread ran, so per-packet costs stay comparable across runs (cache pollution from the
//! neighbours still shows up, which is why each result is also given as a ratio to a
//! baseline measured in the same run).

use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};

/// CPU time consumed by the calling thread.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call and
    // CLOCK_THREAD_CPUTIME_ID is supported by every Linux kernel tandem runs on.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Criterion [`Measurement`] over [`thread_cpu_time`]; values print like wall time.
pub struct ThreadCpuTime {
    wall: WallTime,
}

impl Default for ThreadCpuTime {
    fn default() -> Self {
        ThreadCpuTime { wall: WallTime }
    }
}

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu_time()
    }

    fn end(&self, start: Duration) -> Duration {
        thread_cpu_time().saturating_sub(start)
    }

    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        self.wall.formatter()
    }
}
