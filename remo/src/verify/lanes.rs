//! The secret check vectors of one op side by side: element `c` of all
//! [`LANES`] vectors is one `Lane`, so a row's projections onto all of them
//! take one pass over the row (two AVX2 FMAs per element).

use talaria_kernels::Float;

/// Check vectors per op. A tampered row escapes each one independently
/// with probability at most `0.8·T/‖e‖` (see `op_check`), so eight of them
/// give `(0.8·T/‖e‖)⁸`: below 2⁻⁴⁰ once `‖e‖ ≥ 26·T`.
pub const LANES: usize = 8;

pub type Lane = [f64; LANES];

/// `Σ_c row[c]·basis[c]`, lane by lane.
#[inline]
pub fn project<T: Float>(row: &[T], basis: &[Lane]) -> Lane {
    debug_assert_eq!(row.len(), basis.len());
    let mut acc = [0.0; LANES];
    for (&x, b) in row.iter().zip(basis) {
        let x = x.to_f64();
        for l in 0..LANES {
            acc[l] = x.mul_add(b[l], acc[l]);
        }
    }
    acc
}

/// `Σ_c (a[c] − b[c])·basis[c]`, lane by lane, the differences in f64.
#[inline]
pub fn project_difference<A: Float, B: Float>(a: &[A], b: &[B], basis: &[Lane]) -> Lane {
    debug_assert_eq!(a.len(), basis.len());
    let mut acc = [0.0; LANES];
    for ((&x, &y), v) in a.iter().zip(b).zip(basis) {
        let d = x.to_f64() - y.to_f64();
        for l in 0..LANES {
            acc[l] = d.mul_add(v[l], acc[l]);
        }
    }
    acc
}

/// The Euclidean norm of a row, in f64.
#[inline]
pub fn norm<T: Float>(row: &[T]) -> f64 {
    row.iter().map(|&v| v.to_f64() * v.to_f64()).sum::<f64>().sqrt()
}

/// `a − s·b`, lane by lane.
#[inline]
pub fn minus_scaled(a: Lane, s: f64, b: Lane) -> Lane {
    std::array::from_fn(|l| a[l] - s * b[l])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projections_are_dot_products_per_lane() {
        let basis: Vec<Lane> = (0..3).map(|c| std::array::from_fn(|l| (c * LANES + l) as f64)).collect();
        let p = project(&[1.0f32, 2.0, -1.0], &basis);
        assert_eq!(p[0], 0.0 + 2.0 * 8.0 - 16.0);
        assert_eq!(p[7], 7.0 + 2.0 * 15.0 - 23.0);
        assert_eq!(project_difference(&[2.0f64, 2.0, 0.0], &[1.0f32, 0.0, 1.0], &basis), p);
        assert_eq!(norm(&[3.0f64, 4.0]), 5.0);
        assert_eq!(minus_scaled([1.0; LANES], 2.0, [0.5; LANES]), [0.0; LANES]);
    }
}
