//! (c) Sequential candidate decoding, the strongest attack on ReMO: for
//! position p, given the recovered prefix, every candidate token t is
//! scored by the Gaussian log-likelihood of the observed rows under the
//! protocol. A ReMO row is `x_t + r` with `r ~ N(0, diag(σ²))`; the row
//! order inside a call is secret, so a call contributes the log-sum-exp
//! over its not-yet-assigned rows. Scores add over every op of every layer
//! the candidates provider covers. Exhaustive mode scores all V tokens on
//! the dictionary op (layer-0 qkv) and re-ranks the best `rerank` with the
//! prefix-dependent ops; fast mode scores the model's top-k next tokens
//! (MAP: plus their log-prior) and falls back to the exhaustive scan when
//! even the best candidate's residual fails a χ² test.

use anyhow::Result;
use rayon::prelude::*;
use talaria_models::OpId;

use super::{Assumption, Attack, AttackOutcome, Evidence};
use crate::privacy::candidates::Candidates;
use crate::privacy::dict_scan::top_k;
use crate::privacy::linalg::gemm_abt32;
use crate::privacy::mat::{Rows32, Rows64};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeMode {
    Exhaustive,
    Fast { top_k: usize },
}

pub struct SequentialDecoding {
    pub mode: DecodeMode,
    /// Candidates re-scored on prefix-dependent ops (exhaustive mode).
    pub rerank: usize,
}

/// The log-likelihood table of one call: `LL[j][t] = S[j][t] − q_t/2 − yy_j/2`.
struct CallLikelihood {
    /// `⟨y_j/σ², x_t⟩` for every row j and candidate t.
    s: Rows32,
    /// `Σ_c x_tc²/σ_c²` per candidate.
    q: Vec<f64>,
    /// `Σ_c y_jc²/σ_c²` per row.
    yy: Vec<f64>,
    used: Vec<bool>,
    /// d_in of the op.
    dim: usize,
}

impl CallLikelihood {
    fn new(y: &Rows64, cand_rows: &Rows32, precision: &[f64]) -> Self {
        let mut yw = Rows32::zeros(y.rows, y.cols);
        let mut yy = vec![0f64; y.rows];
        for j in 0..y.rows {
            for ((o, &v), &w) in yw.row_mut(j).iter_mut().zip(y.row(j)).zip(precision) {
                *o = (v * w) as f32;
                yy[j] += v * v * w;
            }
        }
        let q = (0..cand_rows.rows).map(|t| cand_rows.row(t).iter().zip(precision).map(|(&x, &w)| x as f64 * x as f64 * w).sum()).collect();
        Self { s: gemm_abt32(&yw, cand_rows), q, yy, used: vec![false; y.rows], dim: y.cols }
    }

    fn ll(&self, j: usize, t: usize) -> f64 {
        self.s.row(j)[t] as f64 - 0.5 * self.q[t] - 0.5 * self.yy[j]
    }

    fn free_rows(&self) -> Vec<usize> {
        (0..self.used.len()).filter(|&j| !self.used[j]).collect()
    }

    /// log Σ_{free j} exp LL[j][t] for each t in `cands` (index into this table).
    fn scores(&self, cands: &[usize]) -> Vec<f64> {
        let free = self.free_rows();
        cands
            .par_iter()
            .map(|&t| {
                let lls: Vec<f64> = free.iter().map(|&j| self.ll(j, t)).collect();
                log_sum_exp(&lls)
            })
            .collect()
    }

    /// Marks the free row that best explains `t` as used; returns its
    /// whitened squared residual.
    fn assign(&mut self, t: usize) -> Option<f64> {
        let j = self.free_rows().into_iter().max_by(|&a, &b| self.ll(a, t).total_cmp(&self.ll(b, t)))?;
        self.used[j] = true;
        Some(-2.0 * self.ll(j, t))
    }
}

pub fn log_sum_exp(v: &[f64]) -> f64 {
    let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let v: Vec<f64> = logits.iter().map(|&x| x as f64).collect();
    let z = log_sum_exp(&v);
    v.iter().map(|x| x - z).collect()
}

