//! The CVM ↔ worker link's protections with real processes: mutual TLS
//! (the worker admits only CVMs whose attestation passes its policy, the
//! CVM only the pinned worker), generation over it, no unmasked sessions
//! or late plain calls without `--insecure`, and a spawned worker that gets
//! its shared memory by inheritance only.

mod common;

use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use talaria_attest::AttesterChoice;
use talaria_cvm::backend::{build_linear, BackendArgs, Mode};
use talaria_cvm::worker::{RemoteSecurity, SpawnConfig, WorkerLink, WorkerTarget};
use talaria_kernels::Precision;
use talaria_models::fetch::ensure_default_model;
use talaria_models::{Checkpoint, Op, OpId};
use talaria_protocol::{CallKind, Hello, PublicParams, WorkerCall, WORKER_PROTOCOL};
use talaria_transport::{Connection, FrameHeader, FrameKind, TcpConnection, WorkerAddress};

fn params(masked: bool) -> PublicParams {
    PublicParams {
        mode: if masked { "remo" } else { "plain" }.into(),
        scheme: if masked { "remo" } else { "plain" }.into(),
        kappa: if masked { 1e4 } else { 0.0 },
        precision: "exact-f64".into(),
        calibration: "test".into(),
    }
}

fn manifest() -> String {
    Checkpoint::open(ensure_default_model(false).unwrap()).unwrap().manifest_hash()
}

fn addr(worker: &TcpWorker) -> WorkerAddress {
    worker.url().parse().unwrap()
}

/// A CVM as these tests run it: simulated attestation, the worker pinned.
fn attested_link(worker: &TcpWorker, pinned: &Path, manifest: &str) -> anyhow::Result<WorkerLink> {
    let security = RemoteSecurity::mutual_tls(AttesterChoice::Simulated, pinned)?;
    WorkerLink::connect(WorkerTarget::Remote(addr(worker), security), manifest.into(), params(true))
}

/// Accepts any server certificate (signatures still checked): these
/// clients are the untrusted ones, the worker is what is under test.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client without evidence: no certificate at all, or a plain
/// self-signed one (`cert`, `key`).
fn unattested_client(identity: Option<(&Path, &Path)>) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)));
    Arc::new(match identity {
        None => b.with_no_client_auth(),
        Some((cert, key)) => {
            let cert = CertificateDer::from_pem_file(cert).unwrap();
            let key = PrivateKeyDer::from_pem_file(key).unwrap();
            b.with_client_auth_cert(vec![cert], key).unwrap()
        }
    })
}

