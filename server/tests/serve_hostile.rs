//! Hostile clients against the real `talaria-serve` on the real default
//! model: slow headers, slow bodies, oversize bodies, huge stop strings,
//! hundreds of idle connections, and a full request queue. Each test checks
//! the specific outcome and that a normal request is still served.
//! Every socket goes to 127.0.0.1 and every loop is bounded.

mod serve_common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use serve_common::{start, Server};

/// `--header-timeout` of the shared server, in seconds.
const HEADER_TIMEOUT_S: f64 = 2.0;
/// `--body-timeout` of the shared server, in seconds.
const BODY_TIMEOUT_S: f64 = 3.0;
/// `--max-body-bytes` of the shared server: room for 16 stop strings of
/// 128 KB, so those reach the handler and get its 400.
const MAX_BODY_BYTES: usize = 3_000_000;
/// Slack for timing bounds on a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(4);

/// The shared server: plain HTTP so raw sockets can speak to it.
fn server() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(|| {
        let body = MAX_BODY_BYTES.to_string();
        let (header, body_t) = (HEADER_TIMEOUT_S.to_string(), BODY_TIMEOUT_S.to_string());
        let s = start(&[
            "--insecure",
            "--plain-http",
            "--header-timeout",
            &header,
            "--body-timeout",
            &body_t,
            "--max-connections",
            "64",
            "--max-body-bytes",
            &body,
        ]);
        s.wait_ready(Duration::from_secs(60));
        s
    })
}

/// The tests on the shared server disturb each other (connection limit,
/// memory, timing): one at a time.
fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn addr(s: &Server) -> SocketAddr {
    let hostport = s.base.strip_prefix("http://").unwrap_or_else(|| panic!("plain HTTP expected, got {}", s.base));
    let a: SocketAddr = hostport.trim_end_matches('/').parse().expect("host:port");
    assert!(a.ip().is_loopback(), "tests only talk to 127.0.0.1");
    a
}

fn normal_request() -> Value {
    json!({"prompt": "The capital of France is", "max_tokens": 4, "temperature": 0})
}

/// A normal request succeeds; returns how long it took.
fn assert_normal_request_served(s: &Server) -> Duration {
    let t = Instant::now();
    let r = s.post("/v1/completions", &normal_request());
    assert_eq!(r.status, 200, "a normal request failed: {}", r.body);
    assert_eq!(r.body["usage"]["completion_tokens"], 4, "{}", r.body);
    t.elapsed()
}

/// Reads until the server closes the connection or `limit` passes; returns
/// what came and when the connection closed (None: still open).
fn read_until_closed(conn: &mut TcpStream, limit: Duration) -> (Vec<u8>, Option<Duration>) {
    let start = Instant::now();
    conn.set_read_timeout(Some(Duration::from_millis(100))).expect("read timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        match conn.read(&mut buf) {
            Ok(0) => return (got, Some(start.elapsed())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(_) => return (got, Some(start.elapsed())),
        }
    }
    (got, None)
}

/// The status code of a raw HTTP/1.1 response (the last one, after any
/// `100 Continue`).
fn status_of(response: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(response);
    text.match_indices("HTTP/1.1 ").filter_map(|(at, _)| text[at + 9..].get(..3)?.parse().ok()).find(|&code| code != 100)
}

