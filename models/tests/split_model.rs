//! The CVM holds only its own tensors (docs/DESIGN.md §1, §8): a checkpoint
//! opened for the CVM reads only them, `split_model` writes bundles each side
//! loads alone, and the worker manifest hash is the same from every source.
//! On tiny GGUF and HF models built here, and on the real default model.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use half::f16;
use talaria_kernels::WeightFormat;
use talaria_models::fetch::ensure_default_model;
use talaria_models::gguf::{write_gguf, GgufFile, GgufTensorOut, GgufValue};
use talaria_models::split::read_split_manifest;
use talaria_models::{cvm_tensor_names, split_model, worker_tensor_names, Checkpoint, CvmWeights, ModelError, Role, WorkerWeights};

/// A fresh, empty folder under the temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("talaria-split-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Deterministic bytes (xorshift), so the test data has no pattern to hide bugs.
struct Bytes(u64);

impl Bytes {
    fn next(&mut self) -> u8 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 as u8
    }
    /// `n` elements of a GGML type: valid f16 scales, random quants.
    fn tensor(&mut self, type_code: u32, n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        match type_code {
            0 => (0..n).for_each(|_| out.extend_from_slice(&(0.5 + self.next() as f32 / 255.0).to_le_bytes())),
            2 | 8 => {
                let quants = if type_code == 2 { 16 } else { 32 };
                for _ in 0..n / 32 {
                    out.extend_from_slice(&f16::from_f32(0.01 + self.next() as f32 / 5000.0).to_le_bytes());
                    (0..quants).for_each(|_| out.push(self.next()));
                }
            }
            _ => unreachable!(),
        }
        out
    }
}

const HIDDEN: usize = 64;
const FF: usize = 128;
const VOCAB: usize = 32;
const LAYERS: usize = 2;

/// A 2-layer tiny Llama GGUF (Q8_0 embedding and v/down, Q4_0 matrices, F32
/// norms) with a minimal GPT-2 tokenizer; untied adds a Q8_0 `output.weight`.
fn tiny_gguf(path: &Path, tied: bool) {
    let s = |v: &str| GgufValue::String(v.into());
    let mut tokens: Vec<String> = (0..VOCAB - 5).map(|i| format!("t{i}")).collect();
    tokens.extend(["a", "b", "ab", "<|im_start|>", "<|im_end|>"].map(String::from));
    let types: Vec<GgufValue> = (0..VOCAB).map(|i| GgufValue::I32(if i >= VOCAB - 2 { 3 } else { 1 })).collect();
    let meta: Vec<(String, GgufValue)> = vec![
        ("general.architecture".into(), s("llama")),
        ("general.name".into(), s("tiny")),
        ("llama.block_count".into(), GgufValue::U32(LAYERS as u32)),
        ("llama.context_length".into(), GgufValue::U32(128)),
        ("llama.embedding_length".into(), GgufValue::U32(HIDDEN as u32)),
        ("llama.feed_forward_length".into(), GgufValue::U32(FF as u32)),
        ("llama.attention.head_count".into(), GgufValue::U32(2)),
        ("llama.attention.head_count_kv".into(), GgufValue::U32(1)),
        ("llama.attention.layer_norm_rms_epsilon".into(), GgufValue::F32(1e-5)),
        ("llama.rope.freq_base".into(), GgufValue::F32(10000.0)),
        ("tokenizer.ggml.model".into(), s("gpt2")),
        ("tokenizer.ggml.tokens".into(), GgufValue::Array(tokens.iter().map(|t| s(t)).collect())),
        ("tokenizer.ggml.token_type".into(), GgufValue::Array(types)),
        ("tokenizer.ggml.merges".into(), GgufValue::Array(vec![s("a b")])),
        ("tokenizer.ggml.eos_token_id".into(), GgufValue::U32(VOCAB as u32 - 1)),
        ("tokenizer.chat_template".into(), s("{% for m in messages %}<|im_start|>{{ m.role }}{% endfor %}")),
    ];
    // (name, dims in GGUF order, type)
    let mut table: Vec<(String, Vec<usize>, u32)> =
        vec![("token_embd.weight".into(), vec![HIDDEN, VOCAB], 8), ("output_norm.weight".into(), vec![HIDDEN], 0)];
    for l in 0..LAYERS {
        for (n, dims, ty) in [
            ("attn_norm", vec![HIDDEN], 0),
            ("attn_q", vec![HIDDEN, HIDDEN], 2),
            ("attn_k", vec![HIDDEN, 32], 2),
            ("attn_v", vec![HIDDEN, 32], 8),
            ("attn_output", vec![HIDDEN, HIDDEN], 2),
            ("ffn_norm", vec![HIDDEN], 0),
            ("ffn_gate", vec![HIDDEN, FF], 2),
            ("ffn_up", vec![HIDDEN, FF], 2),
            ("ffn_down", vec![FF, HIDDEN], 8),
        ] {
            table.push((format!("blk.{l}.{n}.weight"), dims, ty));
        }
    }
    if !tied {
        table.push(("output.weight".into(), vec![HIDDEN, VOCAB], 8));
    }
    let mut rng = Bytes(0x9e37_79b9_7f4a_7c15 ^ tied as u64);
    let data: Vec<Vec<u8>> = table.iter().map(|(_, d, ty)| rng.tensor(*ty, d.iter().product())).collect();
    let tensors: Vec<GgufTensorOut> = table
        .iter()
        .zip(&data)
        .map(|((name, dims, ty), b)| GgufTensorOut { name: name.clone(), dims: dims.clone(), type_code: *ty, bytes: b })
        .collect();
    write_gguf(path, &meta, &tensors).unwrap();
}

