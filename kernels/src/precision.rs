//! The one precision type of the engine, the masking and the wire:
//! [`Precision`] names it, [`Float`] is the element type of that name, and
//! [`Rows`] / [`RowsMut`] carry rows of either precision across the seams
//! (`Linear`, the worker call, the worker's backend) with one entry each.
//!
//! `F32` is the fast engine (and ReMO's fast mode: f32 pads and rows);
//! `F64` is the exact mode: every activation between the embedding and the
//! final norm (residual stream, norms, RoPE, the attention and its KV
//! cache, SiLU) is f64, the linears take and return f64 rows, and ReMO's
//! pads are f64. Two exact backends whose products agree to ~1e-12 then
//! give logits that differ at most by their own final f32 rounding (one
//! ulp); in f32, each 1-ulp rounding flip at any one of the millions of
//! roundings per token grows through 30 layers to ~1e-5 in the logits.

use std::ops::{Add, AddAssign, Mul, Sub};

use crate::cpu::{AttnQuery, KernelError, PagedKv};

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

    /// The name of the ReMO mode that runs in this precision.
    pub fn mode_name(self) -> &'static str {
        match self {
            Self::F32 => "fast",
            Self::F64 => "exact",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.mode_name())
    }
}

/// `exact` (or `f64`) and `fast` (or `f32`), as the command lines take it.
impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "exact" | "f64" => Ok(Self::F64),
            "fast" | "f32" => Ok(Self::F32),
            other => Err(format!("unknown precision {other:?} (exact or fast)")),
        }
    }
}

/// Rows of either precision, read-only.
#[derive(Clone, Copy, Debug)]
pub enum Rows<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
}

/// Rows of either precision, to write.
#[derive(Debug)]
pub enum RowsMut<'a> {
    F32(&'a mut [f32]),
    F64(&'a mut [f64]),
}

impl<'a, T: Float> From<&'a [T]> for Rows<'a> {
    fn from(v: &'a [T]) -> Self {
        T::rows(v)
    }
}

impl<'a, T: Float> From<&'a mut [T]> for RowsMut<'a> {
    fn from(v: &'a mut [T]) -> Self {
        T::rows_mut(v)
    }
}

impl Rows<'_> {
    pub fn precision(&self) -> Precision {
        match self {
            Self::F32(_) => Precision::F32,
            Self::F64(_) => Precision::F64,
        }
    }
    pub fn len(&self) -> usize {
        match self {
            Self::F32(v) => v.len(),
            Self::F64(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The values as raw bytes (for the wire).
    pub fn bytes(&self) -> &[u8] {
        match self {
            Self::F32(v) => bytemuck::cast_slice(v),
            Self::F64(v) => bytemuck::cast_slice(v),
        }
    }
}

impl RowsMut<'_> {
    /// The same rows, borrowed again (to write them and use them after).
    pub fn reborrow(&mut self) -> RowsMut<'_> {
        match self {
            Self::F32(v) => RowsMut::F32(v),
            Self::F64(v) => RowsMut::F64(v),
        }
    }

    /// A read-only view of the same rows.
    pub fn as_rows(&self) -> Rows<'_> {
        match self {
            Self::F32(v) => Rows::F32(v),
            Self::F64(v) => Rows::F64(v),
        }
    }
    pub fn precision(&self) -> Precision {
        self.as_rows().precision()
    }
    pub fn len(&self) -> usize {
        self.as_rows().len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Fills every value with NaN (an answer that must never pass).
    pub fn poison(&mut self) {
        match self {
            Self::F32(v) => v.fill(f32::NAN),
            Self::F64(v) => v.fill(f64::NAN),
        }
    }
}

