//! Numerically stable softmax and log-softmax over a slice (max subtracted,
//! sum in f64).

use super::exp::{exp, sum_f64};

fn max(x: &[f32]) -> f32 {
    x.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// In-place softmax. An all `-inf` slice becomes uniform; NaN propagates.
pub fn softmax(x: &mut [f32]) {
    if x.is_empty() {
        return;
    }
    let m = max(x);
    if m == f32::NEG_INFINITY {
        let u = 1.0 / x.len() as f32;
        x.fill(u);
        return;
    }
    x.iter_mut().for_each(|v| *v = exp(*v - m));
    let inv = (1.0 / sum_f64(x)) as f32;
    x.iter_mut().for_each(|v| *v *= inv);
}

/// In-place `x - logsumexp(x)`. An all `-inf` slice becomes `-ln(len)`.
pub fn log_softmax(x: &mut [f32]) {
    if x.is_empty() {
        return;
    }
    let m = max(x);
    if m == f32::NEG_INFINITY {
        let u = -(x.len() as f32).ln();
        x.fill(u);
        return;
    }
    let sum: f64 = x.iter().map(|&v| exp(v - m) as f64).sum();
    let shift = m + sum.ln() as f32;
    x.iter_mut().for_each(|v| *v -= shift);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_matches_reference_and_survives_large_values() {
        let orig = [1000.0f32, 999.0, 998.5, -1000.0, f32::NEG_INFINITY, 1000.0];
        let mut x = orig;
        softmax(&mut x);
        let m = 1000.0f64;
        let e: Vec<f64> = orig.iter().map(|&v| (v as f64 - m).exp()).collect();
        let s: f64 = e.iter().sum();
        for (a, b) in x.iter().zip(&e) {
            assert!((*a as f64 - b / s).abs() < 1e-6);
        }
        assert_eq!(x[4], 0.0);
        assert!((x.iter().map(|&v| v as f64).sum::<f64>() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn log_softmax_matches_log_of_softmax() {
        let orig: Vec<f32> = (0..50).map(|i| (i as f32 * 1.7).sin() * 20.0).collect();
        let mut p = orig.clone();
        softmax(&mut p);
        let mut l = orig.clone();
        log_softmax(&mut l);
        for (a, b) in l.iter().zip(&p) {
            assert!((a - b.ln()).abs() < 1e-5, "{a} vs {}", b.ln());
        }
    }

    #[test]
    fn degenerate_inputs() {
        let mut e: [f32; 0] = [];
        softmax(&mut e);
        let mut x = [f32::NEG_INFINITY; 4];
        softmax(&mut x);
        assert_eq!(x, [0.25; 4]);
        let mut y = [f32::NEG_INFINITY; 4];
        log_softmax(&mut y);
        assert!((y[0] + 4f32.ln()).abs() < 1e-7);
        let mut z = [1.0, f32::NAN];
        softmax(&mut z);
        assert!(z[1].is_nan());
    }
}
