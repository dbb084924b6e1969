//! The `talaria generate` command line as a user runs it: several prompts
//! from a file in one session, with a layer-filtered worker recording and
//! the tokens.json the privacy suite scores against.

use std::process::Command;

#[test]
fn prompts_file_runs_each_prompt_and_records_the_chosen_layers() {
    let dir = std::env::temp_dir().join(format!("talaria-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let prompts = dir.join("prompts.txt");
    std::fs::write(&prompts, "Name a colour.\n\nName a fruit.\n").unwrap();
    let rec = dir.join("rec");
    let out = Command::new(env!("CARGO_BIN_EXE_talaria"))
        .args(["generate", "--chat", "--max-tokens", "3", "--mode", "plain", "--insecure", "--record-layers", "0,-1"])
        .arg("--prompts-file")
        .arg(&prompts)
        .arg("--record")
        .arg(&rec)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "talaria generate failed: {stderr}");
    // One speed line per prompt (the blank line is skipped).
    assert_eq!(stderr.matches("] prompt ").count(), 2, "{stderr}");

    let tokens: serde_json::Value = serde_json::from_slice(&std::fs::read(rec.join("tokens.json")).unwrap()).unwrap();
    let seqs = tokens["sequences"].as_array().unwrap();
    assert_eq!(seqs.len(), 2);
    for s in seqs {
        let fed = s["tokens"].as_array().unwrap().len() as u64;
        // The prompt, then the 2 sampled tokens fed back (the 3rd never is).
        assert_eq!(fed, s["prompt_len"].as_u64().unwrap() + 2);
    }
    let steps = tokens["steps"].as_array().unwrap();
    assert_eq!(steps.last().unwrap()[0][0], 1, "the second prompt's steps come last");

    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(rec.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["recorded_layers"], serde_json::json!([0, -1]));
    let calls = std::fs::read_to_string(rec.join("calls.jsonl")).unwrap();
    let layers: Vec<i64> =
        calls.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["layer"].as_i64().unwrap()).collect();
    // Layer 0's qkv, o, gate_up and down for each of the 2 × 3 steps (the
    // tied head runs in the CVM, so no -1 calls).
    assert_eq!(layers.len(), 4 * 6, "{calls}");
    assert!(layers.iter().all(|&l| l == 0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_prompts_file_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_talaria"))
        .args(["generate", "--mode", "local", "--insecure", "--prompts-file", "/nonexistent/prompts.txt"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/prompts.txt"), "{stderr}");
}
