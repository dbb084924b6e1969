//! Scoring guesses against tokens.json: top-1 token accuracy over prompt
//! and response positions (BOS excluded), with the guesses of a step
//! matched to its true tokens as multisets (a layer-0 call carries no
//! order; at batch-1 decode a step is one position so this is plain
//! top-1), bag-of-tokens recall per sequence, and the no-skill baselines.

use std::collections::{HashMap, HashSet};

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

pub fn score(tokens: &TokensFile, steps: &[Step], guesses: &[Vec<u32>]) -> Score {
    let (mut hits, mut total) = (0usize, 0usize);
    let (mut hp, mut tp, mut hr, mut tr) = (0usize, 0usize, 0usize, 0usize);
    let mut bags: Vec<HashSet<u32>> = vec![HashSet::new(); tokens.sequences.len()];
    for (k, step) in steps.iter().enumerate() {
        let g = guesses.get(k).map(Vec::as_slice).unwrap_or(&[]);
        let mut pool: HashMap<u32, usize> = HashMap::new();
        for &t in g {
            *pool.entry(t).or_default() += 1;
        }
        for &(s, _) in &step.rows {
            bags[s].extend(g.iter().copied());
        }
        for &r in &step.rows {
            if !tokens.is_scored(r) {
                continue;
            }
            let truth = tokens.token(r);
            let hit = match pool.get_mut(&truth) {
                Some(c) if *c > 0 => {
                    *c -= 1;
                    true
                }
                _ => false,
            };
            let in_prompt = r.1 < tokens.sequences[r.0].prompt_len;
            total += 1;
            hits += usize::from(hit);
            if in_prompt {
                tp += 1;
                hp += usize::from(hit);
            } else {
                tr += 1;
                hr += usize::from(hit);
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
    Score { top1: frac(hits, total), top1_prompt: frac(hp, tp), top1_response: frac(hr, tr), bag_recall: frac(bag_hits, bag_total), positions: total, hits }
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

    #[test]
    fn multiset_matching_within_a_step_and_bos_excluded() {
        let tokens = TokensFile { format_version: 1, sequences: vec![SequenceTokens { tokens: vec![1, 7, 7, 8, 9], prompt_len: 3, bos: true }], steps: None };
        let steps: Vec<Step> = tokens.steps().into_iter().map(|rows| Step { rows, calls: vec![] }).collect();
        // Prompt step (BOS, 7, 7): guesses in another order, one 7 wrong.
        let g = vec![vec![7, 1, 5], vec![8], vec![0]];
        let s = score(&tokens, &steps, &g);
        assert_eq!(s.positions, 4);
        assert_eq!(s.hits, 2);
        assert!((s.top1_prompt - 0.5).abs() < 1e-12 && (s.top1_response - 0.5).abs() < 1e-12);
        assert!((s.bag_recall - 2.0 / 3.0).abs() < 1e-12, "7 and 8 of {{7, 8, 9}}");
        assert!((majority_baseline(&tokens) - 0.5).abs() < 1e-12);
    }
}
