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

/// Rows projected together per pass over the basis.
const ROWS_PER_PASS: usize = 4;

/// The projections of every row of `rows` (each `basis.len()` wide) into
/// `out`: four rows per pass over the basis, which reads a quarter of the
/// basis (tens of KB, from L2) that row-by-row projections read. Each
/// projection is bit for bit [`project`]'s.
pub fn project_rows<T: Float>(rows: &[T], basis: &[Lane], out: &mut [Lane]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked just above).
        return unsafe { project_rows_avx512(rows, basis, out) };
    }
    project_rows_generic(rows, basis, out)
}

/// [`project_rows_generic`] compiled with one 512-bit register per lane set.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn project_rows_avx512<T: Float>(rows: &[T], basis: &[Lane], out: &mut [Lane]) {
    project_rows_generic(rows, basis, out)
}

#[inline(always)]
fn project_rows_generic<T: Float>(rows: &[T], basis: &[Lane], out: &mut [Lane]) {
    let width = basis.len();
    debug_assert_eq!(rows.len(), out.len() * width);
    let mut groups = rows.chunks_exact(width * ROWS_PER_PASS);
    let mut outs = out.chunks_exact_mut(ROWS_PER_PASS);
    for (group, out) in (&mut groups).zip(&mut outs) {
        let mut acc = [[0.0; LANES]; ROWS_PER_PASS];
        for (c, b) in basis.iter().enumerate() {
            for (r, acc) in acc.iter_mut().enumerate() {
                let x = group[r * width + c].to_f64();
                for l in 0..LANES {
                    acc[l] = x.mul_add(b[l], acc[l]);
                }
            }
        }
        out.copy_from_slice(&acc);
    }
    for (row, out) in groups.remainder().chunks_exact(width.max(1)).zip(outs.into_remainder()) {
        *out = project(row, basis);
    }
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

    #[test]
    fn rows_projected_together_are_projected_alone() {
        let width = 37;
        let basis: Vec<Lane> = (0..width).map(|c| std::array::from_fn(|l| ((c * 13 + l * 7) % 11) as f64 - 5.0 + 0.1 * l as f64)).collect();
        for rows in [1, 4, 7, 9] {
            let x: Vec<f64> = (0..rows * width).map(|i| ((i * 31) % 17) as f64 * 0.37 - 3.0).collect();
            let mut out = vec![[0.0; LANES]; rows];
            project_rows(&x, &basis, &mut out);
            for (r, got) in out.iter().enumerate() {
                assert_eq!(*got, project(&x[r * width..(r + 1) * width], &basis), "{rows} rows, row {r}");
            }
        }
    }
}
