//! Software prefetch of weight rows a tile will read next.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};

/// Pulls into L2 `lines` 64-byte lines from the byte holding value `value`
/// of the row at `row`, whose elements hold `per` values each (1, or a
/// quant block's 32 or 256): the byte offset is exact, so a K-quant
/// super-block's later lines are reached too. A prefetch never faults,
/// even past the end.
#[inline(always)]
pub(super) unsafe fn prefetch_lines<E>(row: *const E, value: usize, per: usize, lines: usize) {
    let p = row.cast::<i8>().wrapping_add(value * std::mem::size_of::<E>() / per);
    for l in 0..lines {
        _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(64 * l));
    }
}
