//! Real rustls handshakes over loopback TCP between the RA-TLS identities.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use talaria_attest::attester::{measure_file, SimulatedAttester};
use talaria_attest::ratls::{
    certificate_spki, client_config_attested, client_config_pinned, verify_certificate, AttestedIdentity, OwnerIdentity,
};
use talaria_attest::{Policy, VerifyError};

fn policy() -> Policy {
    static M: std::sync::OnceLock<[u8; 48]> = std::sync::OnceLock::new();
    Policy::simulated_only(*M.get_or_init(|| measure_file(&std::env::current_exe().unwrap()).unwrap()))
}

fn cvm() -> AttestedIdentity {
    AttestedIdentity::generate(&SimulatedAttester::new().unwrap(), &["talaria-cvm".into(), "127.0.0.1".into()]).unwrap()
}

fn worker() -> OwnerIdentity {
    OwnerIdentity::generate(&["worker.example".into()]).unwrap()
}

/// Runs one ping/pong over TLS; returns (client result, server result).
fn exchange(client: Arc<rustls::ClientConfig>, server: Arc<rustls::ServerConfig>) -> (Result<(), String>, Result<(), String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server_side = std::thread::spawn(move || -> Result<(), String> {
        let (sock, _) = listener.accept().map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let conn = rustls::ServerConnection::new(server).map_err(|e| e.to_string())?;
        let mut tls = rustls::StreamOwned::new(conn, sock);
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).map_err(|e| e.to_string())?;
        tls.write_all(b"pong").map_err(|e| e.to_string())?;
        tls.flush().map_err(|e| e.to_string())
    });
    let client_result = (|| -> Result<(), String> {
        let sock = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let conn = rustls::ClientConnection::new(client, ServerName::try_from("ignored.invalid").unwrap()).map_err(|e| e.to_string())?;
        let mut tls = rustls::StreamOwned::new(conn, sock);
        tls.write_all(b"ping").map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).map_err(|e| e.to_string())?;
        if &buf == b"pong" {
            Ok(())
        } else {
            Err("wrong reply".into())
        }
    })();
    (client_result, server_side.join().unwrap())
}

#[test]
fn an_attested_server_is_accepted_and_recorded() {
    let id = cvm();
    let seen = Arc::new(Mutex::new(None));
    let (c, s) = exchange(client_config_attested(policy(), seen.clone()), id.server_config());
    assert_eq!((c, s), (Ok(()), Ok(())));
    assert_eq!(seen.lock().unwrap().as_deref(), Some(&id.cert_der[..]), "the accepted certificate is recorded");
}

#[test]
fn an_attested_server_outside_the_policy_is_refused_with_the_cause() {
    let seen = Arc::new(Mutex::new(None));
    let (c, s) = exchange(client_config_attested(Policy::simulated_only([7u8; 48]), seen.clone()), cvm().server_config());
    let e = c.unwrap_err();
    assert!(e.contains("allow-list"), "{e}");
    assert!(s.is_err());
    assert!(seen.lock().unwrap().is_none());
}

/// The client's handshake error when the server's evidence is refused: an
/// invalid certificate whose cause downcasts to the `VerifyError`; the
/// server is sent a certificate alert (rustls sends `certificate_unknown`
/// for `CertificateError::Other`), not `internal_error`.
#[test]
fn a_refused_attestation_is_a_bad_certificate_carrying_the_verify_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = cvm().server_config();
    let server_side = std::thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut tls = rustls::StreamOwned::new(rustls::ServerConnection::new(server).unwrap(), sock);
        let mut buf = [0u8; 1];
        tls.read_exact(&mut buf).unwrap_err().to_string()
    });
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let client = client_config_attested(Policy::simulated_only([7u8; 48]), Arc::new(Mutex::new(None)));
    let conn = rustls::ClientConnection::new(client, ServerName::try_from("ignored.invalid").unwrap()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let e = tls.write_all(b"ping").and_then(|_| tls.flush()).and_then(|_| tls.read_exact(&mut [0u8; 1])).unwrap_err();
    let tls_error = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()).expect("a rustls error");
    let rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) = tls_error else {
        panic!("not an InvalidCertificate(Other): {tls_error:?}");
    };
    let cause = other.0.downcast_ref::<VerifyError>().expect("the cause is the VerifyError");
    assert!(matches!(cause, VerifyError::WrongMeasurement { .. }), "{cause}");
    assert!(e.to_string().contains("allow-list"), "the text names the cause: {e}");
    let server_saw = server_side.join().unwrap();
    assert!(server_saw.contains("CertificateUnknown"), "the server is sent a certificate alert: {server_saw}");
}

