//! Both sides reject non-finite values: an honest peer never sends them.
//! Scans are branch-free passes (they vectorize), on all threads when
//! large (a pad batch is up to 25 MB each way); the index is searched
//! only on failure.

use rayon::prelude::*;

/// Values per parallel chunk.
const CHUNK: usize = 1 << 15;

fn all_finite<T: Copy + Into<f64>>(chunk: &[T]) -> bool {
    chunk.iter().fold(true, |ok, &v| ok & v.into().is_finite())
}

/// The first non-finite value at or after the start of chunk `bad_chunk`.
fn first_from<T: Copy + Into<f64>>(vals: &[T], bad_chunk: usize) -> Option<usize> {
    let start = bad_chunk * CHUNK;
    vals[start..].iter().position(|&v| !v.into().is_finite()).map(|i| start + i)
}

/// The index of the first NaN or ∞ in a payload.
pub fn first_non_finite<T: Copy + Sync + Into<f64>>(vals: &[T]) -> Option<usize> {
    let bad = |chunk: &[T]| !all_finite(chunk);
    let bad_chunk = if vals.len() <= CHUNK { bad(vals).then_some(0) } else { vals.par_chunks(CHUNK).position_first(bad) }?;
    first_from(vals, bad_chunk)
}

/// Copies `src` into `dst` (equal lengths) and returns the index of the
/// first NaN or ∞ in it: one read of `src` where a scan and then a copy
/// read it twice (an answer in shared memory is copied into private
/// memory this way). All of `src` is copied either way.
pub fn copy_first_non_finite<T: Copy + Send + Sync + Into<f64>>(src: &[T], dst: &mut [T]) -> Option<usize> {
    assert_eq!(src.len(), dst.len(), "copy of unequal lengths");
    let copy = |(s, d): (&[T], &mut [T])| {
        d.copy_from_slice(s);
        !all_finite(d)
    };
    let bad_chunk = if src.len() <= CHUNK {
        copy((src, dst)).then_some(0)
    } else {
        // Every chunk is copied (no early stop), then the first bad one found.
        let bad: Vec<bool> = src.par_chunks(CHUNK).zip(dst.par_chunks_mut(CHUNK)).map(copy).collect();
        bad.iter().position(|&b| b)
    }?;
    first_from(src, bad_chunk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_non_finite_value_in_small_and_large_payloads() {
        for len in [10usize, 100_000] {
            let mut v = vec![1.5f64; len];
            assert_eq!(first_non_finite(&v), None);
            let mut copy = vec![0.0; len];
            assert_eq!(copy_first_non_finite(&v, &mut copy), None);
            assert_eq!(copy, v);
            v[len - 3] = f64::INFINITY;
            v[len / 2 + 1] = f64::NAN;
            assert_eq!(first_non_finite(&v), Some(len / 2 + 1));
            copy.fill(0.0);
            assert_eq!(copy_first_non_finite(&v, &mut copy), Some(len / 2 + 1));
            assert_eq!(copy[len - 1], 1.5, "copied in full");
        }
        assert_eq!(first_non_finite(&[f32::MAX, -f32::MAX, f32::NEG_INFINITY]), Some(2));
    }
}
