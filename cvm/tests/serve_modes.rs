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
