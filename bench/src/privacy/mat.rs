//! A plain row-major matrix: what recordings hold (one row per masked
//! input row) and what the attacks scan. faer views are taken on demand.

use faer::{MatMut, MatRef};

#[derive(Clone, Debug, PartialEq)]
pub struct Rows<T> {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<T>,
}

pub type Rows32 = Rows<f32>;
pub type Rows64 = Rows<f64>;

impl<T: Copy + Default> Rows<T> {
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Self { rows, cols, data: vec![T::default(); rows * cols] }
    }

    /// Wraps `data`; fails when its length is not `rows × cols`.
    pub fn from_vec(rows: usize, cols: usize, data: Vec<T>) -> anyhow::Result<Self> {
        anyhow::ensure!(data.len() == rows * cols, "matrix data has {} values, expected {rows} × {cols}", data.len());
        Ok(Self { rows, cols, data })
    }

    pub fn row(&self, i: usize) -> &[T] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    pub fn row_mut(&mut self, i: usize) -> &mut [T] {
        &mut self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// The rows at `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Self {
        let mut data = Vec::with_capacity(idx.len() * self.cols);
        for &i in idx {
            data.extend_from_slice(self.row(i));
        }
        Self { rows: idx.len(), cols: self.cols, data }
    }

    /// Appends the rows of `other` (same width).
    pub fn extend(&mut self, other: &Self) {
        assert_eq!(self.cols, other.cols, "row width mismatch");
        self.data.extend_from_slice(&other.data);
        self.rows += other.rows;
    }

    pub fn empty(cols: usize) -> Self {
        Self { rows: 0, cols, data: Vec::new() }
    }

    pub fn transpose(&self) -> Self {
        let mut t = Self::zeros(self.cols, self.rows);
        for i in 0..self.rows {
            for j in 0..self.cols {
                t.data[j * self.rows + i] = self.data[i * self.cols + j];
            }
        }
        t
    }
}

impl<T> Rows<T> {
    pub fn view(&self) -> MatRef<'_, T> {
        MatRef::from_row_major_slice(&self.data, self.rows, self.cols)
    }

    pub fn view_mut(&mut self) -> MatMut<'_, T> {
        MatMut::from_row_major_slice_mut(&mut self.data, self.rows, self.cols)
    }
}

impl Rows64 {
    pub fn to_f32(&self) -> Rows32 {
        Rows { rows: self.rows, cols: self.cols, data: self.data.iter().map(|&v| v as f32).collect() }
    }
}

impl Rows32 {
    pub fn to_f64(&self) -> Rows64 {
        Rows { rows: self.rows, cols: self.cols, data: self.data.iter().map(|&v| v as f64).collect() }
    }
}

impl<T: Copy + std::ops::Mul<Output = T>> Rows<T> {
    /// Every row multiplied elementwise by `w` (one weight per column).
    pub fn scale_cols(&self, w: &[T]) -> Self {
        assert_eq!(w.len(), self.cols, "one weight per column");
        let mut out = self.clone();
        for row in out.data.chunks_exact_mut(self.cols.max(1)) {
            row.iter_mut().zip(w).for_each(|(v, &s)| *v = *v * s);
        }
        out
    }
}

pub fn dot64(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_and_view_agree() {
        let m = Rows::from_vec(3, 2, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0f64]).unwrap();
        let s = m.select(&[2, 0]);
        assert_eq!(s.data, vec![5.0, 6.0, 1.0, 2.0]);
        assert_eq!(m.view()[(1, 1)], 4.0);
        assert_eq!(m.transpose().data, vec![1.0, 3.0, 5.0, 2.0, 4.0, 6.0]);
        assert_eq!(m.scale_cols(&[2.0, 0.5]).data, vec![2.0, 1.0, 6.0, 2.0, 10.0, 3.0]);
        assert!(Rows::from_vec(2, 2, vec![0.0f64; 3]).is_err());
    }
}
