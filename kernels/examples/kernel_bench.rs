//! Micro-benchmark of the CPU matmul kernels at SmolLM2-135M's shapes.
//!
//! `cargo run --release -p talaria-kernels --example kernel_bench [-- --quick] [shapes|f64|model|attention|stream] [dtypes] [--rows=N] [--shape=NAME]`
//! Prints per-shape GFLOP/s and weight GB/s for rows 1, 16, 512 (f32, bf16
//! and the quant types kept as stored), the exact f64 path at rows 1 and 1024, and whole-model
//! linear-layer passes (30 layers + tied head, distinct weights per layer),
//! decode attention over every layer's cache at SmolLM2's and Gemma 3's
//! shapes, and the machine's memory read rate, each with 1 and 2 threads.

use std::time::{Duration, Instant};
use talaria_kernels::cpu::{
    matmul, matmul_backend, matmul_f64, paged_attention, paged_attention_f64, AttnQuery, CpuFeatures, KernelError, PagedKv,
};
use talaria_kernels::{WeightDType, WeightMatrix};

/// (name, d_in, d_out)
const SHAPES: [(&str, usize, usize); 5] =
    [("qkv", 576, 960), ("o", 576, 576), ("gate_up", 576, 3072), ("down", 1536, 576), ("head", 576, 49152)];
const LAYERS: usize = 30;
const DTYPES: [WeightDType; 8] = [
    WeightDType::F32,
    WeightDType::Bf16,
    WeightDType::Q4_1,
    WeightDType::Q4_0,
    WeightDType::Q8_0,
    WeightDType::Q5_0,
    WeightDType::Q4K,
    WeightDType::Q6K,
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    // Optional filters: sections `shapes`, `f64`, `model`; dtypes `f32`, `bf16` (default: all).
    let sections: Vec<&str> = args.iter().map(String::as_str).filter(|a| !a.starts_with("--")).collect();
    let is_dtype = |s: &&str| DTYPES.iter().any(|d| d.name() == *s);
    let dtype_filter: Vec<&str> = sections.iter().copied().filter(is_dtype).collect();
    let sections: Vec<&str> = sections.into_iter().filter(|s| !is_dtype(s)).collect();
    let want = |s: &str| sections.is_empty() || sections.contains(&s);
    let want_dtype = |d: &WeightDType| dtype_filter.is_empty() || dtype_filter.contains(&d.name());
    // `--rows=N` (any N) and `--shape=NAME` narrow the shapes and f64 sections (A/B runs of one case).
    let flag = |name: &str| args.iter().find_map(|a| a.strip_prefix(name)).map(str::to_owned);
    let only_rows: Option<usize> = flag("--rows=").map(|v| v.parse().expect("--rows=N"));
    let only_shape = flag("--shape=");
    let budget = Duration::from_millis(if quick { 60 } else { 300 });
    println!("features: {:?}", CpuFeatures::get());
    let pools: Vec<(usize, rayon::ThreadPool)> =
        [1, 2].iter().map(|&t| (t, rayon::ThreadPoolBuilder::new().num_threads(t).build().expect("thread pool"))).collect();

    println!("\n== matmul f32 activations: GFLOP/s | weight GB/s ==");
    for dtype in DTYPES.into_iter().filter(|d| want("shapes") && want_dtype(d)) {
        let shapes =
            SHAPES.into_iter().filter(|&(name, d_in, _)| whole_blocks(dtype, d_in) && only_shape.as_deref().is_none_or(|s| s == name));
        for (name, d_in, d_out) in shapes {
            let w = weights(d_out, d_in, dtype, 1);
            for rows in only_rows.map_or(vec![1, 16, 512], |r| vec![r]) {
                let x = values(rows * d_in, 2);
                let mut out = vec![0f32; rows * d_out];
                for (threads, pool) in &pools {
                    let t = pool.install(|| time(budget, || matmul(&x, rows, &w, &mut out)));
                    report(&format!("{} {name:8} rows {rows:4} thr {threads}", dtype.name()), rows, d_in, d_out, bytes_per_value(dtype), t);
                }
            }
        }
        println!("   (backend for {}: {})", dtype.name(), matmul_backend(&weights(16, 256, dtype, 0)));
    }

    println!("\n== matmul_f64 (exact mode): GFLOP/s | weight GB/s ==");
    for dtype in DTYPES.into_iter().filter(|d| want("f64") && want_dtype(d)) {
        let shapes = SHAPES.iter().take(4).copied();
        for (name, d_in, d_out) in
            shapes.filter(|&(name, d_in, _)| whole_blocks(dtype, d_in) && only_shape.as_deref().is_none_or(|s| s == name))
        {
            let w = weights(d_out, d_in, dtype, 3);
            for rows in only_rows.map_or(vec![1, 1024], |r| vec![r]) {
                let x: Vec<f64> = values(rows * d_in, 4).into_iter().map(f64::from).collect();
                let mut out = vec![0f64; rows * d_out];
                for (threads, pool) in &pools {
                    let t = pool.install(|| time(budget, || matmul_f64(&x, rows, &w, &mut out)));
                    report(
                        &format!("f64x{} {name:8} rows {rows:4} thr {threads}", dtype.name()),
                        rows,
                        d_in,
                        d_out,
                        bytes_per_value(dtype),
                        t,
                    );
                }
            }
        }
    }

    if want("attention") {
        attention_section(&pools, budget);
    }

    if want("stream") {
        stream_section(&pools, budget);
    }

    println!("\n== whole model linear layers (30 layers + tied head, distinct weights) ==");
    // SmolLM2's rows of 576 are not whole K-quant super-blocks.
    for dtype in DTYPES.into_iter().filter(|d| want("model") && want_dtype(d) && whole_blocks(*d, 576)) {
        let model: Vec<WeightMatrix> = (0..LAYERS)
            .flat_map(|l| SHAPES[..4].iter().map(move |&(_, d_in, d_out)| (l, d_in, d_out)))
            .map(|(l, d_in, d_out)| weights(d_out, d_in, dtype, 100 + l as u64))
            .chain(std::iter::once(weights(49152, 576, dtype, 99)))
            .collect();
        for rows in [1, 16, 512] {
            let xs: Vec<Vec<f32>> = model.iter().map(|w| values(rows * w.cols, 5)).collect();
            let mut outs: Vec<Vec<f32>> = model.iter().map(|w| vec![0f32; rows * w.rows]).collect();
            for (threads, pool) in &pools {
                let t = pool.install(|| {
                    time(budget * 3, || {
                        for ((w, x), out) in model.iter().zip(&xs).zip(outs.iter_mut()) {
                            matmul(x, rows, w, out);
                        }
                    })
                });
                let params: usize = model.iter().map(|w| w.rows * w.cols).sum();
                if rows <= 16 {
                    // The worker's exact decode pass: f64 rows, the same weights minus the tied head.
                    let layers = &model[..model.len() - 1];
                    let xs: Vec<Vec<f64>> = layers.iter().map(|w| vec![0.25f64; rows * w.cols]).collect();
                    let mut outs: Vec<Vec<f64>> = layers.iter().map(|w| vec![0f64; rows * w.rows]).collect();
                    let t64 = pool.install(|| {
                        time(budget * 3, || {
                            for ((w, x), out) in layers.iter().zip(&xs).zip(outs.iter_mut()) {
                                matmul_f64(x, rows, w, out);
                            }
                        })
                    });
                    let p64: usize = layers.iter().map(|w| w.rows * w.cols).sum();
                    println!(
                        "{} model rows {rows:4} thr {threads} f64 (no head): {:8.2} ms/pass  {:6.1} GB/s",
                        dtype.name(),
                        t64 * 1e3,
                        p64 as f64 * bytes_per_value(dtype) / t64 / 1e9
                    );
                }
                println!(
                    "{} model rows {rows:4} thr {threads}: {:8.2} ms/pass  {:8.1} tokens/s  {:7.1} GFLOP/s  {:6.1} GB/s",
                    dtype.name(),
                    t * 1e3,
                    rows as f64 / t,
                    2.0 * params as f64 * rows as f64 / t / 1e9,
                    params as f64 * bytes_per_value(dtype) / t / 1e9
                );
            }
        }
    }
}

