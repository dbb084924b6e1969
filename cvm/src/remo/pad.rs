//! A one-time pad: a Gaussian row `r` and its product `r·W`.

/// One pad of one op. It is neither `Clone` nor `Copy`: the pool moves it
/// out exactly once and the online call consumes it, so no API can hand
/// out the same pad twice. Its memory is zeroized on drop.
///
/// ```compile_fail
/// fn reuse(p: talaria_cvm::remo::Pad) -> (talaria_cvm::remo::Pad, talaria_cvm::remo::Pad) {
///     (p.clone(), p)
/// }
/// ```
pub struct Pad {
    /// `r` (d_in values) followed by `r·W` (d_out values).
    data: Box<[f64]>,
    d_in: usize,
}

impl Pad {
    pub(crate) fn new(r: &[f64], rw: &[f64]) -> Self {
        let mut data = Vec::with_capacity(r.len() + rw.len());
        data.extend_from_slice(r);
        data.extend_from_slice(rw);
        Self { data: data.into_boxed_slice(), d_in: r.len() }
    }

    /// The pad row `r` (`d_in` values).
    pub fn r(&self) -> &[f64] {
        &self.data[..self.d_in]
    }

    /// Its product `r·W` (`d_out` values).
    pub fn rw(&self) -> &[f64] {
        &self.data[self.d_in..]
    }

    pub fn d_in(&self) -> usize {
        self.d_in
    }

    pub fn d_out(&self) -> usize {
        self.data.len() - self.d_in
    }
}

impl Drop for Pad {
    fn drop(&mut self) {
        super::wipe::wipe(&mut self.data);
    }
}

impl std::fmt::Debug for Pad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pad({}→{}, secret)", self.d_in(), self.d_out())
    }
}
