//! A weight matrix as the kernels see it: `rows = d_out`, `cols = d_in`,
//! row-major, so `y = x · Wᵀ` reads each output's weights contiguously
//! (the layout of HF checkpoints and GGUF files). Quantized rows are whole
//! blocks, in the file's order.

use std::ops::Range;

use half::{bf16, f16};

use super::blocks::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, QuantBlock};
use super::dtype::WeightDType;
use super::k_blocks::{BlockQ4K, BlockQ5K, BlockQ6K, K_VALUES};
use crate::precision::Float;

#[derive(Clone, Debug)]
pub enum WeightData {
    F32(Vec<f32>),
    Bf16(Vec<bf16>),
    F16(Vec<f16>),
    Q4_0(Vec<BlockQ4_0>),
    Q4_1(Vec<BlockQ4_1>),
    Q5_0(Vec<BlockQ5_0>),
    Q5_1(Vec<BlockQ5_1>),
    Q8_0(Vec<BlockQ8_0>),
    Q4K(Vec<BlockQ4K>),
    Q5K(Vec<BlockQ5K>),
    Q6K(Vec<BlockQ6K>),
}

/// Matches a `&WeightData`: each plain float variant to its own arm, every
/// quant block variant to one generic arm (`$blocks` bound to a
/// `&Vec<impl QuantBlock>`), so the list of block types lives here only.
#[macro_export]
macro_rules! match_weight_data {
    ($data:expr, F32($f32:pat) => $on_f32:expr, Bf16($bf16:pat) => $on_bf16:expr, F16($f16:pat) => $on_f16:expr, Blocks($blocks:ident) => $on_blocks:expr $(,)?) => {
        match $data {
            $crate::WeightData::F32($f32) => $on_f32,
            $crate::WeightData::Bf16($bf16) => $on_bf16,
            $crate::WeightData::F16($f16) => $on_f16,
            $crate::WeightData::Q4_0($blocks) => $on_blocks,
            $crate::WeightData::Q4_1($blocks) => $on_blocks,
            $crate::WeightData::Q5_0($blocks) => $on_blocks,
            $crate::WeightData::Q5_1($blocks) => $on_blocks,
            $crate::WeightData::Q8_0($blocks) => $on_blocks,
            $crate::WeightData::Q4K($blocks) => $on_blocks,
            $crate::WeightData::Q5K($blocks) => $on_blocks,
            $crate::WeightData::Q6K($blocks) => $on_blocks,
        }
    };
}

impl WeightData {
    /// How many values it holds.
    pub fn values(&self) -> usize {
        fn blocks<B: QuantBlock>(v: &[B]) -> usize {
            v.len() * B::VALUES
        }
        match_weight_data!(self, F32(v) => v.len(), Bf16(v) => v.len(), F16(v) => v.len(), Blocks(v) => blocks(v))
    }
}

/// `rows × cols` row-major matrix (`rows = d_out`, `cols = d_in`).
#[derive(Clone, Debug)]
pub struct WeightMatrix {
    pub rows: usize,
    pub cols: usize,
    pub data: WeightData,
}

/// Weights are streamed whole by every decode step; on huge pages the
/// GEMM's strided tile loads miss the TLB far less.
fn collect_on_huge_pages<T>(len: usize, values: impl Iterator<Item = T>) -> Vec<T> {
    let mut v = Vec::with_capacity(len);
    crate::cpu::advise_huge_pages(v.spare_capacity_mut());
    v.extend(values);
    v
}

/// Stored little-endian bytes as a vector of `T` (any alignment in).
fn pod_vec<T: bytemuck::Pod>(bytes: &[u8]) -> Vec<T> {
    let size = std::mem::size_of::<T>();
    collect_on_huge_pages(bytes.len() / size, bytes.chunks_exact(size).map(bytemuck::pod_read_unaligned))
}

impl WeightMatrix {
    /// Converts f32 values into a float storage type (round-to-nearest-even).
    ///
    /// # Panics
    /// For a quant type (those are only ever kept as stored) or a size mismatch.
    pub fn from_f32(rows: usize, cols: usize, values: Vec<f32>, dtype: WeightDType) -> Self {
        assert_eq!(values.len(), rows * cols, "weight matrix size mismatch");
        let n = values.len();
        let data = match dtype {
            WeightDType::F32 => WeightData::F32(values),
            WeightDType::Bf16 => WeightData::Bf16(collect_on_huge_pages(n, values.iter().map(|&x| bf16::from_f32(x)))),
            WeightDType::F16 => WeightData::F16(collect_on_huge_pages(n, values.iter().map(|&x| f16::from_f32(x)))),
            q => panic!("{} weights are kept as stored, never made from f32", q.name()),
        };
        Self { rows, cols, data }
    }

