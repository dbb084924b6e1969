//! RA-TLS: a certificate for a fresh in-memory key whose extension carries
//! evidence bound to that key, and rustls verifiers for both directions.

mod attested;
mod cert;
mod owner;
mod verifiers;

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

pub use attested::AttestedIdentity;
pub use cert::{pem, EVIDENCE_OID, EVIDENCE_OID_STR};
pub use owner::OwnerIdentity;

use crate::{Evidence, Policy, ReportData, Verified, VerifyError};
use verifiers::{provider, ServerVerifier};

/// Verifies the evidence in an RA-TLS certificate: signatures, policy, and
/// that it is bound to this certificate's key (report data without nonce).
pub fn verify_certificate(cert_der: &[u8], policy: &Policy, now: SystemTime) -> Result<Verified, VerifyError> {
    let (spki, evidence) = cert::parse(cert_der)?;
    let evidence = evidence
        .ok_or_else(|| VerifyError::Malformed(format!("the certificate carries no attestation evidence (extension {EVIDENCE_OID_STR})")))?;
    let evidence = Evidence::from_bytes(&evidence)?;
    crate::verify(&evidence, policy, &ReportData::bind(&spki, None), now)
}

/// The evidence an RA-TLS certificate carries, unverified.
pub fn certificate_evidence(cert_der: &[u8]) -> Result<Option<Evidence>, VerifyError> {
    cert::parse(cert_der)?.1.map(|b| Evidence::from_bytes(&b)).transpose()
}

/// DER SubjectPublicKeyInfo of a certificate.
pub fn certificate_spki(cert_der: &[u8]) -> Result<Vec<u8>, VerifyError> {
    Ok(cert::parse(cert_der)?.0)
}

/// A TLS client config for `talaria verify` and clients: accepts a server
/// whose RA-TLS certificate passes `policy`; the accepted certificate is
/// recorded in `seen` so the caller can also check `/v1/attestation`
/// against it and pin it.
pub fn client_config_attested(policy: Policy, seen: Arc<Mutex<Option<Vec<u8>>>>) -> Arc<rustls::ClientConfig> {
    client_config(ServerVerifier::attested(policy, seen))
}

/// A TLS client config trusting exactly one certificate (a pinned RA-TLS
/// certificate written by `talaria verify`).
pub fn client_config_pinned(pinned_der: &[u8]) -> Arc<rustls::ClientConfig> {
    client_config(ServerVerifier::pinned(pinned_der))
}

fn client_config(verifier: ServerVerifier) -> Arc<rustls::ClientConfig> {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Arc::new(config)
}
