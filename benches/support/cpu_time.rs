//! A criterion measurement of the benchmark thread's CPU time instead of wall-clock time.
//!
//! The benches run on machines shared with builds and other agents; wall-clock time then
//! mostly measures the scheduler. Single-threaded work (verifying a chunk) costs the same CPU
//! time either way, so CPU time gives comparable numbers under load and equals wall time on an
//! idle machine.

use criterion::Throughput;
use criterion::measurement::{Measurement, ValueFormatter};

pub struct ThreadCpuTime;

#[allow(unsafe_code)]
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns() - start
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

/// Values in nanoseconds of CPU time, shown in ms; byte throughputs in MiB per CPU-second.
struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, _typical: f64, values: &mut [f64]) -> &'static str {
        values.iter_mut().for_each(|v| *v /= 1e6);
        "ms cpu"
    }
    fn scale_throughputs(&self, _typical: f64, throughput: &Throughput, values: &mut [f64]) -> &'static str {
        let per_iter = match *throughput {
            Throughput::Bytes(b) | Throughput::BytesDecimal(b) => b as f64 / (1024.0 * 1024.0),
            Throughput::Bits(b) => b as f64 / (8.0 * 1024.0 * 1024.0),
            Throughput::Elements(e) | Throughput::ElementsAndBytes { elements: e, .. } => e as f64,
        };
        values.iter_mut().for_each(|v| *v = per_iter * 1e9 / *v);
        match throughput {
            Throughput::Elements(_) | Throughput::ElementsAndBytes { .. } => "elem/cpu-s",
            _ => "MiB/cpu-s",
        }
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}