impl Attack for SequentialDecoding {
    fn name(&self) -> String {
        match self.mode {
            DecodeMode::Exhaustive => "seq-exhaustive".into(),
            DecodeMode::Fast { top_k } => format!("seq-fast-top{top_k}"),
        }
    }

    fn assumptions(&self) -> Vec<Assumption> {
        let mut v = vec![Assumption::DictionaryRows, Assumption::PublicNoiseScales, Assumption::RowCounts];
        if matches!(self.mode, DecodeMode::Fast { .. }) {
            v.push(Assumption::PlainModel);
        }
        v
    }

    fn uses_prior(&self) -> bool {
        matches!(self.mode, DecodeMode::Fast { .. })
    }

    fn run(&self, ev: &Evidence, cands: &mut dyn Candidates) -> Result<Option<AttackOutcome>> {
        let dict_op = ev.dictionary_op(cands).map(|(id, _)| id);
        let present: Vec<OpId> = ev.steps.iter().flat_map(|s| s.calls.iter().map(|&i| ev.rec.calls[i].id)).collect();
        let ctx_ops: Vec<OpId> = cands.contextual_ops().into_iter().filter(|id| present.contains(id)).collect();
        if dict_op.is_none() && ctx_ops.is_empty() {
            return Ok(None);
        }
        if matches!(self.mode, DecodeMode::Fast { .. }) && cands.next_token_logits(&[])?.is_none() {
            return Ok(None);
        }
        let vocab = cands.vocab_size();
        let n_seq = ev.steps.iter().flat_map(|s| s.rows.iter().map(|r| r.0 + 1)).max().unwrap_or(0);
        let mut recovered: Vec<Vec<u32>> = vec![Vec::new(); n_seq];
        let mut guesses = vec![Vec::new(); ev.steps.len()];
        let (mut fallbacks, mut positions) = (0usize, 0usize);
        for k in 0..ev.steps.len() {
            let mut dict_call = match dict_op {
                Some(id) => ev.call(k, id).map(|c| {
                    let noise = ev.noise(id, c.data.cols);
                    CallLikelihood::new(&c.data, cands.dictionary(id).expect("dictionary op"), &noise.precision())
                }),
                None => None,
            };
            let ctx_calls: Vec<(OpId, &Rows64)> = ctx_ops.iter().filter_map(|&id| ev.call(k, id).map(|c| (id, &c.data))).collect();
            let mut ctx_used: Vec<Vec<bool>> = ctx_calls.iter().map(|(_, y)| vec![false; y.rows]).collect();
            for &(s, p) in &ev.steps[k].rows {
                positions += 1;
                let prefix = recovered[s][..p.min(recovered[s].len())].to_vec();
                let all: Vec<usize> = (0..vocab).collect();
                let (mut pool, prior): (Vec<usize>, Option<Vec<f64>>) = match self.mode {
                    DecodeMode::Exhaustive => (all.clone(), None),
                    DecodeMode::Fast { top_k: kk } => {
                        let logits = cands.next_token_logits(&prefix)?.unwrap_or_else(|| vec![0.0; vocab]);
                        (top_k(&logits, kk), Some(log_softmax(&logits)))
                    }
                };
                let mut score: Vec<f64> = match &dict_call {
                    Some(dc) => dc.scores(&pool),
                    None => vec![0.0; pool.len()],
                };
                // χ² check of the best candidate in fast mode: the true token
                // leaves a residual ≈ d_in; far above it, scan everything.
                if let (DecodeMode::Fast { .. }, Some(dc)) = (self.mode, &dict_call) {
                    let best = pool[argmax64(&score)];
                    let free = dc.free_rows();
                    let res = free.iter().map(|&j| -2.0 * dc.ll(j, best)).fold(f64::INFINITY, f64::min);
                    let d = dc.dim as f64;
                    if res > d + 6.0 * (2.0 * d).sqrt() {
                        fallbacks += 1;
                        pool = all.clone();
                        score = dc.scores(&pool);
                    }
                }
                if !ctx_calls.is_empty() {
                    let keep: Vec<usize> = top_k(&score.iter().map(|&v| v as f32).collect::<Vec<_>>(), self.rerank.max(1));
                    pool = keep.iter().map(|&i| pool[i]).collect();
                    score = keep.iter().map(|&i| score[i]).collect();
                    let toks: Vec<u32> = pool.iter().map(|&t| t as u32).collect();
                    let rows = cands.contextual_rows(&prefix, &toks)?;
                    for (ci, (id, y)) in ctx_calls.iter().enumerate() {
                        let Some((_, cr)) = rows.iter().find(|(rid, _)| rid == id) else { continue };
                        let noise = ev.noise(*id, y.cols);
                        let mut cl = CallLikelihood::new(y, cr, &noise.precision());
                        cl.used.clone_from(&ctx_used[ci]);
                        let local: Vec<usize> = (0..toks.len()).collect();
                        score.iter_mut().zip(cl.scores(&local)).for_each(|(a, b)| *a += b);
                    }
                    if let Some(pr) = &prior {
                        score.iter_mut().zip(&pool).for_each(|(s, &t)| *s += pr[t]);
                    }
                    let bi = argmax64(&score);
                    let best = pool[bi];
                    for (ci, (id, y)) in ctx_calls.iter().enumerate() {
                        if let Some((_, cr)) = rows.iter().find(|(rid, _)| rid == id) {
                            let noise = ev.noise(*id, y.cols);
                            let mut cl = CallLikelihood::new(y, &cr.select(&[bi]), &noise.precision());
                            cl.used.clone_from(&ctx_used[ci]);
                            cl.assign(0);
                            ctx_used[ci] = cl.used;
                        }
                    }
                    if let Some(dc) = &mut dict_call {
                        dc.assign(best);
                    }
                    recovered[s].push(best as u32);
                    guesses[k].push(best as u32);
                    continue;
                }
                if let Some(pr) = &prior {
                    score.iter_mut().zip(&pool).for_each(|(s, &t)| *s += pr[t]);
                }
                let best = pool[argmax64(&score)];
                if let Some(dc) = &mut dict_call {
                    dc.assign(best);
                }
                recovered[s].push(best as u32);
                guesses[k].push(best as u32);
            }
        }
        let notes = match self.mode {
            DecodeMode::Fast { .. } => format!("χ² fallback at {fallbacks}/{positions} positions"),
            DecodeMode::Exhaustive if !ctx_ops.is_empty() => format!("{} prefix-dependent ops re-rank the top {}", ctx_ops.len(), self.rerank),
            DecodeMode::Exhaustive => String::new(),
        };
        Ok(Some(AttackOutcome { guesses, notes }))
    }
}

fn argmax64(v: &[f64]) -> usize {
    (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b]).then(b.cmp(&a))).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_sum_exp_is_stable() {
        assert!((log_sum_exp(&[1000.0, 1000.0]) - (1000.0 + 2f64.ln())).abs() < 1e-9);
        assert_eq!(log_sum_exp(&[f64::NEG_INFINITY]), f64::NEG_INFINITY);
    }

    #[test]
    fn call_likelihood_prefers_the_true_row_and_assigns_once() {
        let cands = Rows32::from_vec(3, 2, vec![1.0, 0.0, 0.0, 1.0, -1.0, 0.0]).unwrap();
        let y = Rows64::from_vec(2, 2, vec![0.0, 1.1, 0.9, 0.1]).unwrap();
        let mut cl = CallLikelihood::new(&y, &cands, &[1.0, 1.0]);
        let s = cl.scores(&[0, 1, 2]);
        assert!(s[0] > s[2] && s[1] > s[2]);
        cl.assign(0);
        assert_eq!(cl.free_rows(), vec![0]);
        let s = cl.scores(&[0, 1, 2]);
        assert!(s[1] > s[0], "row 1 is used up: token 0 now has to explain row 0");
    }
}
