//! Server cost from outside: CPU time (utime + stime of /proc/PID/stat) and peak RSS (VmHWM of
//! /proc/PID/status), and the floor they are compared to — the work no server can avoid per
//! uploaded chunk (CRC check, zstd decompress, SHA-256), done here on one thread.

use std::time::Instant;

use chunkyard::client::blob;

use crate::data::Workload;

/// utime + stime of a process, in seconds.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_cpu_ticks(&stat).map(|t| t as f64 / clock_ticks())
}

/// Fields 14 and 15 of /proc/PID/stat; the command name (field 2) may contain spaces and
/// parentheses, so counting starts after its last `)`.
fn parse_cpu_ticks(stat: &str) -> anyhow::Result<u64> {
    let rest = stat.rsplit_once(')').ok_or_else(|| anyhow::anyhow!("unexpected /proc stat format"))?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14 -> index 11.
    let utime: u64 = fields.get(11).ok_or_else(|| anyhow::anyhow!("short stat"))?.parse()?;
    let stime: u64 = fields.get(12).ok_or_else(|| anyhow::anyhow!("short stat"))?.parse()?;
    Ok(utime + stime)
}

#[allow(unsafe_code)]
fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// VmHWM (peak resident set) in bytes.
pub fn peak_rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_hwm(&status).ok_or_else(|| anyhow::anyhow!("no VmHWM in /proc/{pid}/status"))
}

fn parse_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Seconds one thread needs to check every upload of the run: each distinct chunk is checked
/// once and its time counted as often as it was uploaded (`uploads[id]`).
pub fn floor_seconds(w: &Workload, uploads: &[u64]) -> anyhow::Result<f64> {
    let mut total = 0.0;
    for (chunk, &n) in w.pool.iter().zip(uploads) {
        if n == 0 {
            continue;
        }
        let t = Instant::now();
        blob::check_crc(&chunk.blob)?;
        blob::verify_chunk(&chunk.blob, &chunk.digest, chunk.size)?;
        total += t.elapsed().as_secs_f64() * n as f64;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_found_after_a_tricky_command_name() {
        let stat = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 1 2 3";
        assert_eq!(parse_cpu_ticks(stat).unwrap(), 325);
        assert_eq!(parse_hwm("Name:\tx\nVmHWM:\t  2048 kB\nVmRSS: 1 kB\n"), Some(2 << 20));
    }

    #[test]
    fn own_process_is_readable() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
        assert!(peak_rss(pid).unwrap() > 0);
    }
}