#[test]
fn a_slow_header_client_is_cut_off_while_others_are_served() {
    let _one_at_a_time = exclusive();
    let s = server();
    let mut conn = TcpStream::connect(addr(s)).expect("connect");
    let opened = Instant::now();
    // A request line, then one header byte every 100 ms, never finishing.
    conn.write_all(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").expect("first bytes");
    let slow = std::thread::spawn(move || {
        conn.set_read_timeout(Some(Duration::from_millis(100))).expect("read timeout");
        let limit = Duration::from_secs_f64(HEADER_TIMEOUT_S) + SLACK;
        let mut buf = [0u8; 512];
        while opened.elapsed() < limit {
            if conn.write_all(b"a").is_err() {
                return Some(opened.elapsed());
            }
            match conn.read(&mut buf) {
                Ok(0) => return Some(opened.elapsed()),
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                Err(_) => return Some(opened.elapsed()),
            }
        }
        None
    });
    std::thread::sleep(Duration::from_millis(300));
    let took = assert_normal_request_served(s);
    assert!(took < Duration::from_secs_f64(HEADER_TIMEOUT_S) + SLACK, "the normal request waited {took:?}");
    let closed = slow.join().expect("slow client thread").expect("the slow-header connection was never closed");
    // Closed by the timeout (not at once), and not long after it: the
    // trickle of bytes does not keep the connection alive.
    assert!(closed >= Duration::from_secs_f64(HEADER_TIMEOUT_S * 0.75), "closed after {closed:?}, before the header timeout");
}

#[test]
fn a_slow_body_client_is_cut_off_while_others_are_served() {
    let _one_at_a_time = exclusive();
    let s = server();
    let mut conn = TcpStream::connect(addr(s)).expect("connect");
    let head = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n";
    conn.write_all(head.as_bytes()).expect("headers");
    conn.write_all(br#"{"prompt":"#).expect("ten body bytes");
    let reader = std::thread::spawn(move || read_until_closed(&mut conn, Duration::from_secs_f64(BODY_TIMEOUT_S) + SLACK));
    std::thread::sleep(Duration::from_millis(300));
    assert_normal_request_served(s);
    let (response, closed) = reader.join().expect("slow client thread");
    let closed =
        closed.unwrap_or_else(|| panic!("the slow-body connection was never closed; got {:?}", String::from_utf8_lossy(&response)));
    assert!(closed >= Duration::from_secs_f64(BODY_TIMEOUT_S * 0.75), "closed after {closed:?}, before the body timeout");
    // Either a 408 before the close, or just the close.
    let status = status_of(&response);
    assert!(status.is_none() || status == Some(408), "unexpected answer {:?}", String::from_utf8_lossy(&response));
}

#[test]
fn an_oversize_body_gets_413_and_the_server_carries_on() {
    let _one_at_a_time = exclusive();
    let s = server();
    let mut conn = TcpStream::connect(addr(s)).expect("connect");
    let len = MAX_BODY_BYTES + 1;
    // `Expect: 100-continue`: a server that refuses on Content-Length
    // answers before the body; one that reads it first asks for it. Either
    // way the 413 is not lost to a reset from unread data.
    let head = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nExpect: 100-continue\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).expect("headers");
    conn.set_read_timeout(Some(Duration::from_secs(5))).expect("read timeout");
    let mut first = [0u8; 1024];
    let n = conn.read(&mut first).expect("an answer to the headers");
    let mut response = first[..n].to_vec();
    if status_of(&response).is_none() {
        // 100 Continue: send the body (a JSON string of spaces, too long).
        let mut writer = conn.try_clone().expect("clone");
        let sender = std::thread::spawn(move || {
            let chunk = vec![b' '; 64 << 10];
            let mut left = len;
            while left > 0 {
                let k = left.min(chunk.len());
                if writer.write_all(&chunk[..k]).is_err() {
                    return;
                }
                left -= k;
            }
        });
        let (rest, _) = read_until_closed(&mut conn, Duration::from_secs(10));
        response.extend(rest);
        sender.join().expect("sender thread");
    }
    assert_eq!(status_of(&response), Some(413), "{:?}", String::from_utf8_lossy(&response));
    assert_normal_request_served(s);
}

#[test]
fn sixteen_stop_strings_of_128_kb_are_refused_naming_the_field() {
    let _one_at_a_time = exclusive();
    let s = server();
    let stops = vec!["z".repeat(128 << 10); 16];
    let body = json!({"prompt": "Hello", "max_tokens": 4, "stop": stops});
    let r = s.post("/v1/completions", &body);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["error"]["param"], "stop", "{}", r.body);
    assert_eq!(r.body["error"]["type"], "invalid_request_error");
    let chat = json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "stop": ["z".repeat(2000)]});
    let r = s.post("/v1/chat/completions", &chat);
    assert_eq!((r.status, r.body["error"]["param"].as_str()), (400, Some("stop")), "{}", r.body);
    // Within the caps, stop strings work as before.
    let ok = json!({"prompt": "1, 2, 3, 4,", "max_tokens": 16, "temperature": 0, "stop": vec!["z".repeat(1024); 16]});
    assert_eq!(s.post("/v1/completions", &ok).status, 200);
    assert_normal_request_served(s);
}

