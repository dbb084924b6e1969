//! Parallel work on disjoint column ranges of one row-major matrix. The
//! butterfly mixing transforms over rows, so each thread takes a block of
//! columns (all rows) that fits in cache; this is the one place that
//! needs shared mutable access, and it hands out each range exactly once.

use std::marker::PhantomData;

use rayon::prelude::*;

/// Columns `[c0, c0 + width)` of every row of the matrix; exclusive to its
/// holder.
pub(super) struct ColumnBlockMut<'a, T> {
    base: *mut T,
    rows: usize,
    cols: usize,
    c0: usize,
    width: usize,
    _matrix: PhantomData<&'a mut [T]>,
}

// SAFETY: a block is the only handle to its column range (see
// `par_column_blocks`), so moving it to another thread is sound.
unsafe impl<T: Send> Send for ColumnBlockMut<'_, T> {}

impl<T: Copy> ColumnBlockMut<'_, T> {
    pub(super) fn width(&self) -> usize {
        self.width
    }

    pub(super) fn c0(&self) -> usize {
        self.c0
    }

    /// Row `r` of the block (`width` values).
    #[inline(always)]
    pub(super) fn row(&self, r: usize) -> &[T] {
        assert!(r < self.rows);
        // SAFETY: row r < rows, columns c0..c0+width lie inside the matrix
        // (checked at construction) and no other handle covers them.
        unsafe { std::slice::from_raw_parts(self.base.add(r * self.cols + self.c0), self.width) }
    }

    /// Row `r` of the block, writable.
    #[inline(always)]
    pub(super) fn row_mut(&mut self, r: usize) -> &mut [T] {
        assert!(r < self.rows);
        // SAFETY: as in `row`; `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.base.add(r * self.cols + self.c0), self.width) }
    }
}

struct MatrixPtr<T>(*mut T);
// SAFETY: only used to build disjoint `ColumnBlockMut`s.
unsafe impl<T: Send> Send for MatrixPtr<T> {}
unsafe impl<T: Send> Sync for MatrixPtr<T> {}
impl<T> Clone for MatrixPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for MatrixPtr<T> {}
impl<T> MatrixPtr<T> {
    fn get(self) -> *mut T {
        self.0
    }
}

/// Runs `f` on every block of `block_width` columns of the `rows × cols`
/// matrix `m`, in parallel; `init` makes per-job scratch state.
pub(super) fn par_column_blocks<T, S, I, F>(m: &mut [T], rows: usize, cols: usize, block_width: usize, init: I, f: F)
where
    T: Send,
    I: Fn() -> S + Sync + Send,
    F: Fn(&mut S, ColumnBlockMut<'_, T>) + Sync + Send,
{
    assert_eq!(m.len(), rows * cols, "matrix size");
    let bw = block_width.clamp(1, cols.max(1));
    let base = MatrixPtr(m.as_mut_ptr());
    (0..cols.div_ceil(bw)).into_par_iter().for_each_init(init, |state, b| {
        let c0 = b * bw;
        let block = ColumnBlockMut { base: base.get(), rows, cols, c0, width: bw.min(cols - c0), _matrix: PhantomData };
        f(state, block);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_cover_every_column_once() {
        let (rows, cols) = (5, 23);
        let mut m: Vec<f64> = (0..rows * cols).map(|i| i as f64).collect();
        let want: Vec<f64> = m.iter().map(|v| 2.0 * v + 1.0).collect();
        par_column_blocks(
            &mut m,
            rows,
            cols,
            4,
            || (),
            |_, mut block| {
                for r in 0..rows {
                    block.row_mut(r).iter_mut().for_each(|v| *v = 2.0 * *v + 1.0);
                }
            },
        );
        assert_eq!(m, want);
    }
}
