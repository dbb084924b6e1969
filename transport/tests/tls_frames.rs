//! A receive's timeout bounds the whole frame through TLS too. A TLS read
//! takes as many socket reads as one record needs; with the timeout armed
//! once per TLS read, a worker trickling one byte per 100 ms inside a
//! 4 KB record held a call for 400 s. A timed-out frame resumes intact.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::{bytes_frame, pattern};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use talaria_transport::{Connection, TcpConnection, TcpWorkerListener};

const NAME: &str = "worker.test";
const TRICKLE: Duration = Duration::from_millis(100);
const TIMEOUT: Duration = Duration::from_secs(1);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![NAME.to_string()]).unwrap().self_signed(&key).unwrap();
    let der: CertificateDer<'static> = cert.der().clone();
    let mut server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())))
        .unwrap();
    // No session tickets after the handshake: only the frame crosses the trickle.
    server.send_tls13_tickets = 0;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

/// A TCP relay between client and server: the server's bytes go one at a
/// time, every [`TRICKLE`], while `trickle` is set; `trickled` counts them.
fn relay(server: String, trickle: Arc<AtomicBool>, trickled: Arc<AtomicUsize>) -> String {
    let front = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = front.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let (mut client, _) = front.accept().unwrap();
        let mut upstream = TcpStream::connect(server).unwrap();
        let (mut c_in, mut u_out) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
        std::thread::spawn(move || std::io::copy(&mut c_in, &mut u_out));
        let mut buf = [0u8; 16384];
        while let Ok(n @ 1..) = upstream.read(&mut buf) {
            for (i, b) in buf[..n].iter().enumerate() {
                if !trickle.load(Ordering::Relaxed) {
                    if client.write_all(&buf[i..n]).is_err() {
                        return;
                    }
                    break;
                }
                if client.write_all(&[*b]).is_err() {
                    return;
                }
                trickled.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(TRICKLE);
            }
        }
    });
    addr
}

#[test]
fn a_tls_frame_trickled_inside_one_record_times_out_and_resumes() {
    let (server_config, client_config) = configs();
    let listener = TcpWorkerListener::bind("127.0.0.1:0").unwrap();
    let server_addr = listener.local_addr().unwrap().to_string();
    let (trickle, trickled) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let front = relay(server_addr, trickle.clone(), trickled.clone());
    let (go, wait) = mpsc::channel::<()>();
    let (hold, done) = mpsc::channel::<()>();
    let worker = std::thread::spawn(move || {
        let sock = listener.accept_socket().unwrap();
        let mut conn = TcpConnection::accept_tls(sock, server_config, Duration::from_secs(10)).unwrap();
        wait.recv().unwrap();
        // One frame, one TLS record (well under 16 KiB).
        conn.send(&bytes_frame(7, 4000), &pattern(7, 4000)).unwrap();
        done.recv().ok();
    });

    let mut cvm = TcpConnection::connect_tls_within(&front, NAME, client_config, Duration::from_secs(5), Duration::from_secs(10)).unwrap();
    trickle.store(true, Ordering::Relaxed);
    go.send(()).unwrap();
    let t0 = Instant::now();
    let err = cvm.recv(Some(TIMEOUT)).map(|r| r.header().call_id).expect_err("a trickled frame arrived within its timeout");
    let took = t0.elapsed();
    assert!(err.is_timeout(), "{err:?}");
    assert!(trickled.load(Ordering::Relaxed) >= 3, "the relay trickled too little to exercise per-read progress");
    assert!(took >= TIMEOUT - Duration::from_millis(50) && took < TIMEOUT * 2, "a {TIMEOUT:?} receive took {took:?}");

    // The bytes read so far are kept: once the relay runs freely, the same
    // frame arrives whole.
    trickle.store(false, Ordering::Relaxed);
    let got = cvm.recv(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(got.header().call_id, 7);
    assert_eq!(got.payload(), pattern(7, 4000).as_slice());
    drop(got);
    hold.send(()).unwrap();
    worker.join().unwrap();
}