/// A client's chat template runs in the CVM, and one instruction of it can
/// build a 100 MB string (doubling it each further one): refused unless the
/// server was started with --trust-request-chat-template.
#[test]
fn a_client_chat_template_is_refused_by_default() {
    let _one_at_a_time = exclusive();
    let s = server();
    let flood = "{% set s = 'x' * 100000000 %}{% for i in range(8) %}{% set s = s ~ s %}{% endfor %}{{ s }}";
    let chat = json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "chat_template": flood});
    let r = s.post("/v1/chat/completions", &chat);
    assert_eq!((r.status, r.body["error"]["param"].as_str()), (400, Some("chat_template")), "{}", r.body);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("--trust-request-chat-template"), "{}", r.body);
    assert_normal_request_served(s);
}

/// Resident memory of a process, in bytes.
fn vm_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line");
    kb * 1024
}

#[test]
fn two_hundred_idle_connections_neither_block_nor_bloat_the_server() {
    let _one_at_a_time = exclusive();
    let s = server();
    assert_normal_request_served(s);
    let before = vm_rss(s.pid);
    let target = addr(s);
    // Opened and left silent; the kernel completes the handshakes of those
    // beyond --max-connections into the listen backlog.
    let idle: Vec<TcpStream> =
        (0..200).map(|i| TcpStream::connect(target).unwrap_or_else(|e| panic!("idle connection {i}: {e}"))).collect();
    std::thread::sleep(Duration::from_millis(200));
    // The idle ones are closed by the header timeout, 64 at a time; the
    // normal request is accepted once its turn comes.
    let rounds = 200f64 / 64.0;
    let bound = Duration::from_secs_f64(HEADER_TIMEOUT_S * (rounds.ceil() + 1.0)) + SLACK;
    let took = assert_normal_request_served(s);
    assert!(took < bound, "a normal request took {took:?} behind 200 idle connections (bound {bound:?})");
    let grown = vm_rss(s.pid).saturating_sub(before);
    assert!(grown < 200 << 20, "the server grew by {} MB holding idle connections", grown >> 20);
    // Every idle connection is closed by the server within the bound.
    let deadline = Instant::now() + bound;
    for (i, mut c) in idle.into_iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(200));
        let (_, closed) = read_until_closed(&mut c, left);
        assert!(closed.is_some(), "idle connection {i} is still open after {bound:?}");
    }
    assert_normal_request_served(s);
}

/// `--max-waiting-requests 1 --max-num-seqs 1`: one request runs, one
/// waits, the next is refused with 503 and `Retry-After`.
#[test]
fn a_full_queue_answers_503_with_retry_after() {
    let s = start(&["--insecure", "--plain-http", "--max-waiting-requests", "1", "--max-num-seqs", "1"]);
    s.wait_ready(Duration::from_secs(60));
    let long = json!({"prompt": "Count to a million:", "max_tokens": 2000, "ignore_eos": true, "temperature": 0, "stream": true});
    let running = s.open_stream("/v1/completions", &long);
    wait_for_metric(&s, "talaria_num_requests_running", 1.0);
    let waiting = s.open_stream("/v1/completions", &long);
    wait_for_metric(&s, "talaria_num_requests_waiting", 1.0);
    // Refused, for both endpoints, without touching the engine.
    for (path, body) in [
        ("/v1/completions", normal_request()),
        ("/v1/chat/completions", json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})),
    ] {
        let mut r = s.agent().post(&s.url(path)).header("content-type", "application/json").send(body.to_string()).expect("HTTP request");
        assert_eq!(r.status().as_u16(), 503, "{path}");
        let retry = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u32>().ok());
        assert!(retry.is_some_and(|r| r >= 1), "{path}: Retry-After {retry:?}");
        let err: Value = serde_json::from_str(&r.body_mut().read_to_string().expect("body")).expect("JSON error body");
        assert_eq!(err["error"]["type"], "server_error", "{err}");
        assert!(err["error"]["message"].as_str().is_some_and(|m| m.contains("overloaded")), "{err}");
    }
    assert_eq!(s.get("/health").0, 200, "the server itself is fine");
    // The queue drains when its clients leave; then requests are served.
    drop(waiting);
    drop(running);
    assert!(s.wait_idle(Duration::from_secs(30)), "the long requests were not dropped");
    assert_normal_request_served(&s);
}

