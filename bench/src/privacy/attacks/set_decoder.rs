//! From "which candidates lie in this call's span" to one guess per real
//! row. A span test finds the distinct tokens of a call; when the call has
//! fewer distinct tokens than rows, the least-squares coefficients of the
//! rows on the members tell how often each repeats: a token used m times
//! contributes the sum of m independent mixing columns, whose squared
//! norm grows like m (Gamma law with the call's row count as its degrees
//! of freedom), so the maximum-likelihood counts are found greedily.

use crate::privacy::dict_scan::top_k;
use crate::privacy::linalg::lstsq_rows;
use crate::privacy::mat::{Rows32, Rows64};

/// Relative residual below which a candidate counts as in the span.
pub const MEMBER_TOL: f32 = 1e-3;

/// `resid[t]`: candidate t's relative residual against the call's rows
/// `y` (rank `rank`); returns up to `n_real` guesses: the members, each
/// repeated by its estimated count. A test that finds no member abstains
/// (its ranking would only reflect how the noise favours some tokens).
pub fn decode_set(resid: &[f32], rank: usize, y: &Rows64, dict: &Rows32, n_real: usize) -> Vec<u32> {
    let neg: Vec<f32> = resid.iter().map(|r| -r).collect();
    let order = top_k(&neg, rank.max(n_real));
    let members: Vec<usize> = order.iter().copied().filter(|&t| resid[t] < MEMBER_TOL).take(rank.max(1)).collect();
    if members.len() >= n_real || members.is_empty() {
        return members.iter().take(n_real).map(|&t| t as u32).collect();
    }
    let x = dict.select(&members).to_f64();
    let counts = match lstsq_rows(y, &x) {
        Ok(g) => {
            let w: Vec<f64> = (0..members.len()).map(|j| (0..g.rows).map(|i| g.row(i)[j].powi(2)).sum()).collect();
            apportion(&w, y.rows, n_real)
        }
        Err(_) => vec![1; members.len()],
    };
    let mut out: Vec<u32> = members.iter().zip(&counts).flat_map(|(&t, &c)| std::iter::repeat_n(t as u32, c)).collect();
    out.truncate(n_real);
    out
}

/// Maximum-likelihood counts `m_j ≥ 1` summing to `total` when
/// `w_j ~ m_j·s²·χ²_dof` with a common unknown scale `s²`.
pub fn apportion(w: &[f64], dof: usize, total: usize) -> Vec<usize> {
    let k = w.len();
    let mut m = vec![1usize; k];
    if k == 0 || total <= k {
        return m;
    }
    let s2 = (w.iter().sum::<f64>() / (dof.max(1) * total) as f64).max(1e-300);
    let ll = |j: usize, mj: usize| -> f64 { -(dof as f64) / 2.0 * (mj as f64).ln() - w[j] / (2.0 * mj as f64 * s2) };
    for _ in k..total {
        let j = (0..k).max_by(|&a, &b| (ll(a, m[a] + 1) - ll(a, m[a])).total_cmp(&(ll(b, m[b] + 1) - ll(b, m[b])))).expect("k > 0");
        m[j] += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apportion_gives_repeats_to_heavy_columns() {
        // Column norms² of an indicator matrix are exactly the counts.
        assert_eq!(apportion(&[1.0, 3.0, 1.0, 2.0], 7, 7), vec![1, 3, 1, 2]);
        assert_eq!(apportion(&[5.0, 5.0], 4, 2), vec![1, 1]);
    }

    #[test]
    fn members_with_repeats_fill_every_row() {
        // Dictionary of 4 orthogonal tokens; the call holds tokens 1, 1, 3.
        let dict = Rows32::from_vec(4, 4, (0..16).map(|i| if i % 5 == 0 { 1.0 } else { 0.0 }).collect()).unwrap();
        let y = Rows64::from_vec(3, 4, vec![0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]).unwrap();
        let resid = [1.0, 0.0, 1.0, 0.0];
        let mut g = decode_set(&resid, 2, &y, &dict, 3);
        g.sort();
        assert_eq!(g, vec![1, 1, 3]);
        // Nothing in the span: abstain.
        assert!(decode_set(&[0.5, 0.6, 0.7, 0.8], 3, &y, &dict, 3).is_empty());
    }
}