#[test]
fn the_attested_server_offers_only_http_1_1() {
    assert_eq!(cvm().server_config().alpn_protocols, [b"http/1.1".to_vec()]);
}

#[test]
fn a_plain_server_certificate_is_refused_by_the_attested_client() {
    let w = worker();
    // The worker's server config requires attested clients; the client fails first on the certificate.
    let (c, _) = exchange(client_config_attested(policy(), Arc::new(Mutex::new(None))), w.server_config_for_attested_clients(policy()));
    assert!(c.unwrap_err().contains("no attestation evidence"));
}

#[test]
fn the_cvm_and_the_worker_authenticate_each_other() {
    let (id, w) = (cvm(), worker());
    let (c, s) = exchange(id.client_config_pinned(&w.cert_der), w.server_config_for_attested_clients(policy()));
    assert_eq!((c, s), (Ok(()), Ok(())));
}

#[test]
fn the_worker_refuses_a_cvm_outside_its_policy() {
    let (id, w) = (cvm(), worker());
    let (c, s) = exchange(id.client_config_pinned(&w.cert_der), w.server_config_for_attested_clients(Policy::simulated_only([7u8; 48])));
    assert!(s.unwrap_err().contains("allow-list"));
    assert!(c.is_err());
}

#[test]
fn the_worker_refuses_a_client_with_a_plain_certificate() {
    let w = worker();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["intruder".to_string()]).unwrap().self_signed(&key).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedOnly(w.cert_der.clone())))
        .with_client_auth_cert(vec![cert.der().clone()], PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())))
        .unwrap();
    let (c, s) = exchange(Arc::new(client), w.server_config_for_attested_clients(policy()));
    assert!(s.unwrap_err().contains("no attestation evidence"));
    assert!(c.is_err());
}

#[test]
fn the_worker_refuses_a_client_without_a_certificate() {
    let w = worker();
    let (c, s) = exchange(client_config_pinned(&w.cert_der), w.server_config_for_attested_clients(policy()));
    assert!(s.is_err() && c.is_err(), "{s:?} {c:?}");
}

#[test]
fn a_cvm_pinning_another_worker_refuses_this_one() {
    let (id, w, other) = (cvm(), worker(), worker());
    let (c, _) = exchange(id.client_config_pinned(&other.cert_der), w.server_config_for_attested_clients(policy()));
    assert!(c.unwrap_err().contains("not the pinned one"));
}

#[test]
fn the_certificate_binds_its_own_key() {
    let id = cvm();
    assert_eq!(certificate_spki(&id.cert_der).unwrap(), id.spki_der());
    verify_certificate(&id.cert_der, &policy(), SystemTime::now()).unwrap();
    assert!(id.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    let plain = worker();
    assert!(matches!(verify_certificate(&plain.cert_der, &policy(), SystemTime::now()), Err(VerifyError::Malformed(_))));
}

#[test]
fn owner_identity_round_trips_through_pem_with_a_private_key_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("talaria-owner-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("worker.pem"), dir.join("worker.key"));
    let w = worker();
    w.save(&cert, &key).unwrap();
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let back = OwnerIdentity::load(&cert, &key).unwrap();
    assert_eq!(back.cert_der, w.cert_der);
    // The loaded identity still serves the CVM.
    let (c, s) = exchange(cvm().client_config_pinned(&back.cert_der), back.server_config_for_attested_clients(policy()));
    assert_eq!((c, s), (Ok(()), Ok(())));
    // A key that is not the certificate's is refused on load.
    worker().save(&dir.join("other.pem"), &dir.join("other.key")).unwrap();
    assert!(OwnerIdentity::load(&cert, &dir.join("other.key")).is_err());
    let _ = std::fs::remove_dir_all(dir);
}

/// A test client verifier trusting one certificate (for the intruder client).
#[derive(Debug)]
struct PinnedOnly(Vec<u8>);

impl rustls::client::danger::ServerCertVerifier for PinnedOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.0 {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("not pinned".into()))
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &rustls::crypto::ring::default_provider().signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &rustls::crypto::ring::default_provider().signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider().signature_verification_algorithms.supported_schemes()
    }
}
