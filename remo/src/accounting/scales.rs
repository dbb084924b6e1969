//! Per-op channel scales `s_c`: start from the public calibration values
//! and are raised where the real rows turn out larger (docs/DESIGN.md §3).

use talaria_models::OpId;

/// The scales of one op and what has been observed of its real rows.
pub struct ChannelScales {
    id: OpId,
    /// Current `s_c`; new pads get `σ_c = κ·s_c`.
    scales: Vec<f64>,
    /// Running per-channel max of the per-call RMS of real rows.
    observed_max: Vec<f64>,
    /// Per-channel RMS of the last observed call.
    last_rms: Vec<f64>,
    raises: u64,
}

impl ChannelScales {
    pub fn new(id: OpId, scales: Vec<f64>) -> Self {
        let d = scales.len();
        Self { id, scales, observed_max: vec![0.0; d], last_rms: vec![0.0; d], raises: 0 }
    }

    pub fn scales(&self) -> &[f64] {
        &self.scales
    }

    pub fn observed_max(&self) -> &[f64] {
        &self.observed_max
    }

    /// Per-channel RMS of the rows of the last `observe` call.
    pub fn last_rms(&self) -> &[f64] {
        &self.last_rms
    }

    /// How many calls raised at least one scale.
    pub fn raises(&self) -> u64 {
        self.raises
    }

    /// Records the per-channel RMS of `rows` real rows `x` (`rows × d_in`,
    /// length already checked) and raises `s_c` to the running max where
    /// it exceeds it. Returns whether any scale was raised.
    pub fn observe<X: Copy + Into<f64>>(&mut self, x: &[X], rows: usize) -> bool {
        let d = self.scales.len();
        if rows == 0 || d == 0 {
            return false;
        }
        self.last_rms.iter_mut().for_each(|v| *v = 0.0);
        for row in x.chunks_exact(d) {
            for (acc, &v) in self.last_rms.iter_mut().zip(row) {
                let v: f64 = v.into();
                *acc += v * v;
            }
        }
        let mut raised = 0usize;
        let mut worst = 1.0f64;
        for c in 0..d {
            let rms = (self.last_rms[c] / rows as f64).sqrt();
            self.last_rms[c] = rms;
            if rms > self.observed_max[c] {
                self.observed_max[c] = rms;
            }
            if self.observed_max[c] > self.scales[c] {
                worst = worst.max(if self.scales[c] > 0.0 { self.observed_max[c] / self.scales[c] } else { f64::INFINITY });
                self.scales[c] = self.observed_max[c];
                raised += 1;
            }
        }
        if raised == 0 {
            return false;
        }
        self.raises += 1;
        // Routine (calibration is one public text), and the raise already
        // protects the call: logged at debug, counted in the run's summary
        // (a warning per op interleaved with the streamed answer).
        tracing::debug!(op = %self.id, channels = raised, max_ratio = worst, "raised channel scales");
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use talaria_models::Op;

    #[test]
    fn raises_only_channels_that_exceed() {
        let mut s = ChannelScales::new(OpId::new(0, Op::O), vec![1.0, 1.0, 0.0]);
        assert!(!s.observe(&[0.5f32, -1.0, 0.0, 0.5, 1.0, 0.0], 2));
        assert_eq!(s.scales(), &[1.0, 1.0, 0.0]);
        // Channel 0 RMS = sqrt((9 + 1) / 2), channel 2 RMS = 1.
        assert!(s.observe(&[3.0f64, 0.0, 1.0, 1.0, 0.0, -1.0], 2));
        let want0 = 5.0f64.sqrt();
        assert!((s.scales()[0] - want0).abs() < 1e-12);
        assert_eq!(s.scales()[1], 1.0);
        assert_eq!(s.scales()[2], 1.0);
        assert_eq!(s.raises(), 1);
        // The running max never decreases, so smaller rows change nothing.
        assert!(!s.observe(&[0.1f32, 0.1, 0.1], 1));
        assert!((s.scales()[0] - want0).abs() < 1e-12);
        assert!((s.last_rms()[0] - 0.1).abs() < 1e-7);
    }
}
