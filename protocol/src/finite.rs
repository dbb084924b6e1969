/// The index of the first NaN or ∞ in a payload, checked on all threads
/// when large (a pad batch is up to 25 MB each way). Both sides reject
/// non-finite values: an honest peer never sends them.
pub fn first_non_finite<T: Copy + Sync + Into<f64>>(vals: &[T]) -> Option<usize> {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 15;
    // A branch-free pass (it vectorizes); the index is searched only on failure.
    let bad = |chunk: &[T]| !chunk.iter().fold(true, |ok, &v| ok & v.into().is_finite());
    let bad_chunk = if vals.len() <= CHUNK { bad(vals).then_some(0) } else { vals.par_chunks(CHUNK).position_first(bad) }?;
    let start = bad_chunk * CHUNK;
    vals[start..].iter().position(|&v| !v.into().is_finite()).map(|i| start + i)
}

#[cfg(test)]
mod tests {
    use super::first_non_finite;

    #[test]
    fn finds_the_first_non_finite_value_in_small_and_large_payloads() {
        for len in [10usize, 100_000] {
            let mut v = vec![1.5f64; len];
            assert_eq!(first_non_finite(&v), None);
            v[len - 3] = f64::INFINITY;
            v[len / 2 + 1] = f64::NAN;
            assert_eq!(first_non_finite(&v), Some(len / 2 + 1));
        }
        assert_eq!(first_non_finite(&[f32::MAX, -f32::MAX, f32::NEG_INFINITY]), Some(2));
    }
}
