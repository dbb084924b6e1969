//! Shared fixture of the confidential-split tests: the real default model,
//! reference prompts, runs through any backend, a TCP worker process, and
//! readers for worker recordings.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use talaria_cvm::backend::{build_linear, BackendArgs};
use talaria_cvm::worker::find_worker_binary;
use talaria_engine::{generate, DecoderModel, GenerateRequest, KvPool, Linear, LocalLinear, Rows, RowsMut, SamplingParams};
use talaria_kernels::WeightFormat;
use talaria_models::fetch::ensure_default_model;
use talaria_models::{Checkpoint, CvmWeights, OpId, WorkerWeights};

pub const DTYPE: WeightFormat = WeightFormat::Stored;

pub struct Fixture {
    pub ck: Checkpoint,
    pub model: DecoderModel,
    pub prompts: Vec<Vec<u32>>,
    pub max_tokens: usize,
}

impl Fixture {
    /// Two of the foundation's reference prompts (a completion and a chat).
    pub fn load() -> Self {
        let ck = Checkpoint::open(ensure_default_model(false).unwrap()).unwrap();
        let model = DecoderModel::new(ck.config.clone(), CvmWeights::load(&ck, DTYPE).unwrap()).unwrap();
        let data: serde_json::Value = serde_json::from_str(include_str!("../../../engine/testdata/reference_logits.json")).unwrap();
        let all = data["prompts"].as_array().unwrap();
        let pick = |chat: bool| all.iter().find(|p| p["chat"].as_bool() == Some(chat)).unwrap();
        let ids =
            |p: &serde_json::Value| p["prompt_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect::<Vec<_>>();
        let prompts = vec![ids(pick(false)), ids(pick(true))];
        Self { ck, model, prompts, max_tokens: 24 }
    }

    /// A tiny random-weight model of `family` (`models/testdata/tiny`, made
    /// by HF transformers) in `form` ("hf" or "model.gguf"), with its
    /// reference prompts.
    pub fn tiny(family: &str, form: &str) -> Self {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/testdata/tiny").join(family);
        let ck = Checkpoint::open(dir.join(form)).unwrap();
        let model = DecoderModel::new(ck.config.clone(), CvmWeights::load(&ck, DTYPE).unwrap()).unwrap();
        let data: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap();
        let ids = |v: &serde_json::Value| v.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect::<Vec<_>>();
        let mut prompts: Vec<Vec<u32>> = data["prompts"].as_array().unwrap().iter().map(|p| ids(&p["prompt_ids"])).collect();
        prompts.extend(data["forced"].as_array().unwrap().iter().map(|p| ids(&p["ids"])));
        Self { ck, model, prompts, max_tokens: 12 }
    }

    /// Gemma 3 270M (fetched by name) with two of its reference prompts.
    pub fn gemma3_270m() -> Self {
        let ck = Checkpoint::open(talaria_models::fetch::ensure_model(&talaria_models::fetch::GEMMA3_270M, false).unwrap()).unwrap();
        let model = DecoderModel::new(ck.config.clone(), CvmWeights::load(&ck, DTYPE).unwrap()).unwrap();
        let data: serde_json::Value = serde_json::from_str(include_str!("../../../engine/testdata/gemma3_reference.json")).unwrap();
        let ids = |v: &serde_json::Value| v.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect::<Vec<_>>();
        let prompts = data["prompts"].as_array().unwrap()[..2].iter().map(|p| ids(&p["prompt_ids"])).collect();
        Self { ck, model, prompts, max_tokens: 16 }
    }

    /// Greedy tokens and per-step logits of every prompt through `linear`.
    pub fn run(&self, linear: &mut dyn Linear) -> (Vec<u32>, Vec<f32>) {
        self.try_run(linear).unwrap()
    }

    /// The same, failing with the first error.
    pub fn try_run(&self, linear: &mut dyn Linear) -> anyhow::Result<(Vec<u32>, Vec<f32>)> {
        let mut kv = KvPool::with_precision(&self.model.config, 64, 16, linear.precision());
        let (mut tokens, mut logits) = (Vec::new(), Vec::new());
        for p in &self.prompts {
            let req = GenerateRequest {
                prompt_ids: p.clone(),
                params: SamplingParams::greedy(),
                max_tokens: self.max_tokens,
                stop_strings: vec![],
                ignore_eos: true,
            };
            let out = generate(&self.model, &mut kv, linear, &self.ck.tokenizer, &req, |l, _, _| logits.extend_from_slice(l))?;
            tokens.extend(out.tokens.iter().map(|t| t.id));
        }
        Ok((tokens, logits))
    }

    /// The plain engine in the exact mode: f64-accumulated products, f64
    /// activations (`Precision::F64`), like the confidential mode.
    pub fn run_local(&self) -> (Vec<u32>, Vec<f32>) {
        let mut linear = LocalLinear::exact(Arc::new(WorkerWeights::load(&self.ck, DTYPE).unwrap()));
        self.run(&mut linear)
    }

    /// The plain fast engine: f32 activations, the CPU's f32 kernels.
    pub fn run_local_f32(&self) -> (Vec<u32>, Vec<f32>) {
        let mut linear = LocalLinear::new(Arc::new(WorkerWeights::load(&self.ck, DTYPE).unwrap()));
        self.run(&mut linear)
    }

    pub fn run_with(&self, args: &BackendArgs) -> (Vec<u32>, Vec<f32>) {
        let mut linear = build_linear(args, &self.ck, DTYPE).unwrap();
        self.run(&mut linear)
    }

    /// Every input row of every op the plain exact engine computes for the
    /// prompts: keyed by (layer, op name), rows concatenated, f64.
    pub fn plaintext_rows(&self) -> HashMap<(i32, String), Vec<f64>> {
        struct Capture {
            inner: LocalLinear,
            rows: HashMap<(i32, String), Vec<f64>>,
        }
        impl Linear for Capture {
            fn forward(&mut self, id: OpId, rows: usize, x: Rows<'_>, out: RowsMut<'_>) -> anyhow::Result<()> {
                let seen = self.rows.entry((id.layer, id.op.name().to_string())).or_default();
                match x {
                    Rows::F32(v) => seen.extend(v.iter().map(|&v| v as f64)),
                    Rows::F64(v) => seen.extend_from_slice(v),
                }
                self.inner.forward(id, rows, x, out)
            }
            fn precision(&self) -> talaria_engine::Precision {
                self.inner.precision()
            }
            fn name(&self) -> String {
                "capture".into()
            }
        }
        let mut cap = Capture { inner: LocalLinear::exact(Arc::new(WorkerWeights::load(&self.ck, DTYPE).unwrap())), rows: HashMap::new() };
        self.run(&mut cap);
        cap.rows
    }
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb).max(1e-300)
}

