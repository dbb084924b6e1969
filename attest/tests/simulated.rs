//! Simulated evidence end to end: attest, then verify under a policy.

use std::time::SystemTime;

use talaria_attest::attester::{measure_file, simulated_measurement_of, SimulatedAttester};
use talaria_attest::{verify, Attester, AttesterChoice, Policy, ReportData, TeeKind, VerifyError};

/// The test executable's hash, what simulated evidence reports (computed
/// independently of the attester, once).
fn this_exe_measurement() -> [u8; 48] {
    static M: std::sync::OnceLock<[u8; 48]> = std::sync::OnceLock::new();
    *M.get_or_init(|| measure_file(&std::env::current_exe().unwrap()).unwrap())
}

fn bound(key: &[u8], nonce: &[u8]) -> ReportData {
    ReportData::bind(key, Some(nonce))
}

#[test]
fn round_trip_reports_the_executables_hash() {
    let a = SimulatedAttester::new().unwrap();
    let rd = bound(b"spki", b"nonce-1");
    let ev = a.attest(&rd).unwrap();
    assert_eq!(ev.kind, TeeKind::Simulated);
    let v = verify(&ev, &Policy::simulated_only(this_exe_measurement()), &rd, SystemTime::now()).unwrap();
    assert_eq!(v.measurement, simulated_measurement_of(&std::env::current_exe().unwrap()).unwrap());
    assert_eq!(v.report_data, rd);
    assert!(v.tcb.contains("SIMULATED"), "{}", v.tcb);
}

#[test]
fn evidence_survives_its_byte_encoding() {
    let ev = SimulatedAttester::new().unwrap().attest(&bound(b"k", b"n")).unwrap();
    assert_eq!(talaria_attest::Evidence::from_bytes(&ev.to_bytes()).unwrap(), ev);
}

#[test]
fn another_measurement_is_refused() {
    let rd = bound(b"spki", b"n");
    let ev = SimulatedAttester::new().unwrap().attest(&rd).unwrap();
    let e = verify(&ev, &Policy::simulated_only([0u8; 48]), &rd, SystemTime::now()).unwrap_err();
    assert_eq!(e, VerifyError::WrongMeasurement { got: hex::encode(this_exe_measurement()) });
}

#[test]
fn a_replayed_report_is_a_stale_nonce() {
    let ev = SimulatedAttester::new().unwrap().attest(&bound(b"spki", b"old nonce")).unwrap();
    let e = verify(&ev, &Policy::simulated_only(this_exe_measurement()), &bound(b"spki", b"fresh nonce"), SystemTime::now());
    assert_eq!(e, Err(VerifyError::StaleNonce));
}

#[test]
fn evidence_for_another_key_is_not_bound() {
    let ev = SimulatedAttester::new().unwrap().attest(&bound(b"their key", b"n")).unwrap();
    let e = verify(&ev, &Policy::simulated_only(this_exe_measurement()), &bound(b"our key", b"n"), SystemTime::now());
    assert_eq!(e, Err(VerifyError::KeyNotBound));
}

#[test]
fn a_flipped_byte_is_a_bad_signature() {
    let rd = bound(b"spki", b"n");
    let mut ev = SimulatedAttester::new().unwrap().attest(&rd).unwrap();
    ev.report[120] ^= 1;
    let e = verify(&ev, &Policy::simulated_only(this_exe_measurement()), &rd, SystemTime::now()).unwrap_err();
    assert!(matches!(e, VerifyError::BadSignature(_)), "{e}");
}

#[test]
fn simulated_evidence_needs_the_allow_flag_and_a_policy_entry() {
    let rd = bound(b"spki", b"n");
    let ev = SimulatedAttester::new().unwrap().attest(&rd).unwrap();
    let not_allowed = Policy::simulated_only(this_exe_measurement()).with_allow_simulated(false);
    assert_eq!(verify(&ev, &not_allowed, &rd, SystemTime::now()), Err(VerifyError::SimulatedRefused));
    let no_entry = Policy::default().with_allow_simulated(true);
    assert!(matches!(verify(&ev, &no_entry, &rd, SystemTime::now()), Err(VerifyError::NoPolicyFor(_))));
}

#[test]
fn a_truncated_report_is_malformed() {
    let rd = bound(b"spki", b"n");
    let mut ev = SimulatedAttester::new().unwrap().attest(&rd).unwrap();
    ev.report.truncate(100);
    assert!(matches!(verify(&ev, &Policy::simulated_only(this_exe_measurement()), &rd, SystemTime::now()), Err(VerifyError::Malformed(_))));
}

#[test]
fn choices_build_the_simulated_attester_without_a_tee() {
    assert_eq!(AttesterChoice::Simulated.build().unwrap().kind(), TeeKind::Simulated);
    if !std::path::Path::new(talaria_attest::attester::TSM_REPORT_DIR).exists() {
        assert_eq!(AttesterChoice::Auto.build().unwrap().kind(), TeeKind::Simulated, "auto falls back to simulated");
        assert!(AttesterChoice::SevSnp.build().is_err(), "an explicit TEE is never faked");
        assert!(AttesterChoice::Tdx.build().is_err());
    }
    assert!("sgx".parse::<AttesterChoice>().is_err());
}
