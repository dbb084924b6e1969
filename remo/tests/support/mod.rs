//! Helpers shared by the `remo_*` integration tests.
#![allow(dead_code, unused_imports)]

mod recording_worker;
pub use recording_worker::{ReceivedCall, RecordingWorker};

use std::collections::HashMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use talaria_models::OpId;
use talaria_remo::{OpSpec, RemoSetup};

/// A setup with every channel scale of every op equal to `scale`.
pub fn setup(ops: &[(OpId, usize, usize)], scale: f64) -> RemoSetup {
    let ops: HashMap<OpId, OpSpec> =
        ops.iter().map(|&(id, d_in, d_out)| (id, OpSpec { d_in, d_out, channel_scales: vec![scale; d_in] })).collect();
    RemoSetup::new(ops).expect("valid test setup")
}

/// `n` Gaussian rows of width `d`, entries `N(0, scale²)` (test data only).
pub fn gaussian(n: usize, d: usize, scale: f64, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n * d).map(|_| scale * rng.sample::<f64, _>(StandardNormal)).collect()
}

pub fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// `‖a − b‖ / ‖b‖`.
pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den).sqrt()
}

pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb)
}

pub fn rms(v: &[f64]) -> f64 {
    (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64).sqrt()
}
