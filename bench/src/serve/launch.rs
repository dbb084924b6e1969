//! Starting `talaria-serve` for a benchmark run (free port, ready line on
//! stdout, log in the output folder), stopping it with SIGTERM, and
//! reading its resident memory.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context};

use super::Args;

pub struct Server {
    pub base: String,
    pub pid: u32,
    child: Child,
}

fn server_bin(a: &Args) -> anyhow::Result<PathBuf> {
    if let Some(p) = &a.server_bin {
        return Ok(p.clone());
    }
    let exe = std::env::current_exe()?;
    let sibling = exe.parent().map(|d| d.join("talaria-serve")).context("locating talaria-serve")?;
    if !sibling.exists() {
        bail!("{} not found: build it (cargo build --release -p talaria-cvm) or pass --server-bin", sibling.display());
    }
    Ok(sibling)
}

/// The server flags of a benchmark mode: a `talaria-serve --mode`,
/// `confidential-fast` (ReMO with f32 pads, `--precision fast`), or either
/// confidential mode with `-exact-rows` (no row buckets: what they cost).
fn server_mode_args(mode: &str) -> anyhow::Result<Vec<&'static str>> {
    Ok(match mode {
        "local" => vec!["--mode", "local", "--insecure"],
        "plain" => vec!["--mode", "plain", "--insecure"],
        "confidential" => vec!["--mode", "confidential"],
        "confidential-fast" => vec!["--mode", "confidential", "--precision", "fast"],
        "confidential-exact-rows" => vec!["--mode", "confidential", "--row-buckets", "exact"],
        "confidential-fast-exact-rows" => vec!["--mode", "confidential", "--precision", "fast", "--row-buckets", "exact"],
        other => bail!(
            "unknown mode {other:?} (local, plain, confidential, confidential-fast, confidential-exact-rows, confidential-fast-exact-rows)"
        ),
    })
}

/// The server flags of an edge: `http` (plain HTTP, which needs
/// `--insecure`) or `tls` (attested TLS, simulated attestation, the
/// certificate written to `cert` for the client to trust).
fn server_edge_args(edge: &str, cert: &Path) -> anyhow::Result<Vec<String>> {
    Ok(match edge {
        "http" => vec!["--plain-http".into(), "--insecure".into()],
        "tls" => vec!["--attestation".into(), "simulated".into(), "--cert-out".into(), cert.display().to_string()],
        other => bail!("unknown edge {other:?} (http, tls)"),
    })
}

impl Server {
    pub fn start(a: &Args, mode: &str, edge: &str, out: &Path) -> anyhow::Result<Self> {
        let bin = server_bin(a)?;
        let log_path = out.join(format!("server-{mode}-{edge}.log"));
        let cert_path = out.join(format!("server-{mode}-{edge}.pem"));
        let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let mut flags: Vec<String> = server_mode_args(mode)?.into_iter().map(str::to_string).collect();
        for f in server_edge_args(edge, &cert_path)? {
            // `--insecure` may come from both the mode and the edge; clap takes it once.
            if f != "--insecure" || !flags.contains(&f) {
                flags.push(f);
            }
        }
        let mut cmd = Command::new(&bin);
        cmd.args(["--port", "0"]).args(&flags);
        if let Some(m) = &a.model {
            cmd.arg("--model").arg(m);
        }
        cmd.args(&a.server_args).stdout(Stdio::piped()).stderr(Stdio::from(log));
        let mut child = cmd.spawn().with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("server stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("talaria-serve listening on ") {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(600)) {
            Ok(base) => {
                let cert = if edge == "tls" {
                    Some(std::fs::read(&cert_path).with_context(|| format!("reading the server certificate {}", cert_path.display()))?)
                } else {
                    None
                };
                super::client::trust_certificate(cert);
                eprintln!("started talaria-serve --mode {mode} at {base} (pid {}, log {})", child.id(), log_path.display());
                let server = Self { base, pid: child.id(), child };
                // The run measures serving, not start-up: wait for the pad
                // pools to fill (`/health` answers 200 then).
                let t0 = std::time::Instant::now();
                server.wait_ready(Duration::from_secs(600))?;
                eprintln!("talaria-serve --mode {mode} ready after {:.1} s", t0.elapsed().as_secs_f64());
                Ok(server)
            }
            Err(_) => {
                let _ = child.kill();
                bail!("talaria-serve --mode {mode} did not start; see {}", log_path.display())
            }
        }
    }

    /// Polls `/health` until it answers 200.
    fn wait_ready(&self, limit: Duration) -> anyhow::Result<()> {
        let agent = super::client::agent();
        let start = std::time::Instant::now();
        loop {
            if let Ok(r) = agent.get(&format!("{}/health", self.base)).call() {
                if r.status().as_u16() == 200 {
                    return Ok(());
                }
            }
            if start.elapsed() > limit {
                bail!("talaria-serve at {} not ready within {limit:?}", self.base);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) -> anyhow::Result<()> {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid as i32, libc::SIGTERM);
        }
        let status = self.child.wait()?;
        if !status.success() {
            eprintln!("talaria-serve (pid {}) exited with {status}", self.pid);
        }
        Ok(())
    }
}

/// VmRSS of a process in bytes, from /proc/<pid>/status.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_own_rss() {
        assert!(super::rss_bytes(std::process::id()).unwrap() > 0);
    }
}
