//! Truncated, corrupt and unsupported model files give errors that name the
//! file and the problem, never a panic.

use std::io::Write;

use talaria_models::fetch::ensure_default_model;
use talaria_models::{Checkpoint, ModelError};

fn tmp(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("talaria-badfiles-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
    p
}

fn err_of(p: &std::path::Path) -> String {
    match Checkpoint::open(p) {
        Ok(_) => panic!("{} opened", p.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn not_a_gguf() {
    let p = tmp("junk.gguf", b"PK\x03\x04 this is a zip");
    let e = err_of(&p);
    assert!(e.contains("junk.gguf") && e.contains("not a GGUF"), "{e}");
}

#[test]
fn missing_file() {
    let e = err_of(std::path::Path::new("/nonexistent/model.gguf"));
    assert!(e.contains("/nonexistent/model.gguf"), "{e}");
}

#[test]
fn truncated_default_model() {
    let real = std::fs::read(ensure_default_model(false).unwrap()).unwrap();
    for cut in [3, 100, 5_000, real.len() / 2, real.len() - 1] {
        let p = tmp(&format!("cut{cut}.gguf"), &real[..cut]);
        let e = err_of(&p);
        assert!(e.contains(&format!("cut{cut}.gguf")), "{e}");
        assert!(e.contains("truncated") || e.contains("ends while") || e.contains("not a GGUF"), "cut at {cut}: {e}");
    }
}

#[test]
fn corrupt_header_counts() {
    let mut real = std::fs::read(ensure_default_model(false).unwrap()).unwrap();
    real.truncate(1 << 20);
    real[8..16].copy_from_slice(&u64::MAX.to_le_bytes()); // tensor count
    let p = tmp("count.gguf", &real);
    assert!(matches!(Checkpoint::open(&p), Err(ModelError::Corrupt { .. })));
}

/// Dimensions each within bounds whose product wraps (2⁶² values: the size
/// in bytes wrapped to 0 and passed the bounds check, then a 2⁶²-value
/// allocation panicked).
#[test]
fn tensor_dimensions_whose_product_overflows() {
    use talaria_models::gguf::{write_gguf, GgufFile, GgufTensorOut};
    let dir = std::env::temp_dir().join(format!("talaria-badfiles-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("huge-dims.gguf");
    let t = GgufTensorOut { name: "blk.0.attn_norm.weight".into(), dims: vec![1 << 32, 1 << 30], type_code: 0, bytes: &[] };
    write_gguf(&p, &[], &[t]).unwrap();
    let e = GgufFile::open(&p).err().expect("opened a tensor of 2^62 values").to_string();
    assert!(e.contains("huge-dims.gguf") && e.contains("2^48"), "{e}");
}

#[test]
fn hf_folder_errors_name_the_file() {
    let dir = std::env::temp_dir().join(format!("talaria-badhf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), r#"{"model_type": "gpt2"}"#).unwrap();
    let e = err_of(&dir);
    assert!(e.contains("config.json"), "{e}");
    std::fs::write(dir.join("config.json"), r#"{"model_type":"llama","vocab_size":8,"hidden_size":4,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,"rms_norm_eps":1e-5,"max_position_embeddings":16}"#).unwrap();
    let e = err_of(&dir);
    assert!(e.contains("tokenizer.json"), "{e}");
}
