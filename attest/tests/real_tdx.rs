//! A real TDX quote and its collateral, from dcap-qvl's samples
//! (tests/data/README.md), verified offline against Intel's pinned root.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use talaria_attest::{verify, Evidence, Measurement, Policy, ReportData, TdxPolicy, TeeKind, VerifyError};

fn data(name: &str) -> Option<Vec<u8>> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name);
    match std::fs::read(&p) {
        Ok(b) => Some(b),
        // The samples ship with the repository: a missing one is a failure.
        Err(e) => panic!("{}: {e} (see tests/data/README.md)", p.display()),
    }
}

/// Midway through the window where both the TCB info and the QE identity are current.
fn inside_validity(collateral: &[u8]) -> SystemTime {
    let root: serde_json::Value = serde_json::from_slice(collateral).unwrap();
    let window = |field: &str| {
        let v: serde_json::Value = serde_json::from_str(root[field].as_str().unwrap()).unwrap();
        let t = |k: &str| chrono_free_rfc3339(v[k].as_str().unwrap());
        (t("issueDate"), t("nextUpdate"))
    };
    let (a, b) = window("tcb_info");
    let (c, d) = window("qe_identity");
    let (from, to) = (a.max(c), b.min(d));
    UNIX_EPOCH + Duration::from_secs(from + (to - from) / 2)
}

