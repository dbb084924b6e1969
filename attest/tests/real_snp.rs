//! A real SEV-SNP report (Milan) and its VCEK, from the `sev` crate's test
//! data (tests/data/README.md), verified against AMD's pinned roots.

use std::path::Path;
use std::time::SystemTime;

use talaria_attest::{verify, Evidence, Measurement, Policy, ReportData, SnpMinTcb, SnpPolicy, TeeKind, VerifyError};

fn data(name: &str) -> Option<Vec<u8>> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name);
    match std::fs::read(&p) {
        Ok(b) => Some(b),
        // The samples ship with the repository: a missing one is a failure.
        Err(e) => panic!("{}: {e} (see tests/data/README.md)", p.display()),
    }
}

/// The evidence, and the measurement and report data it carries (read at
/// their ABI offsets: MEASUREMENT 0x90, REPORT_DATA 0x50).
fn sample() -> Option<(Evidence, [u8; 48], ReportData)> {
    let hex_text = data("snp_report_milan.hex")?;
    let report = hex::decode(String::from_utf8(hex_text).unwrap().trim()).unwrap();
    let vcek = data("snp_vcek_milan.der")?;
    let measurement: [u8; 48] = report[0x90..0xc0].try_into().unwrap();
    let report_data = ReportData(report[0x50..0x90].try_into().unwrap());
    Some((Evidence { kind: TeeKind::SevSnp, report, endorsements: vcek }, measurement, report_data))
}

fn policy(measurement: [u8; 48], min_tcb: SnpMinTcb) -> Policy {
    // The sample report is from VMPL 0 (the default `allowed_vmpls`), and
    // its guest policy allows no debugging.
    Policy::default().with_sev_snp(SnpPolicy { measurements: vec![Measurement(measurement)], min_tcb, ..SnpPolicy::default() })
}

#[test]
fn a_real_report_verifies_against_the_pinned_amd_chain() {
    let Some((ev, m, rd)) = sample() else { return };
    let v = verify(&ev, &policy(m, SnpMinTcb::default()), &rd, SystemTime::now()).unwrap();
    assert_eq!(v.kind, TeeKind::SevSnp);
    assert_eq!(v.measurement, hex::encode(m));
    assert!(v.tcb.starts_with("Milan") && v.tcb.contains("VMPL 0"), "{}", v.tcb);
}

#[test]
fn a_vmpl_outside_the_policy_is_refused() {
    let Some((ev, m, rd)) = sample() else { return };
    assert_eq!(u32::from_le_bytes(ev.report[0x30..0x34].try_into().unwrap()), 0, "the sample is from VMPL 0");
    let mut p = policy(m, SnpMinTcb::default());
    p.sev_snp.as_mut().unwrap().allowed_vmpls = vec![1, 2];
    let e = verify(&ev, &p, &rd, SystemTime::now()).unwrap_err();
    assert!(matches!(&e, VerifyError::TcbTooLow(m) if m.contains("VMPL 0")), "{e}");
    p.sev_snp.as_mut().unwrap().allowed_vmpls = vec![0, 2];
    verify(&ev, &p, &rd, SystemTime::now()).unwrap();
}

#[test]
fn the_default_snp_policy_allows_only_vmpl_0() {
    assert_eq!(SnpPolicy::default().allowed_vmpls, [0]);
}

#[test]
fn a_flipped_report_byte_is_a_bad_signature() {
    let Some((ev, m, rd)) = sample() else { return };
    // A byte of the measurement, then of the report data: both signed.
    for offset in [0x90 + 5, 0x50 + 3] {
        let mut bad = ev.clone();
        bad.report[offset] ^= 0x80;
        let e = verify(&bad, &policy(m, SnpMinTcb::default()), &rd, SystemTime::now()).unwrap_err();
        assert!(matches!(e, VerifyError::BadSignature(_)), "offset {offset:#x}: {e}");
    }
    // The reserved word at 0x4C must be zero: refused before any signature check.
    let mut bad = ev.clone();
    bad.report[0x4c] ^= 0x80;
    let e = verify(&bad, &policy(m, SnpMinTcb::default()), &rd, SystemTime::now()).unwrap_err();
    assert!(matches!(e, VerifyError::Malformed(_)), "{e}");
}

#[test]
fn a_vcek_not_from_amd_is_refused() {
    let Some((mut ev, m, rd)) = sample() else { return };
    let n = ev.endorsements.len();
    ev.endorsements[n - 10] ^= 1; // inside the certificate's signature
    let e = verify(&ev, &policy(m, SnpMinTcb::default()), &rd, SystemTime::now()).unwrap_err();
    assert!(matches!(e, VerifyError::BadSignature(_) | VerifyError::Malformed(_)), "{e}");
}

#[test]
fn another_measurement_is_refused() {
    let Some((ev, _, rd)) = sample() else { return };
    let e = verify(&ev, &policy([0xab; 48], SnpMinTcb::default()), &rd, SystemTime::now()).unwrap_err();
    assert!(matches!(e, VerifyError::WrongMeasurement { .. }), "{e}");
}

#[test]
fn a_tcb_below_the_minimum_is_refused() {
    let Some((ev, m, rd)) = sample() else { return };
    let min = SnpMinTcb { snp: 255, ..SnpMinTcb::default() };
    let e = verify(&ev, &policy(m, min), &rd, SystemTime::now()).unwrap_err();
    assert!(matches!(e, VerifyError::TcbTooLow(_)), "{e}");
}

#[test]
fn other_report_data_is_not_bound() {
    let Some((ev, m, rd)) = sample() else { return };
    let mut other_key = rd;
    other_key.0[0] ^= 1;
    assert_eq!(verify(&ev, &policy(m, SnpMinTcb::default()), &other_key, SystemTime::now()), Err(VerifyError::KeyNotBound));
    let mut other_nonce = rd;
    other_nonce.0[40] ^= 1;
    assert_eq!(verify(&ev, &policy(m, SnpMinTcb::default()), &other_nonce, SystemTime::now()), Err(VerifyError::StaleNonce));
}

#[test]
fn no_snp_policy_is_no_policy() {
    let Some((ev, _, rd)) = sample() else { return };
    assert!(matches!(verify(&ev, &Policy::default(), &rd, SystemTime::now()), Err(VerifyError::NoPolicyFor(_))));
}

#[test]
fn a_vcek_outside_its_validity_is_refused() {
    let Some((ev, m, rd)) = sample() else { return };
    // The sample VCEK is valid from 2023-04-03 to 2030-04-03.
    let later = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_956_528_000); // 2032
    let e = verify(&ev, &policy(m, SnpMinTcb::default()), &rd, later).unwrap_err();
    assert!(matches!(&e, VerifyError::BadSignature(msg) if msg.contains("not valid at this time")), "{e}");
    let earlier = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_640_995_200); // 2022
    assert!(verify(&ev, &policy(m, SnpMinTcb::default()), &rd, earlier).is_err());
}
