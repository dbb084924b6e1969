//! SiLU and the gated MLP activation `act(gate) · up` (SiLU or GELU-tanh).

use super::exp::exp;
use crate::precision::Float;
use rayon::prelude::*;

const PARALLEL_ELEMS: usize = 1 << 16;

/// `x · sigmoid(x)`.
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

/// The gated MLP's activation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    #[default]
    Silu,
    /// PyTorch's `gelu(approximate="tanh")` (`gelu_pytorch_tanh`).
    GeluTanh,
}

/// `silu(gate) · up` per row (see [`gated_mul`]).
pub fn silu_mul<T: Float>(gate_up: &[T], d_ff: usize, out: &mut [T]) {
    gated_mul(gate_up, d_ff, Activation::Silu, out)
}

/// Each input row is `[gate (d_ff) | up (d_ff)]`; the output row (`d_ff`)
/// is `act(gate) · up`, in f32 (fast engine) or f64 (exact mode).
///
/// # Panics
/// When `gate_up` is not `2 · d_ff` per output row of `out` (a caller bug).
pub fn gated_mul<T: Float>(gate_up: &[T], d_ff: usize, act: Activation, out: &mut [T]) {
    if d_ff == 0 {
        return;
    }
    assert_eq!(out.len() % d_ff, 0, "silu_mul: output length {} is not a multiple of d_ff = {d_ff}", out.len());
    assert_eq!(gate_up.len(), 2 * out.len(), "silu_mul: gate_up has {} values for {} outputs", gate_up.len(), out.len());
    let row = |(gu, o): (&[T], &mut [T])| {
        let (gate, up) = gu.split_at(d_ff);
        match act {
            Activation::Silu => o.iter_mut().zip(gate).zip(up).for_each(|((o, &g), &u)| *o = g.silu() * u),
            Activation::GeluTanh => o.iter_mut().zip(gate).zip(up).for_each(|((o, &g), &u)| *o = g.gelu_tanh() * u),
        }
    };
    if out.len() >= PARALLEL_ELEMS {
        gate_up.par_chunks_exact(2 * d_ff).zip(out.par_chunks_exact_mut(d_ff)).for_each(row);
    } else {
        gate_up.chunks_exact(2 * d_ff).zip(out.chunks_exact_mut(d_ff)).for_each(row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silu_matches_formula() {
        for &x in &[-50.0f32, -5.0, -1.0, -0.1, 0.0, 0.3, 2.0, 20.0, 100.0] {
            let want = x as f64 / (1.0 + (-x as f64).exp());
            assert!((silu(x) as f64 - want).abs() <= 1e-6 * want.abs().max(1e-30), "silu({x})");
        }
        assert_eq!(silu(-1000.0), -0.0);
    }

    #[test]
    fn gelu_tanh_matches_pytorch_values() {
        // torch.nn.functional.gelu(x, approximate="tanh") in f64.
        for (x, want) in [(-3.0, -0.00363739208177), (-0.5, -0.154285990175), (0.0, 0.0), (1.0, 0.841191990608), (2.5, 2.48491573391)] {
            let g = vec![x as f32, 1.0f32];
            let mut o = [0f32];
            gated_mul(&g, 1, Activation::GeluTanh, &mut o);
            assert!((o[0] as f64 - want).abs() < 1e-6, "gelu_tanh({x}) = {} not {want}", o[0]);
            let mut o64 = [0f64];
            gated_mul(&[x, 1.0], 1, Activation::GeluTanh, &mut o64);
            assert!((o64[0] - want).abs() < 1e-11, "f64 gelu_tanh({x}) = {} not {want}", o64[0]);
        }
    }

    #[test]
    fn f32_gelu_tanh_is_within_a_few_ulp() {
        // x·σ(2u) in f64 (the tanh form cancels to 0 for large negative x).
        let want = |x: f64| x / (1.0 + (-2.0 * (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).exp());
        let mut x = -30.0f32;
        while x < 30.0 {
            let (a, b) = (x.gelu_tanh() as f64, want(x as f64));
            // The f32 argument 2u carries its own rounding: |2u|·2⁻²⁴ relative.
            let two_u = 1.6 * (x.abs() as f64 + 0.045 * (x as f64).powi(3).abs());
            assert!((a - b).abs() <= 4e-7 * (1.0 + two_u) * b.abs() + 1e-30, "gelu_tanh({x}) = {a}, want {b}");
            x += 0.0071;
        }
        assert_eq!((-200.0f32).gelu_tanh(), 0.0);
        assert_eq!(200.0f32.gelu_tanh(), 200.0);
    }

    #[test]
    fn f64_gelu_tanh_matches_the_tanh_form() {
        let k = (2.0 / std::f64::consts::PI).sqrt();
        let tanh_form = |x: f64| 0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh());
        let sigmoid_form = |x: f64| x / (1.0 + (-2.0 * k * (x + 0.044715 * x * x * x)).exp());
        let mut x = -30.0f64;
        while x < 30.0 {
            let a = x.gelu_tanh();
            let b = sigmoid_form(x);
            assert!((a - b).abs() <= 4e-15 * b.abs() + 1e-300, "gelu_tanh({x}) = {a:e}, std exp form {b:e}");
            // Below -1 the tanh form itself cancels (1 + tanh u → 0).
            if x > -1.0 {
                let t = tanh_form(x);
                assert!((a - t).abs() <= 1e-14 * t.abs(), "gelu_tanh({x}) = {a:e}, tanh form {t:e}");
            }
            x += 0.001_3;
        }
        assert_eq!((-200.0f64).gelu_tanh(), 0.0);
        assert_eq!(200.0f64.gelu_tanh(), 200.0);
    }

    #[test]
    fn silu_mul_rows() {
        let d_ff = 19;
        let rows = 3;
        let gu: Vec<f32> = (0..rows * 2 * d_ff).map(|i| (i as f32 * 0.21).cos() * 3.0).collect();
        let mut out = vec![0f32; rows * d_ff];
        silu_mul(&gu, d_ff, &mut out);
        let gu64: Vec<f64> = gu.iter().map(|&v| v as f64).collect();
        let mut out64 = vec![0f64; rows * d_ff];
        silu_mul(&gu64, d_ff, &mut out64);
        for r in 0..rows {
            for i in 0..d_ff {
                let (g, u) = (gu[r * 2 * d_ff + i] as f64, gu[r * 2 * d_ff + d_ff + i] as f64);
                let want = g / (1.0 + (-g).exp()) * u;
                assert!((out[r * d_ff + i] as f64 - want).abs() < 1e-6, "row {r} col {i}");
                assert!((out64[r * d_ff + i] - want).abs() < 1e-14 * want.abs().max(1.0), "f64 row {r} col {i}");
            }
        }
    }
}
