//! SEV-SNP reports: VCEK chain to AMD's pinned roots, report signature,
//! measurement, TCB and debug policy. Signatures are checked by the `sev`
//! crate; it does not compare the VCEK's X.509 extensions (the TCB and chip
//! it was issued for) with the report, so that is done here: a VCEK for an
//! older, vulnerable TCB must not vouch for a report claiming a newer one.

use sev::certs::snp::{builtin, ca, Certificate, Chain, Verifiable};
use sev::firmware::guest::AttestationReport;
use sev::firmware::host::TcbVersion;
use sev::parser::ByteParser;
use std::time::SystemTime;
use x509_parser::asn1_rs::{FromDer, OctetString};
use x509_parser::prelude::X509Certificate;

use super::{check_measurement, check_report_data, Verified};
use crate::{Evidence, ReportData, SnpMinTcb, SnpPolicy, TeeKind, VerifyError};

/// The report bytes the signature covers (AMD SEV-SNP ABI, table 23).
const SIGNED_LEN: usize = 0x2a0;

pub(super) fn verify(ev: &Evidence, policy: &SnpPolicy, expected: &ReportData, now: SystemTime) -> Result<Verified, VerifyError> {
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
    // KEY_INFO.SIGNING_KEY: 0 is the VCEK (1 the VLEK, 7 none). Only a VCEK is
    // accepted, and it is the certificate just checked.
    let signing_key = report.key_info.signing_key();
    if signing_key != SIGNING_KEY_VCEK {
        return Err(VerifyError::BadSignature(format!(
            "SEV-SNP report: KEY_INFO.SIGNING_KEY is {signing_key}, not 0 (VCEK); only VCEK-signed reports are accepted"
        )));
    }
    check_validity(&ev.endorsements, now)?;
    let claims = VcekClaims::parse(&ev.endorsements)?;
    claims.check(&report.reported_tcb, &report.chip_id)?;
    check_report_data(&report.report_data, expected)?;
    let (debug, summary) = check_claims(&report, policy, generation)?;
    Ok(Verified {
        kind: TeeKind::SevSnp,
        measurement: hex::encode(report.measurement),
        tcb: format!("{summary}; VMPL {}{}", report.vmpl, if debug { "; DEBUG allowed" } else { "" }),
        report_data: ReportData(report.report_data),
    })
}

/// The policy's checks of a report whose signature and VCEK were verified:
/// measurement, TCB minimums, VMPL, and the guest policy's debug and
/// migration-agent bits. Returns whether debugging is allowed, and a
/// summary of the reported TCB.
fn check_claims(report: &AttestationReport, policy: &SnpPolicy, generation: &str) -> Result<(bool, String), VerifyError> {
    check_measurement(&report.measurement, &policy.measurements)?;
    let tcb = &report.reported_tcb;
    let fmc = tcb.fmc.map(|f| format!("fmc {f}, ")).unwrap_or_default();
    let summary =
        format!("{generation}: {fmc}bootloader {}, tee {}, snp {}, microcode {}", tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode);
    // The launch TCB too: a guest launched on firmware below the minimum
    // made its keys there, and a later hot update raises only the reported
    // (and committed) TCB.
    for (which, tcb) in [("reported", &report.reported_tcb), ("committed", &report.committed_tcb), ("launch", &report.launch_tcb)] {
        policy.min_tcb.check(which, tcb)?;
    }
    if !policy.allowed_vmpls.contains(&report.vmpl) {
        return Err(VerifyError::TcbTooLow(format!(
            "the report was requested at VMPL {}; the policy allows VMPL {:?} (`allowed_vmpls`)",
            report.vmpl, policy.allowed_vmpls
        )));
    }
    let debug = report.policy.debug_allowed();
    if debug && !policy.allow_debug {
        return Err(VerifyError::TcbTooLow(
            "the guest policy allows debugging (the host can read guest memory); the policy does not set allow_debug".into(),
        ));
    }
    // The host sets the guest policy at launch, outside MEASUREMENT: a
    // migration agent it supplies could export the guest's memory, keys
    // included (TDX's verifier refuses migratable TDs likewise).
    if report.policy.migrate_ma_allowed() {
        return Err(VerifyError::TcbTooLow(
            "the guest policy allows a migration agent (which could export guest memory); Talaria refuses it".into(),
        ));
    }
    Ok((debug, summary))
}