/// Every tensor of a GGUF file by name: (dims, type, bytes).
fn gguf_tensors(p: &Path) -> BTreeMap<String, (Vec<usize>, u32, Vec<u8>)> {
    let g = GgufFile::open(p).unwrap();
    g.tensors.iter().map(|t| (t.name.clone(), (t.dims.clone(), t.type_code, g.tensor_bytes(&t.name).unwrap().into_owned()))).collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn err_of(r: talaria_models::Result<Checkpoint>) -> ModelError {
    match r {
        Ok(_) => panic!("opened"),
        Err(e) => e,
    }
}

/// The bundles hold every tensor of the original, byte for byte, and the
/// CVM's holds exactly the CVM's tensors (no weight matrix).
/// The GGUF names of the CVM's tensors (embedding and every norm gain), sorted.
fn cvm_gguf_names(layers: usize) -> Vec<String> {
    let mut v: Vec<String> = (0..layers).flat_map(|i| [format!("blk.{i}.attn_norm.weight"), format!("blk.{i}.ffn_norm.weight")]).collect();
    v.extend(["output_norm.weight".to_string(), "token_embd.weight".to_string()]);
    v.sort();
    v
}

fn check_bundles_partition(original: &Path, dir: &Path, want_cvm: &[String]) {
    let orig = gguf_tensors(original);
    let cvm = gguf_tensors(&dir.join("cvm.gguf"));
    let worker = gguf_tensors(&dir.join("worker.gguf"));
    assert_eq!(cvm.keys().cloned().collect::<Vec<_>>(), want_cvm, "the CVM bundle's tensors");
    assert!(cvm.values().all(|(dims, _, _)| dims.len() == 1 || dims[1] == orig["token_embd.weight"].0[1]), "only the embedding is 2-D");
    assert!(cvm.keys().all(|k| !worker.contains_key(k)), "no tensor in both bundles");
    assert_eq!(cvm.len() + worker.len(), orig.len());
    for (name, t) in cvm.iter().chain(&worker) {
        assert!(orig[name] == *t, "{name} differs from the original");
    }
}

fn tiny_split_roles(tied: bool) {
    let tmp = TempDir::new("tiny");
    let original = tmp.0.join("tiny.gguf");
    tiny_gguf(&original, tied);
    let dir = tmp.0.join("split");
    let manifest = split_model(&original, &dir).unwrap();
    assert_eq!(read_split_manifest(&dir).unwrap(), manifest);
    check_bundles_partition(&original, &dir, &cvm_gguf_names(LAYERS));

    let full = Checkpoint::open(&original).unwrap();
    let hash = full.manifest_hash();
    assert_eq!(manifest.worker_manifest_hash, hash);
    assert_eq!(full.config.tie_word_embeddings, tied);

    // The CVM half alone.
    let cvm_only = TempDir::new("cvm-only");
    copy_dir(&dir, &cvm_only.0);
    std::fs::remove_file(cvm_only.0.join("worker.gguf")).unwrap();
    let ck = Checkpoint::open_for(&cvm_only.0, Role::Cvm).unwrap();
    assert_eq!(ck.config, full.config, "the bundle keeps the config (tie flag included)");
    assert_eq!(ck.manifest_hash(), hash, "read from the CVM bundle");
    assert_eq!(ck.read_stats().hashed_bytes, 0, "a CVM bundle never streams worker tensors");
    let cvm = CvmWeights::load(&ck, WeightFormat::Stored).unwrap();
    assert_eq!(cvm.tied_head, tied);
    assert_eq!(cvm.layers.len(), full.config.num_hidden_layers, "every layer's norm gains");
    let embed = [VOCAB, HIDDEN];
    assert_eq!(ck.tensor("model.embed_tokens.weight", &embed).unwrap(), full.tensor("model.embed_tokens.weight", &embed).unwrap());
    assert_eq!(ck.tokenizer.encode("ab<|im_end|>").unwrap(), full.tokenizer.encode("ab<|im_end|>").unwrap());
    let e = err_of(Checkpoint::open_for(&cvm_only.0, Role::Both)).to_string();
    assert!(e.contains("worker.gguf"), "Both needs the worker bundle: {e}");

    // The worker half alone.
    let worker_only = TempDir::new("worker-only");
    copy_dir(&dir, &worker_only.0);
    std::fs::remove_file(worker_only.0.join("cvm.gguf")).unwrap();
    let wk = Checkpoint::open_for(&worker_only.0, Role::Worker).unwrap();
    assert_eq!(wk.config, full.config);
    assert_eq!(wk.manifest_hash(), hash, "computed from the worker bundle");
    let w = WorkerWeights::load(&wk, WeightFormat::Stored).unwrap();
    assert_eq!(w.lm_head.is_some(), !tied);
    let q = [HIDDEN, HIDDEN];
    let name = "model.layers.1.self_attn.q_proj.weight";
    assert_eq!(wk.tensor(name, &q).unwrap(), full.tensor(name, &q).unwrap(), "Q rows un-permuted alike");
    assert!(Checkpoint::open_for(&worker_only.0, Role::Cvm).is_err());

    // Every source and role agrees on the hash.
    for role in [Role::Cvm, Role::Worker, Role::Both] {
        assert_eq!(Checkpoint::open_for(&original, role).unwrap().manifest_hash(), hash, "{role:?} on the original");
        assert_eq!(Checkpoint::open_for(&dir, role).unwrap().manifest_hash(), hash, "{role:?} on the split folder");
    }

    // A bundle opened as a file for the wrong role is refused.
    let e = err_of(Checkpoint::open_for(dir.join("cvm.gguf"), Role::Worker)).to_string();
    assert!(e.contains("cvm.gguf") && e.contains("cvm bundle"), "{e}");
}

#[test]
fn tiny_tied_model_splits_and_each_half_loads_alone() {
    tiny_split_roles(true);
}

#[test]
fn tiny_untied_model_keeps_its_head_on_the_worker() {
    tiny_split_roles(false);
}

#[test]
fn cvm_role_refuses_worker_tensors_by_name() {
    let tmp = TempDir::new("refuse");
    let original = tmp.0.join("tiny.gguf");
    tiny_gguf(&original, false);
    let ck = Checkpoint::open_for(&original, Role::Cvm).unwrap();
    let c = ck.config.clone();
    for name in worker_tensor_names(&c) {
        let e = ck.tensor(&name, &[1]).unwrap_err();
        assert!(matches!(e, ModelError::NotForRole { .. }) && e.to_string().contains(&name), "{e}");
        assert!(ck.tensor_bytes(&name).is_err() && !ck.has_tensor(&name));
    }
    assert!(ck.has_tensor("model.embed_tokens.weight"));
    for name in ["model.norm.weight", "model.layers.1.post_attention_layernorm.weight"] {
        assert!(cvm_tensor_names(&c).contains(&name.to_string()) && ck.has_tensor(name), "norm gains are the CVM's: {name}");
    }
}

#[test]
fn truncated_bundles_give_clear_errors() {
    let tmp = TempDir::new("trunc");
    let original = tmp.0.join("tiny.gguf");
    tiny_gguf(&original, true);
    let dir = tmp.0.join("split");
    split_model(&original, &dir).unwrap();
    for (file, role) in [("cvm.gguf", Role::Cvm), ("worker.gguf", Role::Worker)] {
        let bytes = std::fs::read(dir.join(file)).unwrap();
        for cut in [10, bytes.len() / 3, bytes.len() - 1] {
            let copy = TempDir::new("trunc-copy");
            copy_dir(&dir, &copy.0);
            std::fs::write(copy.0.join(file), &bytes[..cut]).unwrap();
            let e = err_of(Checkpoint::open_for(&copy.0, role)).to_string();
            assert!(e.contains(file) && (e.contains("truncated") || e.contains("ends while")), "{file} cut at {cut}: {e}");
        }
    }
}

#[test]
fn splitting_a_split_folder_is_refused() {
    let tmp = TempDir::new("resplit");
    let original = tmp.0.join("tiny.gguf");
    tiny_gguf(&original, true);
    let dir = tmp.0.join("split");
    split_model(&original, &dir).unwrap();
    let e = split_model(&dir, &tmp.0.join("again")).unwrap_err().to_string();
    assert!(e.contains("already split"), "{e}");
}

/// A tiny HF folder: config.json, a minimal tokenizer.json, one BF16/F32
/// model.safetensors.
fn tiny_hf(dir: &Path, tied: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let config = serde_json::json!({
        "model_type": "llama", "vocab_size": VOCAB, "hidden_size": HIDDEN, "intermediate_size": FF,
        "num_hidden_layers": LAYERS, "num_attention_heads": 2, "num_key_value_heads": 1, "rms_norm_eps": 1e-5,
        "max_position_embeddings": 128, "tie_word_embeddings": tied,
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let vocab: serde_json::Map<String, serde_json::Value> = (0..VOCAB).map(|i| (format!("t{i}"), serde_json::json!(i))).collect();
    let tok = serde_json::json!({"version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
        "pre_tokenizer": null, "post_processor": null, "decoder": null,
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "vocab": vocab, "merges": []}});
    std::fs::write(dir.join("tokenizer.json"), tok.to_string()).unwrap();
    let mut shapes: Vec<(String, Vec<usize>)> =
        vec![("model.embed_tokens.weight".into(), vec![VOCAB, HIDDEN]), ("model.norm.weight".into(), vec![HIDDEN])];
    for l in 0..LAYERS {
        let p = |n: &str| format!("model.layers.{l}.{n}.weight");
        shapes.extend([
            (p("input_layernorm"), vec![HIDDEN]),
            (p("self_attn.q_proj"), vec![HIDDEN, HIDDEN]),
            (p("self_attn.k_proj"), vec![32, HIDDEN]),
            (p("self_attn.v_proj"), vec![32, HIDDEN]),
            (p("self_attn.o_proj"), vec![HIDDEN, HIDDEN]),
            (p("post_attention_layernorm"), vec![HIDDEN]),
            (p("mlp.gate_proj"), vec![FF, HIDDEN]),
            (p("mlp.up_proj"), vec![FF, HIDDEN]),
            (p("mlp.down_proj"), vec![HIDDEN, FF]),
        ]);
    }
    if !tied {
        shapes.push(("lm_head.weight".into(), vec![VOCAB, HIDDEN]));
    }
    let mut rng = Bytes(7);
    let data: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = shapes
        .into_iter()
        .map(|(n, s)| {
            let count: usize = s.iter().product();
            if s.len() == 1 {
                (n, safetensors::Dtype::F32, s, rng.tensor(0, count))
            } else {
                let b = (0..count).flat_map(|_| half::bf16::from_f32(rng.next() as f32 / 255.0 - 0.5).to_le_bytes()).collect();
                (n, safetensors::Dtype::BF16, s, b)
            }
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> =
        data.iter().map(|(n, d, s, b)| (n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap())).collect();
    safetensors::serialize_to_file(views, &None, &dir.join("model.safetensors")).unwrap();
}

#[test]
fn tiny_hf_folder_splits_into_safetensors_bundles() {
    for tied in [true, false] {
        let tmp = TempDir::new("hf");
        let src = tmp.0.join("hf");
        tiny_hf(&src, tied);
        let dir = tmp.0.join("split");
        let m = split_model(&src, &dir).unwrap();
        assert_eq!(m.weights, "safetensors");
        let full = Checkpoint::open(&src).unwrap();
        let hash = full.manifest_hash();
        assert_eq!(m.worker_manifest_hash, hash);
        let cvm_file = std::fs::read(dir.join("cvm.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&cvm_file).unwrap();
        let mut names: Vec<String> = st.names().into_iter().cloned().collect();
        names.sort();
        assert_eq!(names, {
            let mut v = cvm_tensor_names(&full.config);
            v.sort();
            v
        });

        let alone = TempDir::new("hf-cvm");
        copy_dir(&dir, &alone.0);
        std::fs::remove_file(alone.0.join("worker.safetensors")).unwrap();
        let ck = Checkpoint::open_for(&alone.0, Role::Cvm).unwrap();
        assert_eq!(ck.manifest_hash(), hash);
        CvmWeights::load(&ck, WeightFormat::Stored).unwrap();
        assert!(ck.tensor_bytes("model.layers.0.mlp.up_proj.weight").is_err());

        let wk = Checkpoint::open_for(&dir, Role::Worker).unwrap();
        assert_eq!(wk.manifest_hash(), hash);
        for name in worker_tensor_names(&full.config) {
            assert_eq!(wk.tensor_bytes(&name).unwrap(), full.tensor_bytes(&name).unwrap(), "{name}");
        }
        assert_eq!(Checkpoint::open_for(&src, Role::Cvm).unwrap().manifest_hash(), hash);
    }
}

#[test]
fn default_model_cvm_role_reads_only_its_tensors_and_splits() {
    let path = ensure_default_model(false).expect("default model");
    let full = Checkpoint::open(&path).unwrap();
    let hash = full.manifest_hash();
    let g = GgufFile::open(&path).unwrap();
    let size = |names: &[String]| -> u64 { names.iter().map(|n| full.tensor_bytes(n).unwrap().len() as u64).sum() };
    let cvm_bytes = size(&cvm_tensor_names(&full.config));
    let worker_bytes = size(&worker_tensor_names(&full.config));

    // Unsplit file, CVM role: headers, then only the CVM's tensors; the
    // worker's are streamed through SHA-256 once for the hash, never held.
    let ck = Checkpoint::open_for(&path, Role::Cvm).unwrap();
    CvmWeights::load(&ck, WeightFormat::Stored).unwrap();
    let s = ck.read_stats();
    assert!(s.tensor_bytes <= cvm_bytes, "{s:?}: more than the CVM's {cvm_bytes} tensor bytes");
    assert!(s.header_bytes <= g.data_start() + (1 << 16), "{s:?}: header read beyond {} + one chunk", g.data_start());
    assert_eq!(s.hashed_bytes, worker_bytes, "each worker tensor streamed once");
    assert_eq!(ck.manifest_hash(), hash);
    let e = ck.tensor("model.layers.0.self_attn.q_proj.weight", &[576, 576]).unwrap_err().to_string();
    assert!(e.contains("model.layers.0.self_attn.q_proj.weight") && e.contains("worker"), "{e}");

    let tmp = TempDir::new("default");
    let m = split_model(&path, &tmp.0).unwrap();
    assert_eq!(m.worker_manifest_hash, hash);
    check_bundles_partition(&path, &tmp.0, &cvm_gguf_names(full.config.num_hidden_layers));
    let cvm = Checkpoint::open_for(&tmp.0, Role::Cvm).unwrap();
    assert_eq!(cvm.manifest_hash(), hash);
    assert_eq!(cvm.read_stats().hashed_bytes, 0);
    assert_eq!(Checkpoint::open_for(&tmp.0, Role::Worker).unwrap().manifest_hash(), hash);
    assert_eq!(cvm.config, full.config);
    assert!(std::fs::metadata(tmp.0.join("cvm.gguf")).unwrap().len() < std::fs::metadata(&path).unwrap().len() / 2);
}

/// Every family's tiny transformers-made model (`testdata/tiny`), in each of
/// its forms: split, each half opened alone for its role; the CVM half
/// holds the family's vectors (biases, q/k norms, sandwich norms, RoPE
/// divisors) and no matrix, and both halves name the same worker manifest.
#[test]
fn every_family_splits_and_its_cvm_half_holds_the_vectors() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/tiny");
    for (family, forms) in [
        ("llama", &["hf", "model.gguf"][..]),
        ("qwen2", &["hf", "model.gguf"]),
        ("qwen3", &["hf", "model.gguf"]),
        ("mistral", &["hf"]),
        ("gemma3", &["hf", "model.gguf"]),
    ] {
        for form in forms {
            let what = format!("{family} {form}");
            let original = root.join(family).join(form);
            let tmp = TempDir::new(&format!("family-{family}-{}", form.replace(".", "-")));
            let dir = tmp.0.join("split");
            let manifest = split_model(&original, &dir).unwrap_or_else(|e| panic!("{what}: {e}"));
            let full = Checkpoint::open(&original).unwrap();
            let cvm = Checkpoint::open_for(&dir, Role::Cvm).unwrap_or_else(|e| panic!("{what} cvm: {e}"));
            let worker = Checkpoint::open_for(&dir, Role::Worker).unwrap_or_else(|e| panic!("{what} worker: {e}"));
            assert_eq!(cvm.config, full.config, "{what}: the CVM half's config");
            assert_eq!(worker.config, full.config, "{what}: the worker half's config");
            assert_eq!(cvm.manifest_hash(), manifest.worker_manifest_hash, "{what}");
            assert_eq!(worker.manifest_hash(), manifest.worker_manifest_hash, "{what}");
            let a = CvmWeights::load(&cvm, WeightFormat::Stored).unwrap();
            let b = CvmWeights::load(&full, WeightFormat::Stored).unwrap();
            for (la, lb) in a.layers.iter().zip(&b.layers) {
                assert_eq!(la.input_layernorm, lb.input_layernorm, "{what}");
                assert_eq!(la.mlp_input_norm(), lb.mlp_input_norm(), "{what}");
                assert_eq!(la.self_attn.qkv_bias, lb.self_attn.qkv_bias, "{what}");
                assert_eq!(la.self_attn.q_norm, lb.self_attn.q_norm, "{what}");
                assert_eq!(la.post_feedforward_layernorm, lb.post_feedforward_layernorm, "{what}");
            }
            let c = &full.config;
            assert_eq!(a.layers[0].self_attn.qkv_bias.is_some(), family == "qwen2", "{what}: biases");
            assert_eq!(a.layers[0].self_attn.q_norm.is_some(), matches!(family, "qwen3" | "gemma3"), "{what}: q/k norms");
            assert_eq!(a.layers[0].post_feedforward_layernorm.is_some(), family == "gemma3", "{what}: sandwich norms");
            assert!(!cvm.has_tensor("model.layers.0.self_attn.q_proj.weight"), "{what}: no matrix on the CVM");
            WorkerWeights::load(&worker, WeightFormat::Stored).unwrap();
            if family == "gemma3" {
                // HF stores γ, GGUF stores 1 + γ: the loaded gains agree.
                assert!(a.layers[0].input_layernorm.iter().all(|g| (g - 1.0).abs() < 2.0), "{what}: gains near 1");
                assert_eq!(c.layer_types[1], talaria_models::LayerAttention::Full, "{what}");
            }
        }
    }
}
