//! Progress of work that takes seconds (hashing weights, filling pad pools,
//! benchmark runs): an `indicatif` bar when stderr is a terminal; otherwise
//! plain lines (one every `LOG_EVERY` while it runs, one at the end), so logs
//! collected by a service manager stay readable.

use std::io::{IsTerminal, Read};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

const LOG_EVERY: Duration = Duration::from_secs(5);

/// What the position counts.
#[derive(Clone, Copy, Debug)]
pub enum Unit {
    Bytes,
    /// Things of the named kind ("tensors", "requests").
    Items(&'static str),
    /// A fraction, in thousandths (`set(1000)` is done).
    Permille,
}

/// One piece of work with a known total; finished (bar cleared, a closing
/// line written) when dropped.
pub struct Progress {
    label: String,
    total: u64,
    unit: Unit,
    pos: AtomicU64,
    bar: Option<ProgressBar>,
    started: Instant,
    last_line: Mutex<Instant>,
}

impl Progress {
    pub fn new(label: impl Into<String>, total: u64, unit: Unit) -> Self {
        let label = label.into();
        let bar = on_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(style(unit));
            bar.set_message(label.clone());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let now = Instant::now();
        Self { label, total, unit, pos: AtomicU64::new(0), bar, started: now, last_line: Mutex::new(now) }
    }

    pub fn inc(&self, n: u64) {
        self.set(self.pos.load(Relaxed).saturating_add(n));
    }

    pub fn set(&self, pos: u64) {
        self.pos.store(pos, Relaxed);
        match &self.bar {
            Some(bar) => bar.set_position(pos),
            None => self.maybe_log_line(pos),
        }
    }

    /// Runs `f` (which prints) with the bar hidden, so lines and bar do not
    /// tear each other on a terminal.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    /// `r`, counting the bytes read into this progress.
    pub fn reader<R: Read>(&self, r: R) -> ProgressRead<'_, R> {
        ProgressRead { inner: r, progress: self }
    }

    fn maybe_log_line(&self, pos: u64) {
        let Ok(mut last) = self.last_line.lock() else { return };
        if last.elapsed() >= LOG_EVERY {
            *last = Instant::now();
            eprintln!("{}: {}", self.label, self.amount(pos));
        }
    }

    fn amount(&self, pos: u64) -> String {
        let pct = 100.0 * pos as f64 / self.total.max(1) as f64;
        match self.unit {
            Unit::Bytes => format!("{:.1} of {:.1} MB ({pct:.0} %)", pos as f64 / 1e6, self.total as f64 / 1e6),
            Unit::Items(what) => format!("{pos} of {} {what} ({pct:.0} %)", self.total),
            Unit::Permille => format!("{pct:.0} %"),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let secs = self.started.elapsed().as_secs_f64();
        let pos = self.pos.load(Relaxed);
        if pos >= self.total {
            eprintln!("{}: done in {secs:.1} s", self.label);
        } else {
            eprintln!("{}: stopped at {} after {secs:.1} s", self.label, self.amount(pos));
        }
    }
}

/// A reader that advances a `Progress` by the bytes it reads.
pub struct ProgressRead<'a, R> {
    inner: R,
    progress: &'a Progress,
}

impl<R: Read> Read for ProgressRead<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.inc(n as u64);
        Ok(n)
    }
}

fn on_terminal() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

fn style(unit: Unit) -> ProgressStyle {
    let template = match unit {
        Unit::Bytes => "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}".to_string(),
        Unit::Items(what) => format!("{{msg}} [{{bar:30}}] {{pos}}/{{len}} {what} eta {{eta}}"),
        Unit::Permille => "{msg} [{bar:30}] {percent} % ({elapsed})".to_string(),
    };
    ProgressStyle::with_template(&template).expect("the templates are valid").progress_chars("=> ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_counts_every_byte_and_passes_them_through() {
        let p = Progress::new("test", 10_000, Unit::Bytes);
        let data = vec![7u8; 10_000];
        let mut out = Vec::new();
        std::io::copy(&mut p.reader(&data[..]), &mut out).unwrap();
        assert_eq!(out, data);
        assert_eq!(p.pos.load(Relaxed), 10_000);
        assert_eq!(Progress::new("t", 4, Unit::Items("tensors")).amount(1), "1 of 4 tensors (25 %)");
    }
}
