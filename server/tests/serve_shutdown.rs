//! SIGTERM: the server stops accepting, lets the request in flight finish,
//! and exits 0.

mod serve_common;

use std::io::BufRead;

use serde_json::json;
use serve_common::start;

#[test]
fn sigterm_finishes_in_flight_requests_then_exits_zero() {
    let s = start(&[]);
    let body = json!({"prompt": "Count to fifty:", "max_tokens": 40, "ignore_eos": true, "temperature": 0, "stream": true});
    let mut reader = s.open_stream("/v1/completions", &body);
    let mut line = String::new();
    // Wait for the first token, then ask the server to stop.
    while !line.starts_with("data: ") {
        line.clear();
        reader.read_line(&mut line).unwrap();
    }
    let pid = s.pid as i32;
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let mut rest = String::new();
    for l in reader.lines() {
        rest.push_str(&l.unwrap());
        rest.push('\n');
    }
    assert!(rest.contains("\"finish_reason\":\"length\""), "the stream ran to its end: {rest}");
    assert!(rest.trim_end().ends_with("data: [DONE]"));
    let status = s.terminate();
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[test]
fn sigterm_aborts_what_outlives_the_grace_period_then_exits_zero() {
    let s = start(&["--shutdown-timeout", "0.5"]);
    let body = json!({"prompt": "Tell me everything.", "max_tokens": 4000, "ignore_eos": true, "temperature": 0, "stream": true});
    let mut reader = s.open_stream("/v1/completions", &body);
    let mut line = String::new();
    while !line.starts_with("data: ") {
        line.clear();
        reader.read_line(&mut line).unwrap();
    }
    unsafe {
        libc::kill(s.pid as i32, libc::SIGTERM);
    }
    let rest: Vec<String> = reader.lines().map(|l| l.unwrap()).filter(|l| l.starts_with("data: ")).collect();
    let n = rest.len();
    assert!(n >= 2 && rest[n - 1] == "data: [DONE]", "{rest:?}");
    assert!(rest[n - 2].contains("\"error\"") && rest[n - 2].contains("shutting down"), "{}", rest[n - 2]);
    assert_eq!(s.terminate().code(), Some(0));
}
