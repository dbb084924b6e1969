//! The model owner's worker identity: a key and self-signed certificate
//! kept in PEM files on the worker host and pinned by CVMs.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::cert;
use super::verifiers::{provider, AttestedClientVerifier};
use crate::{AttestError, Policy};

/// The model owner's worker identity: a key and certificate kept on the
/// worker host (PEM files), pinned by CVMs.
pub struct OwnerIdentity {
    pub cert_der: Vec<u8>,
    key: PrivateKeyDer<'static>,
}

impl OwnerIdentity {
    /// Makes a fresh key and self-signed certificate (for `names`).
    pub fn generate(names: &[String]) -> Result<Self, AttestError> {
        let key = cert::fresh_key()?;
        let cert_der = cert::self_signed(&key, names, "talaria worker (model owner)", None)?;
        Ok(OwnerIdentity { cert_der, key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())) })
    }

    /// Reads the PEM certificate and key, and checks that they belong together.
    pub fn load(cert_pem: &Path, key_pem: &Path) -> Result<Self, AttestError> {
        let cert = CertificateDer::from_pem_file(cert_pem)
            .map_err(|e| AttestError::Other(format!("reading the certificate {}: {e}", cert_pem.display())))?;
        let key = PrivateKeyDer::from_pem_file(key_pem)
            .map_err(|e| AttestError::Other(format!("reading the private key {}: {e}", key_pem.display())))?;
        let identity = OwnerIdentity { cert_der: cert.to_vec(), key };
        // Building a config now surfaces a bad or mismatched key here, once.
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| AttestError::Other(format!("TLS versions: {e}")))?
            .with_no_client_auth()
            .with_single_cert(identity.chain(), identity.key.clone_key())
            .map_err(|e| {
                AttestError::Other(format!("the key {} does not fit the certificate {}: {e}", key_pem.display(), cert_pem.display()))
            })?;
        Ok(identity)
    }

    /// Writes both PEM files; the key file is created with mode 0600.
    pub fn save(&self, cert_pem: &Path, key_pem: &Path) -> Result<(), AttestError> {
        let tag = match &self.key {
            PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
            PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
            _ => "PRIVATE KEY",
        };
        write_private(key_pem, cert::pem(tag, self.key.secret_der()).as_bytes()).map_err(|e| written(key_pem, e))?;
        std::fs::write(cert_pem, cert::pem("CERTIFICATE", &self.cert_der)).map_err(|e| written(cert_pem, e))
    }

    fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![CertificateDer::from(self.cert_der.clone())]
    }

    /// A TLS server config that requires a client certificate whose
    /// evidence passes `policy` and is bound to the client's key.
    pub fn server_config_for_attested_clients(&self, policy: Policy) -> Arc<rustls::ServerConfig> {
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default TLS versions")
            .with_client_cert_verifier(Arc::new(AttestedClientVerifier::new(policy)))
            .with_single_cert(self.chain(), self.key.clone_key())
            .expect("the key was checked against the certificate when made or loaded");
        Arc::new(config)
    }
}

fn written(path: &Path, source: std::io::Error) -> AttestError {
    AttestError::Io { context: format!("writing {}", path.display()), source }
}

/// Writes a secret file readable by its owner only (also when it existed).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)
}
