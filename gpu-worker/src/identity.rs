//! The worker's TLS identity (the model owner's key and certificate, PEM
//! files on the worker host) and the TLS configuration that admits only
//! CVMs whose attestation passes the policy.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use talaria_attest::ratls::OwnerIdentity;
use talaria_attest::Policy;

/// `talaria-gpu-worker gen-identity`: makes a key and a self-signed
/// certificate for `names` and writes them (the key with mode 0600 by
/// `OwnerIdentity::save`). The certificate is what CVMs pin
/// (`--worker-cert`).
pub fn generate(cert: &Path, key: &Path, names: &[String]) -> anyhow::Result<()> {
    let names = if names.is_empty() { vec!["localhost".to_string()] } else { names.to_vec() };
    let identity = OwnerIdentity::generate(&names).context("generating the worker identity")?;
    identity.save(cert, key).with_context(|| format!("writing {} and {}", cert.display(), key.display()))?;
    Ok(())
}

/// What `--listen` needs to serve over TLS.
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cvm_policy: PathBuf,
    pub allow_simulated: bool,
}

impl TlsSettings {
    /// The server configuration: the owner's certificate, and a client
    /// certificate required whose evidence passes the CVM policy.
    pub fn server_config(&self) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let identity = OwnerIdentity::load(&self.cert, &self.key)
            .with_context(|| format!("loading the worker identity {} / {}", self.cert.display(), self.key.display()))?;
        let mut policy = Policy::from_file(&self.cvm_policy)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("reading the CVM policy {}", self.cvm_policy.display()))?;
        policy.allow_simulated = self.allow_simulated;
        if self.allow_simulated {
            tracing::warn!("--allow-simulated: CVMs with simulated attestation are admitted; it proves nothing (development only)");
        }
        Ok(identity.server_config_for_attested_clients(policy))
    }
}
