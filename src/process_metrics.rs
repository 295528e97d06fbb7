//! Process metrics (§13): CPU time, resident memory, open and maximum file descriptors and
//! start time, read from `/proc/self` at each scrape; the standard `process_*` names, so
//! dashboards and alerts written for other exporters work unchanged. Off Linux (no `/proc`)
//! none are exported.
//!
//! Written here rather than taken from a crate: `prometheus-client` has no process collector,
//! and these are four small reads of `/proc` once per scrape (nothing on the request path).
//! Reading `/proc` also needs no `unsafe` (forbidden in this crate), where `getrlimit` and
//! `sysconf` would.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second in `/proc/*/stat` (`USER_HZ`): 100 on every Linux architecture
/// this gateway is built for (the kernel's ABI fixes it, whatever `CONFIG_HZ` is).
const USER_HZ: f64 = 100.0;

/// The `process_*` metrics, sampled when `/metrics` is scraped.
#[derive(Debug, Default)]
pub(crate) struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(sample) = Sample::read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(sample.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                Some(sample.resident_bytes),
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                Some(sample.open_fds),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                sample.max_fds,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(value) = value.and_then(|v| i64::try_from(v).ok()) {
                let gauge = ConstGauge::new(value);
                gauge.encode(encoder.encode_descriptor(
                    name,
                    help,
                    None,
                    gauge.metric_type(),
                )?)?;
            }
        }
        if let Some(start) = sample.start_time_seconds {
            let gauge = ConstGauge::new(start);
            gauge.encode(encoder.encode_descriptor(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                None,
                gauge.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

/// One reading of the process's figures.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    cpu_seconds: f64,
    resident_bytes: u64,
    open_fds: u64,
    max_fds: Option<u64>,
    start_time_seconds: Option<f64>,
}

impl Sample {
    fn read() -> Option<Sample> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let (cpu_seconds, start_ticks) = parse_stat(&stat)?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count();
        let boot_time = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| parse_boot_time(&text));
        Some(Sample {
            cpu_seconds,
            resident_bytes: parse_resident_bytes(&status)?,
            // The directory handle counted itself.
            open_fds: u64::try_from(open_fds.saturating_sub(1)).unwrap_or(u64::MAX),
            max_fds: open_file_limit(),
            start_time_seconds: boot_time.map(|boot| boot as f64 + start_ticks as f64 / USER_HZ),
        })
    }
}

/// CPU seconds (user + system) and the start time in ticks since boot, from `/proc/PID/stat`.
fn parse_stat(stat: &str) -> Option<(f64, u64)> {
    // The command name (field 2) is in parentheses and may hold spaces: count from its end.
    let after_name = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 (utime), 15 (stime) and 22 (starttime) of proc(5), counted from field 3.
    let ticks = |field: usize| fields.get(field - 3)?.parse::<u64>().ok();
    let cpu = (ticks(14)? + ticks(15)?) as f64 / USER_HZ;
    Some((cpu, ticks(22)?))
}

/// `VmRSS` from `/proc/PID/status`, in bytes.
fn parse_resident_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kilobytes: u64 = line["VmRSS:".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    kilobytes.checked_mul(1024)
}

/// `btime` from `/proc/stat`: when the machine booted, in seconds since the Unix epoch.
fn parse_boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// The soft limit on open files (`RLIMIT_NOFILE`), from `/proc/self/limits`; `None` where it
/// cannot be read or is unlimited.
pub(crate) fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_file_limit(&limits)
}

fn parse_open_file_limit(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_past_a_command_name_with_spaces() {
        let stat = "4242 (tango gateway) S 1 4242 4242 0 -1 4194560 900 0 0 0 \
                    250 50 0 0 20 0 3 0 123456 1000000 3000 18446744073709551615";
        assert_eq!(parse_stat(stat), Some((3.0, 123456)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn resident_memory_boot_time_and_file_limit_are_read() {
        assert_eq!(
            parse_resident_bytes("Name:\tx\nVmRSS:\t   14120 kB\n"),
            Some(14120 * 1024)
        );
        assert_eq!(
            parse_boot_time("cpu 1 2\nbtime 1765000000\n"),
            Some(1_765_000_000)
        );
        let limits =
            "Max cpu time              unlimited            unlimited            seconds\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_open_file_limit(limits), Some(1024));
        assert_eq!(
            parse_open_file_limit("Max open files  unlimited  unlimited  files\n"),
            None
        );
    }

    #[test]
    fn this_process_can_be_sampled() {
        // On Linux, where the gateway runs: every figure is there and plausible.
        let sample = Sample::read().expect("a sample of /proc/self");
        assert!(sample.resident_bytes > 0);
        assert!(sample.open_fds > 0);
        assert!(sample.start_time_seconds.is_some_and(|start| start > 1.0e9));
    }
}