/// A `talaria-gpu-worker --listen` process on a free loopback port, its
/// stderr kept in a log file (refusals are checked there).
pub struct TcpWorker {
    port: u16,
    child: Arc<Mutex<Option<Child>>>,
    args: Vec<String>,
    pub log: PathBuf,
}

fn spawn_tcp_worker(port: u16, args: &[String], log: &Path) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("worker log");
    Command::new(find_worker_binary().unwrap())
        .args(["--listen", &format!("127.0.0.1:{port}"), "--offline", "--dtype", DTYPE.name()])
        .args(args)
        .stdin(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn tcp worker")
}

impl TcpWorker {
    /// A worker with `args` (e.g. `--insecure`, or its TLS identity and
    /// CVM policy); returns once it listens.
    pub fn start(args: &[&str]) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::env::temp_dir().join(format!("talaria-tcp-worker-{}-{}.log", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        let _ = std::fs::remove_file(&log);
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let w = Self { port, child: Arc::new(Mutex::new(Some(spawn_tcp_worker(port, &args, &log)))), args, log };
        w.wait_for_log("listening on", Duration::from_secs(300));
        w
    }

    pub fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the worker's log holds `needle` (fails if it exits).
    pub fn wait_for_log(&self, needle: &str, within: Duration) {
        let t0 = std::time::Instant::now();
        while !self.log_text().contains(needle) {
            let exited = self.child.lock().unwrap().as_mut().map(|c| c.try_wait().ok().flatten().is_some()).unwrap_or(true);
            assert!(!exited, "the worker exited; its log:\n{}", self.log_text());
            assert!(t0.elapsed() < within, "no {needle:?} in the worker log:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A supervisor thread: when the worker exits, start a healthy one on
    /// the same port with the same arguments, minus fault injection.
    /// Returns whether a restart happened (within 10 min).
    pub fn restart_when_dead(&mut self) -> JoinHandle<bool> {
        let (child, port, log) = (self.child.clone(), self.port, self.log.clone());
        let mut args = self.args.clone();
        if let Some(i) = args.iter().position(|a| a == "--fault") {
            args.drain(i..(i + 2).min(args.len()));
        }
        std::thread::spawn(move || {
            for _ in 0..6000 {
                let exited = child.lock().unwrap().as_mut().map(|c| c.try_wait().ok().flatten().is_some()).unwrap_or(false);
                if exited {
                    *child.lock().unwrap() = Some(spawn_tcp_worker(port, &args, &log));
                    return true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            false
        })
    }
}

impl Drop for TcpWorker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A worker TLS identity made by `talaria-gpu-worker gen-identity`, and CVM
/// policies, in a scratch folder removed on drop.
pub struct TlsFiles {
    pub dir: PathBuf,
}

impl TlsFiles {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("talaria-tls-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }

    /// `gen-identity` into `NAME.pem` / `NAME.key`; returns (cert, key).
    pub fn identity(&self, name: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = (self.dir.join(format!("{name}.pem")), self.dir.join(format!("{name}.key")));
        let out = Command::new(find_worker_binary().unwrap())
            .args(["gen-identity", "--name", "127.0.0.1", "--cert"])
            .arg(&cert)
            .arg("--key")
            .arg(&key)
            .output()
            .unwrap();
        assert!(out.status.success(), "gen-identity: {}", String::from_utf8_lossy(&out.stderr));
        (cert, key)
    }

    /// A CVM policy admitting simulated evidence of these measurements
    /// (simulated evidence still needs the worker's --allow-simulated).
    pub fn policy(&self, name: &str, measurements: &[String]) -> PathBuf {
        let p = self.dir.join(format!("{name}.json"));
        std::fs::write(&p, serde_json::json!({ "simulated": { "measurements": measurements } }).to_string()).unwrap();
        p
    }

    /// Worker arguments: identity, policy, and optionally --allow-simulated.
    pub fn worker_args(cert: &Path, key: &Path, policy: &Path, allow_simulated: bool) -> Vec<String> {
        let mut a: Vec<String> =
            ["--tls-cert", &cert.display().to_string(), "--tls-key", &key.display().to_string()].into_iter().map(String::from).collect();
        a.extend(["--cvm-policy".to_string(), policy.display().to_string()]);
        if allow_simulated {
            a.push("--allow-simulated".into());
        }
        a
    }
}

impl Drop for TlsFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The simulated measurement this test executable's evidence carries (the
/// CVM of these tests is the test binary itself).
pub fn own_measurement() -> String {
    talaria_attest::attester::simulated_measurement_of(&std::env::current_exe().unwrap()).unwrap()
}

#[derive(Debug, Clone)]
pub struct RecordedCall {
    pub kind: String,
    pub layer: i32,
    pub op: String,
    pub rows: usize,
    pub cols: usize,
    pub file: String,
}

pub fn read_calls(dir: &Path) -> Vec<RecordedCall> {
    std::fs::read_to_string(dir.join("calls.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            RecordedCall {
                kind: v["kind"].as_str().unwrap().into(),
                layer: v["layer"].as_i64().unwrap() as i32,
                op: v["op"].as_str().unwrap().into(),
                rows: v["rows"].as_u64().unwrap() as usize,
                cols: v["cols"].as_u64().unwrap() as usize,
                file: v["file"].as_str().unwrap().into(),
            }
        })
        .collect()
}

/// Reads a `rows × cols` C-order `<f8` .npy file written by the recorder.
pub fn read_npy_f64(path: &Path, rows: usize, cols: usize) -> Vec<f64> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
    assert_eq!(npy.dtype().descr(), "'<f8'", "{}: dtype", path.display());
    assert_eq!((npy.shape(), npy.order()), (&[rows as u64, cols as u64][..], npyz::Order::C), "{}: shape and order", path.display());
    npy.into_vec().unwrap_or_else(|e| panic!("reading the data of {}: {e}", path.display()))
}
