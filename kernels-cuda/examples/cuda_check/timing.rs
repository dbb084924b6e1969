//! Kernel timings on device buffers (no host copies) against cuBLAS, plus
//! the host-to-host call time of `CudaMatmul`, as a markdown table.

use std::time::Instant;

use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::CudaStream;
use talaria_kernels::WeightDType;
use talaria_kernels_cuda::error::CudaError;
use talaria_kernels_cuda::{CublasReference, CudaMatmul, KernelVariant, MatmulMode};

use crate::data::{bf16_bits, rel_err, Rng64};

/// FP64 tensor-core peak of an H100 SXM; override with TALARIA_FP64_PEAK_TFLOPS.
const DEFAULT_FP64_PEAK_TFLOPS: f64 = 67.0;

pub struct Shape {
    pub label: &'static str,
    pub rows: usize,
    pub d_in: usize,
    pub d_out: usize,
}

pub const SHAPES: &[Shape] = &[
    Shape { label: "decode gate_up", rows: 1, d_in: 576, d_out: 3072 },
    Shape { label: "decode gate_up", rows: 16, d_in: 576, d_out: 3072 },
    Shape { label: "decode gate_up", rows: 64, d_in: 576, d_out: 3072 },
    Shape { label: "decode down", rows: 1, d_in: 1536, d_out: 576 },
    Shape { label: "decode down", rows: 16, d_in: 1536, d_out: 576 },
    Shape { label: "decode down", rows: 64, d_in: 1536, d_out: 576 },
    Shape { label: "prefill gate_up", rows: 512, d_in: 576, d_out: 3072 },
    Shape { label: "prefill down", rows: 512, d_in: 1536, d_out: 576 },
    Shape { label: "square", rows: 4096, d_in: 4096, d_out: 4096 },
];

fn drv<T>(r: Result<T, cudarc::driver::DriverError>, what: &str) -> Result<T, CudaError> {
    r.map_err(|source| CudaError::Driver { context: what.into(), source })
}

/// Mean milliseconds per run of `f`, by CUDA events (timing-enabled: cudarc
/// creates events without timing by default) around enough runs to
/// fill about 30 ms, after two warm-up runs.
fn time_ms(stream: &std::sync::Arc<CudaStream>, mut f: impl FnMut() -> Result<(), CudaError>) -> Result<f64, CudaError> {
    f()?;
    f()?;
    let start = drv(stream.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT)), "event")?;
    f()?;
    let end = drv(stream.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT)), "event")?;
    drv(end.synchronize(), "sync")?;
    let once = f64::from(drv(start.elapsed_ms(&end), "elapsed")?).max(1e-3);
    let iters = ((30.0 / once) as usize).clamp(3, 500);
    let start = drv(stream.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT)), "event")?;
    for _ in 0..iters {
        f()?;
    }
    let end = drv(stream.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT)), "event")?;
    drv(end.synchronize(), "sync")?;
    Ok(f64::from(drv(start.elapsed_ms(&end), "elapsed")?) / iters as f64)
}

fn gflops(s: &Shape, ms: f64) -> f64 {
    2.0 * (s.rows * s.d_in * s.d_out) as f64 / (ms * 1e6)
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.digits$}"))
}

pub struct TimingReport {
    pub table: Vec<String>,
    pub cross_check_failures: usize,
}

