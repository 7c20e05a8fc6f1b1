//! One monotonic clock for every loadgen process on the host (CLOCK_MONOTONIC), so send
//! times written into messages by one process are comparable with receive times taken
//! by another.

pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists.
    #[allow(unsafe_code)]
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU seconds (user + system) used by this process, and by its reaped children.
pub fn cpu_seconds() -> (f64, f64) {
    let mut own = libc_rusage();
    let mut kids = libc_rusage();
    // SAFETY: getrusage fills the struct we own.
    #[allow(unsafe_code)]
    unsafe {
        libc::getrusage(libc::RUSAGE_SELF, &mut own);
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut kids);
    }
    let secs = |r: &libc::rusage| {
        r.ru_utime.tv_sec as f64
            + r.ru_utime.tv_usec as f64 / 1e6
            + r.ru_stime.tv_sec as f64
            + r.ru_stime.tv_usec as f64 / 1e6
    };
    (secs(&own), secs(&kids))
}

fn libc_rusage() -> libc::rusage {
    // SAFETY: rusage is plain data; all-zero is a valid value.
    #[allow(unsafe_code)]
    unsafe {
        std::mem::zeroed()
    }
}

/// CPU seconds and resident memory of another process, from /proc.
pub fn proc_stats(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // fields after the command: state(0) ... utime(11) stime(12)
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf is always safe to call.
    #[allow(unsafe_code)]
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((ticks / hz, rss_kb * 1024))
}

/// The soft limit on open files of this process.
pub fn open_file_limit() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we own.
    #[allow(unsafe_code)]
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0;
    if ok {
        r.rlim_cur
    } else {
        1024
    }
}

/// CPU seconds (user + system) used by the calling thread.
pub fn thread_cpu_seconds() -> f64 {
    let mut r = libc_rusage();
    // SAFETY: getrusage fills the struct we own.
    #[allow(unsafe_code)]
    unsafe {
        libc::getrusage(libc::RUSAGE_THREAD, &mut r);
    }
    r.ru_utime.tv_sec as f64
        + r.ru_utime.tv_usec as f64 / 1e6
        + r.ru_stime.tv_sec as f64
        + r.ru_stime.tv_usec as f64 / 1e6
}

/// Pins the calling thread to one CPU; false when the CPU does not exist or it failed.
pub fn pin_thread(cpu: usize) -> bool {
    // SAFETY: cpu_set_t is plain data (all-zero is the empty set); CPU_SET bounds-checks;
    // sched_setaffinity(0, ...) reads the set we own and affects only this thread.
    #[allow(unsafe_code)]
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}
