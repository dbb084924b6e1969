//! The precision of the CVM's activations.

/// `F32`: the fast engine. `F64`: the exact mode. Every activation between
/// the embedding and the final norm (residual stream, norms, RoPE, the
/// attention and its KV cache, SiLU) is f64, and the linears take and
/// return f64 rows. Two exact backends whose products agree to ~1e-12
/// (ReMO's unmasking and the plain f64 reference) then give logits that
/// differ at most by their own final f32 rounding (one ulp). In f32, each
/// 1-ulp rounding flip at any one of the millions of roundings per token
/// grows through the following f32 roundings of 30 layers to ~1e-5 in the
/// logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Precision {
    F32,
    F64,
}

impl Precision {
    pub fn bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F64 => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F64 => "f64",
        }
    }
}
