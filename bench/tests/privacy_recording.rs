//! The recording path of `bench privacy`: synthetic recordings written in
//! the worker's format (manifest.json, calls.jsonl, calls/*.npy, plus
//! tokens.json) and read back give the same results as attacking them
//! in-process.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn bench(args: &[&str], out: &Path) -> Value {
    let run =
        Command::new(env!("CARGO_BIN_EXE_bench")).arg("privacy").args(args).arg("--out").arg(out).output().expect("running bench privacy");
    assert!(run.status.success(), "bench privacy {args:?} failed:\n{}", String::from_utf8_lossy(&run.stderr));
    serde_json::from_slice(&std::fs::read(out.join("privacy.json")).expect("privacy.json")).expect("valid JSON")
}

fn top1s(report: &Value) -> Vec<(String, f64)> {
    let mut v: Vec<(String, f64)> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (format!("{} {}", r["scheme"], r["attack"]), r["top1"].as_f64().unwrap()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn written_recordings_read_back_to_the_same_scores() {
    let base: PathBuf = std::env::temp_dir().join(format!("talaria-privacy-rec-{}", std::process::id()));
    let recs = base.join("recordings");
    let small = ["--sequences", "2", "--settings", "prefill", "--schemes", "permute,remo-nomix", "--attacks", "nn-cos,span,pad-gram"];
    let mut args: Vec<&str> = vec!["--synthetic"];
    args.extend(small);
    let recs_s = recs.to_str().unwrap();
    args.extend(["--write-recordings", recs_s]);
    let in_process = bench(&args, &base.join("a"));

    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&recs).unwrap().map(|e| e.unwrap().path()).collect();
    dirs.sort();
    assert_eq!(dirs.len(), 2);
    for d in &dirs {
        for f in ["manifest.json", "calls.jsonl", "tokens.json"] {
            assert!(d.join(f).exists(), "{} lacks {f}", d.display());
        }
    }
    let mut args: Vec<String> = ["--attacks", "nn-cos,span,pad-gram"].iter().map(|s| s.to_string()).collect();
    for d in &dirs {
        args.push("--recording".into());
        args.push(d.to_str().unwrap().into());
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let read_back = bench(&refs, &base.join("b"));
    assert_eq!(top1s(&in_process), top1s(&read_back));
    // The weak schemes are broken through the files too.
    assert!(top1s(&read_back).iter().any(|(k, v)| k.contains("remo-nomix") && k.contains("pad-gram") && *v == 1.0));
    std::fs::remove_dir_all(&base).unwrap();
}
