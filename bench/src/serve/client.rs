//! One streamed request, timed: time to the first content chunk (TTFT),
//! the gaps between content chunks (ITL), end to end (E2E), and the
//! token counts from the closing usage chunk.

use std::io::{BufRead, BufReader};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use serde_json::{json, Value};

use super::dataset::Prompt;

#[derive(Clone, Debug, Default, Serialize)]
pub struct RequestResult {
    pub ok: bool,
    pub error: Option<String>,
    pub prompt_tokens: usize,
    pub output_tokens: usize,
    /// Seconds.
    pub ttft: f64,
    pub itl: Vec<f64>,
    pub e2e: f64,
    /// Send time, seconds since the start of the run.
    pub sent_at: f64,
}

/// The certificate (PEM) of the TLS server being measured, trusted by
/// every agent made after it is set; `None` for plain HTTP. One server runs
/// at a time, so one process-wide slot is enough.
static TRUSTED_CERT: Mutex<Option<Vec<u8>>> = Mutex::new(None);

/// Trust exactly this certificate (the server's self-signed RA-TLS one).
pub fn trust_certificate(pem: Option<Vec<u8>>) {
    *TRUSTED_CERT.lock().unwrap_or_else(|e| e.into_inner()) = pem;
}

pub fn agent() -> ureq::Agent {
    let mut cfg = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(3600)))
        .max_idle_connections(1024)
        .max_idle_connections_per_host(1024);
    let trusted = TRUSTED_CERT.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(cert) = trusted.as_deref().and_then(|pem| ureq::tls::Certificate::from_pem(pem).ok()) {
        let roots = ureq::tls::RootCerts::new_with_certs(&[cert]);
        cfg = cfg.tls_config(ureq::tls::TlsConfig::builder().root_certs(roots).build());
    }
    cfg.build().into()
}

/// The model id the server serves (the first of /v1/models).
pub fn served_model(base: &str) -> anyhow::Result<String> {
    let mut r = agent().get(&format!("{base}/v1/models")).call().context("GET /v1/models")?;
    let v: Value = serde_json::from_str(&r.body_mut().read_to_string()?)?;
    v["data"][0]["id"].as_str().map(str::to_string).context("no model in /v1/models")
}

pub struct RequestSpec<'a> {
    pub base: &'a str,
    pub model: &'a str,
    pub chat: bool,
    pub temperature: f32,
    pub ignore_eos: bool,
}

pub fn send(agent: &ureq::Agent, spec: &RequestSpec, prompt: &Prompt, sent_at: f64) -> RequestResult {
    let t0 = Instant::now();
    let mut res = RequestResult { sent_at, ..Default::default() };
    match stream(agent, spec, prompt, t0, &mut res) {
        Ok(()) => res.ok = true,
        Err(e) => res.error = Some(format!("{e:#}")),
    }
    res.e2e = t0.elapsed().as_secs_f64();
    res
}

fn stream(agent: &ureq::Agent, spec: &RequestSpec, prompt: &Prompt, t0: Instant, res: &mut RequestResult) -> anyhow::Result<()> {
    let (path, key) = if spec.chat { ("/v1/chat/completions", "messages") } else { ("/v1/completions", "prompt") };
    let mut body = json!({
        "model": spec.model, "max_tokens": prompt.max_tokens, "temperature": spec.temperature,
        "stream": true, "stream_options": {"include_usage": true}, "ignore_eos": spec.ignore_eos,
    });
    body[key] = prompt.input.clone();
    let mut r = agent.post(&format!("{}{path}", spec.base)).header("content-type", "application/json").send(body.to_string())?;
    let status = r.status().as_u16();
    if status != 200 {
        let text = r.body_mut().read_to_string().unwrap_or_default();
        anyhow::bail!("HTTP {status}: {}", text.chars().take(300).collect::<String>());
    }
    let mut last: Option<Instant> = None;
    let mut done = false;
    for line in BufReader::new(r.into_body().into_reader()).lines() {
        let line = line.context("reading the stream")?;
        let Some(data) = line.strip_prefix("data: ") else { continue };
        if data == "[DONE]" {
            done = true;
            break;
        }
        let v: Value = serde_json::from_str(data).context("bad chunk")?;
        if let Some(e) = v.get("error") {
            anyhow::bail!("error event: {e}");
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            res.prompt_tokens = u["prompt_tokens"].as_u64().unwrap_or(0) as usize;
            res.output_tokens = u["completion_tokens"].as_u64().unwrap_or(0) as usize;
        }
        let choices = v["choices"].as_array().map(Vec::as_slice).unwrap_or_default();
        let has_content =
            choices.iter().any(|c| c["text"].as_str().or_else(|| c["delta"]["content"].as_str()).is_some_and(|t| !t.is_empty()));
        // A sequence that ends at once (EOS first) has only a finish chunk.
        let first_finish = last.is_none() && choices.iter().any(|c| c["finish_reason"].is_string());
        if has_content || first_finish {
            let now = Instant::now();
            match last {
                None => res.ttft = (now - t0).as_secs_f64(),
                Some(prev) => res.itl.push((now - prev).as_secs_f64()),
            }
            last = Some(now);
        }
    }
    anyhow::ensure!(done, "the stream ended without [DONE]");
    anyhow::ensure!(last.is_some(), "no output in the stream");
    Ok(())
}
