//! `talaria verify https://HOST:PORT --policy FILE`: checks, before any
//! prompt is sent, that the server is the attested CVM the policy names
//! and pins its certificate for later clients.
//!
//! 1. The TLS handshake accepts only an RA-TLS certificate whose embedded
//!    evidence passes the policy and is bound to the certificate's key.
//! 2. Over that same connection, `/v1/attestation` with a fresh random
//!    nonce must return evidence bound to that key *and* the nonce (not a
//!    replay), and the same certificate.
//! 3. The certificate is written to `--out` for clients to trust.

mod https_get;
mod target;

use std::io::ErrorKind;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Context};
use rand::TryRngCore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::Deserialize;
use talaria_attest::ratls::{certificate_spki, client_config_attested};
use talaria_attest::{Evidence, Policy, ReportData, TeeKind, VerifyError};

pub use target::Target;

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// The server: https://HOST:PORT.
    pub url: String,
    /// The policy: allowed launch measurements and minimum TCB per TEE kind
    /// (JSON; see docs/attestation.md).
    #[arg(long)]
    pub policy: PathBuf,
    /// Accept simulated evidence (development only: it proves nothing).
    #[arg(long)]
    pub allow_simulated: bool,
    /// Where to write the verified certificate (PEM), for clients to pin.
    #[arg(long, default_value = "talaria-server.pem")]
    pub out: PathBuf,
    /// Seconds allowed for connecting and for each read.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

/// The body of `/v1/attestation`.
#[derive(Deserialize)]
struct AttestationReply {
    evidence: Evidence,
    certificate: String,
    tls_key_sha256: String,
}

/// Random bytes sent as the nonce; the server must echo their hash in a
/// fresh report.
const NONCE_BYTES: usize = 32;

pub fn run(a: VerifyArgs) -> anyhow::Result<()> {
    let target = Target::parse(&a.url).map_err(anyhow::Error::msg)?;
    let mut policy = Policy::from_file(&a.policy).map_err(|e| anyhow!("reading the policy {}: {e}", a.policy.display()))?;
    policy.allow_simulated = a.allow_simulated;
    let mut nonce = [0u8; NONCE_BYTES];
    rand::rngs::OsRng.try_fill_bytes(&mut nonce).context("reading the OS random generator")?;

    let seen = Arc::new(Mutex::new(None));
    let config = client_config_attested(policy.clone(), seen.clone());
    let mut tls = connect(&target, config, Duration::from_secs(a.timeout.max(1)))?;
    let seen_der: Vec<u8> =
        seen.lock().map_err(|_| anyhow!("certificate record poisoned"))?.take().context("the TLS verifier recorded no certificate")?;

    let path = format!("/v1/attestation?nonce={}", hex::encode(nonce));
    let (status, body) = https_get::get(&mut tls, &target.authority(), &path).context("fetching /v1/attestation")?;
    if status != 200 {
        bail!("/v1/attestation answered {status}: {}", String::from_utf8_lossy(&body[..body.len().min(500)]));
    }
    let reply: AttestationReply = serde_json::from_slice(&body).context("/v1/attestation: unexpected reply")?;

    // The report must carry this connection's key and this nonce.
    let spki = certificate_spki(&seen_der).map_err(|e| anyhow!("the server certificate: {e}"))?;
    let expected = ReportData::bind(&spki, Some(&nonce));
    let verified = talaria_attest::verify(&reply.evidence, &policy, &expected, SystemTime::now())
        .map_err(|e| anyhow!("the attestation report was refused: {e}"))?;
    let returned = CertificateDer::from_pem_slice(reply.certificate.as_bytes()).context("/v1/attestation: the certificate is not PEM")?;
    if returned.as_ref() != seen_der.as_slice() {
        bail!("the certificate in /v1/attestation is not the one presented in the TLS handshake (something in between?)");
    }
    let key_sha256 = hex::encode(expected.key_hash());
    if !reply.tls_key_sha256.eq_ignore_ascii_case(&key_sha256) {
        bail!("/v1/attestation names TLS key {} but the connection's key is {key_sha256}", reply.tls_key_sha256);
    }

    // The certificate compared, re-encoded: the reply's text may hold more
    // PEM blocks than the first, which the comparison read, and a pin file
    // given to a client as its CA file would trust them all.
    let pinned = talaria_attest::ratls::pem("CERTIFICATE", &seen_der);
    std::fs::write(&a.out, pinned).with_context(|| format!("writing {}", a.out.display()))?;
    println!("verified {}", a.url);
    match verified.kind {
        TeeKind::Simulated => println!("  attestation:    SIMULATED (INSECURE: proves nothing; accepted because of --allow-simulated)"),
        TeeKind::SevSnp => println!("  attestation:    AMD SEV-SNP"),
        TeeKind::Tdx => println!("  attestation:    Intel TDX"),
    }
    println!("  measurement:    {}", verified.measurement);
    println!("  TCB:            {}", verified.tcb);
    println!("  TLS key sha256: {key_sha256} (bound in the report)");
    println!("  nonce:          {} random bytes, bound in a fresh report", NONCE_BYTES);
    println!("pinned certificate written to {}", a.out.display());
    Ok(())
}

/// Connects and completes the handshake, in which the attested verifier
/// checks the certificate's evidence against the policy.
fn connect(
    target: &Target,
    config: Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> anyhow::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let name = ServerName::try_from(target.host.clone()).map_err(|e| anyhow!("{:?} is not a valid server name: {e}", target.host))?;
    let addrs: Vec<_> =
        (target.host.as_str(), target.port).to_socket_addrs().with_context(|| format!("resolving {}", target.host))?.collect();
    let mut last = None;
    let sock = addrs.iter().find_map(|addr| match TcpStream::connect_timeout(addr, timeout) {
        Ok(s) => Some(s),
        Err(e) => {
            last = Some(e);
            None
        }
    });
    let sock = match (sock, last) {
        (Some(s), _) => s,
        (None, Some(e)) => return Err(e).with_context(|| format!("connecting to {}", target.authority())),
        (None, None) => bail!("{} resolves to no address", target.host),
    };
    sock.set_read_timeout(Some(timeout))?;
    sock.set_write_timeout(Some(timeout))?;
    let conn = rustls::ClientConnection::new(config, name).context("starting TLS")?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
            bail!("TLS handshake with {} failed: {}", target.authority(), explain_handshake_error(&e));
        }
    }
    Ok(tls)
}

/// The cause of a failed handshake: the attestation verdict when the
/// certificate's evidence was refused, else rustls' or the socket's error.
fn explain_handshake_error(e: &std::io::Error) -> String {
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => format!("timed out ({e})"),
            _ => e.to_string(),
        };
    };
    if let rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) = tls {
        if let Some(v) = other.0.downcast_ref::<VerifyError>() {
            return format!("the certificate's attestation was refused: {v}");
        }
        return format!("the certificate was refused: {}", other.0);
    }
    tls.to_string()
}
