//! The element type of the weight-free kernels: `f32` for the fast engine,
//! `f64` for the exact mode, whose activations never pass through an f32
//! rounding between the embedding and the final norm (see the engine's
//! `Precision`).

use std::ops::{Add, AddAssign, Mul, Sub};

pub trait Activation:
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
    + 'static
{
    fn from_f64(v: f64) -> Self;
    fn from_f32(v: f32) -> Self;
    fn to_f64(self) -> f64;
    /// `x · sigmoid(x)`.
    fn silu(self) -> Self;
}

impl Activation for f32 {
    #[inline]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline]
    fn from_f32(v: f32) -> Self {
        v
    }
    #[inline]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline]
    fn silu(self) -> Self {
        super::activation::silu(self)
    }
}

impl Activation for f64 {
    #[inline]
    fn from_f64(v: f64) -> Self {
        v
    }
    #[inline]
    fn from_f32(v: f32) -> Self {
        v as f64
    }
    #[inline]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline]
    fn silu(self) -> Self {
        self / (1.0 + super::exp_f64::exp_f64(-self))
    }
}
