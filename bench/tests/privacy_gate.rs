//! CI gate of the privacy suite (docs/DESIGN.md §6): the quick synthetic scheme
//! matrix on the default model's real layer-0 inputs, every candidate of
//! the vocabulary. Fails when an attack does not break a weak scheme
//! (≥ 95 % top-1 in every setting) or when ReMO at κ = 10⁴ lets any attack
//! above 0.5 %. About 2–3 minutes on 2 cores.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn out_dir(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("talaria-privacy-{tag}-{}", std::process::id()))
}

#[test]
fn quick_scheme_matrix_breaks_weak_schemes_and_not_remo() {
    let out = out_dir("gate");
    let run = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["privacy", "--synthetic", "--quick", "--gate", "--out"])
        .arg(&out)
        .output()
        .expect("running bench privacy");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "bench privacy --gate failed:\n{stderr}");

    let report: Value = serde_json::from_slice(&std::fs::read(out.join("privacy.json")).expect("privacy.json")).expect("valid JSON");
    assert_eq!(report["gate"]["passed"], Value::Bool(true));
    // The accuracy claims are over the whole vocabulary, not a subset.
    let vocab = report["vocab"].as_u64().unwrap();
    assert_eq!(vocab, 49152);
    assert!(report["candidates"].as_str().unwrap().contains("all 49152"));

    let rows = report["rows"].as_array().unwrap();
    let best = |scheme: &str, kappa: Option<f64>, setting: &str| -> f64 {
        rows.iter()
            .filter(|r| r["scheme"] == scheme && r["setting"] == setting && r["kappa"].as_f64() == kappa)
            .map(|r| r["top1"].as_f64().unwrap())
            .fold(f64::NAN, f64::max)
    };
    for setting in ["decode-b1", "prefill"] {
        for scheme in ["plain", "permute", "mix"] {
            assert!(best(scheme, None, setting) >= 0.95, "{scheme} {setting}");
        }
        for scheme in ["lowrank", "remo-nomix", "remo-1round"] {
            assert!(best(scheme, Some(1e4), setting) >= 0.95, "{scheme} {setting}");
        }
        // κ = 1 leaks: the suite can see leakage through ReMO's own channel.
        assert!(best("remo", Some(1.0), setting) >= 0.9, "remo κ=1 {setting}");
        let remo: Vec<&Value> =
            rows.iter().filter(|r| r["scheme"] == "remo" && r["kappa"].as_f64() == Some(1e4) && r["setting"] == setting).collect();
        assert!(remo.len() >= 8, "most attacks ran on ReMO ({setting}): {}", remo.len());
        for r in remo {
            assert!(r["top1"].as_f64().unwrap() <= 0.005, "{} on ReMO κ=1e4 {setting}: {}", r["attack"], r["top1"]);
        }
    }
    let md = std::fs::read_to_string(out.join("privacy.md")).unwrap();
    assert!(md.contains("## Gate: passed") && md.contains("| remo | 10000 |"));
    let svg = std::fs::read_to_string(out.join("privacy.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("polyline"));
    std::fs::remove_dir_all(&out).unwrap();
}
