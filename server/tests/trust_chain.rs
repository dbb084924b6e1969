//! The client → CVM trust chain end to end, on the real binaries: a
//! `talaria-serve` with attested TLS (simulated attestation: there is no TEE
//! here) and `talaria verify` against it — the pass, each refusal with its
//! cause, a man in the middle, the API key, and `/v1/attestation`'s input
//! checks.

mod serve_common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, OnceLock};

use serde_json::Value;
use serve_common::{start, Server};
use talaria_attest::ratls::AttestedIdentity;
use talaria_attest::{AttestError, Attester, AttesterChoice, Evidence, ReportData, TeeKind};

const API_KEY: &str = "trust-chain-test-key";
const METRICS_KEY: &str = "trust-chain-metrics-key";

fn server() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(|| start(&["--api-key", API_KEY, "--metrics-key", METRICS_KEY]))
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("talaria-trust-{}-{name}", std::process::id()))
}

/// The launch measurement simulated evidence reports for `talaria-serve`.
fn server_measurement() -> String {
    talaria_attest::attester::simulated_measurement_of(Path::new(env!("CARGO_BIN_EXE_talaria-serve"))).expect("measuring talaria-serve")
}

/// A policy file allowing exactly `measurement` for simulated evidence.
fn policy_file(name: &str, measurement: &str) -> PathBuf {
    let path = tmp(name);
    let doc = serde_json::json!({ "simulated": { "measurements": [measurement] } });
    std::fs::write(&path, doc.to_string()).unwrap();
    path
}

/// Runs `talaria verify URL --policy POLICY --out OUT extra...`.
fn verify(url: &str, policy: &Path, out: &Path, extra: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_talaria"))
        .arg("verify")
        .arg(url)
        .arg("--policy")
        .arg(policy)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .expect("running talaria verify")
}

fn text(o: &Output) -> String {
    format!("status {:?}\nstdout:\n{}\nstderr:\n{}", o.status, String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn verify_passes_and_pins_the_servers_certificate() {
    let s = server();
    let m = server_measurement();
    let (policy, out) = (policy_file("ok.json", &m), tmp("ok.pem"));
    let o = verify(&s.base, &policy, &out, &["--allow-simulated"]);
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("SIMULATED") && stdout.contains(&m), "{}", text(&o));
    let served = std::fs::read_to_string(s.cert_pem_path().unwrap()).unwrap();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), served, "the pinned certificate is the server's");
    let _ = std::fs::remove_file(out);
}

#[test]
fn verify_refuses_a_measurement_outside_the_policy() {
    let s = server();
    let (policy, out) = (policy_file("wrong.json", &"ab".repeat(48)), tmp("wrong.pem"));
    let o = verify(&s.base, &policy, &out, &["--allow-simulated"]);
    assert!(!o.status.success(), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("is not in the policy's allow-list") && stderr.contains(&server_measurement()), "{}", text(&o));
    assert!(!out.exists(), "nothing pinned after a refusal");
}

#[test]
fn verify_refuses_simulated_evidence_unless_allowed() {
    let s = server();
    let (policy, out) = (policy_file("nosim.json", &server_measurement()), tmp("nosim.pem"));
    let o = verify(&s.base, &policy, &out, &[]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("simulated attestation refused"), "{}", text(&o));
    assert!(!out.exists());
}

