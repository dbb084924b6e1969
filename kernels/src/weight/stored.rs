//! Stored little-endian bytes (GGUF or safetensors) to exact f32 values.

use rayon::prelude::*;

use super::blocks::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, QuantBlock};
use super::dtype::WeightDType;
use super::k_blocks::{BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K};

/// Dequantizes `src`, which holds `out.len()` values of `dtype` as stored,
/// into `out` (in parallel over chunks of blocks).
///
/// # Panics
/// When `src` is not exactly that many values' bytes (a caller bug).
pub fn dequantize_stored(dtype: WeightDType, src: &[u8], out: &mut [f32]) {
    assert_eq!(Some(src.len()), dtype.bytes_for(out.len()), "{} bytes for {} {} values", src.len(), out.len(), dtype.name());
    let (per, bytes) = dtype.block();
    // 4096 values per task keeps the overhead low.
    let blocks_per_task = (4096 / per).max(1);
    out.par_chunks_mut(blocks_per_task * per).zip(src.par_chunks(blocks_per_task * bytes)).for_each(|(o, s)| match dtype {
        WeightDType::F32 => o.iter_mut().zip(s.chunks_exact(4)).for_each(|(o, c)| *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        WeightDType::F16 => o.iter_mut().zip(s.chunks_exact(2)).for_each(|(o, c)| *o = half::f16::from_le_bytes([c[0], c[1]]).to_f32()),
        WeightDType::Bf16 => o.iter_mut().zip(s.chunks_exact(2)).for_each(|(o, c)| *o = half::bf16::from_le_bytes([c[0], c[1]]).to_f32()),
        WeightDType::Q4_0 => blocks::<BlockQ4_0>(s, o),
        WeightDType::Q4_1 => blocks::<BlockQ4_1>(s, o),
        WeightDType::Q8_0 => blocks::<BlockQ8_0>(s, o),
        WeightDType::Q5_0 => blocks::<BlockQ5_0>(s, o),
        WeightDType::Q5_1 => blocks::<BlockQ5_1>(s, o),
        WeightDType::Q4K => blocks::<BlockQ4K>(s, o),
        WeightDType::Q5K => blocks::<BlockQ5K>(s, o),
        WeightDType::Q6K => blocks::<BlockQ6K>(s, o),
        WeightDType::Q8K => blocks::<BlockQ8K>(s, o),
    });
}

fn blocks<B: QuantBlock>(src: &[u8], out: &mut [f32]) {
    for (b, o) in src.chunks_exact(std::mem::size_of::<B>()).zip(out.chunks_exact_mut(B::VALUES)) {
        bytemuck::pod_read_unaligned::<B>(b).dequantize(o);
    }
}

/// Stored Q4_0, Q5_0 or Q8_0 bytes as Q8_0 blocks of the same values
/// (`QuantBlock::as_q8_0`); `None` for any other type.
pub fn stored_as_q8_0(dtype: WeightDType, src: &[u8]) -> Option<Vec<u8>> {
    fn convert<B: QuantBlock>(src: &[u8]) -> Option<Vec<u8>> {
        let blocks = src.chunks_exact(std::mem::size_of::<B>()).map(|b| bytemuck::pod_read_unaligned::<B>(b).as_q8_0());
        let blocks: Option<Vec<BlockQ8_0>> = blocks.collect();
        Some(bytemuck::cast_slice(&blocks?).to_vec())
    }
    match dtype {
        WeightDType::Q4_0 => convert::<BlockQ4_0>(src),
        WeightDType::Q5_0 => convert::<BlockQ5_0>(src),
        WeightDType::Q8_0 => Some(src.to_vec()),
        _ => None,
    }
}
