//! The TLS handshake deadline bounds the whole handshake, not each read: a
//! peer that trickles handshake bytes (each one well inside any per-read
//! timeout) is cut off when the deadline passes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use talaria_transport::{TcpConnection, TcpWorkerListener, TransportError};

const DEADLINE: Duration = Duration::from_secs(1);
const TRICKLE: Duration = Duration::from_millis(300);
/// The deadline plus slack for a loaded machine; far below the time the
/// trickle would take to finish a ClientHello (hundreds of bytes × 300 ms).
const CUT_OFF_BY: Duration = Duration::from_millis(1500);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server never gets far enough to need a certificate.
#[derive(Debug)]
struct NoCertificate;

impl ResolvesServerCert for NoCertificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        None
    }
}

fn server_config() -> Arc<rustls::ServerConfig> {
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(NoCertificate));
    Arc::new(config)
}

fn client_config() -> Arc<rustls::ClientConfig> {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    Arc::new(config)
}

/// A genuine ClientHello, as the first bytes a client sends.
fn client_hello() -> Vec<u8> {
    let name = ServerName::try_from("worker.test").unwrap();
    let mut conn = rustls::ClientConnection::new(client_config(), name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    assert!(out.len() > 100, "a ClientHello is hundreds of bytes");
    out
}

/// Writes `bytes` to `sock` one byte every [`TRICKLE`] until they run out,
/// the peer goes, or `stop` is set.
fn trickle(mut sock: TcpStream, bytes: Vec<u8>, stop: Arc<AtomicBool>) -> JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut sent = 0;
        for b in bytes {
            if stop.load(Ordering::Relaxed) || sock.write_all(&[b]).is_err() {
                break;
            }
            sent += 1;
            std::thread::sleep(TRICKLE);
        }
        sent
    })
}

fn assert_cut_off(result: Result<TcpConnection, TransportError>, took: Duration) {
    let err = result.expect_err("a trickled handshake must not complete");
    // A timeout (retried by a connecting CVM), not a refusal.
    assert!(err.is_timeout(), "{err:?}");
    assert!(err.to_string().contains("the TLS handshake"), "{err}");
    assert!(took >= DEADLINE - Duration::from_millis(50), "failed early, after {took:?}: {err}");
    assert!(took < CUT_OFF_BY, "the handshake deadline of {DEADLINE:?} held for {took:?}");
}

#[test]
fn server_handshake_deadline_bounds_a_trickling_client() {
    let listener = TcpWorkerListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let client = trickle(TcpStream::connect(addr).unwrap(), client_hello(), stop.clone());

    let sock = listener.accept_socket().unwrap();
    let start = Instant::now();
    let result = TcpConnection::accept_tls(sock, server_config(), DEADLINE);
    let took = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let sent = client.join().unwrap();
    assert!(sent >= 2, "the trickle sent {sent} bytes: the test did not exercise per-read progress");
    assert_cut_off(result, took);
}

#[test]
fn client_handshake_deadline_bounds_a_trickling_server() {
    let listener = TcpWorkerListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sock = listener.accept_socket().unwrap();
            // Take the ClientHello, then answer with a ServerHello record
            // header and body, a byte at a time.
            let mut hello = [0u8; 5];
            sock.read_exact(&mut hello).unwrap();
            let mut record = vec![0x16, 0x03, 0x03, 0x00, 0x7a, 0x02, 0x00, 0x00, 0x76, 0x03, 0x03];
            record.resize(5 + 0x7a, 0x42);
            trickle(sock, record, stop).join().unwrap()
        })
    };

    let start = Instant::now();
    let result = TcpConnection::connect_tls_within(&addr, "worker.test", client_config(), Duration::from_secs(5), DEADLINE);
    let took = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let sent = server.join().unwrap();
    assert!(sent >= 2, "the trickle sent {sent} bytes: the test did not exercise per-read progress");
    assert_cut_off(result, took);
}
