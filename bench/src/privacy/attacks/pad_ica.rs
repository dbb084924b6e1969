//! (e2) FastICA on each pad batch: if the rows of `U = M·R` could be
//! unmixed into independent components, those would be the pads. After
//! whitening channels by the public σ_c, each pad's entries are i.i.d.
//! Gaussian, which ICA cannot separate; this attack measures that.

use anyhow::Result;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::fastica::fast_ica;
use super::pad_gram::batches;
use super::pad_subtract::decode_with_pads;
use super::{Assumption, Attack, AttackOutcome, Evidence};
use crate::privacy::candidates::Candidates;
use crate::privacy::mat::Rows64;

pub struct PadIca {
    pub components: usize,
    pub max_iter: usize,
    pub seed: u64,
}

impl Attack for PadIca {
    fn name(&self) -> String {
        "pad-ica".into()
    }

    fn assumptions(&self) -> Vec<Assumption> {
        vec![Assumption::PadBatches, Assumption::PublicNoiseScales, Assumption::DictionaryRows, Assumption::RowCounts]
    }

    fn run(&self, ev: &Evidence, cands: &mut dyn Candidates) -> Result<Option<AttackOutcome>> {
        let Some((id, dict)) = ev.dictionary_op(cands) else { return Ok(None) };
        let bs = batches(ev, id);
        if bs.is_empty() {
            return Ok(None);
        }
        let sigma = ev.noise(id, dict.cols).sigma;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut pads = Rows64::empty(dict.cols);
        let (mut converged, mut iters) = (0, 0);
        for u in &bs {
            let mut x = u.clone();
            for i in 0..x.rows {
                x.row_mut(i).iter_mut().zip(&sigma).for_each(|(v, s)| *v /= s);
            }
            let res = fast_ica(&x, self.components, self.max_iter, 1e-6, &mut rng)?;
            converged += usize::from(res.converged);
            iters += res.iterations;
            let mut s = res.sources;
            for i in 0..s.rows {
                s.row_mut(i).iter_mut().zip(&sigma).for_each(|(v, sg)| *v *= sg);
            }
            pads.extend(&s);
        }
        let dec = decode_with_pads(ev, id, dict, &pads, &sigma);
        Ok(Some(AttackOutcome {
            guesses: dec.stacked.guesses_from_rows(ev, &dec.per_row),
            notes: format!(
                "{} components/batch, converged {converged}/{} ({} iterations); best pad |cos| {:.2}",
                self.components,
                bs.len(),
                iters,
                dec.mean_best_cos()
            ),
        }))
    }
}
