//! Branch-free f32 `exp` the compiler can vectorize (std's calls libm per
//! element). Relative error about 2e-7 (a couple of ulp).

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
/// Adding and subtracting 1.5·2²³ rounds to the nearest integer.
const ROUND: f32 = 12_582_912.0;

#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let xc = x.clamp(-87.3, 88.0);
    let n = (xc * LOG2E + ROUND) - ROUND;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    // Taylor to r⁶ on |r| ≤ ln2/2.
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    let v = p * scale;
    // Out of the reduced range: underflow to 0, overflow to +inf (a few
    // values in (88, 88.72] that still fit f32 saturate early; harmless for
    // softmax, which only sees x ≤ 0, and for SiLU).
    if x < -87.3 {
        0.0
    } else if x > 88.0 {
        f32::INFINITY
    } else {
        v
    }
}

/// Sum of f32 values in f64 with 8 independent lanes (vectorizable, fixed order).
pub(crate) fn sum_f64(x: &[f32]) -> f64 {
    let mut acc = [0f64; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..8 {
            acc[l] += c[l] as f64;
        }
    }
    for (l, &v) in rest.iter().enumerate() {
        acc[l] += v as f64;
    }
    ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_to_std_exp() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let (a, b) = (exp(x) as f64, (x as f64).exp());
            assert!((a - b).abs() <= 4e-7 * b, "exp({x}) = {a}, want {b}");
            x += 0.0137;
        }
    }

    #[test]
    fn edges() {
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-1000.0), 0.0);
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(1000.0), f32::INFINITY);
    }

    #[test]
    fn sum_is_exact_for_small_integers() {
        let v: Vec<f32> = (0..1001).map(|i| i as f32).collect();
        assert_eq!(sum_f64(&v), 500_500.0);
    }
}
