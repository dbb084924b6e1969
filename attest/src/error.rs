use std::fmt;

use thiserror::Error;

/// Producing evidence failed.
#[derive(Debug, Error)]
pub enum AttestError {
    #[error("{0}")]
    Unavailable(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("{0}")]
    Other(String),
}

/// Why evidence was refused. Each variant names one cause, so a client can
/// tell a stale nonce from an unbound key or a forged report.
///
/// `Debug` is "attestation refused: " and the `Display` text: rustls prints
/// a verifier's `CertificateError::Other` with `Debug`, and that is what
/// lands in the logs of a refused handshake.
#[derive(Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("simulated attestation refused: it proves nothing (pass --allow-simulated for development only)")]
    SimulatedRefused,
    #[error("bad signature: {0}")]
    BadSignature(String),
    #[error("launch measurement {got} is not in the policy's allow-list")]
    WrongMeasurement { got: String },
    #[error("TCB too low: {0}")]
    TcbTooLow(String),
    #[error("the report does not carry this nonce (stale or replayed evidence)")]
    StaleNonce,
    #[error("the report is not bound to this TLS key (certificate key hash differs)")]
    KeyNotBound,
    #[error("the policy has no entry for {0} evidence")]
    NoPolicyFor(String),
    #[error("malformed evidence: {0}")]
    Malformed(String),
}

impl fmt::Debug for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "attestation refused: {self}")
    }
}
