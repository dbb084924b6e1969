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
use talaria_attest::{AttestError, Attester, Evidence, ReportData, TeeKind};

const API_KEY: &str = "trust-chain-test-key";

fn server() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(|| start(&["--api-key", API_KEY]))
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
fn api_key_guards_v1_but_not_health_metrics_or_attestation() {
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
    for open in ["/health", "/metrics"] {
        let st = agent.get(&s.url(open)).call().unwrap().status().as_u16();
        assert!(st == 200 || st == 503, "{open}: {st}");
    }
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

fn forward(client: TcpStream, cfg: Arc<rustls::ServerConfig>, upstream: &str, upstream_der: &[u8]) -> std::io::Result<()> {
    client.set_read_timeout(Some(std::time::Duration::from_secs(20)))?;
    let mut down = rustls::StreamOwned::new(rustls::ServerConnection::new(cfg).map_err(std::io::Error::other)?, client);
    let mut req = Vec::new();
    let mut buf = [0u8; 4096];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = down.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        req.extend_from_slice(&buf[..n]);
    }
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
