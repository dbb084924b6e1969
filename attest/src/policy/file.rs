//! Loading a policy file: strict JSON, errors that name the file and the field.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::{up_to_date_only, Measurement, Policy, TdxPolicy};

/// A `tdx` section as written in a file; `rtmrs` has no default.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TdxPolicyFile {
    mrtd: Vec<Measurement>,
    #[serde(default = "up_to_date_only")]
    accepted_tcb_status: Vec<String>,
    rtmrs: RtmrRule,
    #[serde(default)]
    collateral: Option<PathBuf>,
}

impl From<TdxPolicyFile> for TdxPolicy {
    fn from(f: TdxPolicyFile) -> Self {
        let (rtmrs, rtmrs_any) = match f.rtmrs {
            RtmrRule::Any => (Vec::new(), true),
            RtmrRule::Sets(sets) => (sets, false),
        };
        TdxPolicy {
            mrtd: f.mrtd,
            accepted_tcb_status: f.accepted_tcb_status,
            rtmrs,
            rtmrs_any,
            collateral: f.collateral,
            collateral_json: None,
        }
    }
}

/// `"rtmrs"`: a non-empty list of RTMR0..3 arrays, or the string `"any"`.
enum RtmrRule {
    Any,
    Sets(Vec<[Measurement; 4]>),
}

impl<'de> Deserialize<'de> for RtmrRule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RtmrRule;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a non-empty list of [RTMR0, RTMR1, RTMR2, RTMR3] arrays, or \"any\" (unsafe: RTMRs unchecked)")
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<RtmrRule, E> {
                if s == "any" {
                    Ok(RtmrRule::Any)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(s), &self))
                }
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RtmrRule, A::Error> {
                let mut sets = Vec::new();
                while let Some(set) = seq.next_element::<[Measurement; 4]>()? {
                    sets.push(set);
                }
                if sets.is_empty() {
                    return Err(de::Error::invalid_length(0, &self));
                }
                Ok(RtmrRule::Sets(sets))
            }
        }
        d.deserialize_any(V)
    }
}

pub(super) fn load(path: &Path) -> Result<Policy, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading the policy file {}: {e}", path.display()))?;
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    parse(&text, base).map_err(|e| format!("policy file {}: {e}", path.display()))
}