/// Seconds since the epoch of "YYYY-MM-DDTHH:MM:SSZ" (what Intel's collateral uses).
fn chrono_free_rfc3339(s: &str) -> u64 {
    let n = |r: std::ops::Range<usize>| s[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days from civil date (Howard Hinnant's algorithm).
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let days = era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
    (days * 86400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)) as u64
}

/// The evidence (collateral in the endorsements), its MRTD and report data
/// (TD report body after the 48-byte header: MRTD at 136, REPORT_DATA at 520).
fn sample() -> Option<(Evidence, Vec<u8>, [u8; 48], ReportData)> {
    let quote = data("tdx_quote")?;
    let collateral = data("tdx_quote_collateral.json")?;
    let mrtd: [u8; 48] = quote[48 + 136..48 + 184].try_into().unwrap();
    let rd = ReportData(quote[48 + 520..48 + 584].try_into().unwrap());
    Some((Evidence { kind: TeeKind::Tdx, report: quote, endorsements: collateral.clone() }, collateral, mrtd, rd))
}

/// RTMR0..3 of the quote (TD report body: RTMR0 at 328, 48 bytes each).
fn rtmrs_of(ev: &Evidence) -> [Measurement; 4] {
    std::array::from_fn(|i| {
        let at = 48 + 328 + 48 * i;
        Measurement(ev.report[at..at + 48].try_into().unwrap())
    })
}

/// Accepts this MRTD and exactly the quote's RTMRs.
fn tdx_policy(ev: &Evidence, mrtd: [u8; 48], collateral: Option<Vec<u8>>) -> TdxPolicy {
    TdxPolicy::new(vec![Measurement(mrtd)], collateral).with_rtmrs([rtmrs_of(ev)])
}

#[test]
fn a_real_quote_verifies_with_offline_collateral() {
    let Some((ev, collateral, mrtd, rd)) = sample() else { return };
    let policy = Policy::default().with_tdx(tdx_policy(&ev, mrtd, None));
    let v = verify(&ev, &policy, &rd, inside_validity(&collateral)).unwrap();
    assert_eq!(v.kind, TeeKind::Tdx);
    assert_eq!(v.measurement, hex::encode(mrtd));
    assert!(v.tcb.contains("UpToDate") && !v.tcb.contains("RTMRs NOT CHECKED"), "{}", v.tcb);
}

#[test]
fn rtmrs_are_required() {
    let Some((ev, collateral, mrtd, rd)) = sample() else { return };
    let now = inside_validity(&collateral);
    // No RTMR set in the policy: nothing is accepted.
    let none = Policy::default().with_tdx(TdxPolicy::new(vec![Measurement(mrtd)], None));
    let e = verify(&ev, &none, &rd, now).unwrap_err();
    assert!(matches!(&e, VerifyError::WrongMeasurement { got } if got.contains("RTMRs") && got.contains("lists no RTMR set")), "{e}");
    // Another RTMR3 (the application): refused.
    let mut other = rtmrs_of(&ev);
    other[3].0[0] ^= 1;
    let wrong = Policy::default().with_tdx(TdxPolicy::new(vec![Measurement(mrtd)], None).with_rtmrs([other]));
    let e = verify(&ev, &wrong, &rd, now).unwrap_err();
    assert!(matches!(&e, VerifyError::WrongMeasurement { got } if got.starts_with("RTMRs")), "{e}");
    // One of several sets is enough.
    let either = Policy::default().with_tdx(tdx_policy(&ev, mrtd, None).with_rtmrs([other]));
    verify(&ev, &either, &rd, now).unwrap();
    // "any": accepted, and the verdict says the RTMRs were not checked.
    let any = Policy::default().with_tdx(TdxPolicy::new(vec![Measurement(mrtd)], None).with_any_rtmrs());
    let v = verify(&ev, &any, &rd, now).unwrap();
    assert!(v.tcb.contains("RTMRs NOT CHECKED"), "{}", v.tcb);
}

#[test]
fn a_policy_file_must_name_rtmrs() {
    let Some((ev, collateral, mrtd, rd)) = sample() else { return };
    let m = hex::encode(mrtd);
    let e = Policy::from_json(&format!(r#"{{"tdx": {{"mrtd": ["{m}"]}}}}"#), Path::new(".")).unwrap_err();
    assert!(e.contains("rtmrs"), "{e}");
    let sets = rtmrs_of(&ev).map(|r| format!("\"{}\"", r.to_hex())).join(",");
    let p = Policy::from_json(&format!(r#"{{"tdx": {{"mrtd": ["{m}"], "rtmrs": [[{sets}]]}}}}"#), Path::new(".")).unwrap();
    verify(&ev, &p, &rd, inside_validity(&collateral)).unwrap();
    let p = Policy::from_json(&format!(r#"{{"tdx": {{"mrtd": ["{m}"], "rtmrs": "any"}}}}"#), Path::new(".")).unwrap();
    assert!(verify(&ev, &p, &rd, inside_validity(&collateral)).unwrap().tcb.contains("RTMRs NOT CHECKED"));
}

#[test]
fn collateral_can_come_from_the_policy() {
    let Some((mut ev, collateral, mrtd, rd)) = sample() else { return };
    ev.endorsements.clear();
    let policy = Policy::default().with_tdx(tdx_policy(&ev, mrtd, Some(collateral.clone())));
    verify(&ev, &policy, &rd, inside_validity(&collateral)).unwrap();
    let no_collateral = Policy::default().with_tdx(tdx_policy(&ev, mrtd, None));
    assert!(matches!(verify(&ev, &no_collateral, &rd, inside_validity(&collateral)), Err(VerifyError::Malformed(_))));
}

#[test]
fn a_flipped_quote_byte_is_refused() {
    let Some((ev, collateral, mrtd, rd)) = sample() else { return };
    let policy = Policy::default().with_tdx(tdx_policy(&ev, mrtd, None));
    let mut bad = ev.clone();
    bad.report[48 + 136] ^= 1; // MRTD, inside the signed TD report
    let e = verify(&bad, &policy, &rd, inside_validity(&collateral)).unwrap_err();
    assert!(matches!(e, VerifyError::BadSignature(_)), "{e}");
}

#[test]
fn another_mrtd_is_refused() {
    let Some((ev, collateral, _, rd)) = sample() else { return };
    let policy = Policy::default().with_tdx(tdx_policy(&ev, [1; 48], None));
    let e = verify(&ev, &policy, &rd, inside_validity(&collateral)).unwrap_err();
    assert!(matches!(e, VerifyError::WrongMeasurement { .. }), "{e}");
}

#[test]
fn a_status_outside_the_accepted_list_is_refused() {
    let Some((ev, collateral, mrtd, rd)) = sample() else { return };
    let mut tdx = tdx_policy(&ev, mrtd, None);
    tdx.accepted_tcb_status = vec!["SWHardeningNeeded".into()];
    let e = verify(&ev, &Policy::default().with_tdx(tdx), &rd, inside_validity(&collateral)).unwrap_err();
    assert!(matches!(e, VerifyError::TcbTooLow(_)), "{e}");
}

#[test]
fn expired_collateral_is_refused() {
    let Some((ev, _, mrtd, rd)) = sample() else { return };
    let policy = Policy::default().with_tdx(tdx_policy(&ev, mrtd, None));
    let far_future = UNIX_EPOCH + Duration::from_secs(4_000_000_000);
    assert!(verify(&ev, &policy, &rd, far_future).is_err());
}
