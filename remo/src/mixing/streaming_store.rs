//! Non-temporal stores for results that are not read again soon.
//!
//! A pad batch's `R·W` (up to 12 MB) is written by the unmix and read by
//! online calls seconds later, long after it would have left the caches.
//! Ordinary stores first read each line in and then push out whatever the
//! serving step keeps hot (weights, embeddings, KV); streaming stores go
//! to memory directly.

/// `dst.copy_from_slice(src)` with non-temporal stores: 16 bytes at a
/// time from the first 16-byte boundary (one 8-byte store before it when
/// `dst` is only 8-byte aligned, one after the last whole 16 bytes when
/// the length leaves 8); plain stores where `dst` is not 8-byte aligned or
/// not a whole number of 8-byte words. Call [`fence`] before another
/// thread reads what was written.
#[inline(always)]
pub(super) fn copy_streaming<P: bytemuck::Pod>(dst: &mut [P], src: &[P]) {
    assert_eq!(dst.len(), src.len(), "streaming copy of unequal lengths");
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_loadu_si128, _mm_stream_si128, _mm_stream_si64};
        let bytes: &[u8] = bytemuck::cast_slice(src);
        let p = dst.as_mut_ptr().cast::<u8>();
        if (p as usize).is_multiple_of(8) && bytes.len().is_multiple_of(8) {
            let word = |at: usize| i64::from_ne_bytes(bytes[at..at + 8].try_into().expect("8-byte word"));
            let head = if (p as usize).is_multiple_of(16) { 0 } else { 8.min(bytes.len()) };
            // SAFETY (all three stores): every address written lies inside
            // `dst`, which has the byte length of `src`; 8-byte stores go to
            // 8-byte aligned addresses and 16-byte stores to 16-byte aligned
            // ones (`p + head` is); MOVNTI and MOVNTDQ are SSE2, which every
            // x86_64 CPU has.
            if head == 8 {
                unsafe { _mm_stream_si64(p.cast::<i64>(), word(0)) };
            }
            let body = (bytes.len() - head) / 16 * 16;
            for k in (head..head + body).step_by(16) {
                unsafe { _mm_stream_si128(p.add(k).cast(), _mm_loadu_si128(bytes.as_ptr().add(k).cast())) };
            }
            if head + body < bytes.len() {
                unsafe { _mm_stream_si64(p.add(head + body).cast::<i64>(), word(head + body)) };
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
        // Odd lengths and odd offsets take plain stores; even ones every mix
        // of an 8-byte head (offset 2) and tail (length ≡ 2 mod 4) around
        // the 16-byte stores.
        for (off, len) in [(0, 67), (1, 66), (2, 66), (0, 66), (0, 64), (2, 64), (3, 62), (2, 2), (0, 2), (0, 0)] {
            dst.fill(0.0);
            copy_streaming(&mut dst[off..off + len], &src[..len]);
            fence();
            assert_eq!(&dst[off..off + len], &src[..len], "offset {off}, {len} values");
        }
    }
}