pub fn run(m: &mut CudaMatmul, rng: &mut Rng64) -> Result<TimingReport, CudaError> {
    let peak = std::env::var("TALARIA_FP64_PEAK_TFLOPS").ok().and_then(|v| v.parse::<f64>().ok()).unwrap_or(DEFAULT_FP64_PEAK_TFLOPS);
    let stream = m.stream().clone();
    let blas = match CublasReference::new(stream.clone()) {
        Ok(b) => Some(b),
        Err(e) => {
            eprintln!("cuBLAS reference unavailable: {e}");
            None
        }
    };
    let mut table = vec![
        format!("| shape | rows×d_in→d_out | exact GFLOP/s | DGEMM GFLOP/s | exact % DGEMM | exact % FP64 peak ({peak} TF) | exact m8n8k4 kernel GFLOP/s | fast GFLOP/s | plain GFLOP/s | cuBLAS bf16 GFLOP/s | fast % cuBLAS bf16 | plain % cuBLAS bf16 | exact host call µs | fast host call µs |"),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|".into(),
    ];
    let mut cross_check_failures = 0;
    for s in SHAPES {
        let w = rng.weight(s.d_out, s.d_in, WeightDType::Bf16);
        let dw = m.upload_weight(&w)?;
        let x64 = rng.vec(s.rows * s.d_in, 1e2);
        let x32: Vec<f32> = x64.iter().map(|&v| v as f32).collect();
        let dx64 = drv(stream.clone_htod(&x64), "upload x f64")?;
        let dx32 = drv(stream.clone_htod(&x32), "upload x f32")?;
        let mut dy64 = drv(stream.alloc_zeros::<f64>(s.rows * s.d_out), "alloc y f64")?;
        let mut dy32 = drv(stream.alloc_zeros::<f32>(s.rows * s.d_out), "alloc y f32")?;
        let kernels = m.kernels();

        let t_exact =
            time_ms(&stream, || kernels.launch_exact(&stream, &dx64.slice(..), &dw, &mut dy64.slice_mut(..), s.rows, None).map(drop))?;
        let ours_exact = drv(stream.clone_dtoh(&dy64), "download")?;
        // On sm_90 the default tiled kernel issues m16n8k4 DMMA: the m8n8k4
        // one (sm_80's) for comparison.
        let t_exact90 = if m.device().compute_capability.0 >= 9 && s.rows > 8 {
            let t = time_ms(&stream, || {
                kernels
                    .launch_exact(&stream, &dx64.slice(..), &dw, &mut dy64.slice_mut(..), s.rows, Some(KernelVariant::TensorCore))
                    .map(drop)
            })?;
            let e = rel_err(&drv(stream.clone_dtoh(&dy64), "download")?, &ours_exact);
            if e > crate::accuracy::EXACT_TOL {
                cross_check_failures += 1;
                eprintln!("m8n8k4 vs default exact kernel FAILED for {}×{}→{}: {e:.2e}", s.rows, s.d_in, s.d_out);
            }
            Some(t)
        } else {
            None
        };
        let t_fast = time_ms(&stream, || {
            kernels.launch_bf16(MatmulMode::Fast, &stream, &dx32.slice(..), &dw, &mut dy32.slice_mut(..), s.rows, None).map(drop)
        })?;
        let t_plain = time_ms(&stream, || {
            kernels.launch_bf16(MatmulMode::Plain, &stream, &dx32.slice(..), &dw, &mut dy32.slice_mut(..), s.rows, None).map(drop)
        })?;
        let ours_plain = drv(stream.clone_dtoh(&dy32), "download")?;

        let (mut t_dgemm, mut t_bf16) = (None, None);
        if let Some(blas) = &blas {
            let w64: Vec<f64> = w.to_f32().into_iter().map(f64::from).collect();
            let dw64 = drv(stream.clone_htod(&w64), "upload w f64")?;
            let dwbf = drv(stream.clone_htod(&bf16_bits(&w.to_f32())), "upload w bf16")?;
            let dxbf = drv(stream.clone_htod(&bf16_bits(&x32)), "upload x bf16")?;
            t_dgemm =
                Some(time_ms(&stream, || blas.dgemm(&dx64.slice(..), &dw64.slice(..), &mut dy64.slice_mut(..), s.rows, s.d_in, s.d_out))?);
            let cublas_exact: Vec<f64> = drv(stream.clone_dtoh(&dy64), "download")?;
            t_bf16 = Some(time_ms(&stream, || {
                blas.gemm_bf16(&dxbf.slice(..), &dwbf.slice(..), &mut dy32.slice_mut(..), s.rows, s.d_in, s.d_out)
            })?);
            let cublas_plain: Vec<f64> = drv(stream.clone_dtoh(&dy32), "download")?.into_iter().map(f64::from).collect();
            let e_exact = rel_err(&ours_exact, &cublas_exact);
            let e_plain = rel_err(&ours_plain, &cublas_plain);
            if e_exact > crate::accuracy::EXACT_TOL || e_plain > crate::accuracy::F32_TOL {
                cross_check_failures += 1;
                eprintln!("cross-check vs cuBLAS FAILED for {}×{}→{}: exact {e_exact:.2e}, plain {e_plain:.2e}", s.rows, s.d_in, s.d_out);
            }
        }

        // Host-to-host calls (copies included), for the shapes a worker sees.
        let (mut host_exact, mut host_fast) = (None, None);
        if s.rows <= 512 {
            let mut y64 = vec![0.0; s.rows * s.d_out];
            let mut y32 = vec![0.0f32; s.rows * s.d_out];
            let reps = 20;
            m.matmul_exact(&x64, s.rows, &dw, &mut y64)?;
            let t0 = Instant::now();
            for _ in 0..reps {
                m.matmul_exact(&x64, s.rows, &dw, &mut y64)?;
            }
            host_exact = Some(t0.elapsed().as_secs_f64() * 1e6 / reps as f64);
            m.matmul_fast(&x32, s.rows, &dw, &mut y32)?;
            let t0 = Instant::now();
            for _ in 0..reps {
                m.matmul_fast(&x32, s.rows, &dw, &mut y32)?;
            }
            host_fast = Some(t0.elapsed().as_secs_f64() * 1e6 / reps as f64);
        }

        let g_exact = gflops(s, t_exact);
        let pct = |ours: f64, theirs: Option<f64>| theirs.map(|t| 100.0 * t / ours);
        table.push(format!(
            "| {} | {}×{}→{} | {:.0} | {} | {} | {:.1} | {} | {:.0} | {:.0} | {} | {} | {} | {} | {} |",
            s.label,
            s.rows,
            s.d_in,
            s.d_out,
            g_exact,
            fmt_opt(t_dgemm.map(|t| gflops(s, t)), 0),
            fmt_opt(pct(t_exact, t_dgemm), 0),
            100.0 * g_exact / (peak * 1e3),
            fmt_opt(t_exact90.map(|t| gflops(s, t)), 0),
            gflops(s, t_fast),
            gflops(s, t_plain),
            fmt_opt(t_bf16.map(|t| gflops(s, t)), 0),
            fmt_opt(pct(t_fast, t_bf16), 0),
            fmt_opt(pct(t_plain, t_bf16), 0),
            fmt_opt(host_exact, 0),
            fmt_opt(host_fast, 0),
        ));
    }
    quant_table(m, rng, &mut table)?;
    Ok(TimingReport { table, cross_check_failures })
}

