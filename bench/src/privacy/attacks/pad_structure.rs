//! (e3) Structure test on the mixing `M = Π_k (H·D_k·P_k)`: its outermost
//! layer is the public Walsh–Hadamard transform, so the attacker peels it
//! (`H·U = D·P·(rest)`), normalises the row scales the diagonal left, and
//! tests whether what remains is trivial or sparse mixing: row
//! correlations near the independent-rows null mean individual pads
//! (one round is broken this way). The peeled rows, with the raw ones,
//! are then used as pad estimates. Peeling further would need the secret
//! permutation of each round.

use anyhow::Result;

use super::omp::normalize_rows;
use super::pad_gram::{batches, gram_stats};
use super::pad_subtract::decode_with_pads;
use super::{Assumption, Attack, AttackOutcome, Evidence};
use crate::privacy::candidates::Candidates;
use crate::privacy::hadamard::fwht_rows;
use crate::privacy::mat::Rows64;

pub struct PadStructure;

impl Attack for PadStructure {
    fn name(&self) -> String {
        "pad-structure".into()
    }

    fn assumptions(&self) -> Vec<Assumption> {
        vec![
            Assumption::PadBatches,
            Assumption::ButterflyForm,
            Assumption::PublicNoiseScales,
            Assumption::DictionaryRows,
            Assumption::RowCounts,
        ]
    }

    fn run(&self, ev: &Evidence, cands: &mut dyn Candidates) -> Result<Option<AttackOutcome>> {
        let Some((id, dict)) = ev.dictionary_op(cands) else { return Ok(None) };
        let bs = batches(ev, id);
        if bs.is_empty() {
            return Ok(None);
        }
        let sigma = ev.noise(id, dict.cols).sigma;
        let mut pads = Rows64::empty(dict.cols);
        let (mut before, mut after, mut peeled) = (0.0, 0.0, 0usize);
        for u in &bs {
            before += gram_stats(u, &sigma).partners;
            pads.extend(u);
            let mut h = u.clone();
            if fwht_rows(&mut h).is_ok() {
                let (unit, _) = normalize_rows(&h);
                after += gram_stats(&unit, &sigma).partners;
                pads.extend(&unit);
                peeled += 1;
            }
        }
        let dec = decode_with_pads(ev, id, dict, &pads, &sigma);
        let n = bs.len() as f64;
        let notes = if peeled == 0 {
            "batch size not a power of two: no WHT to peel".to_string()
        } else {
            format!(
                "partners/row {:.1} raw → {:.1} after peeling H; best pad |cos| {:.2}",
                before / n,
                after / peeled as f64,
                dec.mean_best_cos()
            )
        };
        Ok(Some(AttackOutcome { guesses: dec.stacked.guesses_from_rows(ev, &dec.per_row), notes }))
    }
}
