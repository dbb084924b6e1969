//! Parallel work on disjoint column ranges of one row-major matrix. The
//! butterfly mixing transforms over rows, so each thread takes a block of
//! columns (all rows) that fits in cache; this is the one place that
//! needs shared mutable access, and it hands out each range exactly once.

use std::marker::PhantomData;

use rayon::prelude::*;

/// Columns `[c0, c0 + width)` of every row of the matrix; exclusive to its
/// holder.
pub(super) struct ColumnBlockMut<'a> {
    base: *mut f64,
    rows: usize,
    cols: usize,
    c0: usize,
    width: usize,
    _matrix: PhantomData<&'a mut [f64]>,
}

// SAFETY: a block is the only handle to its column range (see
// `par_column_blocks`), so moving it to another thread is sound.
unsafe impl Send for ColumnBlockMut<'_> {}

impl ColumnBlockMut<'_> {
    pub(super) fn width(&self) -> usize {
        self.width
    }

    pub(super) fn c0(&self) -> usize {
        self.c0
    }

    /// Row `r` of the block (`width` values).
    #[inline(always)]
    pub(super) fn row(&self, r: usize) -> &[f64] {
        assert!(r < self.rows);
        // SAFETY: row r < rows, columns c0..c0+width lie inside the matrix
        // (checked at construction) and no other handle covers them.
        unsafe { std::slice::from_raw_parts(self.base.add(r * self.cols + self.c0), self.width) }
    }

    /// Row `r` of the block, writable.
    #[inline(always)]
    pub(super) fn row_mut(&mut self, r: usize) -> &mut [f64] {
        assert!(r < self.rows);
        // SAFETY: as in `row`; `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.base.add(r * self.cols + self.c0), self.width) }
    }

    /// Copies the block into `dst` (`rows × width`, row-major).
    pub(super) fn load(&self, dst: &mut [f64]) {
        assert_eq!(dst.len(), self.rows * self.width);
        for (r, d) in dst.chunks_exact_mut(self.width).enumerate() {
            // SAFETY: row r, columns c0..c0+width lie inside the matrix
            // (checked at construction) and no other handle covers them.
            let src = unsafe { std::slice::from_raw_parts(self.base.add(r * self.cols + self.c0), self.width) };
            d.copy_from_slice(src);
        }
    }

    /// Writes `src` (`rows × width`, row-major) into the block.
    pub(super) fn store(&mut self, src: &[f64]) {
        assert_eq!(src.len(), self.rows * self.width);
        for (r, s) in src.chunks_exact(self.width).enumerate() {
            // SAFETY: as in `load`; `&mut self` makes the write exclusive.
            let dst = unsafe { std::slice::from_raw_parts_mut(self.base.add(r * self.cols + self.c0), self.width) };
            dst.copy_from_slice(s);
        }
    }
}

#[derive(Clone, Copy)]
struct MatrixPtr(*mut f64);
// SAFETY: only used to build disjoint `ColumnBlockMut`s.
unsafe impl Send for MatrixPtr {}
unsafe impl Sync for MatrixPtr {}
impl MatrixPtr {
    fn get(self) -> *mut f64 {
        self.0
    }
}

/// Runs `f` on every block of `block_width` columns of the `rows × cols`
/// matrix `m`, in parallel; `init` makes per-job scratch state.
pub(super) fn par_column_blocks<S, I, F>(m: &mut [f64], rows: usize, cols: usize, block_width: usize, init: I, f: F)
where
    I: Fn() -> S + Sync + Send,
    F: Fn(&mut S, ColumnBlockMut<'_>) + Sync + Send,
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
        par_column_blocks(&mut m, rows, cols, 4, Vec::new, |buf: &mut Vec<f64>, mut block| {
            buf.resize(rows * block.width(), 0.0);
            block.load(buf);
            buf.iter_mut().for_each(|v| *v = 2.0 * *v + 1.0);
            block.store(buf);
        });
        assert_eq!(m, want);
    }
}
