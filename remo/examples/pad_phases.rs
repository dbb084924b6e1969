//! Times the CVM-side phases of one pad batch at SmolLM2-135M's shapes
//! (drawing R, mixing, unmixing), with warm (recycled) buffers, as in
//! steady-state serving.
//!
//! `cargo run --release -p talaria-cvm --example pad_phases`

use std::time::Instant;

use talaria_remo::{pads::secure_rng::SecureRng, Mixing};

fn main() {
    let mut rng = SecureRng::from_os().expect("OS randomness");
    // (name, d_in, d_out, N_p)
    for (name, d_in, d_out, n_p) in [("qkv", 576, 960, 1024), ("gate_up", 576, 3072, 1024), ("down", 1536, 576, 2048)] {
        let sigma = vec![1.0; d_in];
        let mut r = vec![0.0; n_p * d_in];
        let mut u = vec![0.0; n_p * d_in];
        let uw = vec![0.5; n_p * d_out];
        let mut rw = vec![0.0; n_p * d_out];
        let (mut draw, mut sample, mut mix, mut unmix) = (0.0, 0.0, 0.0, 0.0);
        let reps = 10;
        for _ in 0..reps + 1 {
            let t = Instant::now();
            rng.fill_gaussian_rows(&mut r, &sigma);
            let t1 = Instant::now();
            let m = Mixing::sample(n_p, 3, &mut rng).expect("mixing");
            let t2 = Instant::now();
            m.apply_from(&r, &mut u, d_in).expect("mix");
            let t3 = Instant::now();
            m.apply_inverse_from(&uw, &mut rw, d_out).expect("unmix");
            let t4 = Instant::now();
            draw += (t1 - t).as_secs_f64();
            sample += (t2 - t1).as_secs_f64();
            mix += (t3 - t2).as_secs_f64();
            unmix += (t4 - t3).as_secs_f64();
        }
        let ms = |s: f64| s * 1e3 / (reps + 1) as f64;
        println!(
            "{name:8} N_p {n_p:5} × {d_in:5} → {d_out:5}: gaussian {:6.2} ms ({:.1} ns/value), mixing params {:5.2} ms, mix {:6.2} ms, unmix {:6.2} ms",
            ms(draw),
            draw * 1e9 / ((reps + 1) * n_p * d_in) as f64,
            ms(sample),
            ms(mix),
            ms(unmix)
        );
    }
}
