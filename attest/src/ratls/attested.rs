//! The CVM's RA-TLS identity: a key made in memory, never written out.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::cert;
use super::verifiers::{provider, ServerVerifier};
use crate::{AttestError, Attester, ReportData};

/// A key pair made in memory (never written to disk) and a self-signed
/// certificate for it carrying attestation evidence.
pub struct AttestedIdentity {
    pub cert_der: Vec<u8>,
    key_der: Vec<u8>,
    spki_der: Vec<u8>,
}

impl AttestedIdentity {
    /// A fresh key, evidence bound to it, a certificate valid for `names`
    /// (DNS names or IP addresses).
    pub fn generate(attester: &dyn Attester, names: &[String]) -> Result<Self, AttestError> {
        let key = cert::fresh_key()?;
        let spki_der = rcgen::PublicKeyData::subject_public_key_info(&key);
        let evidence = attester.attest(&ReportData::bind(&spki_der, None))?;
        let cert_der = cert::self_signed(&key, names, "talaria RA-TLS", Some(&evidence))?;
        Ok(AttestedIdentity { cert_der, key_der: key.serialize_der(), spki_der })
    }

    pub fn cert_pem(&self) -> String {
        cert::pem("CERTIFICATE", &self.cert_der)
    }

    /// DER SubjectPublicKeyInfo of the key (what report data binds).
    pub fn spki_der(&self) -> Vec<u8> {
        self.spki_der.clone()
    }

    fn chain_and_key(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (vec![CertificateDer::from(self.cert_der.clone())], PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone())))
    }

    /// A TLS server config presenting this certificate (HTTP API), ALPN http/1.1 only (the
    /// server speaks only HTTP/1.1).
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let (chain, key) = self.chain_and_key();
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default TLS versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("a freshly generated P-256 key matches its certificate");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// A TLS client config presenting this certificate (CVM → worker) and
    /// accepting only the server certificate `pinned_der`.
    pub fn client_config_pinned(&self, pinned_der: &[u8]) -> Arc<rustls::ClientConfig> {
        let (chain, key) = self.chain_and_key();
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default TLS versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ServerVerifier::pinned(pinned_der)))
            .with_client_auth_cert(chain, key)
            .expect("a freshly generated P-256 key matches its certificate");
        Arc::new(config)
    }
}
