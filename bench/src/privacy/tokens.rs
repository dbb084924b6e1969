//! `tokens.json`, written next to a recording by whoever produced it: the
//! token ids the CVM processed and which forward step carried each one.
//! The attacks use only what the worker sees anyway (how many real rows a
//! step has); the ids are the ground truth for scoring. Format: README.md.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SequenceTokens {
    /// Every token the CVM ran through the model for this sequence, in
    /// order: prompt, then response (the last sampled token, never fed
    /// back, is not included).
    pub tokens: Vec<u32>,
    /// How many of `tokens` are the prompt.
    pub prompt_len: usize,
    /// Whether `tokens[0]` is a BOS token (not scored).
    #[serde(default)]
    pub bos: bool,
    /// The worker's own request (chosen plaintext): the attacker knows its
    /// tokens, so they are not scored; chosen-plaintext attacks use them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attacker: bool,
}

/// A real row of a step: (sequence index, position).
pub type RowRef = (usize, usize);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokensFile {
    pub format_version: u32,
    pub sequences: Vec<SequenceTokens>,
    /// One entry per forward step, in the order the worker received them:
    /// the (sequence, position) of each real row, in the CVM's row order
    /// before masking. Absent: one sequence at a time, the prompt as one
    /// prefill step, then one decode step per response token.
    #[serde(default)]
    pub steps: Option<Vec<Vec<RowRef>>>,
    /// Optional ground truth of the row shuffle, for scoring only: per
    /// step, for each row of its layer-0 qkv call as the worker received
    /// it, the index into that step's real rows it carries (`null` for a
    /// padding row); `null` for a step whose rows are mixtures or whose
    /// shuffle is not known. Without it, a step's guesses are matched to
    /// its tokens as a multiset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_sources: Option<Vec<Option<Vec<Option<usize>>>>>,
}

impl TokensFile {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let t: Self = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        t.validate().with_context(|| format!("checking {}", path.display()))?;
        Ok(t)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, serde_json::to_vec(self)?).with_context(|| format!("writing {}", path.display()))
    }

    /// The steps, explicit or the batch-1 default.
    pub fn steps(&self) -> Vec<Vec<RowRef>> {
        if let Some(s) = &self.steps {
            return s.clone();
        }
        let mut steps = Vec::new();
        for (si, s) in self.sequences.iter().enumerate() {
            if s.prompt_len > 0 {
                steps.push((0..s.prompt_len).map(|p| (si, p)).collect());
            }
            steps.extend((s.prompt_len..s.tokens.len()).map(|p| vec![(si, p)]));
        }
        steps
    }

    pub fn token(&self, (s, p): RowRef) -> u32 {
        self.sequences[s].tokens[p]
    }

    /// Whether a position is scored: everything but a BOS and the
    /// attacker's own requests.
    pub fn is_scored(&self, (s, p): RowRef) -> bool {
        let seq = &self.sequences[s];
        !(seq.attacker || (p == 0 && seq.bos))
    }

    /// Marks `indices` as the attacker's own requests (see `attacker`).
    pub fn mark_attacker(&mut self, indices: &[usize]) -> Result<()> {
        for &i in indices {
            let n = self.sequences.len();
            self.sequences.get_mut(i).with_context(|| format!("attacker sequence {i}: there are only {n} sequences"))?.attacker = true;
        }
        ensure!(self.sequences.iter().any(|s| !s.attacker), "every sequence is the attacker's: nothing would be scored");
        Ok(())
    }

    /// Every position appears in exactly one step, sequences advance in
    /// order (causality), and prompt lengths fit.
    pub fn validate(&self) -> Result<()> {
        ensure!(self.format_version == 1, "format_version {} is not supported (want 1)", self.format_version);
        for (i, s) in self.sequences.iter().enumerate() {
            ensure!(s.prompt_len <= s.tokens.len(), "sequence {i}: prompt_len {} exceeds its {} tokens", s.prompt_len, s.tokens.len());
        }
        let mut next: Vec<usize> = vec![0; self.sequences.len()];
        for (k, step) in self.steps().iter().enumerate() {
            ensure!(!step.is_empty(), "step {k} has no rows");
            for &(s, p) in step {
                ensure!(s < self.sequences.len(), "step {k}: sequence {s} does not exist");
                ensure!(p == next[s], "step {k}: sequence {s} position {p} out of order (expected {})", next[s]);
                next[s] += 1;
            }
        }
        for (i, s) in self.sequences.iter().enumerate() {
            ensure!(next[i] == s.tokens.len(), "sequence {i}: steps cover {} of its {} tokens", next[i], s.tokens.len());
        }
        if let Some(rs) = &self.row_sources {
            let steps = self.steps();
            ensure!(rs.len() == steps.len(), "row_sources has {} entries for {} steps", rs.len(), steps.len());
            for (k, (src, step)) in rs.iter().zip(&steps).enumerate() {
                let Some(src) = src else { continue };
                let mut seen = vec![false; step.len()];
                for &i in src.iter().flatten() {
                    ensure!(i < step.len() && !seen[i], "step {k}: row_sources entry {i} is out of range or repeated");
                    seen[i] = true;
                }
                ensure!(seen.iter().all(|&b| b), "step {k}: row_sources does not cover every real row");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_steps_are_prefill_then_decode() {
        let t = TokensFile {
            format_version: 1,
            sequences: vec![SequenceTokens { tokens: vec![1, 2, 3, 4], prompt_len: 2, bos: true, attacker: false }],
            steps: None,
            row_sources: None,
        };
        t.validate().unwrap();
        assert_eq!(t.steps(), vec![vec![(0, 0), (0, 1)], vec![(0, 2)], vec![(0, 3)]]);
        assert!(!t.is_scored((0, 0)) && t.is_scored((0, 1)));
    }

    #[test]
    fn rejects_out_of_order_or_missing_rows() {
        let seq = SequenceTokens { tokens: vec![1, 2, 3], prompt_len: 1, bos: false, attacker: false };
        let bad = TokensFile {
            format_version: 1,
            sequences: vec![seq.clone()],
            steps: Some(vec![vec![(0, 1)], vec![(0, 0)], vec![(0, 2)]]),
            row_sources: None,
        };
        assert!(bad.validate().is_err());
        let short =
            TokensFile { format_version: 1, sequences: vec![seq.clone()], steps: Some(vec![vec![(0, 0), (0, 1)]]), row_sources: None };
        assert!(short.validate().is_err());
        let dup = TokensFile {
            format_version: 1,
            sequences: vec![seq],
            steps: None,
            row_sources: Some(vec![Some(vec![Some(0), Some(0)]), None, None]),
        };
        assert!(dup.validate().is_err());
    }

    #[test]
    fn parses_the_documented_json() {
        let j = r#"{"format_version":1,"sequences":[{"tokens":[5,6,7],"prompt_len":2}],"steps":[[[0,0],[0,1]],[[0,2]]],"row_sources":[[1,null,0],null]}"#;
        let t: TokensFile = serde_json::from_str(j).unwrap();
        t.validate().unwrap();
        assert_eq!(t.token((0, 2)), 7);
    }
}
