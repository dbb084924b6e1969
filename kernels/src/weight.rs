//! A weight matrix as the kernels see it: `rows = d_out`, `cols = d_in`,
//! row-major, so `y = x · Wᵀ` reads each output's weights contiguously
//! (the layout of HF checkpoints and GGUF files).

use half::{bf16, f16};

/// Element type a weight matrix is held in. Activations are always widened
/// to f32 (plain) or f64 (exact masked mode) in registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WeightDType {
    F32,
    Bf16,
    F16,
}

impl WeightDType {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Some(Self::F32),
            "bf16" | "bfloat16" => Some(Self::Bf16),
            "f16" | "float16" | "half" => Some(Self::F16),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::F16 => "f16",
        }
    }

    pub fn size_bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::Bf16 | Self::F16 => 2,
        }
    }
}

#[derive(Clone, Debug)]
pub enum WeightData {
    F32(Vec<f32>),
    Bf16(Vec<bf16>),
    F16(Vec<f16>),
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
fn convert_on_huge_pages<T>(values: &[f32], f: impl Fn(f32) -> T) -> Vec<T> {
    let mut v = Vec::with_capacity(values.len());
    crate::cpu::advise_huge_pages(v.spare_capacity_mut());
    v.extend(values.iter().map(|&x| f(x)));
    v
}

impl WeightMatrix {
    /// Converts f32 values into the requested storage type (round-to-nearest-even).
    pub fn from_f32(rows: usize, cols: usize, values: Vec<f32>, dtype: WeightDType) -> Self {
        assert_eq!(values.len(), rows * cols, "weight matrix size mismatch");
        let data = match dtype {
            WeightDType::F32 => WeightData::F32(values),
            WeightDType::Bf16 => WeightData::Bf16(convert_on_huge_pages(&values, bf16::from_f32)),
            WeightDType::F16 => WeightData::F16(convert_on_huge_pages(&values, f16::from_f32)),
        };
        Self { rows, cols, data }
    }

    pub fn dtype(&self) -> WeightDType {
        match self.data {
            WeightData::F32(_) => WeightDType::F32,
            WeightData::Bf16(_) => WeightDType::Bf16,
            WeightData::F16(_) => WeightDType::F16,
        }
    }

    /// Row `r` widened to f32 (for reference checks and small slow paths).
    pub fn row_f32(&self, r: usize) -> Vec<f32> {
        let range = r * self.cols..(r + 1) * self.cols;
        match &self.data {
            WeightData::F32(v) => v[range].to_vec(),
            WeightData::Bf16(v) => v[range].iter().map(|x| x.to_f32()).collect(),
            WeightData::F16(v) => v[range].iter().map(|x| x.to_f32()).collect(),
        }
    }

    /// All values widened to f32.
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            WeightData::F32(v) => v.clone(),
            WeightData::Bf16(v) => v.iter().map(|x| x.to_f32()).collect(),
            WeightData::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
        }
    }

    pub fn size_bytes(&self) -> usize {
        self.rows * self.cols * self.dtype().size_bytes()
    }
}
