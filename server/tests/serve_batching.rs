//! Continuous batching on the real model: a greedy output does not depend
//! on what else is in the batch, and a client that goes away (streaming or
//! not) gets its sequence dropped and its KV blocks freed.

mod serve_common;

use std::io::BufRead;
use std::sync::{Barrier, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use serde_json::json;
use serve_common::{choice_text, start, Server};

fn server() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(|| start(&[]))
}

/// The tests read engine-wide counters: run them one at a time.
fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

const PROMPTS: [&str; 16] = [
    "The history of the Roman Empire",
    "How do airplanes fly?",
    "Write a haiku about the sea.",
    "List three prime numbers:",
    "In a distant galaxy, a lonely robot",
    "Explain photosynthesis to a child.",
    "The recipe for pancakes needs",
    "def fibonacci(n):",
    "My grandmother always told me that the secret to a long and happy life was",
    "Q: What is the capital of Japan?\nA:",
    "Once upon a time",
    "The weather today is",
    "Translate 'good morning' into French:",
    "A short poem about autumn leaves falling gently on the ground in the quiet park",
    "1, 1, 2, 3, 5, 8,",
    "The best way to learn programming is",
];

fn request(prompt: &str) -> serde_json::Value {
    json!({"prompt": prompt, "max_tokens": 24, "temperature": 0, "ignore_eos": true})
}

#[test]
fn greedy_output_is_the_same_alone_and_batched_with_15_others() {
    let _one_at_a_time = exclusive();
    let s = server();
    let probe = [0usize, 8, 13];
    let alone: Vec<String> = probe.iter().map(|&i| choice_text(&s.ok("/v1/completions", &request(PROMPTS[i])), 0)).collect();
    // All 16 at once: they prefill and decode in shared steps.
    let steps_before = s.metric("talaria_engine_steps_total");
    let barrier = Barrier::new(PROMPTS.len());
    let batched: Vec<String> = std::thread::scope(|sc| {
        let handles: Vec<_> = PROMPTS
            .iter()
            .map(|p| {
                let barrier = &barrier;
                sc.spawn(move || {
                    barrier.wait();
                    choice_text(&s.ok("/v1/completions", &request(p)), 0)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (k, &i) in probe.iter().enumerate() {
        assert_eq!(batched[i], alone[k], "prompt {i} ({:?}) changed when batched", PROMPTS[i]);
    }
    // And it really was batched: 16 × 24 tokens one sequence per step
    // would take at least 384 steps.
    let steps = s.metric("talaria_engine_steps_total") - steps_before;
    assert!(steps < 16.0 * 24.0 / 2.0, "{steps} steps for 16 concurrent requests");
}

#[test]
fn a_dropped_stream_frees_its_kv_blocks() {
    let _one_at_a_time = exclusive();
    let s = server();
    let aborted_before = abort_count(s);
    let body = json!({"prompt": "Tell me a very long story.", "max_tokens": 4000, "ignore_eos": true, "temperature": 0, "stream": true});
    let mut reader = s.open_stream("/v1/completions", &body);
    let mut seen = 0;
    let mut line = String::new();
    while seen < 3 {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "stream ended early");
        if line.starts_with("data: ") {
            seen += 1;
        }
    }
    assert!(s.metric("talaria_kv_cache_used_blocks") > 0.0, "the stream holds blocks while it runs");
    drop(reader);
    // 4000 tokens would take minutes; the blocks must come back long before.
    assert!(s.wait_idle(Duration::from_secs(60)), "KV blocks were not freed after the client left");
    assert!(abort_count(s) > aborted_before);
}

#[test]
fn a_client_that_times_out_on_a_plain_request_frees_its_kv_blocks() {
    let _one_at_a_time = exclusive();
    let s = server();
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_millis(1500))).build().into();
    let body = json!({"prompt": "Write an endless list of numbers.", "max_tokens": 4000, "ignore_eos": true, "temperature": 0});
    let r = agent.post(&s.url("/v1/completions")).header("content-type", "application/json").send(body.to_string());
    assert!(r.is_err(), "4000 tokens cannot arrive within 1.5 s");
    assert!(s.wait_idle(Duration::from_secs(60)), "KV blocks were not freed after the client left");
}

fn abort_count(s: &Server) -> f64 {
    let (_, text) = s.get("/metrics");
    text.lines()
        .find(|l| l.starts_with("talaria_request_success_total") && l.contains("\"abort\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}