/// Waits (bounded) until a metric reaches `value`.
fn wait_for_metric(s: &Server, name: &str, value: f64) {
    let t = Instant::now();
    while s.metric(name) < value {
        assert!(t.elapsed() < Duration::from_secs(30), "{name} never reached {value}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Huge prompts are tokenized on blocking threads: while several are, the
/// async threads still answer everyone else at once.
#[test]
fn huge_prompts_do_not_stall_other_connections() {
    let _one_at_a_time = exclusive();
    let s = server();
    // Over --max-prompt-chars (default 1 Mi): refused before tokenizing.
    let over = json!({"prompt": "a".repeat((1 << 20) + 1), "max_tokens": 1});
    let r = s.post("/v1/completions", &over);
    assert_eq!((r.status, r.body["error"]["param"].as_str()), (400, Some("prompt")), "{}", r.body);
    assert!(r.body["error"]["message"].as_str().is_some_and(|m| m.contains("characters")), "{}", r.body);
    // Just under it: tokenized (then refused, far longer than the context).
    let huge = json!({"prompt": "lorem ipsum dolor ".repeat((1 << 20) / 18), "max_tokens": 1});
    let mut worst_health = Duration::ZERO;
    let mut tokenizing = Duration::ZERO;
    std::thread::scope(|sc| {
        let clients: Vec<_> = (0..4)
            .map(|_| {
                sc.spawn(|| {
                    let t = Instant::now();
                    let r = s.post("/v1/completions", &huge);
                    (r, t.elapsed())
                })
            })
            .collect();
        for _ in 0..500 {
            if clients.iter().all(|c| c.is_finished()) {
                break;
            }
            let t = Instant::now();
            assert_eq!(s.get("/health").0, 200);
            worst_health = worst_health.max(t.elapsed());
            std::thread::sleep(Duration::from_millis(20));
        }
        for c in clients {
            let (r, took) = c.join().expect("client thread");
            assert_eq!(r.status, 400, "{}", r.body);
            assert_eq!(r.body["error"]["code"], "context_length_exceeded", "{}", r.body);
            tokenizing = tokenizing.max(took);
        }
    });
    // Tokenized on the async threads, four prompts would hold both of them
    // for most of the time they take.
    let bound = (tokenizing / 3).max(Duration::from_millis(250));
    assert!(worst_health < bound, "/health took {worst_health:?} while prompts were tokenized for {tokenizing:?}");
    assert_normal_request_served(s);
}

/// A list of prompts is one request: a client that leaves mid-stream frees
/// every prompt's sequences, and too many prompts are refused up front.
#[test]
fn a_list_of_prompts_is_cancelled_as_one_and_capped() {
    let _one_at_a_time = exclusive();
    let s = server();
    let long = json!({"prompt": ["Count to a million:", "List every prime:", "Name all the stars:"], "n": 2, "max_tokens": 2000, "ignore_eos": true, "temperature": 0, "stream": true});
    let stream = s.open_stream("/v1/completions", &long);
    wait_for_metric(s, "talaria_num_requests_running", 3.0);
    drop(stream);
    assert!(s.wait_idle(Duration::from_secs(30)), "every prompt's sequences must be cancelled");
    let too_many = json!({"prompt": vec!["hi"; 65], "max_tokens": 1});
    let r = s.post("/v1/completions", &too_many);
    assert_eq!((r.status, r.body["error"]["param"].as_str()), (400, Some("prompt")), "{}", r.body);
    assert_normal_request_served(s);
}