impl SnpMinTcb {
    /// Each component of `tcb` at least the minimum (FMC only where the
    /// TCB has one: Turin).
    fn check(&self, which: &str, tcb: &TcbVersion) -> Result<(), VerifyError> {
        let fmc_low = tcb.fmc.is_some_and(|f| f < self.fmc);
        if fmc_low || tcb.bootloader < self.bootloader || tcb.tee < self.tee || tcb.snp < self.snp || tcb.microcode < self.microcode {
            let fmc = tcb.fmc.map(|f| format!("fmc {f}, ")).unwrap_or_default();
            return Err(VerifyError::TcbTooLow(format!(
                "{which} TCB {fmc}bootloader {}, tee {}, snp {}, microcode {}; policy minimum fmc {}, bootloader {}, tee {}, snp {}, microcode {}",
                tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode, self.fmc, self.bootloader, self.tee, self.snp, self.microcode
            )));
        }
        Ok(())
    }
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

/// KEY_INFO.SIGNING_KEY of a VCEK-signed report (AMD SEV-SNP ABI, table 23).
const SIGNING_KEY_VCEK: u32 = 0;

/// AMD's VCEK extensions (AMD "Versioned Chip Endorsement Key (VCEK)
/// Certificate and KDS Interface Specification", table 8).
const OID_BL_SPL: &str = "1.3.6.1.4.1.3704.1.3.1";
const OID_TEE_SPL: &str = "1.3.6.1.4.1.3704.1.3.2";
const OID_SNP_SPL: &str = "1.3.6.1.4.1.3704.1.3.3";
const OID_UCODE_SPL: &str = "1.3.6.1.4.1.3704.1.3.8";
const OID_FMC_SPL: &str = "1.3.6.1.4.1.3704.1.3.9";
const OID_HW_ID: &str = "1.3.6.1.4.1.3704.1.4";

/// The VCEK must be within its validity period at `now` (the `sev` crate
/// checks signatures only): an expired VCEK belongs to a retired key.
fn check_validity(der: &[u8], now: SystemTime) -> Result<(), VerifyError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| VerifyError::Malformed(format!("VCEK certificate: {e}")))?;
    let secs = now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let v = cert.validity();
    if secs < v.not_before.timestamp() || secs > v.not_after.timestamp() {
        return Err(VerifyError::BadSignature(format!(
            "VCEK certificate is not valid at this time (valid from {} to {})",
            v.not_before, v.not_after
        )));
    }
    Ok(())
}

/// What a VCEK certifies: the TCB (security patch levels) and the chip it
/// was derived for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct VcekClaims {
    pub bootloader: u8,
    pub tee: u8,
    pub snp: u8,
    pub microcode: u8,
    /// fmcSPL, only in Turin VCEKs.
    pub fmc: Option<u8>,
    /// hwID: 64 bytes (Milan, Genoa) or 8 (Turin).
    pub hw_id: Vec<u8>,
}

