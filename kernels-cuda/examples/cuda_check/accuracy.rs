//! Every kernel against a CPU reference on fresh random data.

use talaria_kernels::{WeightDType, WeightMatrix};
use talaria_kernels_cuda::{CudaError, CudaMatmul, KernelVariant};

use crate::data::{abs_err_over, bf16_round, max_abs, reference, rel_err, Rng64};

pub const EXACT_TOL: f64 = 1e-12;
pub const F32_TOL: f64 = 1e-5;

pub struct Outcome {
    pub failures: usize,
    pub lines: Vec<String>,
}

impl Outcome {
    fn check(&mut self, what: String, err: f64, tol: f64) {
        let ok = err <= tol && err.is_finite();
        if !ok {
            self.failures += 1;
        }
        self.lines.push(format!("| {what} | {err:.2e} | ≤ {tol:.0e} | {} |", if ok { "ok" } else { "**FAIL**" }));
    }
}

/// Exact mode through a forced kernel variant on device buffers.
fn exact_on_device(m: &CudaMatmul, x: &[f64], rows: usize, w: &WeightMatrix, variant: KernelVariant) -> Result<Vec<f64>, CudaError> {
    use talaria_kernels_cuda::error::CudaError as E;
    let dw = m.upload_weight(w)?;
    let s = m.stream();
    let dx = s.clone_htod(x).map_err(|e| E::Driver { context: "upload x".into(), source: e })?;
    let mut dy = s.alloc_zeros::<f64>(rows * w.rows).map_err(|e| E::Driver { context: "alloc y".into(), source: e })?;
    m.kernels().launch_exact(s, &dx.slice(..), &dw, &mut dy.slice_mut(..), rows, Some(variant))?;
    s.clone_dtoh(&dy).map_err(|e| E::Driver { context: "download y".into(), source: e })
}