pub(super) fn parse(text: &str, base_dir: &Path) -> Result<Policy, String> {
    let de = &mut serde_json::Deserializer::from_str(text);
    let mut policy: Policy = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        if field == "." {
            e.inner().to_string()
        } else {
            format!("field `{field}`: {}", e.inner())
        }
    })?;
    if let Some(snp) = &policy.sev_snp {
        if snp.allowed_vmpls.is_empty() || snp.allowed_vmpls.iter().any(|&v| v > 3) {
            return Err(format!("field `sev_snp.allowed_vmpls`: {:?} must list one to four VMPLs from 0 to 3", snp.allowed_vmpls));
        }
    }
    if let Some(tdx) = policy.tdx.as_mut() {
        if let Some(rel) = &tdx.collateral {
            let p = base_dir.join(rel);
            let bytes = std::fs::read(&p).map_err(|e| format!("field `tdx.collateral`: reading {}: {e}", p.display()))?;
            tdx.collateral_json = Some(bytes);
        }
    }
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f";

    #[test]
    fn reads_every_section() {
        let text = format!(
            r#"{{"sev_snp": {{"measurements": ["{M}"], "min_tcb": {{"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115}}, "allow_debug": false}},
               "tdx": {{"mrtd": ["{M}"], "rtmrs": [["{M}", "{M}", "{M}", "{M}"]], "accepted_tcb_status": ["UpToDate", "SWHardeningNeeded"]}},
               "simulated": {{"measurements": ["{M}"]}}}}"#
        );
        let p = parse(&text, Path::new(".")).unwrap();
        let snp = p.sev_snp.unwrap();
        assert_eq!(snp.measurements[0].to_hex(), M);
        assert_eq!((snp.min_tcb.bootloader, snp.min_tcb.snp, snp.min_tcb.microcode), (3, 8, 115));
        assert_eq!(snp.allowed_vmpls, [0], "VMPL 0 only by default");
        let tdx = p.tdx.unwrap();
        assert_eq!(tdx.accepted_tcb_status, ["UpToDate", "SWHardeningNeeded"]);
        assert_eq!((tdx.rtmrs.len(), tdx.rtmrs[0][3].to_hex(), tdx.rtmrs_any), (1, M.to_string(), false));
        assert!(!p.allow_simulated);
    }

    #[test]
    fn tdx_defaults_to_up_to_date_only() {
        let p = parse(&format!(r#"{{"tdx": {{"mrtd": ["{M}"], "rtmrs": "any"}}}}"#), Path::new(".")).unwrap();
        assert_eq!(p.tdx.unwrap().accepted_tcb_status, ["UpToDate"]);
    }

    #[test]
    fn tdx_rtmrs_are_required() {
        let e = parse(&format!(r#"{{"tdx": {{"mrtd": ["{M}"]}}}}"#), Path::new(".")).unwrap_err();
        assert!(e.contains("tdx") && e.contains("missing field `rtmrs`"), "{e}");
        let e = parse(&format!(r#"{{"tdx": {{"mrtd": ["{M}"], "rtmrs": []}}}}"#), Path::new(".")).unwrap_err();
        assert!(e.contains("tdx.rtmrs") && e.contains("non-empty"), "{e}");
        let e = parse(&format!(r#"{{"tdx": {{"mrtd": ["{M}"], "rtmrs": "all"}}}}"#), Path::new(".")).unwrap_err();
        assert!(e.contains("tdx.rtmrs") && e.contains("any"), "{e}");
        let e = parse(&format!(r#"{{"tdx": {{"mrtd": ["{M}"], "rtmrs": [["{M}", "{M}", "{M}"]]}}}}"#), Path::new(".")).unwrap_err();
        assert!(e.contains("tdx.rtmrs[0]"), "three RTMRs are not a set: {e}");
        let e = parse(&format!(r#"{{"tdx": {{"mrtd": ["{M}"], "rtmrs": [["{M}", "{M}", "ab", "{M}"]]}}}}"#), Path::new(".")).unwrap_err();
        assert!(e.contains("tdx.rtmrs[0][2]") && e.contains("48 bytes"), "{e}");
        let e = parse(&format!(r#"{{"tdx": {{"mrtd": ["{M}"], "rtmrs": "any", "extra": 1}}}}"#), Path::new(".")).unwrap_err();
        assert!(e.contains("extra"), "unknown fields are still refused: {e}");
        let any = parse(&format!(r#"{{"tdx": {{"mrtd": ["{M}"], "rtmrs": "any"}}}}"#), Path::new(".")).unwrap().tdx.unwrap();
        assert!(any.rtmrs_any && any.rtmrs.is_empty());
    }

    #[test]
    fn snp_allowed_vmpls_are_read_and_checked() {
        let p = parse(&format!(r#"{{"sev_snp": {{"measurements": ["{M}"], "allowed_vmpls": [0, 2]}}}}"#), Path::new(".")).unwrap();
        assert_eq!(p.sev_snp.unwrap().allowed_vmpls, [0, 2]);
        for bad in ["[]", "[4]"] {
            let e = parse(&format!(r#"{{"sev_snp": {{"measurements": ["{M}"], "allowed_vmpls": {bad}}}}}"#), Path::new(".")).unwrap_err();
            assert!(e.contains("sev_snp.allowed_vmpls"), "{e}");
        }
    }

    #[test]
    fn unknown_fields_are_refused_and_named() {
        let e = parse(r#"{"simulated": {"measurements": [], "extra": 1}}"#, Path::new(".")).unwrap_err();
        assert!(e.contains("simulated") && e.contains("extra"), "{e}");
        let e = parse(r#"{"allow_simulated": true}"#, Path::new(".")).unwrap_err();
        assert!(e.contains("allow_simulated"), "the file cannot allow simulated evidence: {e}");
    }

    #[test]
    fn a_short_measurement_names_its_field() {
        let e = parse(r#"{"sev_snp": {"measurements": ["abcd"]}}"#, Path::new(".")).unwrap_err();
        assert!(e.contains("sev_snp.measurements[0]") && e.contains("48 bytes"), "{e}");
    }

    #[test]
    fn errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("talaria-policy-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("bad.json");
        std::fs::write(&f, r#"{"tdx": {"mrtd": [], "rtmrs": "any", "collateral": "missing.json"}}"#).unwrap();
        let e = Policy::from_file(&f).unwrap_err();
        assert!(e.contains("bad.json") && e.contains("tdx.collateral") && e.contains("missing.json"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