impl VcekClaims {
    /// Reads the AMD extensions of a VCEK (DER). The SPLs are DER INTEGERs
    /// in the extension value; hwID is the chip id's bytes.
    pub(crate) fn parse(der: &[u8]) -> Result<Self, VerifyError> {
        let malformed = |what: String| VerifyError::Malformed(format!("VCEK certificate: {what}"));
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| malformed(format!("{e}")))?;
        let value = |oid: &str| -> Result<Option<&[u8]>, VerifyError> {
            let mut found = cert.extensions().iter().filter(|x| x.oid.to_id_string() == oid);
            match (found.next(), found.next()) {
                (None, _) => Ok(None),
                (Some(x), None) => Ok(Some(x.value)),
                (Some(_), Some(_)) => Err(malformed(format!("extension {oid} appears more than once"))),
            }
        };
        let spl = |oid: &str, name: &str| -> Result<Option<u8>, VerifyError> {
            let Some(v) = value(oid)? else { return Ok(None) };
            match u8::from_der(v) {
                Ok(([], n)) => Ok(Some(n)),
                _ => Err(malformed(format!("extension {name} ({oid}) is not a DER INTEGER from 0 to 255"))),
            }
        };
        let required = |oid: &str, name: &str| -> Result<u8, VerifyError> {
            spl(oid, name)?.ok_or_else(|| malformed(format!("no {name} extension ({oid}); not an AMD VCEK")))
        };
        let hw_id = value(OID_HW_ID)?.ok_or_else(|| malformed(format!("no hwID extension ({OID_HW_ID}); not an AMD VCEK")))?;
        Ok(VcekClaims {
            bootloader: required(OID_BL_SPL, "blSPL")?,
            tee: required(OID_TEE_SPL, "teeSPL")?,
            snp: required(OID_SNP_SPL, "snpSPL")?,
            microcode: required(OID_UCODE_SPL, "ucodeSPL")?,
            fmc: spl(OID_FMC_SPL, "fmcSPL")?,
            hw_id: hw_id.to_vec(),
        })
    }

    /// Requires the report's REPORTED_TCB to be the TCB this VCEK was issued
    /// for, and its CHIP_ID (unless masked to zero) to be this VCEK's chip.
    pub(crate) fn check(&self, reported: &TcbVersion, chip_id: &[u8; 64]) -> Result<(), VerifyError> {
        let ours = (self.fmc, self.bootloader, self.tee, self.snp, self.microcode);
        let theirs = (reported.fmc, reported.bootloader, reported.tee, reported.snp, reported.microcode);
        if ours != theirs {
            let fmt = |(fmc, bl, tee, snp, uc): (Option<u8>, u8, u8, u8, u8)| {
                let fmc = fmc.map(|f| format!("fmc {f}, ")).unwrap_or_default();
                format!("{fmc}bootloader {bl}, tee {tee}, snp {snp}, microcode {uc}")
            };
            return Err(VerifyError::BadSignature(format!(
                "VCEK TCB ({}) does not match the report's REPORTED_TCB ({}): the VCEK was issued for another TCB",
                fmt(ours),
                fmt(theirs)
            )));
        }
        if chip_id.iter().all(|&b| b == 0) {
            return Ok(()); // MaskChipId: the report carries no chip id to compare
        }
        if !self.hw_id_matches(chip_id) {
            return Err(VerifyError::BadSignature(format!(
                "VCEK hwID {} does not match the report's CHIP_ID {}: the VCEK is another chip's",
                hex::encode(&self.hw_id),
                hex::encode(chip_id)
            )));
        }
        Ok(())
    }

    /// The hwID is the extension value's bytes (as AMD's KDS issues it), or
    /// the contents of an OCTET STRING there; 64 bytes, or 8 for Turin (the
    /// report's CHIP_ID then has zeros after them).
    fn hw_id_matches(&self, chip_id: &[u8; 64]) -> bool {
        let unwrapped = match OctetString::from_der(&self.hw_id) {
            Ok(([], o)) => Some(o.as_cow().to_vec()),
            _ => None,
        };
        [Some(self.hw_id.clone()), unwrapped].into_iter().flatten().any(|id| match id.len() {
            64 => id[..] == chip_id[..],
            8 => id[..] == chip_id[..8] && chip_id[8..].iter().all(|&b| b == 0),
            _ => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VCEK: &[u8] = include_bytes!("../../tests/data/snp_vcek_milan.der");
    const REPORT_HEX: &str = include_str!("../../tests/data/snp_report_milan.hex");

    fn report() -> AttestationReport {
        AttestationReport::from_bytes(&hex::decode(REPORT_HEX.trim()).unwrap()).unwrap()
    }

    fn tcb(fmc: Option<u8>, bootloader: u8, tee: u8, snp: u8, microcode: u8) -> TcbVersion {
        TcbVersion { fmc, bootloader, tee, snp, microcode }
    }

    fn claims_policy(r: &AttestationReport) -> SnpPolicy {
        SnpPolicy { measurements: vec![crate::Measurement(r.measurement)], ..SnpPolicy::default() }
    }

    /// The sample's guest policy (0x30000) allows neither debugging nor a
    /// migration agent; each, set, is refused (debugging only without
    /// `allow_debug`).
    #[test]
    fn debug_and_migration_agent_policies_are_refused() {
        let r = report();
        check_claims(&r, &claims_policy(&r), "Milan").unwrap();
        let mut debug = report();
        debug.policy.set_debug_allowed(true);
        let e = check_claims(&debug, &claims_policy(&debug), "Milan").unwrap_err();
        assert!(matches!(&e, VerifyError::TcbTooLow(m) if m.contains("debugging")), "{e}");
        let (allowed, _) = check_claims(&debug, &SnpPolicy { allow_debug: true, ..claims_policy(&debug) }, "Milan").unwrap();
        assert!(allowed);
        let mut ma = report();
        ma.policy.set_migrate_ma_allowed(true);
        let e = check_claims(&ma, &SnpPolicy { allow_debug: true, ..claims_policy(&ma) }, "Milan").unwrap_err();
        assert!(matches!(&e, VerifyError::TcbTooLow(m) if m.contains("migration agent")), "{e}");
    }

    /// The minimum holds for the launch and committed TCBs, not only the
    /// reported one: a guest launched below it made its keys there.
    #[test]
    fn a_launch_or_committed_tcb_below_the_minimum_is_refused() {
        let min = SnpMinTcb { microcode: 0x73, bootloader: 3, snp: 8, ..Default::default() };
        let r = report();
        let policy = SnpPolicy { min_tcb: min, ..claims_policy(&r) };
        check_claims(&r, &policy, "Milan").unwrap();
        for which in ["launch", "committed"] {
            let mut low = report();
            let t = if which == "launch" { &mut low.launch_tcb } else { &mut low.committed_tcb };
            t.microcode = 0x10;
            let e = check_claims(&low, &policy, "Milan").unwrap_err();
            assert!(matches!(&e, VerifyError::TcbTooLow(m) if m.starts_with(which)), "{which}: {e}");
        }
        // An FMC minimum binds only TCBs that have an FMC (Turin).
        let fmc = SnpMinTcb { fmc: 5, ..min };
        fmc.check("reported", &tcb(None, 3, 0, 8, 0x73)).unwrap();
        fmc.check("reported", &tcb(Some(5), 3, 0, 8, 0x73)).unwrap();
        assert!(fmc.check("reported", &tcb(Some(4), 3, 0, 8, 0x73)).is_err());
    }

    #[test]
    fn the_real_milan_vcek_extensions_are_parsed() {
        let c = VcekClaims::parse(VCEK).unwrap();
        assert_eq!((c.bootloader, c.tee, c.snp, c.microcode, c.fmc), (3, 0, 8, 0x73, None));
        assert_eq!(c.hw_id.len(), 64);
        let r = report();
        assert_eq!(c.hw_id[..], r.chip_id[..], "the sample VCEK is the sample report's chip");
        c.check(&r.reported_tcb, &r.chip_id).unwrap();
        assert_eq!(r.key_info.signing_key(), SIGNING_KEY_VCEK);
        assert_eq!(r.vmpl, 0);
    }

    #[test]
    fn a_reported_tcb_other_than_the_vceks_is_refused() {
        let c = VcekClaims::parse(VCEK).unwrap();
        let chip = report().chip_id;
        c.check(&tcb(None, 3, 0, 8, 0x73), &chip).unwrap();
        for (other, field) in [
            (tcb(None, 4, 0, 8, 0x73), "bootloader"),
            (tcb(None, 3, 1, 8, 0x73), "tee"),
            (tcb(None, 3, 0, 9, 0x73), "snp"),
            (tcb(None, 3, 0, 8, 0x74), "microcode"),
            (tcb(None, 2, 0, 8, 0x73), "bootloader (lower)"),
            (tcb(Some(0), 3, 0, 8, 0x73), "fmc"),
        ] {
            let e = c.check(&other, &chip).unwrap_err();
            assert!(matches!(&e, VerifyError::BadSignature(m) if m.contains("VCEK TCB") && m.contains("does not match")), "{field}: {e}");
        }
    }

    #[test]
    fn a_turin_vcek_needs_the_reported_fmc() {
        let mut c = VcekClaims::parse(VCEK).unwrap();
        c.fmc = Some(1);
        c.hw_id = vec![0xaa; 8];
        let mut chip = [0u8; 64];
        chip[..8].copy_from_slice(&[0xaa; 8]);
        c.check(&tcb(Some(1), 3, 0, 8, 0x73), &chip).unwrap();
        assert!(c.check(&tcb(Some(2), 3, 0, 8, 0x73), &chip).is_err());
        assert!(c.check(&tcb(None, 3, 0, 8, 0x73), &chip).is_err());
        chip[9] = 1;
        assert!(c.check(&tcb(Some(1), 3, 0, 8, 0x73), &chip).is_err(), "an 8-byte hwID covers the whole CHIP_ID");
    }

    #[test]
    fn another_chip_is_refused_and_a_masked_chip_id_is_skipped() {
        let c = VcekClaims::parse(VCEK).unwrap();
        let r = report();
        let mut other = r.chip_id;
        other[63] ^= 1;
        let e = c.check(&r.reported_tcb, &other).unwrap_err();
        assert!(matches!(&e, VerifyError::BadSignature(m) if m.contains("hwID")), "{e}");
        c.check(&r.reported_tcb, &[0; 64]).unwrap();
        // An hwID wrapped in an OCTET STRING is read too.
        let mut wrapped = c.clone();
        wrapped.hw_id = [&[0x04, 0x40][..], &r.chip_id[..]].concat();
        wrapped.check(&r.reported_tcb, &r.chip_id).unwrap();
    }

    #[test]
    fn a_certificate_without_the_amd_extensions_is_malformed() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".to_string()]).unwrap().self_signed(&key).unwrap();
        let e = VcekClaims::parse(cert.der()).unwrap_err();
        assert!(matches!(&e, VerifyError::Malformed(m) if m.contains("hwID") || m.contains("SPL")), "{e}");
        assert!(matches!(VcekClaims::parse(b"not DER"), Err(VerifyError::Malformed(_))));
    }
}
