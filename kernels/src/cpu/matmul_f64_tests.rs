//! Exact-mode matmul checks: on data whose products and sums are exactly
//! representable in f64 but not in f32, any f32 intermediate would show.

use super::matmul_f64;
use crate::weight::{WeightDType, WeightMatrix};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

type MatmulF64 = fn(&[f64], usize, &WeightMatrix, &mut [f64]);

/// Every exact-mode path this CPU can run.
fn paths() -> Vec<(&'static str, MatmulF64)> {
    let mut list: Vec<(&'static str, MatmulF64)> = vec![("dispatch", matmul_f64), ("portable", super::matmul_f64::portable)];
    #[cfg(target_arch = "x86_64")]
    if super::features::CpuFeatures::get().avx2 {
        list.push(("avx2", |x, rows, w, out| {
            if rows > 0 && w.rows > 0 && w.cols > 0 {
                super::matmul_f64_avx2::matmul(x, rows, w, out)
            }
        }));
    }
    list
}

fn naive(x: &[f64], rows: usize, w: &WeightMatrix) -> Vec<f64> {
    let wf = w.to_f32();
    let (n, k) = (w.rows, w.cols);
    let mut out = vec![0f64; rows * n];
    for r in 0..rows {
        for j in 0..n {
            out[r * n + j] = (0..k).map(|c| x[r * k + c] * wf[j * k + c] as f64).sum();
        }
    }
    out
}

#[test]
fn matmul_f64_is_exact_on_representable_data() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
    // x: 35 significant bits (not f32-representable); w: integers/256 (exact in bf16 and f16).
    for dtype in [WeightDType::F32, WeightDType::Bf16, WeightDType::F16] {
        for &(rows, n, k) in &[(1, 17, 600), (1, 8, 7), (2, 9, 31), (2, 33, 70), (3, 40, 33), (17, 5, 129), (64, 24, 576), (100, 37, 100)] {
            let x: Vec<f64> = (0..rows * k).map(|_| rng.random_range(-(1i64 << 34)..(1i64 << 34)) as f64 / (1u64 << 34) as f64).collect();
            let w: Vec<f32> = (0..n * k).map(|_| rng.random_range(-256i32..=256) as f32 / 256.0).collect();
            let w = WeightMatrix::from_f32(n, k, w, dtype);
            let want = naive(&x, rows, &w);
            for (name, f) in paths() {
                let mut out = vec![f64::NAN; rows * n];
                f(&x, rows, &w, &mut out);
                for (i, (a, b)) in out.iter().zip(&want).enumerate() {
                    assert_eq!(a.to_bits(), b.to_bits(), "{name} {dtype:?} rows {rows} n {n} k {k} at {i}: {a} vs {b}");
                }
            }
        }
    }
}

#[test]
fn matmul_f64_close_on_random_data() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(6);
    for dtype in [WeightDType::F32, WeightDType::Bf16] {
        for &(rows, n, k) in &[(1, 30, 577), (40, 30, 64), (7, 50, 1536)] {
            let x: Vec<f64> = (0..rows * k).map(|_| rng.random_range(-1e4..1e4)).collect();
            let w = WeightMatrix::from_f32(n, k, (0..n * k).map(|_| rng.random_range(-1.0f32..1.0)).collect(), dtype);
            let mut out = vec![0f64; rows * n];
            matmul_f64(&x, rows, &w, &mut out);
            let wf = w.to_f32();
            for r in 0..rows {
                for j in 0..n {
                    let scale: f64 = (0..k).map(|c| (x[r * k + c] * wf[j * k + c] as f64).abs()).sum();
                    let want: f64 = (0..k).map(|c| x[r * k + c] * wf[j * k + c] as f64).sum();
                    assert!((out[r * n + j] - want).abs() <= 1e-14 * scale, "{dtype:?} ({r},{j})");
                }
            }
        }
    }
}