pub fn run(m: &mut CudaMatmul, rng: &mut Rng64) -> Result<Outcome, CudaError> {
    let mut out = Outcome { failures: 0, lines: Vec::new() };
    out.lines.push("| check | error | threshold | |".into());
    out.lines.push("|---|---|---|---|".into());

    // Exact: every weight dtype, GEMV and tensor-core sizes, odd shapes
    // (scalar loads, partial tiles), and the two-stream pipelined path.
    for dtype in [WeightDType::Bf16, WeightDType::F16, WeightDType::F32] {
        for &(rows, d_in, d_out) in &[(1, 576, 1536), (5, 45, 130), (77, 576, 1536), (300, 1536, 576), (70, 45, 130)] {
            let w = rng.weight(d_out, d_in, dtype);
            let x = rng.vec(rows * d_in, 1e4); // masked rows: x + κ·pad, κ = 1e4
            let want = reference(&x, rows, &w);
            let dw = m.upload_weight(&w)?;
            let mut y = vec![0.0; rows * d_out];
            m.matmul_exact(&x, rows, &dw, &mut y)?;
            out.check(format!("exact {} {rows}×{d_in}→{d_out}", dtype.name()), rel_err(&y, &want), EXACT_TOL);
        }
        // Both variants outside their usual row range.
        let w = rng.weight(130, 72, dtype);
        let mut forced = vec![(3, KernelVariant::TensorCore), (77, KernelVariant::Gemv)];
        if m.device().compute_capability.0 >= 9 {
            forced.extend([(3, KernelVariant::TensorCoreSm90), (77, KernelVariant::TensorCoreSm90)]);
        }
        for (rows, variant) in forced {
            let x = rng.vec(rows * 72, 1e4);
            let y = exact_on_device(m, &x, rows, &w, variant)?;
            out.check(format!("exact {} {rows}×72→130 forced {variant:?}", dtype.name()), rel_err(&y, &reference(&x, rows, &w)), EXACT_TOL);
        }
    }

    // Exact on quant blocks read in place (the file's size on the device):
    // GEMV and both tensor-core kernels, against their exact values.
    for dtype in [WeightDType::Q4_0, WeightDType::Q4_1, WeightDType::Q5_0, WeightDType::Q8_0, WeightDType::Q4K, WeightDType::Q6K] {
        let w = rng.quant_weight(130, 512, dtype);
        for &rows in &[1, 77] {
            let x = rng.vec(rows * 512, 1e4);
            let dw = m.upload_weight(&w)?;
            let mut y = vec![0.0; rows * 130];
            m.matmul_exact(&x, rows, &dw, &mut y)?;
            out.check(format!("exact {} {rows}×512→130 (in place)", dtype.name()), rel_err(&y, &reference(&x, rows, &w)), EXACT_TOL);
        }
    }

    // Fast: x̃ = x + κ·pad in f32. Error relative to the masked product, and
    // relative to the unmasked signal x·W (what survives unmasking).
    for kappa in [1.0, 1e2, 1e4] {
        for &(rows, d_in, d_out) in &[(4, 576, 3072), (64, 576, 3072), (300, 1536, 576)] {
            let w = rng.weight(d_out, d_in, WeightDType::Bf16);
            let base = rng.vec(rows * d_in, 1.0);
            let masked: Vec<f32> = base.iter().map(|b| (b + kappa * rng.uniform()) as f32).collect();
            let masked64: Vec<f64> = masked.iter().map(|&v| f64::from(v)).collect();
            let want = reference(&masked64, rows, &w);
            let signal = max_abs(&reference(&base, rows, &w));
            let dw = m.upload_weight(&w)?;
            let mut y = vec![0.0f32; rows * d_out];
            m.matmul_fast(&masked, rows, &dw, &mut y)?;
            out.check(format!("fast κ={kappa:.0e} {rows}×{d_in}→{d_out} (vs masked X̃W)"), rel_err(&y, &want), F32_TOL);
            out.lines.push(format!(
                "| fast κ={kappa:.0e} {rows}×{d_in}→{d_out}: error / max|XW| after unmasking | {:.2e} | (report) | |",
                abs_err_over(&y, &want, signal)
            ));
        }
    }

    // Plain: bf16-rounded activations, f32 sums.
    for &(rows, d_in, d_out) in &[(1, 576, 3072), (64, 576, 3072), (70, 45, 130)] {
        let w = rng.weight(d_out, d_in, WeightDType::Bf16);
        let x: Vec<f32> = rng.vec(rows * d_in, 1.0).into_iter().map(|v| v as f32).collect();
        let rounded: Vec<f64> = x.iter().map(|&v| f64::from(bf16_round(v))).collect();
        let dw = m.upload_weight(&w)?;
        let mut y = vec![0.0f32; rows * d_out];
        m.matmul_plain(&x, rows, &dw, &mut y)?;
        out.check(format!("plain {rows}×{d_in}→{d_out}"), rel_err(&y, &reference(&rounded, rows, &w)), F32_TOL);
    }

    // Fast and plain on quant blocks read in place: the GEMV widens to the
    // exact values, the tensor-core kernel scales the quants per 16 values.
    for dtype in [WeightDType::Q4_0, WeightDType::Q4_1, WeightDType::Q5_0, WeightDType::Q8_0, WeightDType::Q4K, WeightDType::Q6K] {
        let w = rng.quant_weight(130, 512, dtype);
        let dw = m.upload_weight(&w)?;
        for &rows in &[1, 77] {
            let x: Vec<f32> = rng.vec(rows * 512, 1.0).into_iter().map(|v| v as f32).collect();
            let exact: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
            let rounded: Vec<f64> = x.iter().map(|&v| f64::from(bf16_round(v))).collect();
            let mut y = vec![0.0f32; rows * 130];
            m.matmul_fast(&x, rows, &dw, &mut y)?;
            out.check(format!("fast {} {rows}×512→130 (in place)", dtype.name()), rel_err(&y, &reference(&exact, rows, &w)), F32_TOL);
            m.matmul_plain(&x, rows, &dw, &mut y)?;
            out.check(format!("plain {} {rows}×512→130 (in place)", dtype.name()), rel_err(&y, &reference(&rounded, rows, &w)), F32_TOL);
        }
    }

    // Bad input is an error, not a crash (f16 weights have GEMV kernels
    // only in the f32-activation modes).
    let w = m.upload_weight(&rng.weight(8, 16, WeightDType::F16))?;
    let mut y = vec![0.0f32; 16 * 8];
    let rejected = matches!(m.matmul_fast(&[0.0; 16 * 16], 16, &w, &mut y), Err(CudaError::UnsupportedDtype { .. }))
        && m.matmul_exact(&[0.0; 15], 1, &w, &mut [0.0; 8]).is_err();
    out.check("bad input rejected (1 = no)".into(), if rejected { 0.0 } else { 1.0 }, 0.0);
    Ok(out)
}
