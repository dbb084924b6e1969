//! Asks the kernel for transparent huge pages behind a large buffer that
//! is read with long strides or in random row order (weight matrices, pad
//! batches), where 4 KiB pages make nearly every row a TLB miss. Where THP
//! is in `madvise` mode (the usual default) nothing gets huge pages unless
//! it asks.

/// Advises `MADV_HUGEPAGE` for the 2 MiB-aligned interior of `buf`. Best
/// effort: a no-op off Linux, on small buffers, or when the kernel says no.
/// Call it before the pages are first touched for the effect to be
/// immediate (afterwards `khugepaged` may still collapse them).
pub fn advise_huge_pages<T>(buf: &[T]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = buf.as_ptr() as usize;
        let end = start + std::mem::size_of_val(buf);
        let (lo, hi) = (start.next_multiple_of(HUGE), end / HUGE * HUGE);
        if hi > lo {
            // SAFETY: the range lies inside `buf`'s allocation; MADV_HUGEPAGE
            // changes no contents, only how the range is backed.
            unsafe { libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buf;
}
