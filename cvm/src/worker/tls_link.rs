//! The CVM's side of mutual TLS to a remote worker: an RA-TLS identity made
//! at start (a fresh key whose attestation evidence is in its certificate),
//! and the worker's certificate pinned byte for byte.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use talaria_attest::ratls::AttestedIdentity;
use talaria_attest::AttesterChoice;
use talaria_transport::{Connection, TcpConnection, WorkerAddress};

/// How the CVM reaches a remote worker.
#[derive(Clone)]
pub enum RemoteSecurity {
    /// Mutual TLS with this configuration (our attested certificate, the
    /// pinned worker certificate).
    Tls(Arc<rustls::ClientConfig>),
    /// `--insecure` without `--worker-cert`: plain TCP.
    Plain,
}

impl std::fmt::Debug for RemoteSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RemoteSecurity::Tls(_) => "mutual TLS (pinned worker)",
            RemoteSecurity::Plain => "plain TCP (--insecure)",
        })
    }
}

impl RemoteSecurity {
    /// Attests this CVM (evidence bound to a fresh TLS key) and pins the
    /// worker certificate in `worker_cert_pem`.
    pub fn mutual_tls(attestation: AttesterChoice, worker_cert_pem: &Path) -> anyhow::Result<Self> {
        let pinned = CertificateDer::from_pem_file(worker_cert_pem)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("reading the worker certificate --worker-cert {}", worker_cert_pem.display()))?;
        let attester = attestation.build().context("attesting this CVM for the worker link")?;
        let identity = AttestedIdentity::generate(attester.as_ref(), &["talaria-cvm".to_string()])
            .context("making the CVM's attested TLS identity")?;
        Ok(Self::Tls(identity.client_config_pinned(pinned.as_ref())))
    }

    /// One connection attempt (TCP connect, then the TLS handshake).
    pub fn connect(&self, addr: &WorkerAddress, timeout: Duration) -> talaria_transport::Result<Box<dyn Connection>> {
        Ok(match (self, addr) {
            (RemoteSecurity::Tls(config), WorkerAddress::Tcp { host, .. }) => {
                Box::new(TcpConnection::connect_tls(&addr.socket_addr_string(), host, config.clone(), timeout)?)
            }
            // TLS asked for an address it cannot wrap: refused, never a
            // silent plain connection.
            (RemoteSecurity::Tls(_), WorkerAddress::Shm(path)) => {
                return Err(talaria_transport::TransportError::Tls(format!(
                    "mutual TLS needs a TCP worker address, not the shared-memory region {}",
                    path.display()
                )))
            }
            (RemoteSecurity::Plain, _) => addr.connect(timeout)?,
        })
    }
}
