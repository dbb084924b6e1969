//! Quant blocks kept as stored multiply exactly like their f32 values:
//! every matmul path gives, bit for bit, what it gives on the matrix
//! dequantized to f32 (so the stored default is the model's answer).

use super::{matmul, matmul_f64};
use crate::weight::{WeightDType, WeightMatrix};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use WeightDType::*;

/// Every type the kernels read in place.
const QUANT: [WeightDType; 8] = [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4K, Q5K, Q6K];

/// Random blocks: random quants, finite random f16 scales (both signs,
/// subnormals included) at the offsets ggml stores them.
fn random_stored(rng: &mut Xoshiro256PlusPlus, dtype: WeightDType, rows: usize, cols: usize) -> WeightMatrix {
    let (_, block_bytes) = dtype.block();
    let mut bytes: Vec<u8> = (0..dtype.bytes_for(rows * cols).unwrap()).map(|_| rng.random()).collect();
    for block in bytes.chunks_exact_mut(block_bytes) {
        for &at in dtype.f16_scale_offsets() {
            // Exponent field below 0x1F: no infinities or NaNs; scales around 2^-10..2^-3 mostly.
            let bits = (rng.random::<u16>() & 0x83FF) | ((rng.random_range(0u16..16) + 4) << 10);
            block[at..at + 2].copy_from_slice(&bits.to_le_bytes());
        }
    }
    WeightMatrix::from_stored(rows, cols, dtype, &bytes).unwrap()
}

type MatmulF32 = fn(&[f32], usize, &WeightMatrix, &mut [f32]);

/// The f32 paths besides the dispatch that this CPU can run.
fn f32_paths() -> Vec<(&'static str, MatmulF32)> {
    let mut v: Vec<(&'static str, MatmulF32)> = vec![("portable", super::matmul_portable::matmul)];
    #[cfg(target_arch = "x86_64")]
    if super::CpuFeatures::get().avx2 {
        v.push(("avx2", super::matmul_avx2::matmul));
    }
    v
}

fn as_f32(w: &WeightMatrix) -> WeightMatrix {
    WeightMatrix::from_f32(w.rows, w.cols, w.to_f32(), WeightDType::F32)
}

#[test]
fn stored_blocks_multiply_like_their_f32_values() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(21);
    for dtype in QUANT {
        let (per, _) = dtype.block();
        // Row lengths of 2, 18, 3 and 50 blocks of 32, or 1, 3, 2 and 7
        // super-blocks of 256 (the last, AVX2 prefill's sliced long rows).
        let shapes: &[(usize, usize)] =
            if per == 32 { &[(35, 64), (17, 576), (70, 96), (9, 1600)] } else { &[(35, 256), (17, 768), (70, 512), (9, 1792)] };
        for &(n, k) in shapes {
            let w = random_stored(&mut rng, dtype, n, k);
            let wf = as_f32(&w);
            assert_eq!(w.size_bytes(), dtype.bytes_for(n * k).unwrap());
            for rows in [1, 2, 3, 5, 16, 17, 40, 300] {
                let x: Vec<f32> = (0..rows * k).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                let (mut got, mut want) = (vec![f32::NAN; rows * n], vec![f32::NAN; rows * n]);
                matmul(&x, rows, &w, &mut got);
                matmul(&x, rows, &wf, &mut want);
                assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{dtype:?} f32 rows {rows} n {n} k {k}");
                for (name, f) in f32_paths() {
                    let (mut got, mut want) = (vec![f32::NAN; rows * n], vec![f32::NAN; rows * n]);
                    f(&x, rows, &w, &mut got);
                    f(&x, rows, &wf, &mut want);
                    assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{dtype:?} {name} rows {rows}");
                }

                let x: Vec<f64> = (0..rows * k).map(|_| rng.random_range(-1e3..1e3)).collect();
                let (mut got, mut want) = (vec![f64::NAN; rows * n], vec![f64::NAN; rows * n]);
                matmul_f64(&x, rows, &w, &mut got);
                matmul_f64(&x, rows, &wf, &mut want);
                assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{dtype:?} f64 rows {rows} n {n} k {k}");
            }
        }
    }
}

#[test]
fn stored_rows_must_be_whole_blocks_of_the_right_size() {
    assert!(WeightMatrix::from_stored(2, 48, WeightDType::Q4_1, &[0; 60]).is_err(), "48 is not whole blocks");
    assert!(WeightMatrix::from_stored(2, 64, WeightDType::Q4_1, &[0; 79]).is_err(), "one byte short");
    let w = WeightMatrix::from_stored(2, 64, WeightDType::Q8_0, &[0; 136]).unwrap();
    assert_eq!((w.size_bytes(), w.to_f32()), (136, vec![0.0; 128]));
    let w = WeightMatrix::from_stored(1, 2, WeightDType::Bf16, &[0x80, 0x3F, 0x00, 0xC0]).unwrap();
    assert_eq!(w.to_f32(), vec![1.0, -2.0]);
}
