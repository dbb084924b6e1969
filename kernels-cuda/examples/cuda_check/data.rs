//! Random test data and CPU references.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use talaria_kernels::{WeightDType, WeightMatrix};

pub struct Rng64(Xoshiro256PlusPlus);

impl Rng64 {
    /// Seeded from the clock: every run checks fresh data (the seed is printed).
    pub fn fresh() -> (Self, u64) {
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
        (Self(Xoshiro256PlusPlus::seed_from_u64(seed)), seed)
    }

    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0.random::<f64>() * 2.0 - 1.0
    }

    pub fn vec(&mut self, n: usize, scale: f64) -> Vec<f64> {
        (0..n).map(|_| self.uniform() * scale).collect()
    }

    pub fn weight(&mut self, d_out: usize, d_in: usize, dtype: WeightDType) -> WeightMatrix {
        let values: Vec<f32> = (0..d_out * d_in).map(|_| (self.uniform() * 0.05) as f32).collect();
        WeightMatrix::from_f32(d_out, d_in, values, dtype)
    }

    /// A matrix of random quant blocks, scales near 2^-6 (`d_in` whole blocks).
    pub fn quant_weight(&mut self, d_out: usize, d_in: usize, dtype: WeightDType) -> WeightMatrix {
        let mut bytes: Vec<u8> =
            (0..dtype.bytes_for(d_out * d_in).expect("whole blocks")).map(|_| (self.uniform() * 128.0) as i8 as u8).collect();
        for block in bytes.chunks_exact_mut(dtype.block().1) {
            for &at in dtype.f16_scale_offsets() {
                block[at..at + 2].copy_from_slice(&half::f16::from_f32((self.uniform() / 64.0) as f32).to_le_bytes());
            }
        }
        WeightMatrix::from_stored(d_out, d_in, dtype, &bytes).expect("whole blocks")
    }
}

/// `x (rows × d_in) · Wᵀ` in f64 with W widened exactly.
pub fn reference(x: &[f64], rows: usize, w: &WeightMatrix) -> Vec<f64> {
    let wf: Vec<f64> = w.to_f32().into_iter().map(f64::from).collect();
    let (k, n) = (w.cols, w.rows);
    let mut y = vec![0.0; rows * n];
    y.par_chunks_mut(n).enumerate().for_each(|(r, out)| {
        let xr = &x[r * k..(r + 1) * k];
        for (c, o) in out.iter_mut().enumerate() {
            *o = xr.iter().zip(&wf[c * k..(c + 1) * k]).map(|(a, b)| a * b).sum();
        }
    });
    y
}

/// max |got − want| / max |want|.
pub fn rel_err<T: Copy + Into<f64>>(got: &[T], want: &[f64]) -> f64 {
    let mut num: f64 = 0.0;
    let mut den: f64 = 0.0;
    for (g, w) in got.iter().zip(want) {
        num = num.max(((*g).into() - w).abs());
        den = den.max(w.abs());
    }
    if den == 0.0 {
        num
    } else {
        num / den
    }
}

/// max |got − want| / `scale`.
pub fn abs_err_over<T: Copy + Into<f64>>(got: &[T], want: &[f64], scale: f64) -> f64 {
    got.iter().zip(want).map(|(g, w)| ((*g).into() - w).abs()).fold(0.0, f64::max) / scale
}

pub fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

pub fn bf16_round(v: f32) -> f32 {
    half::bf16::from_f32(v).to_f32()
}

pub fn bf16_bits(v: &[f32]) -> Vec<u16> {
    v.iter().map(|&x| half::bf16::from_f32(x).to_bits()).collect()
}
