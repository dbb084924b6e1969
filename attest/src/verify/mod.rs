//! Checking evidence against a policy and the expected report data.

mod simulated;
mod snp;
mod tdx;

use std::time::SystemTime;

use crate::{Evidence, Policy, ReportData, TeeKind, VerifyError};

/// What a successful verification established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub kind: TeeKind,
    /// Hex of the launch measurement (SNP MEASUREMENT, TDX MRTD).
    pub measurement: String,
    /// Human-readable TCB summary.
    pub tcb: String,
    /// The report data the evidence carries (equal to the expected one).
    pub report_data: ReportData,
}

/// Verifies `evidence` (signature chain to the pinned vendor root,
/// measurement and TCB against `policy`) and that it carries `expected`.
pub fn verify(evidence: &Evidence, policy: &Policy, expected: &ReportData, now: SystemTime) -> Result<Verified, VerifyError> {
    match evidence.kind {
        TeeKind::SevSnp => {
            let p = policy.sev_snp.as_ref().ok_or_else(|| VerifyError::NoPolicyFor("sev-snp".into()))?;
            snp::verify(evidence, p, expected, now)
        }
        TeeKind::Tdx => {
            let p = policy.tdx.as_ref().ok_or_else(|| VerifyError::NoPolicyFor("tdx".into()))?;
            tdx::verify(evidence, p, expected, now)
        }
        TeeKind::Simulated => {
            if !policy.allow_simulated {
                return Err(VerifyError::SimulatedRefused);
            }
            let p = policy.simulated.as_ref().ok_or_else(|| VerifyError::NoPolicyFor("simulated".into()))?;
            simulated::verify(evidence, p, expected)
        }
    }
}

/// Compares the signed report data with the expected one, half by half.
fn check_report_data(got: &[u8; 64], expected: &ReportData) -> Result<(), VerifyError> {
    if got[..32] != *expected.key_hash() {
        return Err(VerifyError::KeyNotBound);
    }
    if got[32..] != *expected.nonce_hash() {
        return Err(VerifyError::StaleNonce);
    }
    Ok(())
}

/// Refuses a measurement outside the allow-list.
fn check_measurement(got: &[u8; 48], allowed: &[crate::Measurement]) -> Result<(), VerifyError> {
    if allowed.iter().any(|m| m.0 == *got) {
        Ok(())
    } else {
        Err(VerifyError::WrongMeasurement { got: hex::encode(got) })
    }
}
