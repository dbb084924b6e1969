//! Non-temporal stores for results that are not read again soon.
//!
//! A pad batch's `R·W` (up to 12 MB) is written by the unmix and read by
//! online calls seconds later, long after it would have left the caches.
//! Ordinary stores first read each line in and then push out whatever the
//! serving step keeps hot (weights, embeddings, KV); streaming stores go
//! to memory directly.

/// `dst.copy_from_slice(src)` with non-temporal 8-byte stores where `dst`
/// is 8-byte aligned and a whole number of words (plain stores otherwise).
/// Call [`fence`] before another thread reads what was written.
#[inline(always)]
pub(super) fn copy_streaming<P: bytemuck::Pod>(dst: &mut [P], src: &[P]) {
    assert_eq!(dst.len(), src.len(), "streaming copy of unequal lengths");
    #[cfg(target_arch = "x86_64")]
    {
        let bytes: &[u8] = bytemuck::cast_slice(src);
        let p = dst.as_mut_ptr().cast::<u8>();
        if (p as usize).is_multiple_of(8) && bytes.len().is_multiple_of(8) {
            for (k, w) in bytes.chunks_exact(8).enumerate() {
                let v = i64::from_ne_bytes(w.try_into().expect("8-byte chunk"));
                // SAFETY: `p + 8k .. p + 8k + 8` lies inside `dst` (same
                // byte length as `src`) and is 8-byte aligned; MOVNTI is
                // part of SSE2, which every x86_64 CPU has.
                unsafe { std::arch::x86_64::_mm_stream_si64(p.add(8 * k).cast::<i64>(), v) };
            }
            return;
        }
    }
    dst.copy_from_slice(src);
}

/// Orders earlier streaming stores before later stores (and so before the
/// release that hands the data to another thread).
#[inline(always)]
pub(super) fn fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SFENCE has no preconditions.
    unsafe {
        std::arch::x86_64::_mm_sfence()
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_aligned_and_unaligned_destinations() {
        let src: Vec<f32> = (0..67).map(|i| i as f32 * 0.5 - 3.0).collect();
        let mut dst = vec![0f32; 68];
        // Offset 0 (8-aligned, odd length: plain stores), 1 and 2 (one of
        // which is 8-aligned), even lengths.
        for (off, len) in [(0, 67), (1, 66), (2, 66), (0, 64)] {
            dst.fill(0.0);
            copy_streaming(&mut dst[off..off + len], &src[..len]);
            fence();
            assert_eq!(&dst[off..off + len], &src[..len], "offset {off}, {len} values");
        }
    }
}
