//! A worker recording holds no row equal or close to any plaintext row the
//! CVM computed for the request.

mod common;

use common::*;
use talaria_cvm::backend::BackendArgs;

#[test]
fn recording_has_no_plaintext_row() {
    let fx = Fixture::load();
    let plaintext = fx.plaintext_rows();
    let dir = std::env::temp_dir().join(format!("talaria-rec-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let args = BackendArgs { record: Some(dir.clone()), ..Default::default() };
    let (tokens, _) = fx.run_with(&args);
    assert_eq!(tokens.len(), fx.max_tokens * fx.prompts.len());

    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["format_version"], 1);
    assert_eq!(manifest["remo"]["mode"], "remo");
    let calls = read_calls(&dir);
    let online: Vec<_> = calls.iter().filter(|c| c.kind == "online").collect();
    assert!(!online.is_empty() && calls.iter().any(|c| c.kind == "pad_batch"));
    // Pad σ differs per channel (κ × the channel's scale), so a raw cosine
    // is dominated by outlier channels that pads and plaintext share by
    // construction. Compare directions after whitening each channel by the
    // spread of what the worker saw for that op.
    let mut spread: std::collections::HashMap<(i32, String), Vec<f64>> = Default::default();
    for call in &online {
        let rows = read_npy_f64(&dir.join(&call.file), call.rows, call.cols);
        let acc = spread.entry((call.layer, call.op.clone())).or_insert_with(|| vec![0.0; call.cols]);
        for row in rows.chunks_exact(call.cols) {
            acc.iter_mut().zip(row).for_each(|(a, v)| *a = a.max(v.abs()));
        }
    }
    let mut checked = 0usize;
    let mut worst_cos = 0f64;
    for call in online {
        let rows = read_npy_f64(&dir.join(&call.file), call.rows, call.cols);
        let plain = plaintext.get(&(call.layer, call.op.clone())).expect("plaintext rows for the op");
        let w = &spread[&(call.layer, call.op.clone())];
        let white = |r: &[f64]| r.iter().zip(w).map(|(v, s)| v / s.max(1e-300)).collect::<Vec<f64>>();
        for row in rows.chunks_exact(call.cols) {
            let wrow = white(row);
            for p in plain.chunks_exact(call.cols) {
                let c = cosine(&wrow, &white(p));
                worst_cos = worst_cos.max(c.abs());
                let dist: f64 = row.iter().zip(p).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
                let norm: f64 = p.iter().map(|v| v * v).sum::<f64>().sqrt();
                assert!(dist > 10.0 * norm, "a sent row is within 10× of a plaintext row ({call:?})");
            }
            checked += 1;
        }
    }
    eprintln!("checked {checked} online rows; max whitened |cosine| to any plaintext row {worst_cos:.4}");
    assert!(worst_cos < 0.9, "a sent row is nearly parallel to a plaintext row: |cosine| {worst_cos}");
    let _ = std::fs::remove_dir_all(&dir);
}
