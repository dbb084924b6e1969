//! Checking evidence against a policy and the expected report data.

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
}

/// Verifies `evidence` (signature chain to the pinned vendor root,
/// measurement and TCB against `policy`) and that it carries `expected`.
pub fn verify(_evidence: &Evidence, _policy: &Policy, _expected: &ReportData, _now: SystemTime) -> Result<Verified, VerifyError> {
    todo!("verification")
}
