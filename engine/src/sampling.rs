//! Token sampling: greedy, temperature, top-k, top-p, min-p, logit bias,
//! repetition, presence and frequency penalties, seeded per request;
//! optional top-k logprobs of the model's own distribution.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// 0 means off.
    pub top_k: usize,
    /// 1 means off.
    pub top_p: f32,
    /// 0 means off.
    pub min_p: f32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    pub seed: Option<u64>,
    /// How many top logprobs to return per token (None: no logprobs).
    pub logprobs: Option<usize>,
    /// How many top logprobs to return per prompt token, with the prompt
    /// token's own (None: the prompt is not scored, and costs nothing more).
    pub prompt_logprobs: Option<usize>,
    /// Added to the logits of these token ids before any sampling (greedy
    /// too), each in [-100, 100].
    pub logit_bias: Vec<(u32, f32)>,
    /// Divides the positive logits (multiplies the negative ones) of every
    /// token already in the prompt or the output; 1 means off.
    pub repetition_penalty: f32,
}

/// Most `logit_bias` entries per request: every one is applied before each
/// sampled token.
pub const MAX_LOGIT_BIAS: usize = 1024;
/// Largest magnitude of one logit bias (OpenAI's range).
pub const MAX_LOGIT_BIAS_VALUE: f32 = 100.0;
/// Temperatures below this sample greedily (vLLM's `_SAMPLING_EPS`): the
/// scaled scores of a smaller one overflow, and the softmax of what is left
/// is NaN, which fell through to the least likely candidate.
const GREEDY_BELOW: f32 = 1e-5;

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: None,
            logprobs: None,
            prompt_logprobs: None,
            logit_bias: Vec::new(),
            repetition_penalty: 1.0,
        }
    }
}

