//! Every supported family served confidentially: the tiny transformers-made
//! models (`models/testdata/tiny`) through a real worker process over shared
//! memory, in the exact mode, give the plain exact engine's greedy tokens
//! and logits within the exact mode's bound (the f64 unmasking error is
//! ~1e-12 relative; 1e-5 leaves room for the final f32 rounding of a
//! logit). The CVM applies each family's vectors (biases, q/k norms,
//! sandwich norms) to unmasked rows; the worker only ever sees the matrices.

mod common;

use common::*;
use talaria_cvm::backend::BackendArgs;

fn check(family: &str, form: &str) {
    check_fixture(&Fixture::tiny(family, form), family, form);
}

fn check_fixture(fx: &Fixture, family: &str, form: &str) {
    let (want, want_logits) = fx.run_local();
    let (got, got_logits) = fx.run_with(&BackendArgs::default());
    assert_eq!(got, want, "{family} {form}: greedy tokens confidential vs plain");
    let worst = max_abs_diff(&got_logits, &want_logits);
    eprintln!("{family} {form}: confidential vs plain max |Δlogit| {worst:.2e} over {} logits", got_logits.len());
    assert!(worst <= 1e-5, "{family} {form}: max |Δlogit| = {worst}");
}

#[test]
fn llama3_is_served_confidentially() {
    check("llama", "model.gguf");
}

#[test]
fn qwen2_is_served_confidentially() {
    check("qwen2", "hf");
}

#[test]
fn qwen3_is_served_confidentially() {
    check("qwen3", "model.gguf");
}

#[test]
fn mistral_is_served_confidentially() {
    check("mistral", "hf");
}

#[test]
fn gemma3_is_served_confidentially() {
    check("gemma3", "hf");
    check("gemma3", "model.gguf");
}

/// The real second model: Gemma 3 270M (K-quants held as stored, a
/// 262k-token tied head computed by the CVM, sliding and global layers).
#[test]
fn gemma3_270m_is_served_confidentially() {
    check_fixture(&Fixture::gemma3_270m(), "gemma3-270m", "q4_k_m.gguf");
}

/// A session whose pad pools could exceed `--max-pad-memory` is refused
/// before any worker starts, with the figure and what to change.
#[test]
fn a_pad_memory_limit_below_the_bound_is_refused_clearly() {
    let fx = Fixture::tiny("qwen2", "hf");
    let args = BackendArgs { max_pad_memory: Some(1 << 20), ..Default::default() };
    let err = talaria_cvm::backend::build_linear(&args, &fx.ck, DTYPE).err().expect("refused").to_string();
    assert!(err.contains("--max-pad-memory") && err.contains("MiB"), "{err}");
    let roomy = BackendArgs { max_pad_memory: Some(1 << 30), ..Default::default() };
    talaria_cvm::backend::build_linear(&roomy, &fx.ck, DTYPE).expect("within the limit");
}
