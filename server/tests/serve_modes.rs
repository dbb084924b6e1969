//! `--mode` passes through to the linear backend: the same greedy output
//! from in-process weights (local) and from a spawned worker (plain).

mod serve_common;

use serde_json::json;
use serve_common::{choice_text, start};

#[test]
fn local_and_worker_backends_serve_the_same_greedy_text() {
    let req = json!({"messages": [{"role": "user", "content": "What is the capital of Italy?"}], "max_tokens": 12, "temperature": 0, "ignore_eos": true});
    let local = start(&["--mode", "local"]);
    let a = choice_text(&local.ok("/v1/chat/completions", &req), 0);
    drop(local);
    let plain = start(&["--mode", "plain"]);
    let b = choice_text(&plain.ok("/v1/chat/completions", &req), 0);
    assert_eq!(a, b);
    assert_eq!(plain.terminate().code(), Some(0), "clean exit, worker included");
}

/// `--precision fast` and `--privacy-level` reach the ReMO backend through
/// the server's flags: it serves, and at κ = 10² its greedy answer starts
/// like the plain engine's (logits move by tenths at most there, and the
/// first tokens of this answer are far from a near-tie), and it shuts down
/// cleanly with its worker. At the default κ = 10³ the logits move up to
/// ~1.6 and this answer parts after its first word; that mode's fidelity is
/// `confidential_split.rs`'s to check.
#[test]
fn the_fast_confidential_mode_serves() {
    let req = json!({"messages": [{"role": "user", "content": "What is the capital of Italy?"}], "max_tokens": 12, "temperature": 0, "ignore_eos": true});
    let local = start(&["--mode", "local"]);
    let want = choice_text(&local.ok("/v1/chat/completions", &req), 0);
    drop(local);
    let fast = start(&["--mode", "confidential", "--precision", "fast", "--privacy-level", "100"]);
    let resp = fast.ok("/v1/chat/completions", &req);
    assert_eq!(resp["usage"]["completion_tokens"], 12);
    let got = choice_text(&resp, 0);
    let head: String = want.chars().take(12).collect();
    assert!(got.starts_with(&head), "fast {got:?} vs plain {want:?}");
    assert_eq!(fast.terminate().code(), Some(0), "clean exit, worker included");
}

/// A confidential server answers `/health` 503 while its pad pools fill
/// (they take seconds: 120 pad batches), and 200 once they are full; a
/// request meanwhile is served all the same.
#[test]
fn health_is_not_ready_until_the_pad_pools_are_filled() {
    let conf = start(&["--mode", "confidential"]);
    let (status, body) = conf.get("/health");
    assert_eq!(status, 503, "ready before the pools could fill: {body}");
    assert!(body.contains("warming up"), "{body}");
    let seen = conf.wait_ready(std::time::Duration::from_secs(240));
    assert_eq!(seen.last(), Some(&200));
    let req = json!({"prompt": "The capital of Italy is", "max_tokens": 4, "temperature": 0});
    assert_eq!(conf.ok("/v1/completions", &req)["usage"]["completion_tokens"], 4);
    // What the masking cost is scraped from (`bench serve` reports it).
    assert!(conf.metric("talaria_masked_rows_total") >= 30.0 * 4.0 * 5.0, "each of the 4 ops of 30 layers saw the prompt's 5 rows");
    assert!(conf.metric("talaria_answer_check_online_seconds_total") > 0.0, "online answers are checked");
    assert!(conf.metric("talaria_answer_check_seconds_total") >= conf.metric("talaria_answer_check_online_seconds_total"));
    assert_eq!(conf.terminate().code(), Some(0));
}

/// A worker that lies (it scales one online answer) is caught: the request
/// whose step it was fails with a clear error, the worker session is ended,
/// and the server goes on serving with a new worker, the model's own greedy
/// text included.
#[test]
fn a_lying_worker_fails_its_step_and_the_server_serves_on() {
    let req = json!({"prompt": "The capital of Italy is", "max_tokens": 8, "temperature": 0, "ignore_eos": true});
    let local = start(&["--mode", "local"]);
    let want = choice_text(&local.ok("/v1/completions", &req), 0);
    drop(local);
    let conf = start(&["--mode", "confidential", "--worker-test-args=--fault", "--worker-test-args=scale@300"]);
    // Calls 1–240 are calibration and the first pad batches: once the pools
    // are full, call 300 is an online call of the first request.
    assert_eq!(conf.wait_ready(std::time::Duration::from_secs(240)).last(), Some(&200));
    let first = conf.post("/v1/completions", &req);
    assert_eq!(first.status, 503, "{}", first.body);
    assert!(first.body.to_string().contains("failed verification"), "{}", first.body);
    let again = conf.ok("/v1/completions", &req);
    assert_eq!(choice_text(&again, 0), want);
    assert_eq!(conf.terminate().code(), Some(0));
}
