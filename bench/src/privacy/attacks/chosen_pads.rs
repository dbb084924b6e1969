//! Chosen plaintext: the worker submits its own requests and knows their
//! tokens. In a step where its rows are alone, each sent row is `x + r`
//! with `x` a known dictionary row, so `y − x` is the pad itself. A
//! scheme that reuses pads (across rows, calls or sessions) then loses
//! every other row masked with a recovered pad; ReMO draws a fresh pad per
//! row, so a recovered pad explains nothing else.

use anyhow::Result;

use super::pad_subtract::decode_with_pads;
use super::{Assumption, Attack, AttackOutcome, Evidence};
use crate::privacy::candidates::Candidates;
use crate::privacy::mat::{Rows32, Rows64};

pub struct ChosenPads;

/// A pairing is kept only when its residual is clearly the most pad-like
/// for that token (squared whitened norm below this share of the next
/// best): at a large κ every `y − x` looks like a pad and a wrong pairing
/// would yield `r + x_i − x_j`, a wrong pad.
const CLEAR_PAIRING: f64 = 0.7;

/// The pads of one attacker-alone call: each own token is paired with the
/// sent row whose residual `y − x` is most pad-like (smallest whitened
/// norm), greedily, each row used once (rows arrive shuffled, and a
/// bucket's dummy rows are left over). A call of one row and one own token
/// needs no pairing.
fn recover_pads(y: &Rows64, own: &[u32], dict: &Rows32, sigma: &[f64], out: &mut Rows64) {
    let residual = |i: usize, t: u32| -> Vec<f64> { y.row(i).iter().zip(dict.row(t as usize)).map(|(&v, &x)| v - x as f64).collect() };
    let whitened2 = |e: &[f64]| -> f64 { e.iter().zip(sigma).map(|(v, s)| (v / s).powi(2)).sum() };
    let push = |out: &mut Rows64, e: Vec<f64>| out.extend(&Rows64::from_vec(1, e.len(), e).expect("one row"));
    if y.rows == 1 && own.len() == 1 {
        push(out, residual(0, own[0]));
        return;
    }
    let d2: Vec<Vec<f64>> = own.iter().map(|&t| (0..y.rows).map(|i| whitened2(&residual(i, t))).collect()).collect();
    let mut pairs: Vec<(f64, usize, usize)> = Vec::with_capacity(y.rows * own.len());
    for (j, row) in d2.iter().enumerate() {
        pairs.extend(row.iter().enumerate().map(|(i, &v)| (v, i, j)));
    }
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut row_used, mut tok_used) = (vec![false; y.rows], vec![false; own.len()]);
    for (v, i, j) in pairs {
        if row_used[i] || tok_used[j] {
            continue;
        }
        row_used[i] = true;
        tok_used[j] = true;
        let next = (0..y.rows).filter(|&k| k != i && !row_used[k]).map(|k| d2[j][k]).fold(f64::INFINITY, f64::min);
        if v < CLEAR_PAIRING * next {
            push(out, residual(i, own[j]));
        }
    }
}

impl Attack for ChosenPads {
    fn name(&self) -> String {
        "chosen-pads".into()
    }

    fn assumptions(&self) -> Vec<Assumption> {
        vec![Assumption::OwnRequests, Assumption::DictionaryRows, Assumption::PublicNoiseScales, Assumption::RowCounts]
    }

    fn run(&self, ev: &Evidence, cands: &mut dyn Candidates) -> Result<Option<AttackOutcome>> {
        let Some((id, dict)) = ev.dictionary_op(cands) else { return Ok(None) };
        let alone: Vec<usize> = (0..ev.steps.len()).filter(|&k| ev.steps[k].attacker_alone()).collect();
        if alone.is_empty() {
            return Ok(None);
        }
        let sigma = ev.noise(id, dict.cols).sigma;
        let mut pads = Rows64::empty(dict.cols);
        for &k in &alone {
            if let Some(c) = ev.call(k, id) {
                recover_pads(&c.data, &ev.steps[k].own, dict, &sigma, &mut pads);
            }
        }
        if pads.rows == 0 {
            let notes = format!("no pad recovered from {} own steps (no clear pairing)", alone.len());
            return Ok(Some(AttackOutcome { guesses: vec![Vec::new(); ev.steps.len()], notes }));
        }
        let dec = decode_with_pads(ev, id, dict, &pads, &sigma);
        let mut guesses = dec.stacked.guesses_from_rows(ev, &dec.per_row);
        // Its own steps are no guesses: it knew them.
        alone.iter().for_each(|&k| guesses[k].clear());
        // Online rows of the victims only: the own rows match their own pad.
        let victim: Vec<f64> =
            dec.stacked.owner.iter().zip(&dec.best_cos).filter(|((k, _), _)| !ev.steps[*k].attacker_alone()).map(|(_, &c)| c).collect();
        let mean = victim.iter().sum::<f64>() / victim.len().max(1) as f64;
        Ok(Some(AttackOutcome {
            guesses,
            notes: format!("{} pads from {} own steps; victims' best pad |cos| {mean:.2}", pads.rows, alone.len()),
        }))
    }
}