#[test]
fn verify_refuses_plain_http() {
    let (policy, out) = (policy_file("http.json", "00"), tmp("http.pem"));
    let o = verify("http://127.0.0.1:1", &policy, &out, &["--allow-simulated"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("https://"), "{}", text(&o));
}

#[test]
fn api_key_guards_v1_but_not_health_or_attestation() {
    let s = server();
    let agent = s.agent();
    let mut r = agent.get(&s.url("/v1/models")).call().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let body: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key", "{body}");
    let wrong = agent.get(&s.url("/v1/models")).header("authorization", "Bearer nope").call().unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let post = agent.post(&s.url("/v1/completions")).send(r#"{"prompt":"hi","max_tokens":1}"#).unwrap();
    assert_eq!(post.status().as_u16(), 401);
    let ok = agent.get(&s.url("/v1/models")).header("authorization", format!("Bearer {API_KEY}")).call().unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    assert_eq!(s.get("/v1/models").0, 200, "the harness sends the key");
    let st = agent.get(&s.url("/health")).call().unwrap().status().as_u16();
    assert!(st == 200 || st == 503, "/health: {st}");
    // /metrics' counters give exact per-step row counts: its own key only.
    let metrics = |key: Option<&str>| {
        let mut req = agent.get(&s.url("/metrics"));
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        req.call().unwrap().status().as_u16()
    };
    assert_eq!((metrics(None), metrics(Some(API_KEY)), metrics(Some(METRICS_KEY))), (401, 401, 200));
    let nonce = "11".repeat(32);
    let att = agent.get(&s.url(&format!("/v1/attestation?nonce={nonce}"))).call().unwrap();
    assert_eq!(att.status().as_u16(), 200, "/v1/attestation needs no key");
}

#[test]
fn attestation_endpoint_binds_key_and_nonce_and_checks_the_nonce() {
    let s = server();
    let agent = s.agent();
    let nonce = [7u8; 32];
    let mut r = agent.get(&s.url(&format!("/v1/attestation?nonce={}", hex::encode(nonce)))).call().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    let served = std::fs::read_to_string(s.cert_pem_path().unwrap()).unwrap();
    assert_eq!(body["certificate"], served.as_str());
    let ev: Evidence = serde_json::from_value(body["evidence"].clone()).unwrap();
    assert_eq!(ev.kind, TeeKind::Simulated);
    let der = pem_to_der(&served);
    let spki = talaria_attest::ratls::certificate_spki(&der).unwrap();
    let expected = ReportData::bind(&spki, Some(&nonce));
    assert_eq!(body["tls_key_sha256"], hex::encode(expected.key_hash()));
    let mut policy = talaria_attest::Policy::from_file(&policy_file("endpoint.json", &server_measurement())).unwrap();
    policy.allow_simulated = true;
    talaria_attest::verify(&ev, &policy, &expected, std::time::SystemTime::now()).expect("evidence bound to key and nonce");
    let other = ReportData::bind(&spki, Some(&[8u8; 32]));
    assert!(talaria_attest::verify(&ev, &policy, &other, std::time::SystemTime::now()).is_err(), "another nonce is refused");

    for bad in ["", "?nonce=", "?nonce=xyz", "?nonce=abcd", "?other=1", &format!("?nonce={}", "00".repeat(65))] {
        let st = agent.get(&s.url(&format!("/v1/attestation{bad}"))).call().unwrap().status().as_u16();
        assert_eq!(st, 400, "{bad:?}");
    }
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM").to_vec()
}

/// Evidence lifted out of the server's certificate (the JSON of
/// `Evidence::to_bytes` inside its extension): authentic, right
/// measurement, but bound to the server's key.
fn evidence_in_certificate(der: &[u8]) -> Evidence {
    let start = der.windows(8).position(|w| w == b"{\"kind\":").expect("evidence JSON in the certificate");
    serde_json::Deserializer::from_slice(&der[start..]).into_iter::<Evidence>().next().expect("one evidence value").expect("evidence")
}

/// An attester that hands out someone else's evidence, whatever key it is
/// asked to vouch for: what a man in the middle with a stolen report does.
struct ReplayAttester(Evidence);

impl Attester for ReplayAttester {
    fn kind(&self) -> TeeKind {
        self.0.kind
    }
    fn attest(&self, _data: &ReportData) -> Result<Evidence, AttestError> {
        Ok(self.0.clone())
    }
}

/// A TLS proxy on a free port presenting `identity` and forwarding one
/// request per connection to `upstream` (trusting its pinned certificate).
fn start_proxy(identity: AttestedIdentity, upstream: String, upstream_der: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server_config = identity.server_config();
    std::thread::spawn(move || {
        for client in listener.incoming().take(4) {
            let Ok(client) = client else { continue };
            let (cfg, upstream, der) = (server_config.clone(), upstream.clone(), upstream_der.clone());
            std::thread::spawn(move || {
                let _ = forward(client, cfg, &upstream, &der);
            });
        }
    });
    format!("https://{addr}")
}

/// Reads up to the end of an HTTP request's header (the handshake runs on
/// the first read); `None` when the peer closes first.
fn read_request_head(down: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut req = Vec::new();
    let mut buf = [0u8; 4096];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = down.read(&mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        if req.len() + n > 64 << 10 {
            return Err(std::io::Error::other("request header too large"));
        }
        req.extend_from_slice(&buf[..n]);
    }
    Ok(Some(req))
}

fn forward(client: TcpStream, cfg: Arc<rustls::ServerConfig>, upstream: &str, upstream_der: &[u8]) -> std::io::Result<()> {
    client.set_read_timeout(Some(std::time::Duration::from_secs(20)))?;
    let mut down = rustls::StreamOwned::new(rustls::ServerConnection::new(cfg).map_err(std::io::Error::other)?, client);
    let Some(req) = read_request_head(&mut down)? else { return Ok(()) };
    let addr = upstream.trim_start_matches("https://");
    let sock = TcpStream::connect(addr)?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn =
        rustls::ClientConnection::new(talaria_attest::ratls::client_config_pinned(upstream_der), name).map_err(std::io::Error::other)?;
    let mut up = rustls::StreamOwned::new(conn, sock);
    up.write_all(&req)?;
    let mut resp = Vec::new();
    let _ = up.read_to_end(&mut resp);
    down.write_all(&resp)?;
    down.conn.send_close_notify();
    down.flush()
}

#[test]
fn verify_refuses_a_man_in_the_middle_with_the_servers_evidence() {
    let s = server();
    let served = pem_to_der(&std::fs::read_to_string(s.cert_pem_path().unwrap()).unwrap());
    let stolen = evidence_in_certificate(&served);
    let names = ["localhost".to_string(), "127.0.0.1".to_string()];
    let mitm = AttestedIdentity::generate(&ReplayAttester(stolen), &names).expect("proxy identity");
    let proxy = start_proxy(mitm, s.base.clone(), served);
    let (policy, out) = (policy_file("mitm.json", &server_measurement()), tmp("mitm.pem"));
    let o = verify(&proxy, &policy, &out, &["--allow-simulated"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not bound to this TLS key"), "{}", text(&o));
    assert!(!out.exists());
}

/// How the lying server answers `/v1/attestation`.
#[derive(Clone, Copy)]
enum Answer {
    /// Fresh evidence bound to its key and the request's nonce.
    Honest,
    /// Evidence bound to its key but made ahead of time for another nonce.
    ReplayedNonce,
    /// Correctly bound evidence with one signed byte (in the measurement)
    /// flipped after signing.
    FlippedReportByte,
}

/// The launch measurement of simulated evidence made in this process: the
/// SHA-384 of this test executable.
fn test_measurement() -> String {
    let exe = std::env::current_exe().expect("the test executable");
    talaria_attest::attester::simulated_measurement_of(&exe).expect("measuring the test executable")
}

/// The nonce a reply was made for ahead of time: never the one
/// `talaria verify` draws (32 random bytes).
const STALE_NONCE: [u8; 32] = [0x5a; 32];

/// Offset of a byte inside the simulated report's measurement (bytes
/// 100..148 of the signed part; see `attest/src/simulated_report.rs`).
const FLIPPED_BYTE: usize = 120;

/// An HTTPS server on 127.0.0.1 with a genuine RA-TLS identity (simulated
/// attester, this executable's measurement) that answers `/v1/attestation`
/// as `answer` says, in the JSON shape of the real endpoint. Serves at most
/// a few connections, each with read/write deadlines. Returns its URL and
/// certificate (PEM).
fn start_lying_server(answer: Answer) -> (String, String) {
    let attester: Arc<dyn Attester> = Arc::from(AttesterChoice::Simulated.build().expect("simulated attester"));
    let names = ["localhost".to_string(), "127.0.0.1".to_string()];
    let identity = AttestedIdentity::generate(&*attester, &names).expect("RA-TLS identity");
    let spki = identity.spki_der();
    let cert_pem = identity.cert_pem();
    let key_sha256 = hex::encode(ReportData::bind(&spki, None).key_hash());
    // Made before any request arrives: a recording of an earlier exchange.
    let replay = attester.attest(&ReportData::bind(&spki, Some(&STALE_NONCE))).expect("evidence for the stale nonce");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = identity.server_config();
    let pem = cert_pem.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().take(4) {
            let Ok(client) = client else { continue };
            let (cfg, attester, spki, pem, key, replay) =
                (cfg.clone(), attester.clone(), spki.clone(), pem.clone(), key_sha256.clone(), replay.clone());
            std::thread::spawn(move || {
                let make = |nonce: &[u8]| -> Result<Evidence, AttestError> {
                    match answer {
                        Answer::Honest => attester.attest(&ReportData::bind(&spki, Some(nonce))),
                        Answer::ReplayedNonce => Ok(replay),
                        Answer::FlippedReportByte => {
                            let mut ev = attester.attest(&ReportData::bind(&spki, Some(nonce)))?;
                            ev.report[FLIPPED_BYTE] ^= 0x01;
                            Ok(ev)
                        }
                    }
                };
                let _ = serve_attestation(client, cfg, &pem, &key, make);
            });
        }
    });
    (format!("https://{addr}"), cert_pem)
}

/// The `nonce` query parameter of a request line `GET /path?... HTTP/1.1`.
fn request_nonce(head: &[u8]) -> Option<Vec<u8>> {
    let line = std::str::from_utf8(head).ok()?.lines().next()?;
    let target = line.split(' ').nth(1)?;
    let (path, query) = target.split_once('?')?;
    if path != "/v1/attestation" {
        return None;
    }
    let nonce = hex::decode(query.split('&').find_map(|kv| kv.strip_prefix("nonce="))?).ok()?;
    (16..=64).contains(&nonce.len()).then_some(nonce)
}

/// Answers one request on `client`: 200 with the attestation JSON for a
/// well-formed `/v1/attestation?nonce=HEX`, else 400.
fn serve_attestation(
    client: TcpStream,
    cfg: Arc<rustls::ServerConfig>,
    cert_pem: &str,
    key_sha256: &str,
    make: impl FnOnce(&[u8]) -> Result<Evidence, AttestError>,
) -> std::io::Result<()> {
    let deadline = Some(std::time::Duration::from_secs(20));
    client.set_read_timeout(deadline)?;
    client.set_write_timeout(deadline)?;
    let mut tls = rustls::StreamOwned::new(rustls::ServerConnection::new(cfg).map_err(std::io::Error::other)?, client);
    let Some(head) = read_request_head(&mut tls)? else { return Ok(()) };
    let (status, body) = match request_nonce(&head) {
        Some(nonce) => {
            let evidence = make(&nonce).map_err(std::io::Error::other)?;
            let body = serde_json::json!({
                "evidence": evidence,
                "certificate": cert_pem,
                "tls_key_sha256": key_sha256,
                "nonce": hex::encode(&nonce),
            });
            ("200 OK", body.to_string())
        }
        None => ("400 Bad Request", r#"{"error":{"message":"bad request"}}"#.to_string()),
    };
    let resp =
        format!("HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
    tls.write_all(resp.as_bytes())?;
    tls.conn.send_close_notify();
    tls.flush()
}

/// `talaria verify --allow-simulated` against a lying server, with a policy
/// listing this executable's measurement (so the handshake passes).
fn verify_lying_server(answer: Answer, name: &str) -> (Output, PathBuf, String) {
    let (url, cert_pem) = start_lying_server(answer);
    let (policy, out) = (policy_file(&format!("{name}.json"), &test_measurement()), tmp(&format!("{name}.pem")));
    let _ = std::fs::remove_file(&out);
    let o = verify(&url, &policy, &out, &["--allow-simulated", "--timeout", "20"]);
    let _ = std::fs::remove_file(policy);
    (o, out, cert_pem)
}

#[test]
fn lying_server_harness_passes_when_it_answers_honestly() {
    let (o, out, cert_pem) = verify_lying_server(Answer::Honest, "liar-honest");
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("SIMULATED") && stdout.contains(&test_measurement()), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), cert_pem, "the pinned certificate is the harness's");
    let _ = std::fs::remove_file(out);
}

#[test]
fn verify_refuses_evidence_for_a_replayed_nonce() {
    let (o, out, _) = verify_lying_server(Answer::ReplayedNonce, "liar-replay");
    assert!(!o.status.success(), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("the attestation report was refused")
            && stderr.contains("the report does not carry this nonce (stale or replayed evidence)"),
        "{}",
        text(&o)
    );
    assert!(!stderr.contains("not bound to this TLS key") && !stderr.contains("bad signature"), "{}", text(&o));
    assert!(!out.exists(), "nothing pinned after a refusal");
}

#[test]
fn verify_refuses_a_report_with_a_flipped_byte() {
    let (o, out, _) = verify_lying_server(Answer::FlippedReportByte, "liar-flipped");
    assert!(!o.status.success(), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("the attestation report was refused") && stderr.contains("bad signature:"), "{}", text(&o));
    assert!(!stderr.contains("allow-list") && !stderr.contains("nonce"), "{}", text(&o));
    assert!(!out.exists(), "nothing pinned after a refusal");
}

#[test]
fn the_flipped_byte_lies_inside_the_signed_measurement() {
    // Pins the harness to the simulated layout: a flip at FLIPPED_BYTE
    // changes the measurement and nothing else, and only the signature
    // check can catch it.
    let attester = AttesterChoice::Simulated.build().unwrap();
    let data = ReportData::bind(b"spki", Some(&[1u8; 32]));
    let mut ev = attester.attest(&data).unwrap();
    let m = hex::decode(test_measurement()).unwrap();
    assert_eq!(&ev.report[100..148], m.as_slice(), "measurement at bytes 100..148");
    assert_eq!(&ev.report[36..100], data.0.as_slice(), "report data at bytes 36..100");
    ev.report[FLIPPED_BYTE] ^= 0x01;
    let policy_path = policy_file("flip-layout.json", &test_measurement());
    let mut policy = talaria_attest::Policy::from_file(&policy_path).unwrap();
    let _ = std::fs::remove_file(policy_path);
    policy.allow_simulated = true;
    let e = talaria_attest::verify(&ev, &policy, &data, std::time::SystemTime::now()).unwrap_err();
    assert!(matches!(e, talaria_attest::VerifyError::BadSignature(_)), "{e}");
}
