//! Shared by the `serve_*` tests: the real `talaria-serve` binary on the real
//! default model, started as a child process on a free port, and a small
//! blocking HTTP client (ureq) with SSE parsing.
//!
//! The server speaks attested TLS (simulated attestation) unless the test
//! passes `--plain-http --insecure`; the client then trusts exactly the
//! certificate the server wrote with `--cert-out`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Server {
    pub base: String,
    pub pid: u32,
    child: Option<Child>,
    agent: ureq::Agent,
    cert_pem: Option<PathBuf>,
    /// `--api-key` the server was started with: sent on every request.
    api_key: Option<String>,
}

/// A fresh path for one server's certificate (removed with the `Server`).
fn cert_path() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!("talaria-test-{}-{}.pem", std::process::id(), N.fetch_add(1, Ordering::Relaxed)))
}

/// The value after `flag` in `args`.
fn flag_value<'a>(args: &[&'a str], flag: &str) -> Option<&'a str> {
    args.iter().position(|a| *a == flag).and_then(|i| args.get(i + 1).copied())
}

/// The server's command line: the default model, offline, a free port,
/// `--mode local` unless given, `--insecure` for the unmasked modes and
/// plain HTTP, and (TLS) simulated attestation with the certificate written
/// to `cert`.
fn server_args(extra: &[&str], cert: Option<&Path>) -> Vec<String> {
    let model = talaria_models::fetch::ensure_default_model(false).expect("default model");
    let mut args: Vec<String> = vec!["--model".into(), model.display().to_string(), "--offline".into(), "--port".into(), "0".into()];
    if !extra.contains(&"--mode") {
        args.extend(["--mode".into(), "local".into()]);
    }
    let unmasked = matches!(flag_value(extra, "--mode"), None | Some("local" | "plain"));
    if (unmasked || extra.contains(&"--plain-http")) && !extra.contains(&"--insecure") {
        args.push("--insecure".into());
    }
    if let Some(cert) = cert {
        if !extra.contains(&"--attestation") {
            args.extend(["--attestation".into(), "simulated".into()]);
        }
        if !extra.contains(&"--cert-out") {
            args.extend(["--cert-out".into(), cert.display().to_string()]);
        }
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// A client that trusts exactly the server's own (self-signed) certificate.
fn agent_for(cert: Option<&Path>) -> ureq::Agent {
    let mut cfg = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(300)));
    if let Some(path) = cert {
        let pem = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let cert = ureq::tls::Certificate::from_pem(&pem).expect("server certificate PEM");
        let roots = ureq::tls::RootCerts::new_with_certs(&[cert]);
        cfg = cfg.tls_config(ureq::tls::TlsConfig::builder().root_certs(roots).build());
    }
    cfg.build().into()
}

/// Starts `talaria-serve` (in-process weights, offline) with `extra` flags
/// and waits for its ready line. The child gets SIGKILL when this test
/// process dies, even if the `Server` is never dropped (a shared static).
pub fn start(extra: &[&str]) -> Server {
    let cert = (!extra.contains(&"--plain-http")).then(|| flag_value(extra, "--cert-out").map(PathBuf::from).unwrap_or_else(cert_path));
    let args = server_args(extra, cert.as_deref());
    let (tx, rx) = mpsc::channel();
    // PR_SET_PDEATHSIG fires when the *thread* that forked exits, so fork
    // from a thread that lives as long as the process.
    std::thread::spawn(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_talaria-serve"));
        cmd.args(&args).stdout(Stdio::piped()).stderr(Stdio::inherit()).env("RUST_LOG", "warn");
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let _ = tx.send(cmd.spawn());
        loop {
            std::thread::park();
        }
    });
    let mut child = rx.recv().expect("spawner thread").expect("spawn talaria-serve");
    let stdout = child.stdout.take().expect("piped stdout");
    let (line_tx, line_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("talaria-serve listening on ") {
                let _ = line_tx.send(url.trim().to_string());
            }
        }
    });
    let base = line_rx.recv_timeout(Duration::from_secs(120)).expect("talaria-serve did not report its address");
    let agent = agent_for(cert.as_deref());
    let api_key = flag_value(extra, "--api-key").map(str::to_string);
    Server { base, pid: child.id(), child: Some(child), agent, cert_pem: cert, api_key }
}

pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The client (trusting the server's certificate; sends no API key).
    pub fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    /// The server's certificate (PEM), `None` with `--plain-http`.
    pub fn cert_pem_path(&self) -> Option<&Path> {
        self.cert_pem.as_deref()
    }

    /// `Authorization` header value for the server's `--api-key`, if any.
    fn auth(&self) -> Option<String> {
        self.api_key.as_ref().map(|k| format!("Bearer {k}"))
    }

    fn post_req(&self, path: &str) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
        let r = self.agent.post(&self.url(path)).header("content-type", "application/json");
        match self.auth() {
            Some(a) => r.header("authorization", a),
            None => r,
        }
    }

    /// POSTs raw bytes; returns the status and the body as JSON (Null if not JSON).
    pub fn post_raw(&self, path: &str, body: &[u8]) -> Reply {
        let mut r = self.post_req(path).send(body).expect("HTTP request");
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap_or_default();
        Reply { status, body: serde_json::from_str(&text).unwrap_or(Value::Null) }
    }

    pub fn post(&self, path: &str, body: &Value) -> Reply {
        self.post_raw(path, body.to_string().as_bytes())
    }

    /// POSTs and expects 200.
    pub fn ok(&self, path: &str, body: &Value) -> Value {
        let r = self.post(path, body);
        assert_eq!(r.status, 200, "{path} {body}: {}", r.body);
        r.body
    }

    /// Polls `/health` until it answers 200; returns the statuses seen.
    pub fn wait_ready(&self, limit: Duration) -> Vec<u16> {
        let start = std::time::Instant::now();
        let mut seen = Vec::new();
        loop {
            let status = self.get("/health").0;
            seen.push(status);
            if status == 200 {
                return seen;
            }
            assert!(start.elapsed() < limit, "not ready within {limit:?}: {seen:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        let mut req = self.agent.get(&self.url(path));
        if let Some(a) = self.auth() {
            req = req.header("authorization", a);
        }
        let mut r = req.call().expect("HTTP request");
        let status = r.status().as_u16();
        (status, r.body_mut().read_to_string().unwrap_or_default())
    }

    /// POSTs a streaming request and returns every `data:` payload as JSON,
    /// checking the stream ends with `[DONE]`.
    pub fn stream(&self, path: &str, body: &Value) -> Vec<Value> {
        let r = self.post_req(path).send(body.to_string()).expect("HTTP request");
        assert_eq!(r.status().as_u16(), 200, "{path} {body}");
        let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        assert!(ct.starts_with("text/event-stream"), "content-type {ct}");
        let mut events = Vec::new();
        let mut done = false;
        for line in BufReader::new(r.into_body().into_reader()).lines() {
            let line = line.expect("read SSE");
            let Some(data) = line.strip_prefix("data: ") else { continue };
            assert!(!done, "data after [DONE]: {data}");
            if data == "[DONE]" {
                done = true;
                continue;
            }
            events.push(serde_json::from_str(data).unwrap_or_else(|e| panic!("bad SSE JSON {data}: {e}")));
        }
        assert!(done, "stream did not end with [DONE]");
        events
    }

    /// Opens a stream and returns a reader positioned after the headers
    /// (drop it to disconnect).
    pub fn open_stream(&self, path: &str, body: &Value) -> BufReader<impl Read> {
        let r = self.post_req(path).send(body.to_string()).expect("HTTP request");
        assert_eq!(r.status().as_u16(), 200);
        BufReader::new(r.into_body().into_reader())
    }

    /// The value of a metric line that starts with `prefix` (name and labels).
    pub fn metric(&self, prefix: &str) -> f64 {
        let (status, text) = self.get("/metrics");
        assert_eq!(status, 200);
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no metric {prefix} in\n{text}"))
    }

    /// Waits (bounded) until the engine has nothing running or waiting and
    /// every KV block is free; returns whether it got there.
    pub fn wait_idle(&self, limit: Duration) -> bool {
        let t = Instant::now();
        while t.elapsed() < limit {
            if self.metric("talaria_kv_cache_used_blocks") == 0.0
                && self.metric("talaria_num_requests_running") == 0.0
                && self.metric("talaria_num_requests_waiting") == 0.0
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        child.wait().expect("wait for talaria-serve")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(p) = &self.cert_pem {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Text of a completion / chat choice.
pub fn choice_text(resp: &Value, i: usize) -> String {
    let c = &resp["choices"][i];
    c["text"].as_str().or_else(|| c["message"]["content"].as_str()).unwrap_or_else(|| panic!("no text in {resp}")).to_string()
}

/// Concatenated streamed text per choice index, and the finish reasons.
pub fn stream_texts(events: &[Value], n: usize) -> (Vec<String>, Vec<Option<String>>) {
    let mut texts = vec![String::new(); n];
    let mut finish = vec![None; n];
    for e in events {
        for c in e["choices"].as_array().into_iter().flatten() {
            let i = c["index"].as_u64().expect("index") as usize;
            if let Some(t) = c["text"].as_str().or_else(|| c["delta"]["content"].as_str()) {
                texts[i].push_str(t);
            }
            if let Some(f) = c["finish_reason"].as_str() {
                assert!(finish[i].is_none(), "two finish reasons for choice {i}");
                finish[i] = Some(f.to_string());
            }
        }
    }
    (texts, finish)
}
