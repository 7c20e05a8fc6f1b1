//! The process's resource use, read from `/proc/self` at each scrape (Linux; elsewhere
//! nothing is exported), under the names Prometheus' own clients use (`process_*`), so the
//! usual dashboards work unchanged.
//!
//! CPU times in `/proc/self/stat` are in clock ticks (`USER_HZ`), which Linux fixes at 100
//! on every architecture ringchat builds for: asking `sysconf(_SC_CLK_TCK)` would need
//! `unsafe` (libc) for a constant.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

const TICKS_PER_SECOND: f64 = 100.0;

/// Exports `process_cpu_seconds_total`, `process_resident_memory_bytes`,
/// `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds`,
/// `process_threads` and `process_start_time_seconds`.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessCollector;

/// One reading of `/proc/self`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub threads: u64,
    /// Seconds since the epoch.
    pub start_time: f64,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

impl ProcessStats {
    /// Reads `/proc/self`; None where there is no procfs.
    pub fn read() -> Option<ProcessStats> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let boot_time = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| field(&s, "btime").and_then(|v| v.parse::<u64>().ok()));
        let mut stats = parse_stat(&stat)?;
        // VmRSS counts in KiB, whatever the page size
        stats.resident_bytes = field(&status, "VmRSS:")
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024);
        if let Some(boot) = boot_time {
            stats.start_time += boot as f64;
        }
        stats.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as u64);
        stats.max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|l| max_open_files(&l));
        Some(stats)
    }
}

/// The first word after the line that starts with `key`.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
}

/// `/proc/self/stat`: CPU time, threads, start time (ticks after boot), virtual size.
/// The command name (field 2) may hold spaces and parentheses: fields are counted after
/// its last `)`.
fn parse_stat(stat: &str) -> Option<ProcessStats> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state): field n is f[n - 3]
    let num = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some(ProcessStats {
        cpu_seconds: (num(14)? + num(15)?) as f64 / TICKS_PER_SECOND,
        threads: num(20)?,
        start_time: num(22)? as f64 / TICKS_PER_SECOND,
        virtual_bytes: num(23)?,
        ..ProcessStats::default()
    })
}

/// The soft limit of `Max open files` in `/proc/self/limits`.
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let Some(s) = ProcessStats::read() else {
            return Ok(());
        };
        let m = encoder.encode_descriptor(
            "process_cpu_seconds",
            "user and system CPU time spent, in seconds",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(s.cpu_seconds).encode(m)?;
        let m = encoder.encode_descriptor(
            "process_start_time_seconds",
            "start time of the process since the Unix epoch, in seconds",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(s.start_time).encode(m)?;
        let mut gauge = |name: &str, help: &str, v: u64| -> fmt::Result {
            let m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)).encode(m)
        };
        gauge(
            "process_resident_memory_bytes",
            "resident memory size, in bytes",
            s.resident_bytes,
        )?;
        gauge(
            "process_virtual_memory_bytes",
            "virtual memory size, in bytes",
            s.virtual_bytes,
        )?;
        gauge("process_threads", "OS threads", s.threads)?;
        if let Some(n) = s.open_fds {
            gauge("process_open_fds", "open file descriptors", n)?;
        }
        if let Some(n) = s.max_fds {
            gauge(
                "process_max_fds",
                "the open file descriptor limit (soft)",
                n,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // a command name with a space and a parenthesis, as the kernel writes it
        let stat = "4242 (im (lo)gic) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 \
                    7 0 12345 987654321 2048 18446744073709551615";
        let s = parse_stat(stat).expect("parsed");
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.threads, 7);
        assert_eq!(s.start_time, 123.45);
        assert_eq!(s.virtual_bytes, 987654321);
    }

    #[test]
    fn the_soft_open_file_limit_is_read() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max cpu time              unlimited            unlimited            seconds\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_measured() {
        let s = ProcessStats::read().expect("procfs");
        assert!(s.resident_bytes > 0 && s.threads >= 1 && s.open_fds.unwrap_or(0) >= 3);
        assert!(s.start_time > 1.5e9, "{s:?}");
    }
}
