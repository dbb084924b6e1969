//! Checks every matmul backend this CPU supports against a naive f64
//! reference, across odd shapes and weight types, and checks batch invariance.

use super::features::CpuFeatures;
use crate::weight::{WeightDType, WeightMatrix};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

type Backend = fn(&[f32], usize, &WeightMatrix, &mut [f32]);

fn backends(dtype: WeightDType) -> Vec<(&'static str, Backend)> {
    let mut list: Vec<(&'static str, Backend)> = vec![("portable", super::matmul_portable::matmul), ("dispatch", super::matmul)];
    #[cfg(target_arch = "x86_64")]
    {
        let f = CpuFeatures::get();
        if f.avx2 {
            list.push(("avx2", super::matmul_avx2::matmul));
        }
        if f.avx512 {
            list.push(("avx512", super::matmul_avx512::matmul));
        }
        if f.amx_bf16 && dtype == WeightDType::Bf16 {
            list.push(("amx", |x, rows, w, out| match &w.data {
                crate::weight::WeightData::Bf16(v) => super::amx_bf16::matmul(x, rows, w.cols, v, w.rows, out),
                _ => unreachable!(),
            }));
        }
    }
    let _ = dtype;
    list
}

pub(crate) fn random_vec(rng: &mut Xoshiro256PlusPlus, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// Naive reference in f64 and the scale `Σ|x||w|` per output for tolerances.
fn reference(x: &[f32], rows: usize, w: &WeightMatrix) -> (Vec<f64>, Vec<f64>) {
    let wf = w.to_f32();
    let (n, k) = (w.rows, w.cols);
    let mut out = vec![0f64; rows * n];
    let mut scale = vec![0f64; rows * n];
    for r in 0..rows {
        for j in 0..n {
            for c in 0..k {
                let p = x[r * k + c] as f64 * wf[j * k + c] as f64;
                out[r * n + j] += p;
                scale[r * n + j] += p.abs();
            }
        }
    }
    (out, scale)
}

#[test]
fn matmul_matches_reference_all_backends() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
    let shapes = [(1, 1, 1), (1, 37, 33), (3, 17, 100), (17, 50, 31), (600, 40, 70), (5, 64, 576), (6, 33, 129), (12, 70, 64)];
    for dtype in [WeightDType::F32, WeightDType::Bf16, WeightDType::F16] {
        for &(rows, n, k) in &shapes {
            let x = random_vec(&mut rng, rows * k);
            let w = WeightMatrix::from_f32(n, k, random_vec(&mut rng, n * k), dtype);
            let (want, scale) = reference(&x, rows, &w);
            for (name, f) in backends(dtype) {
                let mut out = vec![f32::NAN; rows * n];
                f(&x, rows, &w, &mut out);
                for i in 0..out.len() {
                    let tol = 2e-6 * scale[i] + 1e-30;
                    assert!(
                        (out[i] as f64 - want[i]).abs() <= tol,
                        "{name} {dtype:?} rows {rows} n {n} k {k} at {i}: {} vs {}",
                        out[i],
                        want[i]
                    );
                }
            }
        }
    }
}

#[test]
fn matmul_rows_are_batch_invariant() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
    for dtype in [WeightDType::F32, WeightDType::Bf16, WeightDType::F16] {
        for &(n, k) in &[(48, 100), (35, 576), (20, 33), (45, 1000)] {
            let w = WeightMatrix::from_f32(n, k, random_vec(&mut rng, n * k), dtype);
            let batch = 300;
            let x = random_vec(&mut rng, batch * k);
            for (name, f) in backends(dtype) {
                let mut all = vec![0f32; batch * n];
                f(&x, batch, &w, &mut all);
                // Every row alone, and a few sub-batches of other sizes, must agree bit for bit.
                for &(start, len) in &[(0, 1), (7, 1), (299, 1), (3, 2), (10, 3), (20, 4), (40, 5), (50, 16), (100, 17), (120, 180)] {
                    let mut part = vec![0f32; len * n];
                    f(&x[start * k..(start + len) * k], len, &w, &mut part);
                    let expect = &all[start * n..(start + len) * n];
                    assert!(
                        part.iter().zip(expect).all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{name} {dtype:?} n {n} k {k}: rows {start}..+{len} differ alone vs batched"
                    );
                }
            }
        }
    }
}

#[test]
fn matmul_zero_sized_shapes() {
    let w = WeightMatrix::from_f32(3, 0, vec![], WeightDType::Bf16);
    let mut out = vec![1f32; 6];
    super::matmul(&[], 2, &w, &mut out);
    assert_eq!(out, vec![0.0; 6]);
    let w = WeightMatrix::from_f32(0, 4, vec![], WeightDType::F32);
    super::matmul(&[0.0; 8], 2, &w, &mut []);
}