/// Decode attention as a token meets it: one query per layer against that
/// layer's own paged cache (so, as in a real step, each layer's K and V
/// come from L3 or memory, not from the layer before's warm cache).
/// (model, layers, query heads, KV heads, head dim)
const ATTENTION_SHAPES: [(&str, usize, usize, usize, usize); 2] = [("smollm2", 30, 9, 3, 64), ("gemma3", 18, 4, 1, 256)];

fn attention_section(pools: &[(usize, rayon::ThreadPool)], budget: Duration) {
    println!("\n== decode attention, every layer's cache (µs per token; f64: the exact mode's) ==");
    attention_runs::<f32>(pools, budget, |q, kv, heads, scale, out| paged_attention(q, kv, heads, scale as f32, out));
    attention_runs::<f64>(pools, budget, paged_attention_f64);
}

type AttentionKernel<T> = fn(&[AttnQuery<T>], &PagedKv<T>, usize, f64, &mut [T]) -> Result<(), KernelError>;

fn attention_runs<T: Copy + Default + Send + Sync + From<f32>>(
    pools: &[(usize, rayon::ThreadPool)],
    budget: Duration,
    kernel: AttentionKernel<T>,
) {
    let bs = 16;
    let label = std::any::type_name::<T>();
    for (name, layers, heads, kv_heads, hd) in ATTENTION_SHAPES {
        for ctx in [128usize, 512, 2048] {
            let blocks = ctx.div_ceil(bs);
            let token = kv_heads * hd;
            let widen = |v: Vec<f32>| v.into_iter().map(T::from).collect::<Vec<T>>();
            let caches: Vec<(Vec<T>, Vec<T>)> = (0..layers)
                .map(|l| (widen(values(blocks * bs * token, 7 + l as u64)), widen(values(blocks * bs * token, 70 + l as u64))))
                .collect();
            let table: Vec<u32> = (0..blocks as u32).collect();
            let q = widen(values(heads * hd, 3));
            let mut out = vec![T::default(); heads * hd];
            let scale = (hd as f64).powf(-0.5);
            for (threads, pool) in pools {
                let t = pool.install(|| {
                    time(budget, || {
                        for (k, v) in &caches {
                            let kv = PagedKv { k, v, block_size: bs, n_kv_heads: kv_heads, head_dim: hd };
                            let query = AttnQuery { q: &q, block_table: &table, context_len: ctx, window_start: 0 };
                            kernel(&[query], &kv, heads, scale, &mut out).expect("attention shapes");
                        }
                    })
                });
                let bytes = 2.0 * (layers * ctx * token * std::mem::size_of::<T>()) as f64;
                println!("{label} {name:8} ctx {ctx:5} thr {threads}: {:8.1} us/token  {:6.1} GB/s of K and V", t * 1e6, bytes / t / 1e9);
            }
        }
    }
}

