//! Scoring guesses against tokens.json: top-1 token accuracy over prompt
//! and response positions (BOS excluded). A guess that names the observed
//! row it explains is checked against that row's true token when the row
//! shuffle is known (`row_sources`); the other guesses of a step are
//! matched to its remaining tokens as a multiset (a layer-0 call carries
//! no order, so a set test gets credit for the tokens it finds; at
//! batch-1 decode a step is one position and this is plain top-1). Also
//! bag-of-tokens recall per sequence and the no-skill baselines.

use std::collections::{HashMap, HashSet};

use super::attacks::Guess;
use super::steps::Step;
use super::tokens::TokensFile;

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Score {
    pub top1: f64,
    pub top1_prompt: f64,
    pub top1_response: f64,
    pub bag_recall: f64,
    pub positions: usize,
    pub hits: usize,
}

/// Which real rows of a step the guesses hit.
fn step_hits(tokens: &TokensFile, step: &Step, guesses: &[Guess]) -> Vec<bool> {
    let n = step.rows.len();
    let mut hit = vec![false; n];
    let mut claimed = vec![false; n];
    let mut loose: Vec<u32> = Vec::new();
    for g in guesses {
        match (g.row, &step.row_sources) {
            (Some(r), Some(src)) => {
                // Attributed to a row whose content is known: right or wrong
                // on that row alone (a padding row is a wasted guess).
                if let Some(Some(i)) = src.get(r) {
                    if !claimed[*i] {
                        claimed[*i] = true;
                        hit[*i] = tokens.token(step.rows[*i]) == g.token;
                    }
                }
            }
            _ => loose.push(g.token),
        }
    }
    let mut pool: HashMap<u32, usize> = HashMap::new();
    for t in loose {
        *pool.entry(t).or_default() += 1;
    }
    for i in 0..n {
        if claimed[i] {
            continue;
        }
        if let Some(c) = pool.get_mut(&tokens.token(step.rows[i])).filter(|c| **c > 0) {
            *c -= 1;
            hit[i] = true;
        }
    }
    hit
}

pub fn score(tokens: &TokensFile, steps: &[Step], guesses: &[Vec<Guess>]) -> Score {
    let (mut hits, mut total) = (0usize, 0usize);
    let (mut hp, mut tp, mut hr, mut tr) = (0usize, 0usize, 0usize, 0usize);
    let mut bags: Vec<HashSet<u32>> = vec![HashSet::new(); tokens.sequences.len()];
    for (k, step) in steps.iter().enumerate() {
        let g = guesses.get(k).map(Vec::as_slice).unwrap_or(&[]);
        for &(s, _) in &step.rows {
            bags[s].extend(g.iter().map(|x| x.token));
        }
        for (&r, h) in step.rows.iter().zip(step_hits(tokens, step, g)) {
            if !tokens.is_scored(r) {
                continue;
            }
            total += 1;
            hits += usize::from(h);
            if r.1 < tokens.sequences[r.0].prompt_len {
                tp += 1;
                hp += usize::from(h);
            } else {
                tr += 1;
                hr += usize::from(h);
            }
        }
    }
    let (mut bag_hits, mut bag_total) = (0usize, 0usize);
    for (s, seq) in tokens.sequences.iter().enumerate() {
        let truth: HashSet<u32> = seq.tokens.iter().enumerate().filter(|&(p, _)| tokens.is_scored((s, p))).map(|(_, &t)| t).collect();
        bag_total += truth.len();
        bag_hits += truth.intersection(&bags[s]).count();
    }
    let frac = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    Score {
        top1: frac(hits, total),
        top1_prompt: frac(hp, tp),
        top1_response: frac(hr, tr),
        bag_recall: frac(bag_hits, bag_total),
        positions: total,
        hits,
    }
}

/// Accuracy of always guessing the most frequent scored token.
pub fn majority_baseline(tokens: &TokensFile) -> f64 {
    let mut counts: HashMap<u32, usize> = HashMap::new();
    let mut total = 0;
    for (s, seq) in tokens.sequences.iter().enumerate() {
        for (p, &t) in seq.tokens.iter().enumerate() {
            if tokens.is_scored((s, p)) {
                *counts.entry(t).or_default() += 1;
                total += 1;
            }
        }
    }
    counts.values().max().map_or(0.0, |&m| m as f64 / total.max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::tokens::SequenceTokens;

    fn setup() -> (TokensFile, Vec<Step>) {
        let tokens = TokensFile {
            format_version: 1,
            sequences: vec![SequenceTokens { tokens: vec![1, 7, 7, 8, 9], prompt_len: 3, bos: true, attacker: false }],
            steps: None,
            row_sources: None,
        };
        let steps = tokens.steps().into_iter().map(|rows| Step { rows, calls: vec![], row_sources: None, own: vec![] }).collect();
        (tokens, steps)
    }

    fn loose(v: &[u32]) -> Vec<Guess> {
        v.iter().map(|&t| Guess::unattributed(t)).collect()
    }

    #[test]
    fn multiset_matching_within_a_step_and_bos_excluded() {
        let (tokens, steps) = setup();
        // Prompt step (BOS, 7, 7): guesses in another order, one 7 wrong.
        let g = vec![loose(&[7, 1, 5]), loose(&[8]), loose(&[0])];
        let s = score(&tokens, &steps, &g);
        assert_eq!(s.positions, 4);
        assert_eq!(s.hits, 2);
        assert!((s.top1_prompt - 0.5).abs() < 1e-12 && (s.top1_response - 0.5).abs() < 1e-12);
        assert!((s.bag_recall - 2.0 / 3.0).abs() < 1e-12, "7 and 8 of {{7, 8, 9}}");
        assert!((majority_baseline(&tokens) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn attributed_guesses_are_judged_on_their_row() {
        let (tokens, mut steps) = setup();
        // Observed rows of the prompt call: row 0 carries position 2, row 1
        // position 0 (BOS), row 2 position 1.
        steps[0].row_sources = Some(vec![Some(2), Some(0), Some(1)]);
        // Row 0 named 7 (right); row 2 named 8 (wrong, though 8 is a
        // token of the sequence, and no multiset credit for it).
        let g = vec![vec![Guess { token: 7, row: Some(0) }, Guess { token: 8, row: Some(2) }], loose(&[]), loose(&[])];
        let s = score(&tokens, &steps, &g);
        assert_eq!(s.hits, 1);
        // Unattributed guesses still match the unclaimed positions.
        let g = vec![vec![Guess { token: 9, row: Some(0) }, Guess::unattributed(7)], loose(&[]), loose(&[])];
        assert_eq!(score(&tokens, &steps, &g).hits, 1);
    }
}
