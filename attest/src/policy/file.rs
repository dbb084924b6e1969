//! Loading a policy file: strict JSON, errors that name the file and the field.

use std::path::Path;

use super::Policy;

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
               "tdx": {{"mrtd": ["{M}"], "accepted_tcb_status": ["UpToDate", "SWHardeningNeeded"]}},
               "simulated": {{"measurements": ["{M}"]}}}}"#
        );
        let p = parse(&text, Path::new(".")).unwrap();
        let snp = p.sev_snp.unwrap();
        assert_eq!(snp.measurements[0].to_hex(), M);
        assert_eq!((snp.min_tcb.bootloader, snp.min_tcb.snp, snp.min_tcb.microcode), (3, 8, 115));
        assert_eq!(p.tdx.unwrap().accepted_tcb_status, ["UpToDate", "SWHardeningNeeded"]);
        assert!(!p.allow_simulated);
    }

    #[test]
    fn tdx_defaults_to_up_to_date_only() {
        let p = parse(&format!(r#"{{"tdx": {{"mrtd": ["{M}"]}}}}"#), Path::new(".")).unwrap();
        assert_eq!(p.tdx.unwrap().accepted_tcb_status, ["UpToDate"]);
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
        std::fs::write(&f, r#"{"tdx": {"mrtd": [], "collateral": "missing.json"}}"#).unwrap();
        let e = Policy::from_file(&f).unwrap_err();
        assert!(e.contains("bad.json") && e.contains("tdx.collateral") && e.contains("missing.json"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
