//! Simulated evidence: the published-key signature and the executable hash.

use super::{check_measurement, check_report_data, Verified};
use crate::simulated_report::SimulatedReport;
use crate::{Evidence, ReportData, SimulatedPolicy, TeeKind, VerifyError};

pub(super) fn verify(ev: &Evidence, policy: &SimulatedPolicy, expected: &ReportData) -> Result<Verified, VerifyError> {
    let r = SimulatedReport::verify(&ev.report)?;
    check_report_data(&r.report_data, expected)?;
    check_measurement(&r.measurement, &policy.measurements)?;
    Ok(Verified {
        kind: TeeKind::Simulated,
        measurement: hex::encode(r.measurement),
        tcb: "SIMULATED: no TEE, signed by a published key, proves nothing".into(),
        report_data: ReportData(r.report_data),
    })
}