/// Runs an f32-only product on rows of either precision: f64 rows are
/// rounded to f32 and the answer widened (for backends that have no f64
/// path and say so through their precision).
pub fn f32_product(
    x: Rows<'_>,
    out: RowsMut<'_>,
    f32_product: impl FnOnce(&[f32], &mut [f32]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    match (x, out) {
        (Rows::F32(x), RowsMut::F32(out)) => f32_product(x, out),
        (Rows::F64(x), RowsMut::F64(out)) => {
            let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let mut out32 = vec![0f32; out.len()];
            f32_product(&x32, &mut out32)?;
            out.iter_mut().zip(&out32).for_each(|(o, &v)| *o = v as f64);
            Ok(())
        }
        (x, out) => Err(mixed(x, &out)),
    }
}

/// The error for rows and answer of different precisions.
pub fn mixed(x: Rows<'_>, out: &RowsMut<'_>) -> anyhow::Error {
    anyhow::anyhow!("{} rows with an {} answer buffer", x.precision().name(), out.precision().name())
}

/// The element type of a precision: f32 or f64. Everything generic over
/// the precision (the forward pass, pads, the masked rows, the KV cache)
/// takes a `Float`.
pub trait Float:
    Copy
    + Default
    + Send
    + Sync
    + PartialOrd
    + std::fmt::Debug
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + AddAssign
    + Into<f64>
    + bytemuck::Pod
    + 'static
{
    const PRECISION: Precision;

    fn from_f64(v: f64) -> Self;
    fn from_f32(v: f32) -> Self;
    fn to_f64(self) -> f64;
    /// `x · sigmoid(x)`.
    fn silu(self) -> Self;
    /// `½x(1 + tanh(√(2/π)(x + 0.044715x³)))` (PyTorch's `gelu(approximate="tanh")`).
    fn gelu_tanh(self) -> Self;
    fn rows(v: &[Self]) -> Rows<'_>;
    fn rows_mut(v: &mut [Self]) -> RowsMut<'_>;
    /// The slice inside `r`, if it holds this type.
    fn of_rows(r: Rows<'_>) -> Option<&[Self]>;
    fn of_rows_mut(r: RowsMut<'_>) -> Option<&mut [Self]>;
    /// Paged attention in this precision (see [`crate::cpu::paged_attention`]).
    fn paged_attention(
        queries: &[AttnQuery<Self>],
        kv: &PagedKv<'_, Self>,
        n_heads: usize,
        scale: f64,
        out: &mut [Self],
    ) -> Result<(), KernelError>;
}

/// The parts of `Float` that only name the type and its `Rows` variant.
macro_rules! float_rows {
    ($t:ty, $variant:ident) => {
        const PRECISION: Precision = Precision::$variant;
        #[inline]
        fn from_f64(v: f64) -> Self {
            v as $t
        }
        #[inline]
        fn from_f32(v: f32) -> Self {
            v as $t
        }
        #[inline]
        fn to_f64(self) -> f64 {
            self as f64
        }
        fn rows(v: &[Self]) -> Rows<'_> {
            Rows::$variant(v)
        }
        fn rows_mut(v: &mut [Self]) -> RowsMut<'_> {
            RowsMut::$variant(v)
        }
        fn of_rows(r: Rows<'_>) -> Option<&[Self]> {
            match r {
                Rows::$variant(v) => Some(v),
                _ => None,
            }
        }
        fn of_rows_mut(r: RowsMut<'_>) -> Option<&mut [Self]> {
            match r {
                RowsMut::$variant(v) => Some(v),
                _ => None,
            }
        }
    };
}

impl Float for f32 {
    float_rows!(f32, F32);
    #[inline]
    fn silu(self) -> Self {
        crate::cpu::silu(self)
    }
    #[inline]
    fn gelu_tanh(self) -> Self {
        const K: f32 = 0.797_884_6; // √(2/π)
                                    // ½(1 + tanh u) = 1 / (1 + e^(−2u)): no cancellation, and the
                                    // vectorizable exp instead of libm's tanhf per element (which took
                                    // 13 % of a 2-thread Gemma prefill, single-threaded).
        self / (1.0 + crate::cpu::exp(-2.0 * K * (self + 0.044715 * self * self * self)))
    }
    fn paged_attention(
        q: &[AttnQuery<f32>],
        kv: &PagedKv<'_, f32>,
        n_heads: usize,
        scale: f64,
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        crate::cpu::paged_attention(q, kv, n_heads, scale as f32, out)
    }
}

impl Float for f64 {
    float_rows!(f64, F64);
    #[inline]
    fn silu(self) -> Self {
        self / (1.0 + crate::cpu::exp_f64(-self))
    }
    #[inline]
    fn gelu_tanh(self) -> Self {
        const K: f64 = 0.797_884_560_802_865_4; // √(2/π)
                                                // As in f32: ½(1 + tanh u) = 1 / (1 + e^(−2u)), with the vectorizable
                                                // exp; libm's tanh per element was half of Gemma 3's exact-mode CVM
                                                // prefill.
        self / (1.0 + crate::cpu::exp_f64(-2.0 * K * (self + 0.044715 * self * self * self)))
    }
    fn paged_attention(
        q: &[AttnQuery<f64>],
        kv: &PagedKv<'_, f64>,
        n_heads: usize,
        scale: f64,
        out: &mut [f64],
    ) -> Result<(), KernelError> {
        crate::cpu::paged_attention_f64(q, kv, n_heads, scale, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_parses_both_names_and_rows_keep_their_type() {
        assert_eq!("exact".parse::<Precision>().unwrap(), Precision::F64);
        assert_eq!("f32".parse::<Precision>().unwrap(), Precision::F32);
        assert!("bf16".parse::<Precision>().is_err());
        let v = [1.0f64, 2.0];
        assert_eq!(f64::of_rows(f64::rows(&v)), Some(&v[..]));
        assert!(f32::of_rows(f64::rows(&v)).is_none());
        let mut out = [0f64; 2];
        f32_product(Rows::F64(&v), RowsMut::F64(&mut out), |x, o| {
            o.copy_from_slice(x);
            Ok(())
        })
        .unwrap();
        assert_eq!(out, v);
        assert!(f32_product(Rows::F64(&v), RowsMut::F32(&mut [0f32; 2]), |_, _| Ok(())).is_err());
    }
}
