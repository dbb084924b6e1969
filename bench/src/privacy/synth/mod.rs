//! Synthetic recordings: what each scheme sends for the real model's
//! layer-0 inputs, so the suite runs end to end without a worker.

pub mod butterfly;
pub mod prompts;
pub mod scheme;
pub mod simulate;

use anyhow::{ensure, Result};
use talaria_models::{ChatMessage, Tokenizer};

use super::mat::Rows32;
use super::tokens::{SequenceTokens, TokensFile};

/// How the tokens are batched into forward steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    /// Every position in its own step (one row per call): decode at
    /// batch 1, the prompt fed token by token too.
    DecodeB1,
    /// The prompt as one prefill step, then one decode step per response
    /// token (the CVM's pattern at batch 1).
    Prefill,
}

impl Setting {
    pub fn name(self) -> &'static str {
        match self {
            Self::DecodeB1 => "decode-b1",
            Self::Prefill => "prefill",
        }
    }

    pub fn tokens_file(self, sequences: Vec<SequenceTokens>) -> TokensFile {
        let mut steps = Vec::new();
        for (s, seq) in sequences.iter().enumerate() {
            let first_decode = match self {
                Self::DecodeB1 => 0,
                Self::Prefill => {
                    if seq.prompt_len > 0 {
                        steps.push((0..seq.prompt_len).map(|p| (s, p)).collect());
                    }
                    seq.prompt_len
                }
            };
            steps.extend((first_decode..seq.tokens.len()).map(|p| vec![(s, p)]));
        }
        TokensFile { format_version: 1, sequences, steps: Some(steps), row_sources: None }
    }
}

/// The first `n` built-in conversations, tokenised as the CVM would run
/// them: the chat prompt, then the response tokens fed back.
pub fn conversations(tok: &Tokenizer, n: usize) -> Result<Vec<SequenceTokens>> {
    let bos = tok.encode("")?;
    prompts::CONVERSATIONS
        .iter()
        .take(n)
        .map(|(user, reply)| {
            let prompt = tok.encode(&tok.chat_prompt(&[ChatMessage::new("user", user)]).map_err(anyhow::Error::msg)?)?;
            let mut tokens = prompt.clone();
            let reply_ids = tok.encode(reply)?;
            tokens.extend_from_slice(&reply_ids[bos.len()..]);
            Ok(SequenceTokens { prompt_len: prompt.len(), bos: !bos.is_empty(), tokens, attacker: false })
        })
        .collect()
}

/// Public per-channel RMS of layer-0 qkv inputs over the calibration text.
pub fn channel_scales(dict: &Rows32, tok: &Tokenizer) -> Result<Vec<f64>> {
    let ids = tok.encode(prompts::CALIBRATION_TEXT)?;
    ensure!(!ids.is_empty(), "calibration text encodes to nothing");
    let mut acc = vec![0f64; dict.cols];
    for &t in &ids {
        ensure!((t as usize) < dict.rows, "calibration token {t} outside the vocabulary");
        acc.iter_mut().zip(dict.row(t as usize)).for_each(|(a, &x)| *a += x as f64 * x as f64);
    }
    Ok(acc.iter().map(|a| (a / ids.len() as f64).sqrt().max(1e-6)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_split_steps() {
        let seqs = vec![SequenceTokens { tokens: vec![1, 2, 3, 4], prompt_len: 2, bos: false, attacker: false }];
        let p = Setting::Prefill.tokens_file(seqs.clone());
        assert_eq!(p.steps.clone().unwrap(), vec![vec![(0, 0), (0, 1)], vec![(0, 2)], vec![(0, 3)]]);
        p.validate().unwrap();
        let d = Setting::DecodeB1.tokens_file(seqs);
        assert_eq!(d.steps.clone().unwrap().len(), 4);
        d.validate().unwrap();
    }
}
