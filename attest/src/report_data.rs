use sha2::{Digest, Sha256};

/// The 64 bytes of user data a report carries: the SHA-256 of the TLS
/// key's SubjectPublicKeyInfo, then the SHA-256 of the client's nonce (all
/// zero without one). Two halves, so a verifier names which one failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportData(pub [u8; 64]);

impl ReportData {
    pub fn bind(spki_der: &[u8], nonce: Option<&[u8]>) -> Self {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&Sha256::digest(spki_der));
        if let Some(n) = nonce {
            out[32..].copy_from_slice(&Sha256::new().chain_update(b"talaria-attestation-nonce-v1").chain_update(n).finalize());
        }
        ReportData(out)
    }

    pub fn key_hash(&self) -> &[u8] {
        &self.0[..32]
    }

    pub fn nonce_hash(&self) -> &[u8] {
        &self.0[32..]
    }
}