impl SamplingParams {
    pub fn greedy() -> Self {
        Self::default()
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(format!("temperature must be >= 0, got {}", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(format!("min_p must be in [0, 1], got {}", self.min_p));
        }
        for (n, v) in [("presence_penalty", self.presence_penalty), ("frequency_penalty", self.frequency_penalty)] {
            if !(-2.0..=2.0).contains(&v) {
                return Err(format!("{n} must be in [-2, 2], got {v}"));
            }
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return Err(format!("repetition_penalty must be > 0, got {}", self.repetition_penalty));
        }
        self.validate_logit_bias()
    }

    /// The bias entries: at most `MAX_LOGIT_BIAS`, each finite and within
    /// ±`MAX_LOGIT_BIAS_VALUE` (token ids are checked against the vocabulary
    /// by the engine's limits).
    fn validate_logit_bias(&self) -> Result<(), String> {
        if self.logit_bias.len() > MAX_LOGIT_BIAS {
            return Err(format!("logit_bias has {} entries, at most {MAX_LOGIT_BIAS} are allowed", self.logit_bias.len()));
        }
        match self.logit_bias.iter().find(|(_, b)| !(b.is_finite() && b.abs() <= MAX_LOGIT_BIAS_VALUE)) {
            Some((id, b)) => Err(format!("logit_bias of token {id} must be in [-100, 100], got {b}")),
            None => Ok(()),
        }
    }

    /// Whether sampling changes the logits before choosing.
    fn adjusts_logits(&self) -> bool {
        !self.logit_bias.is_empty() || self.repetition_penalty != 1.0 || self.presence_penalty != 0.0 || self.frequency_penalty != 0.0
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct SampledToken {
    pub id: u32,
    /// log p(id) under the model's distribution (before sampling filters).
    pub logprob: f32,
    /// The most likely tokens with their logprobs, if asked for.
    pub top_logprobs: Vec<(u32, f32)>,
}

pub struct Sampler {
    params: SamplingParams,
    rng: Xoshiro256PlusPlus,
    /// Generated tokens and their counts (presence/frequency penalties).
    counts: HashMap<u32, u32>,
    /// Tokens of the prompt and the output, kept only while the repetition
    /// penalty is on.
    seen: HashSet<u32>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let seed = params.seed.unwrap_or_else(rand::random);
        Self { params, rng: Xoshiro256PlusPlus::seed_from_u64(seed), counts: HashMap::new(), seen: HashSet::new() }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Records the prompt for the repetition penalty (the other penalties
    /// count generated tokens only, as OpenAI's).
    pub fn observe_prompt(&mut self, prompt: &[u32]) {
        if self.params.repetition_penalty != 1.0 {
            self.seen.extend(prompt);
        }
    }

    /// Records a generated token for the penalties.
    pub fn observe(&mut self, id: u32) {
        *self.counts.entry(id).or_default() += 1;
        if self.params.repetition_penalty != 1.0 {
            self.seen.insert(id);
        }
    }

    pub fn sample(&mut self, logits: &[f32]) -> SampledToken {
        let scores = self.adjusted(logits);
        let id = if self.params.temperature < GREEDY_BELOW { argmax(&scores) } else { self.sample_filtered(&scores) };
        match self.params.logprobs {
            Some(k) => score_token(logits, id, k),
            None => SampledToken { id, logprob: 0.0, top_logprobs: Vec::new() },
        }
    }

    /// The logits sampling chooses from: bias added, then the repetition,
    /// presence and frequency penalties applied (vLLM's order). A copy only
    /// when one of them is on.
    fn adjusted<'a>(&self, logits: &'a [f32]) -> Cow<'a, [f32]> {
        let p = &self.params;
        if !p.adjusts_logits() {
            return Cow::Borrowed(logits);
        }
        let mut adj = logits.to_vec();
        for &(id, bias) in &p.logit_bias {
            if let Some(v) = adj.get_mut(id as usize) {
                *v += bias;
            }
        }
        for &id in &self.seen {
            if let Some(v) = adj.get_mut(id as usize) {
                // HF/vLLM: shrink toward "less likely" whatever the sign.
                *v = if *v > 0.0 { *v / p.repetition_penalty } else { *v * p.repetition_penalty };
            }
        }
        for (&id, &cnt) in &self.counts {
            if let Some(v) = adj.get_mut(id as usize) {
                *v -= p.presence_penalty + p.frequency_penalty * cnt as f32;
            }
        }
        Cow::Owned(adj)
    }

    fn sample_filtered(&mut self, scores: &[f32]) -> u32 {
        let p = &self.params;
        let inv_t = 1.0 / p.temperature;
        // Candidates sorted by score (ties: lower id first, deterministic).
        let mut cand: Vec<(u32, f32)> =
            scores.iter().enumerate().filter(|(_, s)| s.is_finite()).map(|(i, &s)| (i as u32, s * inv_t)).collect();
        if cand.is_empty() {
            return 0;
        }
        let k = if p.top_k > 0 { p.top_k.min(cand.len()) } else { cand.len() };
        if k < cand.len() {
            cand.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            cand.truncate(k);
        }
        cand.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let max = cand[0].1;
        let mut probs: Vec<f64> = cand.iter().map(|c| ((c.1 - max) as f64).exp()).collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|v| *v /= total);
        let mut keep = probs.len();
        if p.min_p > 0.0 {
            let thr = probs[0] * p.min_p as f64;
            keep = keep.min(probs.iter().take_while(|&&v| v >= thr).count().max(1));
        }
        if p.top_p < 1.0 {
            let mut acc = 0.0;
            let mut n = 0;
            for &v in &probs[..keep] {
                acc += v;
                n += 1;
                if acc >= p.top_p as f64 {
                    break;
                }
            }
            keep = n.max(1);
        }
        let total: f64 = probs[..keep].iter().sum();
        let mut u = self.rng.random::<f64>() * total;
        for (i, &v) in probs[..keep].iter().enumerate() {
            u -= v;
            if u <= 0.0 {
                return cand[i].0;
            }
        }
        cand[keep - 1].0
    }
}

/// Index of the largest value; the lowest index wins ties.
pub fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// Token `id` with its logprob under `logits` (the model's own
/// distribution) and the `k` most likely tokens with theirs.
pub fn score_token(logits: &[f32], id: u32, k: usize) -> SampledToken {
    let (lse, top_logprobs) = logprob_summary(logits, k);
    SampledToken { id, logprob: logits[id as usize] - lse, top_logprobs }
}

/// (log-sum-exp of the logits, the `k` most likely tokens with logprobs).
fn logprob_summary(logits: &[f32], k: usize) -> (f32, Vec<(u32, f32)>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    let lse = max + sum.ln() as f32;
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    let k = k.min(idx.len());
    if k > 0 && k < idx.len() {
        idx.select_nth_unstable_by(k - 1, |&a, &b| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b)));
    }
    idx.truncate(k);
    idx.sort_unstable_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b)));
    (lse, idx.into_iter().map(|i| (i, logits[i as usize] - lse)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_picks_argmax_lowest_on_ties() {
        let mut s = Sampler::new(SamplingParams::greedy());
        assert_eq!(s.sample(&[0.0, 3.0, 3.0, 1.0]).id, 1);
    }

    /// A temperature so small that `1/t` overflows picked the least likely
    /// candidate (the NaN softmax never reached its threshold).
    #[test]
    fn a_tiny_temperature_is_greedy() {
        for temperature in [1e-39, 1e-20, 1e-6] {
            let mut s = Sampler::new(SamplingParams { temperature, seed: Some(1), ..Default::default() });
            assert_eq!(s.sample(&[-1.0, 5.0, 2.0]).id, 1, "temperature {temperature:e}");
        }
    }

    #[test]
    fn seeded_sampling_is_reproducible_and_respects_top_k() {
        let logits: Vec<f32> = (0..100).map(|i| (i % 7) as f32 * 0.3).collect();
        let params = SamplingParams { temperature: 1.0, top_k: 3, seed: Some(7), ..Default::default() };
        let a: Vec<u32> = {
            let mut s = Sampler::new(params.clone());
            (0..50).map(|_| s.sample(&logits).id).collect()
        };
        let b: Vec<u32> = {
            let mut s = Sampler::new(params);
            (0..50).map(|_| s.sample(&logits).id).collect()
        };
        assert_eq!(a, b);
        // The top-3 scores are 1.8 at ids 6, 13, 20 (lowest ids among ties).
        assert!(a.iter().all(|id| [6, 13, 20].contains(id)), "{a:?}");
    }

    #[test]
    fn top_p_and_min_p_cut_the_tail() {
        let logits = vec![10.0, 0.0, 0.0, 0.0];
        for params in [
            SamplingParams { temperature: 1.0, top_p: 0.5, seed: Some(1), ..Default::default() },
            SamplingParams { temperature: 1.0, min_p: 0.1, seed: Some(1), ..Default::default() },
        ] {
            let mut s = Sampler::new(params);
            assert!((0..100).all(|_| s.sample(&logits).id == 0));
        }
    }

    #[test]
    fn penalties_discourage_repeats() {
        let mut s = Sampler::new(SamplingParams { presence_penalty: 2.0, ..Default::default() });
        let logits = vec![1.0, 0.5];
        assert_eq!(s.sample(&logits).id, 0);
        s.observe(0);
        assert_eq!(s.sample(&logits).id, 1);
    }

    #[test]
    fn logprobs_are_normalized() {
        let mut s = Sampler::new(SamplingParams { logprobs: Some(2), ..Default::default() });
        let t = s.sample(&[0.0, (3.0f32).ln()]);
        assert_eq!(t.id, 1);
        assert!((t.logprob - (0.75f32).ln()).abs() < 1e-6);
        assert_eq!(t.top_logprobs.len(), 2);
        assert!((t.top_logprobs[1].1 - (0.25f32).ln()).abs() < 1e-6);
    }

    #[test]
    fn logit_bias_forces_or_removes_a_token_under_greedy() {
        let logits = vec![2.0, 5.0, 1.0, 4.0];
        let forced = SamplingParams { logit_bias: vec![(2, 100.0)], logprobs: Some(1), ..Default::default() };
        let t = Sampler::new(forced).sample(&logits);
        assert_eq!(t.id, 2);
        assert!((t.logprob - score_token(&logits, 2, 0).logprob).abs() < 1e-6, "logprobs stay the model's own");
        let removed = SamplingParams { logit_bias: vec![(1, -100.0)], ..Default::default() };
        assert_eq!(Sampler::new(removed).sample(&logits).id, 3, "the argmax is gone, the runner-up wins");
    }

    #[test]
    fn repetition_penalty_shrinks_seen_tokens_of_prompt_and_output() {
        let params = SamplingParams { repetition_penalty: 2.0, ..Default::default() };
        let mut s = Sampler::new(params);
        s.observe_prompt(&[0, 1]);
        s.observe(3);
        let logits = [4.0, -1.0, 3.0, 6.0, -0.5];
        // Seen: 0 (4 -> 2), 1 (-1 -> -2), 3 (6 -> 3); unseen 2 and 4 unchanged.
        assert_eq!(&*s.adjusted(&logits), &[2.0, -2.0, 3.0, 3.0, -0.5]);
        assert_eq!(s.sample(&logits).id, 2, "the lowest id of the tied best");
        let off = Sampler::new(SamplingParams::greedy());
        assert!(matches!(off.adjusted(&logits), Cow::Borrowed(_)), "no copy when nothing adjusts");
    }

    #[test]
    fn validation_names_the_new_fields() {
        let bad = |p: SamplingParams| p.validate().unwrap_err();
        for r in [0.0, -1.0, f32::NAN, f32::INFINITY] {
            assert!(bad(SamplingParams { repetition_penalty: r, ..Default::default() }).starts_with("repetition_penalty"));
        }
        for b in [100.5, -101.0, f32::NAN] {
            assert!(bad(SamplingParams { logit_bias: vec![(1, b)], ..Default::default() }).starts_with("logit_bias"));
        }
        let too_many = (0..=MAX_LOGIT_BIAS as u32).map(|i| (i, 1.0)).collect();
        assert!(bad(SamplingParams { logit_bias: too_many, ..Default::default() }).starts_with("logit_bias"));
        let edges = SamplingParams { logit_bias: vec![(0, -100.0), (1, 100.0)], repetition_penalty: 1e-3, ..Default::default() };
        assert!(edges.validate().is_ok());
    }
}
