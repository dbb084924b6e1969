//! Scanning observed rows against a candidate dictionary: the heavy part
//! of every attack is `rows · dictᵀ` (V = 49152 candidates), done as
//! blocked GEMMs so memory stays bounded.

use super::linalg::gemm_abt32;
use super::mat::Rows32;

/// Vectors per GEMM block (block × V floats live at once).
const BLOCK: usize = 256;

/// Calls `f(i, dots)` for every row `i` of `vecs`, with
/// `dots[t] = ⟨vecs_i, dict_t⟩`.
pub fn scan_dots(dict: &Rows32, vecs: &Rows32, mut f: impl FnMut(usize, &[f32])) {
    for start in (0..vecs.rows).step_by(BLOCK) {
        let end = (start + BLOCK).min(vecs.rows);
        let block = vecs.select(&(start..end).collect::<Vec<_>>());
        let dots = gemm_abt32(&block, dict);
        for i in 0..block.rows {
            f(start + i, dots.row(i));
        }
    }
}

/// Calls `f(g, dots)` for every group of vectors, with `dots` the
/// group's rows × V dot products. Small groups (decode calls of one row)
/// share a GEMM so the dictionary is streamed once per block, not per row.
pub fn scan_groups(dict: &Rows32, groups: &[Rows32], mut f: impl FnMut(usize, &Rows32)) {
    let mut g = 0;
    while g < groups.len() {
        let mut end = g;
        let mut stacked = Rows32::empty(dict.cols);
        while end < groups.len() && (end == g || stacked.rows + groups[end].rows <= BLOCK) {
            stacked.extend(&groups[end]);
            end += 1;
        }
        let dots = gemm_abt32(&stacked, dict);
        let mut at = 0;
        for (gi, group) in groups.iter().enumerate().take(end).skip(g) {
            let part =
                Rows32 { rows: group.rows, cols: dict.rows, data: dots.data[at * dict.rows..(at + group.rows) * dict.rows].to_vec() };
            at += group.rows;
            f(gi, &part);
        }
        g = end;
    }
}

/// Squared norms of the dictionary rows.
pub fn row_norms2(dict: &Rows32) -> Vec<f32> {
    (0..dict.rows).map(|t| dict.row(t).iter().map(|v| v * v).sum()).collect()
}

/// Indices of the `k` largest scores, best first (NaN never wins).
pub fn top_k(scores: &[f32], k: usize) -> Vec<usize> {
    let k = k.min(scores.len());
    if k == 0 {
        return Vec::new();
    }
    let key = |i: usize| if scores[i].is_nan() { f32::NEG_INFINITY } else { scores[i] };
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.select_nth_unstable_by(k - 1, |&a, &b| key(b).total_cmp(&key(a)));
    idx.truncate(k);
    idx.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
    idx
}

/// Index of the largest score (first on ties; NaN never wins).
pub fn argmax(scores: &[f32]) -> usize {
    top2(scores).0
}

/// Indices of the largest and second-largest scores (one pass).
pub fn top2(scores: &[f32]) -> (usize, Option<usize>) {
    let (mut b, mut s): (Option<usize>, Option<usize>) = (None, None);
    for (i, &v) in scores.iter().enumerate() {
        if v.is_nan() {
            continue;
        }
        if b.is_none_or(|j| v > scores[j]) {
            s = b;
            b = Some(i);
        } else if s.is_none_or(|j| v > scores[j]) {
            s = Some(i);
        }
    }
    (b.unwrap_or(0), s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_matches_naive_dots_across_blocks() {
        let dict = Rows32::from_vec(3, 2, vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0]).unwrap();
        let n = BLOCK + 5;
        let vecs = Rows32::from_vec(n, 2, (0..n).flat_map(|i| [i as f32, 1.0]).collect()).unwrap();
        let mut seen = 0;
        scan_dots(&dict, &vecs, |i, d| {
            assert_eq!(d, &[i as f32, 1.0, i as f32 + 1.0]);
            seen += 1;
        });
        assert_eq!(seen, n);
    }

    #[test]
    fn scan_groups_slices_each_group() {
        let dict = Rows32::from_vec(2, 1, vec![1.0, 2.0]).unwrap();
        let groups: Vec<Rows32> = (0..BLOCK + 3).map(|i| Rows32::from_vec(1 + i % 3, 1, vec![i as f32; 1 + i % 3]).unwrap()).collect();
        let mut seen = 0;
        scan_groups(&dict, &groups, |g, dots| {
            assert_eq!(dots.rows, groups[g].rows);
            assert_eq!(dots.row(0), &[g as f32, 2.0 * g as f32]);
            seen += 1;
        });
        assert_eq!(seen, groups.len());
    }

    #[test]
    fn top_k_orders_and_skips_nan() {
        assert_eq!(top_k(&[0.1, f32::NAN, 0.9, 0.5], 2), vec![2, 3]);
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
        assert_eq!(top2(&[0.5, f32::NAN, 2.0, 1.0]), (2, Some(3)));
        assert_eq!(top2(&[4.0]), (0, None));
        assert!(top_k(&[], 3).is_empty());
    }
}
