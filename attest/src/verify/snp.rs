//! SEV-SNP reports: VCEK chain to AMD's pinned roots, report signature,
//! measurement, TCB and debug policy. Checked by the `sev` crate.

use sev::certs::snp::{builtin, ca, Certificate, Chain, Verifiable};
use sev::firmware::guest::AttestationReport;
use sev::parser::ByteParser;

use super::{check_measurement, check_report_data, Verified};
use crate::{Evidence, ReportData, SnpPolicy, TeeKind, VerifyError};

/// The report bytes the signature covers (AMD SEV-SNP ABI, table 23).
const SIGNED_LEN: usize = 0x2a0;

pub(super) fn verify(ev: &Evidence, policy: &SnpPolicy, expected: &ReportData) -> Result<Verified, VerifyError> {
    let report = AttestationReport::from_bytes(&ev.report).map_err(|e| VerifyError::Malformed(format!("SEV-SNP report: {e}")))?;
    if ev.endorsements.is_empty() {
        return Err(VerifyError::Malformed("SEV-SNP evidence without a VCEK certificate (the host supplied no certificate table)".into()));
    }
    let vcek = Certificate::from_der(&ev.endorsements).map_err(|e| VerifyError::Malformed(format!("VCEK certificate: {e}")))?;
    let generation = amd_chain_signing(&vcek)?;
    // The crate checks the signature over its re-encoding of the parsed
    // fields; insist that this is exactly the bytes received, so a changed
    // reserved byte cannot slip through.
    let canonical = report.to_bytes().map_err(|e| VerifyError::Malformed(format!("SEV-SNP report: {e}")))?;
    if ev.report.len() < SIGNED_LEN || canonical.get(..SIGNED_LEN) != ev.report.get(..SIGNED_LEN) {
        return Err(VerifyError::BadSignature("SEV-SNP report: signed bytes are not the canonical encoding of its fields".into()));
    }
    (&vcek, &report).verify().map_err(|e| VerifyError::BadSignature(format!("SEV-SNP report: {e}")))?;
    check_report_data(&report.report_data, expected)?;
    check_measurement(&report.measurement, &policy.measurements)?;
    let tcb = &report.reported_tcb;
    let min = &policy.min_tcb;
    let summary = format!("{generation}: bootloader {}, tee {}, snp {}, microcode {}", tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode);
    if tcb.bootloader < min.bootloader || tcb.tee < min.tee || tcb.snp < min.snp || tcb.microcode < min.microcode {
        return Err(VerifyError::TcbTooLow(format!(
            "reported TCB {summary}; policy minimum bootloader {}, tee {}, snp {}, microcode {}",
            min.bootloader, min.tee, min.snp, min.microcode
        )));
    }
    let debug = report.policy.debug_allowed();
    if debug && !policy.allow_debug {
        return Err(VerifyError::TcbTooLow(
            "the guest policy allows debugging (the host can read guest memory); the policy does not set allow_debug".into(),
        ));
    }
    Ok(Verified {
        kind: TeeKind::SevSnp,
        measurement: hex::encode(report.measurement),
        tcb: format!("{summary}{}", if debug { "; DEBUG allowed" } else { "" }),
        report_data: ReportData(report.report_data),
    })
}

/// Verifies ARK → ASK → VCEK against the crate's built-in AMD roots of each
/// product line; returns the line's name.
fn amd_chain_signing(vcek: &Certificate) -> Result<&'static str, VerifyError> {
    type Roots = fn() -> std::io::Result<Certificate>;
    let lines: [(&str, Roots, Roots); 3] = [
        ("Milan", builtin::milan::ark, builtin::milan::ask),
        ("Genoa", builtin::genoa::ark, builtin::genoa::ask),
        ("Turin", builtin::turin::ark, builtin::turin::ask),
    ];
    for (name, ark, ask) in lines {
        let (Ok(ark), Ok(ask)) = (ark(), ask()) else { continue };
        let chain = Chain { ca: ca::Chain { ark, ask }, vek: vcek.clone() };
        if (&chain).verify().is_ok() {
            return Ok(name);
        }
    }
    Err(VerifyError::BadSignature("the VCEK is not signed by AMD's ASK/ARK for Milan, Genoa or Turin".into()))
}
