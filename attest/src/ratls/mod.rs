//! RA-TLS: a certificate for a fresh in-memory key whose extension carries
//! evidence bound to that key, and rustls verifiers for both directions.

use std::sync::Arc;
use std::time::SystemTime;

use crate::{AttestError, Attester, Policy, Verified, VerifyError};

/// A key pair made in memory (never written to disk) and a self-signed
/// certificate for it carrying attestation evidence.
pub struct AttestedIdentity {
    pub cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

impl AttestedIdentity {
    /// A fresh key, evidence bound to it, a certificate valid for `names`
    /// (DNS names or IP addresses).
    pub fn generate(_attester: &dyn Attester, _names: &[String]) -> Result<Self, AttestError> {
        todo!()
    }
    pub fn cert_pem(&self) -> String {
        todo!()
    }
    /// DER SubjectPublicKeyInfo of the key (what report data binds).
    pub fn spki_der(&self) -> Vec<u8> {
        todo!()
    }
    /// A TLS server config presenting this certificate (HTTP API).
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let _ = &self.key_der;
        todo!()
    }
    /// A TLS client config presenting this certificate (CVM → worker) and
    /// accepting only the server certificate `pinned_der`.
    pub fn client_config_pinned(&self, _pinned_der: &[u8]) -> Arc<rustls::ClientConfig> {
        todo!()
    }
}

/// The model owner's worker identity: a key and certificate kept on the
/// worker host (PEM files), pinned by CVMs.
pub struct OwnerIdentity {
    pub cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

impl OwnerIdentity {
    /// Makes a fresh key and self-signed certificate (for `names`).
    pub fn generate(_names: &[String]) -> Result<Self, AttestError> {
        todo!()
    }
    pub fn load(_cert_pem: &std::path::Path, _key_pem: &std::path::Path) -> Result<Self, AttestError> {
        todo!()
    }
    pub fn save(&self, _cert_pem: &std::path::Path, _key_pem: &std::path::Path) -> Result<(), AttestError> {
        let _ = &self.key_der;
        todo!()
    }
    /// A TLS server config that requires a client certificate whose
    /// evidence passes `policy` and is bound to the client's key.
    pub fn server_config_for_attested_clients(&self, _policy: Policy) -> Arc<rustls::ServerConfig> {
        todo!()
    }
}

/// Verifies the evidence in an RA-TLS certificate: signatures, policy, and
/// that it is bound to this certificate's key (report data without nonce).
pub fn verify_certificate(_cert_der: &[u8], _policy: &Policy, _now: SystemTime) -> Result<Verified, VerifyError> {
    todo!()
}

/// DER SubjectPublicKeyInfo of a certificate.
pub fn certificate_spki(_cert_der: &[u8]) -> Result<Vec<u8>, VerifyError> {
    todo!()
}

/// A TLS client config for `talaria verify` and clients: accepts a server
/// whose RA-TLS certificate passes `policy`; the accepted certificate is
/// recorded in `seen` so the caller can also check `/v1/attestation`
/// against it and pin it.
pub fn client_config_attested(_policy: Policy, _seen: Arc<std::sync::Mutex<Option<Vec<u8>>>>) -> Arc<rustls::ClientConfig> {
    todo!()
}

/// A TLS client config trusting exactly one certificate (a pinned RA-TLS
/// certificate written by `talaria verify`).
pub fn client_config_pinned(_pinned_der: &[u8]) -> Arc<rustls::ClientConfig> {
    todo!()
}
