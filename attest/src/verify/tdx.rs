//! TDX quotes: verified offline by `dcap-qvl` (Intel's root pinned inside
//! it) against supplied collateral; then MRTD, RTMRs (required unless the
//! policy says "any"), debug and TCB status.

use std::time::{SystemTime, UNIX_EPOCH};

use dcap_qvl::quote::Quote;
use dcap_qvl::QuoteCollateralV3;

use super::{check_measurement, check_report_data, Verified};
use crate::{Evidence, ReportData, TdxPolicy, TeeKind, VerifyError};

/// TDATTRIBUTES bit 0: the TD is debuggable (the host can read it).
const TD_ATTRIBUTE_DEBUG: u8 = 1;

pub(super) fn verify(ev: &Evidence, policy: &TdxPolicy, expected: &ReportData, now: SystemTime) -> Result<Verified, VerifyError> {
    let collateral_json = if !ev.endorsements.is_empty() {
        &ev.endorsements[..]
    } else {
        policy.collateral_json.as_deref().ok_or_else(|| {
            VerifyError::Malformed("TDX evidence without collateral, and the policy names no `tdx.collateral` file".into())
        })?
    };
    let collateral: QuoteCollateralV3 =
        serde_json::from_slice(collateral_json).map_err(|e| VerifyError::Malformed(format!("TDX collateral: {e}")))?;
    Quote::parse(&ev.report).map_err(|e| VerifyError::Malformed(format!("TDX quote: {e:#}")))?;
    let now_secs = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let verified =
        dcap_qvl::verify::verify(&ev.report, &collateral, now_secs).map_err(|e| VerifyError::BadSignature(format!("TDX quote: {e:#}")))?;
    let td = verified.report.as_td10().ok_or_else(|| VerifyError::Malformed("the quote is an SGX enclave quote, not a TDX one".into()))?;
    check_report_data(&td.report_data, expected)?;
    check_measurement(&td.mr_td, &policy.mrtd)?;
    let rtmrs = [td.rt_mr0, td.rt_mr1, td.rt_mr2, td.rt_mr3];
    // MRTD is only the firmware: the kernel and application are in the
    // RTMRs, so they must be listed unless the policy says "any" (unsafe).
    if !policy.rtmrs_any && !policy.rtmrs.iter().any(|set| set.iter().zip(&rtmrs).all(|(want, got)| want.0 == *got)) {
        return Err(VerifyError::WrongMeasurement {
            got: format!(
                "RTMRs {}{}",
                rtmrs.iter().map(hex::encode).collect::<Vec<_>>().join(","),
                if policy.rtmrs.is_empty() { " (the policy lists no RTMR set)" } else { "" }
            ),
        });
    }
    let status = &verified.status;
    let advisories =
        if verified.advisory_ids.is_empty() { String::new() } else { format!(" (advisories {})", verified.advisory_ids.join(", ")) };
    if !policy.accepted_tcb_status.iter().any(|s| s == status) {
        return Err(VerifyError::TcbTooLow(format!(
            "TCB status {status}{advisories}; the policy accepts {:?}",
            policy.accepted_tcb_status
        )));
    }
    let debug = td.td_attributes[0] & TD_ATTRIBUTE_DEBUG != 0;
    // dcap-qvl refuses debuggable TDs already; refused here too, whatever
    // a later version of it does (there is no switch: a debug TD's memory
    // is readable by the host).
    if debug {
        return Err(VerifyError::TcbTooLow("the TD is debuggable (TDATTRIBUTES.DEBUG)".into()));
    }
    Ok(Verified {
        kind: TeeKind::Tdx,
        measurement: hex::encode(td.mr_td),
        tcb: format!(
            "TCB status {status}{advisories}{}{}",
            if debug { "; DEBUG TD" } else { "" },
            if policy.rtmrs_any {
                "; WARNING: RTMRs NOT CHECKED (policy rtmrs \"any\"): the OS and application are unverified"
            } else {
                ""
            }
        ),
        report_data: ReportData(td.report_data),
    })
}
