//! The simulated report: a fixed binary layout signed with a PUBLISHED key.
//! It lets the whole trust chain run on machines without a TEE, and proves
//! nothing: anyone can sign one (the seed is below, on purpose).
//!
//! Layout (212 bytes, integers little-endian):
//!
//! | offset | size | field |
//! |--------|------|-------|
//! | 0      | 32   | marker `TALARIA SIMULATED INSECURE TEE\0\0` |
//! | 32     | 4    | version (1) |
//! | 36     | 64   | report data |
//! | 100    | 48   | measurement: SHA-384 of the attesting executable's file |
//! | 148    | 64   | Ed25519 signature of bytes 0..148 |

use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

use crate::VerifyError;

/// Published test seed: NOT a secret. Simulated evidence is forgeable by
/// anyone, which is why verifiers refuse it unless `--allow-simulated`.
pub const INSECURE_SIMULATED_SIGNING_SEED: [u8; 32] = *b"talaria-INSECURE-published-seed!";

pub const MARKER: [u8; 32] = *b"TALARIA SIMULATED INSECURE TEE\0\0";
pub const VERSION: u32 = 1;
const SIGNED_LEN: usize = 148;
pub const REPORT_LEN: usize = SIGNED_LEN + 64;

/// The fields of a simulated report.
pub struct SimulatedReport {
    pub report_data: [u8; 64],
    pub measurement: [u8; 48],
}

fn insecure_key() -> Ed25519KeyPair {
    Ed25519KeyPair::from_seed_unchecked(&INSECURE_SIMULATED_SIGNING_SEED).expect("a 32-byte seed is a valid Ed25519 seed")
}

impl SimulatedReport {
    pub fn sign(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(REPORT_LEN);
        out.extend_from_slice(&MARKER);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.report_data);
        out.extend_from_slice(&self.measurement);
        let sig = insecure_key().sign(&out);
        out.extend_from_slice(sig.as_ref());
        out
    }

    /// Parses and checks the signature with the published key.
    pub fn verify(bytes: &[u8]) -> Result<Self, VerifyError> {
        if bytes.len() != REPORT_LEN {
            return Err(VerifyError::Malformed(format!("a simulated report is {REPORT_LEN} bytes, got {}", bytes.len())));
        }
        let (signed, sig) = bytes.split_at(SIGNED_LEN);
        let public = insecure_key();
        UnparsedPublicKey::new(&ED25519, public.public_key().as_ref())
            .verify(signed, sig)
            .map_err(|_| VerifyError::BadSignature("simulated report: Ed25519 signature does not verify".into()))?;
        if signed[..32] != MARKER {
            return Err(VerifyError::Malformed("simulated report: marker missing".into()));
        }
        let version = u32::from_le_bytes([signed[32], signed[33], signed[34], signed[35]]);
        if version != VERSION {
            return Err(VerifyError::Malformed(format!("simulated report version {version}, expected {VERSION}")));
        }
        let mut report_data = [0u8; 64];
        report_data.copy_from_slice(&signed[36..100]);
        let mut measurement = [0u8; 48];
        measurement.copy_from_slice(&signed[100..148]);
        Ok(SimulatedReport { report_data, measurement })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_with_the_published_key() {
        let r = SimulatedReport { report_data: [7; 64], measurement: [9; 48] }.sign();
        assert_eq!(r.len(), REPORT_LEN);
        let back = SimulatedReport::verify(&r).unwrap();
        assert_eq!((back.report_data, back.measurement), ([7; 64], [9; 48]));
    }

    #[test]
    fn any_flipped_byte_is_refused() {
        let r = SimulatedReport { report_data: [7; 64], measurement: [9; 48] }.sign();
        for i in [0, 33, 40, 120, 150, REPORT_LEN - 1] {
            let mut bad = r.clone();
            bad[i] ^= 1;
            assert!(matches!(SimulatedReport::verify(&bad), Err(VerifyError::BadSignature(_))), "byte {i}");
        }
    }
}
