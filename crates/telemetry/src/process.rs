//! The standard `process_*` families (CPU time, memory, file descriptors,
//! start time), read from `/proc/self` at every scrape. A few lines here
//! instead of the `prometheus` crate's `process` feature, which pulls in
//! `procfs` and its dependencies. Where `/proc` is missing (not Linux) the
//! families are simply absent from the output.

use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Gauge, IntGauge, Opts};

/// Clock ticks per second of the times in `/proc/<pid>/stat`: `USER_HZ`,
/// which Linux fixes at 100 for userspace on every architecture it
/// exports `/proc` times on (the kernel's own `HZ` may differ).
const USER_HZ: f64 = 100.0;

/// The names this collector exports, in the order of [`ProcessCollector::desc`].
pub const PROCESS_FAMILY_NAMES: &[&str] = &[
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_start_time_seconds",
];

#[derive(Clone)]
pub(crate) struct ProcessCollector {
    cpu: Counter,
    resident: IntGauge,
    virtual_memory: IntGauge,
    open_fds: IntGauge,
    max_fds: IntGauge,
    start_time: Gauge,
    /// The CPU seconds last added to `cpu` (a counter only goes up by deltas).
    cpu_seen: Arc<Mutex<f64>>,
    descs: Vec<Desc>,
}

impl ProcessCollector {
    pub(crate) fn new() -> prometheus::Result<Self> {
        let [cpu, resident, virtual_memory, open_fds, max_fds, start] = PROCESS_FAMILY_NAMES else {
            unreachable!("six process families")
        };
        let cpu = Counter::with_opts(Opts::new(
            *cpu,
            "Total user and system CPU time spent in seconds.",
        ))?;
        let resident = IntGauge::new(*resident, "Resident memory size in bytes.")?;
        let virtual_memory = IntGauge::new(*virtual_memory, "Virtual memory size in bytes.")?;
        let open_fds = IntGauge::new(*open_fds, "Number of open file descriptors.")?;
        let max_fds = IntGauge::new(*max_fds, "Maximum number of open file descriptors.")?;
        let start_time = Gauge::new(
            *start,
            "Start time of the process since unix epoch in seconds.",
        )?;
        let descs = [
            cpu.desc(),
            resident.desc(),
            virtual_memory.desc(),
            open_fds.desc(),
            max_fds.desc(),
            start_time.desc(),
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        Ok(Self {
            cpu,
            resident,
            virtual_memory,
            open_fds,
            max_fds,
            start_time,
            cpu_seen: Arc::new(Mutex::new(0.0)),
            descs,
        })
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut families = Vec::new();
        if let Some(stat) = read("/proc/self/stat").as_deref().and_then(Stat::parse) {
            let cpu = (stat.utime + stat.stime) as f64 / USER_HZ;
            if let Ok(mut seen) = self.cpu_seen.lock()
                && cpu > *seen
            {
                self.cpu.inc_by(cpu - *seen);
                *seen = cpu;
            }
            families.extend(self.cpu.collect());
            self.virtual_memory.set(clamp(stat.vsize));
            families.extend(self.virtual_memory.collect());
            if let Some(boot) = read("/proc/stat").as_deref().and_then(boot_time) {
                self.start_time
                    .set(boot as f64 + stat.starttime as f64 / USER_HZ);
                families.extend(self.start_time.collect());
            }
        }
        if let Some(rss) = read("/proc/self/status")
            .as_deref()
            .and_then(resident_bytes)
        {
            self.resident.set(clamp(rss));
            families.extend(self.resident.collect());
        }
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            // The directory handle being read is one of the entries: leave it out.
            let open = entries.count().saturating_sub(1);
            self.open_fds.set(clamp(open as u64));
            families.extend(self.open_fds.collect());
        }
        if let Some(max) = read("/proc/self/limits")
            .as_deref()
            .and_then(max_open_files)
        {
            self.max_fds.set(clamp(max));
            families.extend(self.max_fds.collect());
        }
        families
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The fields of `/proc/self/stat` this collector uses.
#[derive(Debug, PartialEq)]
struct Stat {
    utime: u64,
    stime: u64,
    starttime: u64,
    vsize: u64,
}

impl Stat {
    /// `pid (comm) state ppid ...`: `comm` may hold spaces and parentheses,
    /// so the fields are counted from the last `)`.
    fn parse(text: &str) -> Option<Self> {
        let rest = &text[text.rfind(')')? + 1..];
        // After `comm`, field 3 (`state`) is index 0, so field N is index N - 3.
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(Self {
            utime: field(14)?,
            stime: field(15)?,
            starttime: field(22)?,
            vsize: field(23)?,
        })
    }
}

/// `VmRSS:    12345 kB` in `/proc/self/status`, in bytes.
fn resident_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `btime 1764000000` in `/proc/stat`: the boot time, in seconds since the epoch.
fn boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_an_awkward_command_name() {
        let text = "4242 (gate way) (x)) S 1 4242 4242 0 -1 4194560 1200 0 0 0 \
                    250 50 0 0 20 0 9 0 123456 104857600 2048 18446744073709551615";
        assert_eq!(
            Stat::parse(text),
            Some(Stat {
                utime: 250,
                stime: 50,
                starttime: 123456,
                vsize: 104857600,
            })
        );
        assert_eq!(Stat::parse("garbage"), None);
    }

    #[test]
    fn parses_status_stat_and_limits() {
        let status = "Name:\tgateway\nVmPeak:\t  20000 kB\nVmRSS:\t    1500 kB\n";
        assert_eq!(resident_bytes(status), Some(1_536_000));
        assert_eq!(
            boot_time("cpu  1 2 3\nbtime 1764000000\n"),
            Some(1_764_000_000)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(max_open_files(limits), Some(1024));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reports_this_process() {
        let collector = ProcessCollector::new().expect("valid families");
        let families = collector.collect();
        let names: Vec<&str> = families.iter().map(|f| f.name()).collect();
        assert_eq!(names.len(), PROCESS_FAMILY_NAMES.len(), "{names:?}");
        for name in PROCESS_FAMILY_NAMES {
            assert!(names.contains(name), "{name} missing from {names:?}");
        }
        let gauge = |name: &str| {
            let family = families.iter().find(|f| f.name() == name).expect(name);
            family.get_metric()[0].get_gauge().get_value()
        };
        assert!(gauge("process_resident_memory_bytes") > 0.0);
        assert!(gauge("process_open_fds") >= 3.0);
    }
}
