//! rustls certificate verifiers: the key binding replaces hostname and CA
//! checks, so each verifier accepts a certificate by its evidence or by
//! byte equality, then checks handshake signatures with the provider's
//! algorithms. Refusals are invalid-certificate errors whose cause (a
//! `VerifyError`, downcastable) is in the text for the peer's log.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError, SignatureScheme};

use super::verify_certificate;
use crate::Policy;

/// The one crypto provider this crate uses (never the process-global one).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn algorithms() -> WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

fn system_time(t: UnixTime) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(t.as_secs())
}

/// What a certificate must pass: evidence under a policy, or byte equality.
#[derive(Debug)]
enum Acceptance {
    Attested(Box<Policy>),
    Pinned(Vec<u8>),
}

impl Acceptance {
    fn check(&self, cert: &CertificateDer<'_>, now: UnixTime, peer: &'static str) -> Result<(), Error> {
        match self {
            Acceptance::Attested(policy) => {
                verify_certificate(cert.as_ref(), policy, system_time(now)).map(|_| ()).map_err(attestation_refused)
            }
            Acceptance::Pinned(der) if der[..] == *cert.as_ref() => Ok(()),
            Acceptance::Pinned(_) => Err(Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(NotPinned(peer)))))),
        }
    }
}

/// A certificate that is not the pinned one (`Debug` is the message, as
/// rustls prints it with `Debug`).
#[derive(thiserror::Error)]
#[error("{0} certificate is not the pinned one")]
struct NotPinned(&'static str);

impl std::fmt::Debug for NotPinned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

/// A refusal: an invalid certificate (rustls sends the peer a
/// `certificate_unknown` alert for `CertificateError::Other`, not the
/// `internal_error` of `Error::General`). The caller can
/// downcast the `OtherError`'s inner error to the `VerifyError`; rustls
/// prints it with `Debug`, which for `VerifyError` is
/// "attestation refused: " and its `Display` text.
fn attestation_refused(e: crate::VerifyError) -> Error {
    Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

/// Accepts a server certificate by [`Acceptance`]; records the accepted DER.
#[derive(Debug)]
pub struct ServerVerifier {
    acceptance: Acceptance,
    seen: Option<Arc<Mutex<Option<Vec<u8>>>>>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerVerifier {
    pub fn attested(policy: Policy, seen: Arc<Mutex<Option<Vec<u8>>>>) -> Self {
        ServerVerifier { acceptance: Acceptance::Attested(Box::new(policy)), seen: Some(seen), algs: algorithms() }
    }

    pub fn pinned(der: &[u8]) -> Self {
        ServerVerifier { acceptance: Acceptance::Pinned(der.to_vec()), seen: None, algs: algorithms() }
    }
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.acceptance.check(end_entity, now, "server")?;
        if let Some(seen) = &self.seen {
            *seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(end_entity.to_vec());
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Requires a client certificate whose evidence passes the policy.
#[derive(Debug)]
pub struct AttestedClientVerifier {
    acceptance: Acceptance,
    algs: WebPkiSupportedAlgorithms,
}

impl AttestedClientVerifier {
    pub fn new(policy: Policy) -> Self {
        AttestedClientVerifier { acceptance: Acceptance::Attested(Box::new(policy)), algs: algorithms() }
    }
}

impl ClientCertVerifier for AttestedClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.acceptance.check(end_entity, now, "client")?;
        Ok(ClientCertVerified::assertion())
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}
