//! Describes the machine a benchmark ran on, and appends results to
//! bench/RESULTS.md.

use std::io::Write;
use std::path::PathBuf;

/// "Intel Xeon …, 2 cores, 23 GiB, rayon threads 2".
pub fn describe() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|s| s.trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("MemTotal")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<f64>().ok())
        })
        .map(|kb| kb / (1024.0 * 1024.0))
        .unwrap_or(0.0);
    format!("{cpu}, {cores} cores, {mem_gib:.0} GiB, rayon threads {}", rayon_threads())
}

pub fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

/// bench/RESULTS.md of the workspace (found from the bench crate's folder).
pub fn results_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("RESULTS.md")
}

/// Appends a dated section to bench/RESULTS.md.
pub fn append_results(title: &str, body: &str) -> anyhow::Result<()> {
    let path = results_path();
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
    let date = std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    writeln!(f, "\n## {title} ({date})\n\nMachine: {}\n\n{body}", describe())?;
    eprintln!("appended to {}", path.display());
    Ok(())
}

/// CPU seconds this process has used so far, over all its threads (a
/// spawned worker is another process and is not counted).
pub fn process_cpu_s() -> f64 {
    // SAFETY: an all-zero rusage is valid, and getrusage only writes it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF cannot fail with a valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 * 1e-6;
    t(ru.ru_utime) + t(ru.ru_stime)
}