fn values(n: usize, seed: u64) -> Vec<f32> {
    // Small xorshift: benchmark data needs no statistical quality.
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

/// Quant matrices get random quants and scales near 2^-6 (their speed does
/// not depend on the values).
fn weights(rows: usize, cols: usize, dtype: WeightDType, seed: u64) -> WeightMatrix {
    let (per, block_bytes) = dtype.block();
    if per == 1 {
        return WeightMatrix::from_f32(rows, cols, values(rows * cols, seed), dtype);
    }
    let mut bytes: Vec<u8> =
        values(dtype.bytes_for(rows * cols).expect("whole blocks"), seed).iter().map(|v| (v * 512.0) as i32 as u8).collect();
    // The scale near 2^-6, an offset or min (where there is one) of -0.1.
    for block in bytes.chunks_exact_mut(block_bytes) {
        for (i, &at) in dtype.f16_scale_offsets().iter().enumerate() {
            let v = if i == 0 { 1.0 / 64.0 } else { -0.1 };
            block[at..at + 2].copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
        }
    }
    WeightMatrix::from_stored(rows, cols, dtype, &bytes).expect("sizes match")
}

/// Whether rows of `d_in` values are whole blocks (K-quants need 256).
fn whole_blocks(dtype: WeightDType, d_in: usize) -> bool {
    d_in.is_multiple_of(dtype.block().0)
}

/// The machine's read bandwidth: a 256 MiB buffer summed (16 independent
/// lanes, so the adds keep up with memory), the bound a decode GEMV that
/// streams its weights from memory can reach.
fn stream_section(pools: &[(usize, rayon::ThreadPool)], budget: Duration) {
    use rayon::prelude::*;
    println!("\n== reading memory: the bound of a streamed decode ==");
    let buf: Vec<f32> = values(64 << 20, 6);
    let sum = |chunk: &[f32]| {
        let mut acc = [0f32; 16];
        for c in chunk.chunks_exact(16) {
            acc.iter_mut().zip(c).for_each(|(a, v)| *a += v);
        }
        acc.iter().sum::<f32>()
    };
    for (threads, pool) in pools {
        let mut total = 0f32;
        let t = pool.install(|| time(budget * 3, || total += buf.par_chunks(1 << 20).map(sum).sum::<f32>()));
        println!("stream 256 MiB thr {threads}: {:9.1} us  {:6.1} GB/s  (sum {total:.1})", t * 1e6, (buf.len() * 4) as f64 / t / 1e9);
    }
}

fn bytes_per_value(dtype: WeightDType) -> f64 {
    dtype.bits_per_value() / 8.0
}

/// Median seconds per call over as many calls as fit in `budget` (after warm-up).
fn time(budget: Duration, mut f: impl FnMut()) -> f64 {
    f();
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < budget || samples.len() < 3 {
        let t = Instant::now();
        f();
        samples.push(t.elapsed().as_secs_f64());
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

fn report(label: &str, rows: usize, d_in: usize, d_out: usize, wbytes: f64, t: f64) {
    let flops = 2.0 * (rows * d_in * d_out) as f64;
    let bytes = (d_in * d_out) as f64 * wbytes;
    println!("{label}: {:9.1} us  {:7.1} GFLOP/s  {:6.1} GB/s", t * 1e6, flops / t / 1e9, bytes / t / 1e9);
}
