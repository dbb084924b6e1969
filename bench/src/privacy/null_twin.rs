//! The null twin of a ReMO recording: the same calls with every masked row
//! replaced by a fresh draw from the public pad law `N(0, diag(κ·s_c)²)`,
//! so it carries no information about the tokens. An attack's accuracy on
//! it is what that attack gets from its priors and the call structure alone
//! (the model's own continuations, tokens that many noise rows land on,
//! credit for matching a prefill call's tokens as a multiset). Accuracy on
//! the real recording above that is what the masked rows leaked.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::noise::NoiseModel;
use super::recording::{CallKind, Recording};

pub fn null_twin(rec: &Recording, seed: u64) -> Recording {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut twin = rec.clone();
    for call in twin.calls.iter_mut().filter(|c| c.kind == CallKind::Online) {
        let cols = call.data.cols;
        let noise = NoiseModel::for_op(&rec.manifest, call.id, cols);
        for row in call.data.data.chunks_exact_mut(cols.max(1)) {
            for (v, s) in row.iter_mut().zip(&noise.sigma) {
                let z: f64 = StandardNormal.sample(&mut rng);
                *v = s * z;
            }
        }
    }
    twin
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::mat::Rows;
    use crate::privacy::npy::NpyDtype;
    use crate::privacy::recording::{Call, Manifest};
    use talaria_models::{Op, OpId};

    #[test]
    fn replaces_only_online_rows_with_the_pad_law() {
        let manifest = Manifest {
            format_version: 1,
            model: crate::privacy::recording::tests::tiny_config(),
            remo: serde_json::json!({"mode": "remo", "kappa": 10.0, "channel_scales": {"0.qkv": [1.0, 100.0]}}),
        };
        let id = OpId::new(0, Op::Qkv);
        let call = |kind, v: f64| Call { seq: 0, kind, id, dtype: NpyDtype::F64, data: Rows::from_vec(2000, 2, vec![v; 4000]).unwrap() };
        let rec = Recording { manifest, calls: vec![call(CallKind::PadBatch, 3.0), call(CallKind::Online, 3.0)] };
        let twin = null_twin(&rec, 1);
        assert!(twin.calls[0].data.data.iter().all(|&v| v == 3.0), "pad batches are kept");
        let rms = |c: usize| (twin.calls[1].data.data.iter().skip(c).step_by(2).map(|v| v * v).sum::<f64>() / 2000.0).sqrt();
        assert!((rms(0) / 10.0 - 1.0).abs() < 0.1, "channel 0 σ = κ·1: {}", rms(0));
        assert!((rms(1) / 1000.0 - 1.0).abs() < 0.1, "channel 1 σ = κ·100: {}", rms(1));
    }
}
