//! Times the parts of deriving one op's answer-check reference at
//! SmolLM2-135M's shapes: the Gram matrix, the Cholesky solve, the whole
//! `solve_reference`, and checking one pad batch against it.
//!
//! `cargo run --release -p talaria-remo --example reference_cost`

use std::time::Instant;

use talaria_kernels::cpu::{cholesky, gram};
use talaria_models::{Op, OpId};
use talaria_remo::pads::secure_rng::SecureRng;
use talaria_remo::verify::reference::solve_reference;
use talaria_remo::verify::OpCheck;

fn main() {
    let mut rng = SecureRng::from_os().expect("OS randomness");
    for (name, d_in, d_out, n_p) in [("qkv", 576, 960, 1024), ("gate_up", 576, 3072, 1024), ("down", 1536, 576, 2048)] {
        let sigma = vec![1.0; d_in];
        let mut r = vec![0.0f64; n_p * d_in];
        rng.fill_gaussian_rows(&mut r, &sigma);
        // Products of a random W, so the reference has something to fit.
        let w: Vec<f64> = (0..d_in * d_out).map(|i| ((i * 7919 % 1009) as f64 - 504.0) / 1e4).collect();
        let rw: Vec<f64> = r
            .chunks_exact(d_in)
            .flat_map(|x| w.chunks_exact(d_in).map(move |wr| x.iter().zip(wr).map(|(a, b)| a * b).sum::<f64>()))
            .collect();
        let r32: Vec<f32> = r.iter().map(|&x| x as f32).collect();
        let mut g = vec![0.0f32; d_in * d_in];
        let t = Instant::now();
        gram(&r32, n_p, d_in, &mut g);
        let gram = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        cholesky(&mut g, d_in).expect("positive definite");
        let chol = t.elapsed().as_secs_f64() * 1e3;
        let id = OpId::new(0, Op::Qkv);
        let mut check = OpCheck::new(id, d_in, d_out, &mut rng);
        let t = Instant::now();
        let _ = solve_reference(id, &r, &rw, &sigma, check.v()).expect("solve");
        let whole = t.elapsed().as_secs_f64() * 1e3;
        let _ = check.check_batch(&r, &rw, &sigma);
        let t = Instant::now();
        let _ = check.check_batch(&r, &rw, &sigma);
        let batch = t.elapsed().as_secs_f64() * 1e3;
        println!("{name:8} {d_in}→{d_out}, N_p {n_p}: f32 gram {gram:.1} ms, f32 cholesky {chol:.1} ms, solve_reference {whole:.1} ms, check a batch {batch:.1} ms");
    }
}