/// Runs a session opening with `config`; returns why it failed (in TLS 1.3
/// the client learns of a refused certificate on its first read).
fn refused(worker: &TcpWorker, config: Arc<ClientConfig>, manifest: &str) -> String {
    let mut conn = match TcpConnection::connect_tls(&addr(worker).socket_addr_string(), "127.0.0.1", config, Duration::from_secs(5)) {
        Ok(c) => c,
        Err(e) => return e.to_string(),
    };
    let body = serde_json::to_vec(&Hello { protocol: WORKER_PROTOCOL, manifest_hash: manifest.into(), remo: params(true) }).unwrap();
    if let Err(e) = conn.send(&FrameHeader::bytes(FrameKind::Hello, body.len()), &body) {
        return e.to_string();
    }
    let answer = conn.recv(Some(Duration::from_secs(60))).map(|f| f.kind);
    match answer {
        Ok(kind) => panic!("an unattested client got a {kind:?} frame"),
        Err(e) => e.to_string(),
    }
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn confidential_generation_over_mutual_tls_matches_shared_memory() {
    let fx = Fixture::load();
    let (over_shm, _) = fx.run_with(&BackendArgs::default());
    let files = TlsFiles::new("generate");
    let (cert, key) = files.identity("worker");
    let policy = files.policy("cvm", &[own_measurement()]);
    let wargs = TlsFiles::worker_args(&cert, &key, &policy, true);
    let worker = TcpWorker::start(&wargs.iter().map(String::as_str).collect::<Vec<_>>());
    let args =
        BackendArgs { worker: Some(worker.url()), worker_cert: Some(cert), attestation: AttesterChoice::Simulated, ..Default::default() };
    let (over_tls, _) = fx.run_with(&args);
    assert_eq!(over_tls, over_shm, "greedy tokens over mutual TLS vs shared memory");
    assert!(worker.log_text().contains("mutual TLS, attested CVM"), "{}", worker.log_text());
}

#[test]
fn the_worker_refuses_cvms_it_cannot_trust_and_serves_the_next() {
    let manifest = manifest();
    let files = TlsFiles::new("refusals");
    let (cert, key) = files.identity("worker");
    let (stranger_cert, stranger_key) = files.identity("stranger");
    let ours = files.policy("ours", &[own_measurement()]);
    let wargs = TlsFiles::worker_args(&cert, &key, &ours, true);
    let worker = TcpWorker::start(&wargs.iter().map(String::as_str).collect::<Vec<_>>());

    // No client certificate at all.
    let why = refused(&worker, unattested_client(None), &manifest);
    eprintln!("no certificate: CVM side: {why}");
    worker.wait_for_log("refused the CVM", Duration::from_secs(30));
    assert!(worker.log_text().contains("no certificates"), "{}", worker.log_text());
    attested_link(&worker, &cert, &manifest).expect("a good CVM after a refusal");

    // A plain self-signed certificate: no evidence in it.
    let why = refused(&worker, unattested_client(Some((&stranger_cert, &stranger_key))), &manifest);
    eprintln!("self-signed: CVM side: {why}");
    let t0 = Instant::now();
    while count(&worker.log_text(), "refused the CVM") < 2 {
        assert!(t0.elapsed() < Duration::from_secs(30), "{}", worker.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(worker.log_text().contains("attestation refused"), "{}", worker.log_text());

    // A handshake that stalls (a connection that never speaks) is dropped
    // after the handshake bound.
    let silent = TcpStream::connect(addr(&worker).socket_addr_string()).unwrap();
    worker.wait_for_log("waiting for the TLS handshake", Duration::from_secs(30));
    drop(silent);
    attested_link(&worker, &cert, &manifest).expect("a good CVM after refusals");

    // Our measurement is not in this worker's policy.
    let other = files.policy("other", &["ab".repeat(48)]);
    let wargs = TlsFiles::worker_args(&cert, &key, &other, true);
    let strict = TcpWorker::start(&wargs.iter().map(String::as_str).collect::<Vec<_>>());
    let err = attested_link(&strict, &cert, &manifest).err().expect("an unlisted CVM is refused");
    eprintln!("unlisted measurement: CVM side: {err:#}");
    strict.wait_for_log("is not in the policy's allow-list", Duration::from_secs(30));
    // Still listening: the next CVM gets its own verdict.
    assert!(attested_link(&strict, &cert, &manifest).is_err());
    let t0 = Instant::now();
    while count(&strict.log_text(), "refused the CVM") < 2 {
        assert!(t0.elapsed() < Duration::from_secs(30), "{}", strict.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }

    // Simulated evidence without --allow-simulated, even when listed.
    let wargs = TlsFiles::worker_args(&cert, &key, &ours, false);
    let no_sim = TcpWorker::start(&wargs.iter().map(String::as_str).collect::<Vec<_>>());
    let err = attested_link(&no_sim, &cert, &manifest).err().expect("simulated evidence is refused");
    eprintln!("simulated without --allow-simulated: CVM side: {err:#}");
    no_sim.wait_for_log("simulated attestation refused", Duration::from_secs(30));
}

#[test]
fn the_cvm_refuses_a_worker_that_is_not_the_pinned_one() {
    let manifest = manifest();
    let files = TlsFiles::new("pinning");
    let (cert, key) = files.identity("worker");
    let (other_cert, _) = files.identity("other");
    let policy = files.policy("cvm", &[own_measurement()]);
    let wargs = TlsFiles::worker_args(&cert, &key, &policy, true);
    let worker = TcpWorker::start(&wargs.iter().map(String::as_str).collect::<Vec<_>>());
    let t0 = Instant::now();
    let err = attested_link(&worker, &other_cert, &manifest).err().expect("a worker with another certificate is refused");
    let msg = format!("{err:#}");
    assert!(msg.contains("not the pinned one"), "{msg}");
    assert!(t0.elapsed() < Duration::from_secs(30), "a refused certificate is not retried: {:?}", t0.elapsed());
    // The right pin works against the same worker.
    attested_link(&worker, &cert, &manifest).unwrap();
}

/// Mutual TLS cannot wrap a shared-memory region: asking for it there is
/// an error, not a plain connection.
#[test]
fn tls_to_a_shared_memory_address_is_refused() {
    let files = TlsFiles::new("tls-shm");
    let (cert, _) = files.identity("worker");
    let security = RemoteSecurity::mutual_tls(AttesterChoice::Simulated, &cert).unwrap();
    let region = std::env::temp_dir().join(format!("talaria-tls-shm-{}", std::process::id()));
    let err = security.connect(&WorkerAddress::Shm(region.clone()), Duration::from_secs(1)).err().expect("TLS over shm connected");
    assert!(err.to_string().contains("needs a TCP worker address"), "{err}");
    assert!(!region.exists(), "nothing was opened or made");
}

#[test]
fn without_insecure_the_unprotected_modes_are_refused() {
    let ck = Checkpoint::open(ensure_default_model(false).unwrap()).unwrap();
    for mode in [Mode::Plain, Mode::Local] {
        let err = build_linear(&BackendArgs { mode, ..Default::default() }, &ck, DTYPE).err().expect("refused");
        assert!(format!("{err:#}").contains("--insecure"), "{err:#}");
    }
    let args = BackendArgs { worker: Some("tcp://127.0.0.1:9".into()), ..Default::default() };
    let err = build_linear(&args, &ck, DTYPE).err().expect("plain TCP refused");
    assert!(format!("{err:#}").contains("--worker-cert"), "{err:#}");
    // With the flag, local runs (the banner goes to stderr).
    build_linear(&BackendArgs { mode: Mode::Local, insecure: true, ..Default::default() }, &ck, DTYPE).unwrap();
}

#[test]
fn the_worker_refuses_unmasked_sessions_and_late_plain_calls_without_insecure() {
    let ck = Checkpoint::open(ensure_default_model(false).unwrap()).unwrap();
    let cfg = SpawnConfig::new(ck.path.clone(), DTYPE.name()).unwrap();
    let err = WorkerLink::connect(WorkerTarget::Local(cfg.clone()), ck.manifest_hash(), params(false)).err().expect("refused");
    assert!(format!("{err:#}").contains("unmasked (plain) sessions refused"), "{err:#}");

    // A masked session: plain calls are public calibration until the first
    // masked call, refused after it.
    let mut link = WorkerLink::connect(WorkerTarget::Local(cfg.clone()), ck.manifest_hash(), params(true)).unwrap();
    let id = OpId { layer: 0, op: Op::O };
    let (d_in, d_out) = link.shape(id).unwrap();
    let call = |kind, precision| WorkerCall { id, kind, precision, rows: 1, d_in, d_out };
    let (x32, mut y32) = (vec![0.25f32; d_in], vec![0f32; d_out]);
    let (x64, mut y64) = (vec![0.25f64; d_in], vec![0f64; d_out]);
    link.matmul(call(CallKind::Plain, Precision::F32), &x32, &mut y32).unwrap();
    link.matmul(call(CallKind::Online, Precision::F64), &x64, &mut y64).unwrap();
    let err = link.matmul(call(CallKind::Plain, Precision::F32), &x32, &mut y32).unwrap_err();
    assert!(format!("{err:#}").contains("after masked serving began refused"), "{err:#}");

    // `--mode plain --insecure` spawns its worker with --insecure.
    let insecure = SpawnConfig { insecure: true, ..cfg };
    WorkerLink::connect(WorkerTarget::Local(insecure), ck.manifest_hash(), params(false)).unwrap();
}

#[test]
fn a_spawned_worker_gets_its_region_by_inheritance_only() {
    let ck = Checkpoint::open(ensure_default_model(false).unwrap()).unwrap();
    let cfg = SpawnConfig::new(ck.path.clone(), DTYPE.name()).unwrap();
    let mut link = WorkerLink::connect(WorkerTarget::Local(cfg), ck.manifest_hash(), params(true)).unwrap();
    let pid = link.local_pid().unwrap();
    // The worker maps the inherited memfd (and closes the descriptor once
    // mapped).
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    assert!(maps.contains("/memfd:talaria-ring"), "{maps}");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(cmdline.contains("--shm-fd 3") && !cmdline.contains("/dev/shm"), "{cmdline}");
    // No region file of ours (named <prefix>-<our pid>-…) anywhere in /dev/shm.
    let mine = format!("-{}-", std::process::id());
    if let Ok(entries) = std::fs::read_dir("/dev/shm") {
        let ours: Vec<_> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("talaria") && n.contains(&mine))
            .collect();
        assert!(ours.is_empty(), "{ours:?}");
    }
    // The session works over it.
    let id = OpId { layer: 0, op: Op::O };
    let (d_in, d_out) = link.shape(id).unwrap();
    let (x, mut y) = (vec![0.25f64; d_in], vec![0f64; d_out]);
    link.matmul(WorkerCall { id, kind: CallKind::Online, precision: Precision::F64, rows: 1, d_in, d_out }, &x, &mut y).unwrap();
    assert!(y.iter().all(|v| v.is_finite()) && y.iter().any(|&v| v != 0.0));
}
