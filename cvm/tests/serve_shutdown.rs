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
