//! Rotary position embedding with cached cos/sin, HF "rotate_half" layout:
//! dimension `i` pairs with `i + head_dim / 2`.

use super::error::KernelError;
use crate::precision::Float;

/// cos/sin of `pos · θ^(-2i/head_dim)` for `i < head_dim / 2`, computed and
/// kept in f64 (rounded to f32 where f32 rows are rotated), for positions
/// `0..max_positions`.
#[derive(Clone, Debug)]
pub struct RopeTable {
    head_dim: usize,
    /// `θ^(-2i/head_dim) / divisor_i`.
    inv_freq: Vec<f64>,
    cos: Vec<f64>,
    sin: Vec<f64>,
}

impl RopeTable {
    pub fn new(head_dim: usize, theta: f64, max_positions: usize) -> Result<Self, KernelError> {
        Self::scaled(head_dim, theta, None, max_positions)
    }

    /// With each frequency divided by its `divisors` entry (RoPE scaling:
    /// linear, Llama 3's piecewise factors).
    pub fn scaled(head_dim: usize, theta: f64, divisors: Option<&[f64]>, max_positions: usize) -> Result<Self, KernelError> {
        if head_dim == 0 || !head_dim.is_multiple_of(2) {
            return Err(KernelError::OddHeadDim(head_dim));
        }
        let half = head_dim / 2;
        if divisors.is_some_and(|d| d.len() != half) {
            return Err(KernelError::RopeDivisors { got: divisors.map_or(0, |d| d.len()), head_dim });
        }
        let inv_freq = (0..half).map(|i| theta.powf(-((2 * i) as f64) / head_dim as f64) / divisors.map_or(1.0, |d| d[i])).collect();
        let mut table = RopeTable { head_dim, inv_freq, cos: Vec::new(), sin: Vec::new() };
        table.ensure_positions(max_positions);
        Ok(table)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// Positions the table covers (`0..max_positions`).
    pub fn max_positions(&self) -> usize {
        self.cos.len() / (self.head_dim / 2)
    }

    /// Grows the table to cover at least `n` positions.
    pub fn ensure_positions(&mut self, n: usize) {
        for pos in self.max_positions()..n {
            for &f in &self.inv_freq {
                let angle = pos as f64 * f;
                self.cos.push(angle.cos());
                self.sin.push(angle.sin());
            }
        }
    }

    /// Rotates one row of `n_heads × head_dim` values at position `pos`.
    ///
    /// # Panics
    /// When `x` is not `n_heads * head_dim` long (a caller bug).
    pub fn apply<T: Float>(&self, x: &mut [T], n_heads: usize, pos: usize) -> Result<(), KernelError> {
        assert_eq!(x.len(), n_heads * self.head_dim, "rope: row has {} values, not {n_heads} heads × {}", x.len(), self.head_dim);
        let max = self.max_positions();
        if pos >= max {
            return Err(KernelError::PositionOutOfRange { pos, max });
        }
        let half = self.head_dim / 2;
        let (cos, sin) = (&self.cos[pos * half..(pos + 1) * half], &self.sin[pos * half..(pos + 1) * half]);
        for head in x.chunks_exact_mut(self.head_dim) {
            let (a, b) = head.split_at_mut(half);
            for i in 0..half {
                let (x1, x2) = (a[i], b[i]);
                let (c, s) = (T::from_f64(cos[i]), T::from_f64(sin[i]));
                a[i] = x1 * c - x2 * s;
                b[i] = x2 * c + x1 * s;
            }
        }
        Ok(())
    }

    /// Rotates `positions.len()` consecutive rows, row `r` at `positions[r]`.
    pub fn apply_rows<T: Float>(&self, x: &mut [T], n_heads: usize, positions: &[usize]) -> Result<(), KernelError> {
        let width = n_heads * self.head_dim;
        assert_eq!(x.len(), width * positions.len(), "rope: {} values for {} rows of {width}", x.len(), positions.len());
        for (row, &pos) in x.chunks_exact_mut(width.max(1)).zip(positions) {
            self.apply(row, n_heads, pos)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_direct_formula() {
        let (hd, theta, heads) = (64, 100_000.0f64, 3);
        let table = RopeTable::new(hd, theta, 300).unwrap();
        let orig: Vec<f32> = (0..heads * hd).map(|i| (i as f32 * 0.37).sin()).collect();
        for pos in [0, 1, 17, 299] {
            let mut x = orig.clone();
            table.apply(&mut x, heads, pos).unwrap();
            let mut x64: Vec<f64> = orig.iter().map(|&v| v as f64).collect();
            table.apply(&mut x64, heads, pos).unwrap();
            for h in 0..heads {
                for i in 0..hd {
                    let j = i % (hd / 2);
                    let angle = pos as f64 * theta.powf(-2.0 * j as f64 / hd as f64);
                    let (x1, x2) = (orig[h * hd + j] as f64, orig[h * hd + j + hd / 2] as f64);
                    let want = if i < hd / 2 { x1 * angle.cos() - x2 * angle.sin() } else { x2 * angle.cos() + x1 * angle.sin() };
                    assert!((x[h * hd + i] as f64 - want).abs() < 1e-5, "pos {pos} head {h} dim {i}");
                    assert!((x64[h * hd + i] - want).abs() < 1e-13, "f64: pos {pos} head {h} dim {i}");
                }
            }
        }
    }

    #[test]
    fn position_zero_is_identity_and_norm_is_kept() {
        let table = RopeTable::new(8, 10_000.0, 4).unwrap();
        let orig = vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let mut x = orig.clone();
        table.apply(&mut x, 1, 0).unwrap();
        assert_eq!(x, orig);
        table.apply(&mut x, 1, 3).unwrap();
        let n0: f32 = orig.iter().map(|v| v * v).sum();
        let n1: f32 = x.iter().map(|v| v * v).sum();
        assert!((n0 - n1).abs() < 1e-4);
    }

    #[test]
    fn beyond_table_errors_then_grows() {
        let mut table = RopeTable::new(4, 10_000.0, 2).unwrap();
        let mut x = vec![1.0f32; 4];
        assert_eq!(table.apply(&mut x, 1, 2), Err(KernelError::PositionOutOfRange { pos: 2, max: 2 }));
        table.ensure_positions(10);
        assert_eq!(table.max_positions(), 10);
        table.apply(&mut x, 1, 9).unwrap();
        let fresh = RopeTable::new(4, 10_000.0, 10).unwrap();
        let mut y = vec![1.0f32; 4];
        fresh.apply(&mut y, 1, 9).unwrap();
        assert_eq!(x, y);
    }

    #[test]
    fn odd_head_dim_is_rejected() {
        assert_eq!(RopeTable::new(7, 1e4, 1).unwrap_err(), KernelError::OddHeadDim(7));
    }
}