    /// The matrix from its stored bytes (as in a GGUF or safetensors file),
    /// kept as they are.
    pub fn from_stored(rows: usize, cols: usize, dtype: WeightDType, bytes: &[u8]) -> Result<Self, String> {
        let (per, _) = dtype.block();
        if !cols.is_multiple_of(per) {
            return Err(format!("{} rows of {cols} values are not whole blocks of {per}", dtype.name()));
        }
        let want = rows.checked_mul(cols).and_then(|n| dtype.bytes_for(n));
        if want != Some(bytes.len()) {
            return Err(format!("{rows} × {cols} {} takes {want:?} bytes, got {}", dtype.name(), bytes.len()));
        }
        let data = match dtype {
            WeightDType::F32 => WeightData::F32(pod_vec(bytes)),
            WeightDType::Bf16 => WeightData::Bf16(pod_vec(bytes)),
            WeightDType::F16 => WeightData::F16(pod_vec(bytes)),
            WeightDType::Q4_0 => WeightData::Q4_0(pod_vec(bytes)),
            WeightDType::Q4_1 => WeightData::Q4_1(pod_vec(bytes)),
            WeightDType::Q5_0 => WeightData::Q5_0(pod_vec(bytes)),
            WeightDType::Q5_1 => WeightData::Q5_1(pod_vec(bytes)),
            WeightDType::Q8_0 => WeightData::Q8_0(pod_vec(bytes)),
            WeightDType::Q4K => WeightData::Q4K(pod_vec(bytes)),
            WeightDType::Q5K => WeightData::Q5K(pod_vec(bytes)),
            WeightDType::Q6K => WeightData::Q6K(pod_vec(bytes)),
            WeightDType::Q8K => return Err("Q8_K blocks are an activation type: hold them as their exact f32 values".into()),
        };
        Ok(Self { rows, cols, data })
    }

    pub fn dtype(&self) -> WeightDType {
        match self.data {
            WeightData::F32(_) => WeightDType::F32,
            WeightData::Bf16(_) => WeightDType::Bf16,
            WeightData::F16(_) => WeightDType::F16,
            WeightData::Q4_0(_) => WeightDType::Q4_0,
            WeightData::Q4_1(_) => WeightDType::Q4_1,
            WeightData::Q5_0(_) => WeightDType::Q5_0,
            WeightData::Q5_1(_) => WeightDType::Q5_1,
            WeightData::Q8_0(_) => WeightDType::Q8_0,
            WeightData::Q4K(_) => WeightDType::Q4K,
            WeightData::Q5K(_) => WeightDType::Q5K,
            WeightData::Q6K(_) => WeightDType::Q6K,
        }
    }

    /// Rows `rows` as their exact values in `T` (`out` is `rows.len() × cols`).
    pub fn dequantize_rows<T: Float>(&self, rows: Range<usize>, out: &mut [T]) {
        let c = self.cols;
        assert_eq!(out.len(), rows.len() * c, "dequantize_rows: output size");
        let range = rows.start * c..rows.end * c;
        match_weight_data!(&self.data,
            F32(v) => out.iter_mut().zip(&v[range]).for_each(|(o, &s)| *o = T::from_f32(s)),
            Bf16(v) => out.iter_mut().zip(&v[range]).for_each(|(o, s)| *o = T::from_f32(s.to_f32())),
            F16(v) => out.iter_mut().zip(&v[range]).for_each(|(o, s)| *o = T::from_f32(s.to_f32())),
            Blocks(v) => dequantize_blocks(v, range, out),
        )
    }

    /// Row `r` as f32 (the embedding lookup, reference checks).
    pub fn row_f32(&self, r: usize) -> Vec<f32> {
        let mut v = vec![0f32; self.cols];
        self.dequantize_rows(r..r + 1, &mut v);
        v
    }

    /// All values as f32.
    pub fn to_f32(&self) -> Vec<f32> {
        let mut v = vec![0f32; self.rows * self.cols];
        self.dequantize_rows(0..self.rows, &mut v);
        v
    }

    pub fn size_bytes(&self) -> usize {
        self.dtype().bytes_for(self.rows * self.cols).expect("rows are whole blocks")
    }
}

/// Values `range` (whole blocks) of `blocks` into `out`.
fn dequantize_blocks<B: QuantBlock, T: Float>(blocks: &[B], range: Range<usize>, out: &mut [T]) {
    // The largest block is a K-quant super-block.
    let mut buf = [0f32; K_VALUES];
    let values = &mut buf[..B::VALUES];
    for (b, o) in blocks[range.start / B::VALUES..range.end / B::VALUES].iter().zip(out.chunks_exact_mut(B::VALUES)) {
        b.dequantize(values);
        o.iter_mut().zip(values.iter()).for_each(|(o, &v)| *o = T::from_f32(v));
    }
}
