//! How much memory a model's pad pools can take (the README's model table,
//! the start-up log and `--max-pad-memory`). Each pad is a row `R` (`d_in`)
//! and its product `R·W` (`d_out`) in the pad precision; a pool holds at
//! most what a refill tops it up to — the low-water mark or the largest
//! call's rows, plus one batch's usable pads — plus the batches in
//! progress (one, or with pad threads a few per thread), plus the recycled
//! storage (`PadBuffers`: at most one round of every op's `R` and `R·W`).

use talaria_kernels::Precision;
use talaria_models::{op_dims, ModelConfig};

use crate::mixing::butterfly::padded_rows;
use crate::pads::pools::batches_ahead;
use crate::params::RemoParams;
use crate::setup::outsourced_ops;

/// The most bytes the pad pools of `cfg` hold at once, when no call sends
/// more than `max_call_rows` rows (after bucketing).
pub fn pad_pool_bound_bytes(cfg: &ModelConfig, params: &RemoParams, precision: Precision, max_call_rows: usize) -> usize {
    let mut total = 0;
    let mut largest_batch = 0;
    let mut round = 0;
    for id in outsourced_ops(cfg) {
        let (d_in, d_out) = op_dims(cfg, id.op);
        let n_p = padded_rows(d_in);
        let pads = params.low_water.max(max_call_rows) + params.usable_per_batch(n_p);
        total += pads * (d_in + d_out) * precision.bytes();
        round += n_p * (d_in + d_out) * precision.bytes();
        // R, U = M·R, U·W and R·W.
        largest_batch = largest_batch.max(2 * n_p * (d_in + d_out) * precision.bytes());
    }
    // Batches in progress: one on the engine thread, and with pad threads
    // those drawn ahead (+ one asked for now) and twice as many being
    // finished.
    let in_progress = match params.pad_threads {
        0 => 1,
        t => 2 + 3 * batches_ahead(t),
    };
    total + largest_batch * in_progress + round
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_with_the_model_and_the_largest_call() {
        let small = ModelConfig::llama(1000, 64, 128, 2, 4, 2);
        let big = ModelConfig::llama(1000, 128, 256, 4, 4, 2);
        let p = RemoParams::default();
        let a = pad_pool_bound_bytes(&small, &p, Precision::F64, 1);
        assert!(pad_pool_bound_bytes(&big, &p, Precision::F64, 1) > 4 * a);
        assert!(pad_pool_bound_bytes(&small, &p, Precision::F64, 4096) > a);
        assert_eq!(pad_pool_bound_bytes(&small, &p, Precision::F32, 1) * 2, a);
        // One op by hand: qkv of the small model, 64 → 64 + 2·32, N_p = 128, 96 usable.
        let (d_in, d_out) = (64, 128);
        let qkv = (256 + 96) * (d_in + d_out) * 8;
        assert!(a > qkv);
    }
}