/// The exact and fast kernels on quant blocks read in place: weight GB/s
/// for a decode row, GFLOP/s for a 512-row prefill, against the same
/// matrix as bf16 (what a worker uploaded before).
fn quant_table(m: &mut CudaMatmul, rng: &mut Rng64, table: &mut Vec<String>) -> Result<(), CudaError> {
    let stream = m.stream().clone();
    table.push(String::new());
    table.push(
        "| weights (4096→4096) | bytes | exact 1 row µs | exact weight GB/s | exact 512 rows GFLOP/s | fast 1 row µs | fast weight GB/s | fast 512 rows GFLOP/s |"
            .into(),
    );
    table.push("|---|---|---|---|---|---|---|---|".into());
    let shape = Shape { label: "", rows: 512, d_in: 4096, d_out: 4096 };
    for dtype in [WeightDType::Bf16, WeightDType::Q8_0, WeightDType::Q4_0, WeightDType::Q4_1, WeightDType::Q4K, WeightDType::Q6K] {
        let w = if dtype == WeightDType::Bf16 { rng.weight(4096, 4096, dtype) } else { rng.quant_weight(4096, 4096, dtype) };
        let dw = m.upload_weight(&w)?;
        let kernels = m.kernels();
        let mut cells = format!("| {} | {} |", dtype.name(), w.size_bytes());
        for fast in [false, true] {
            let mut t = [0.0; 2];
            for (slot, rows) in [1, 512].into_iter().enumerate() {
                let x = rng.vec(rows * 4096, 1e2);
                t[slot] = if fast {
                    let dx = drv(stream.clone_htod(&x.iter().map(|&v| v as f32).collect::<Vec<f32>>()), "upload x")?;
                    let mut dy = drv(stream.alloc_zeros::<f32>(rows * 4096), "alloc y")?;
                    time_ms(&stream, || {
                        kernels.launch_bf16(MatmulMode::Fast, &stream, &dx.slice(..), &dw, &mut dy.slice_mut(..), rows, None).map(drop)
                    })?
                } else {
                    let dx = drv(stream.clone_htod(&x), "upload x")?;
                    let mut dy = drv(stream.alloc_zeros::<f64>(rows * 4096), "alloc y")?;
                    time_ms(&stream, || kernels.launch_exact(&stream, &dx.slice(..), &dw, &mut dy.slice_mut(..), rows, None).map(drop))?
                };
            }
            cells += &format!(" {:.1} | {:.0} | {:.0} |", t[0] * 1e3, w.size_bytes() as f64 / (t[0] * 1e6), gflops(&shape, t[1]));
        }
        table.push(cells);
    }
    Ok(())
}
