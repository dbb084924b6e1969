//! (c) Sequential candidate decoding, the strongest attack on ReMO: for
//! position p, given the recovered prefix, every candidate token t is
//! scored by the Gaussian log-likelihood of the observed rows under the
//! protocol. A ReMO row is `x_t + r` with `r ~ N(0, diag(σ²))`; the row
//! order inside a call is secret, so a call contributes the log-sum-exp
//! over its not-yet-assigned rows, and the winner then claims the row it
//! explains best. Scores add over every op of every layer the candidates
//! provider covers. Exhaustive mode scores all V tokens on the dictionary
//! op (layer-0 qkv) and re-ranks the best `rerank` with the prefix-
//! dependent ops (scoring all V there would cost V forward passes per
//! position); fast mode scores the model's top-k next tokens (MAP: plus
//! their log-prior) and falls back to the exhaustive scan when even the
//! best candidate's residual fails a χ² test.

use anyhow::Result;
use rayon::prelude::*;
use talaria_models::OpId;

use super::{Assumption, Attack, AttackOutcome, Evidence, Guess};
use crate::privacy::candidates::Candidates;
use crate::privacy::dict_scan::top_k;
use crate::privacy::fast_exp::fast_exp;
use crate::privacy::linalg::gemm_abt32;
use crate::privacy::mat::{Rows32, Rows64};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeMode {
    Exhaustive,
    Fast { top_k: usize },
}

pub struct SequentialDecoding {
    pub mode: DecodeMode,
    /// Candidates re-scored on prefix-dependent ops.
    pub rerank: usize,
}

/// Rows scaled by the pad precision `1/σ²`, and their whitened energies.
fn whiten(y: &Rows64, precision: &[f64]) -> (Rows32, Vec<f64>) {
    let mut yw = Rows32::zeros(y.rows, y.cols);
    let yy = (0..y.rows)
        .map(|j| {
            let mut e = 0.0;
            for ((o, &v), &w) in yw.row_mut(j).iter_mut().zip(y.row(j)).zip(precision) {
                *o = (v * w) as f32;
                e += v * v * w;
            }
            e
        })
        .collect();
    (yw, yy)
}

fn whitened_norms(cands: &Rows32, precision: &[f64]) -> Vec<f64> {
    (0..cands.rows).map(|t| cands.row(t).iter().zip(precision).map(|(&x, &w)| x as f64 * x as f64 * w).sum()).collect()
}

/// The log-likelihood table of one call:
/// `LL[j][t] = ⟨y_j, x_t⟩/σ² − ‖x_t‖²_σ/2 − ‖y_j‖²_σ/2`.
struct CallLikelihood {
    s: Rows32,
    q: Vec<f64>,
    yy: Vec<f64>,
    used: Vec<bool>,
    dim: usize,
    /// Running log-sum-exp over the free rows for every candidate, as
    /// `ref_t + ln(sum_t)` (without the −q_t/2 term), kept up to date as
    /// rows are assigned: O(V) per position instead of O(rows·V).
    lse: Option<Vec<RunningSum>>,
}

/// `ref + ln(sum)`; `exact` is the sum when it was last computed exactly:
/// subtractions leave an absolute error ~1e-16·exact behind.
#[derive(Clone, Copy)]
struct RunningSum {
    r: f64,
    sum: f64,
    exact: f64,
}

/// Below this fraction of its last exact value a running sum has lost
/// too many digits to cancellation and is recomputed.
const CANCELLATION: f64 = 1e-7;

impl CallLikelihood {
    fn new(y: &Rows64, cand_rows: &Rows32, precision: &[f64], used: Vec<bool>) -> Self {
        let (yw, yy) = whiten(y, precision);
        Self::from_table(gemm_abt32(&yw, cand_rows), whitened_norms(cand_rows, precision), yy, used, y.cols)
    }

    fn from_table(s: Rows32, q: Vec<f64>, yy: Vec<f64>, used: Vec<bool>, dim: usize) -> Self {
        Self { s, q, yy, used, dim, lse: None }
    }

    fn ll(&self, j: usize, t: usize) -> f64 {
        self.s.row(j)[t] as f64 - 0.5 * self.q[t] - 0.5 * self.yy[j]
    }

    fn free_rows(&self) -> Vec<usize> {
        (0..self.used.len()).filter(|&j| !self.used[j]).collect()
    }

    /// Exact log-sum-exp of `S[j][t] − yy_j/2` over the free rows.
    fn exact_lse(&self, t: usize, free: &[usize]) -> RunningSum {
        let r = free.iter().map(|&j| self.s.row(j)[t] as f64 - 0.5 * self.yy[j]).fold(f64::NEG_INFINITY, f64::max);
        let sum = if r.is_finite() { free.iter().map(|&j| fast_exp(self.s.row(j)[t] as f64 - 0.5 * self.yy[j] - r)).sum() } else { 0.0 };
        RunningSum { r, sum, exact: sum }
    }

    /// `log Σ_{free j} exp LL[j][t]` for every candidate t of the table.
    fn scores_all(&mut self) -> Vec<f64> {
        let free = self.free_rows();
        if self.lse.is_none() && free.len() == 1 {
            // A one-row call (decode): the table row itself.
            let (row, c) = (self.s.row(free[0]), -0.5 * self.yy[free[0]]);
            return row.iter().zip(&self.q).map(|(&v, q)| v as f64 + c - 0.5 * q).collect();
        }
        if self.lse.is_none() {
            self.lse = Some((0..self.q.len()).into_par_iter().map(|t| self.exact_lse(t, &free)).collect());
        }
        let lse = self.lse.as_ref().expect("initialised");
        lse.iter().zip(&self.q).map(|(l, q)| l.r + l.sum.ln() - 0.5 * q).collect()
    }

    /// `log Σ_{free j} exp LL[j][t]` for each t in `cands`.
    fn scores(&mut self, cands: &[usize]) -> Vec<f64> {
        if cands.len() == self.q.len() && cands.iter().enumerate().all(|(i, &t)| i == t) {
            return self.scores_all();
        }
        let free = self.free_rows();
        cands
            .par_iter()
            .map(|&t| {
                let l = self.exact_lse(t, &free);
                l.r + l.sum.ln() - 0.5 * self.q[t]
            })
            .collect()
    }

    /// Marks the free row that best explains `t` as used and takes it out
    /// of the running sums; returns the row.
    fn assign(&mut self, t: usize) -> Option<usize> {
        let j = self.free_rows().into_iter().max_by(|&a, &b| self.ll(a, t).total_cmp(&self.ll(b, t)))?;
        self.used[j] = true;
        if let Some(mut lse) = self.lse.take() {
            let free = self.free_rows();
            let (row, cj) = (self.s.row(j), -0.5 * self.yy[j]);
            lse.par_iter_mut().enumerate().for_each(|(t, l)| {
                let left = l.sum - fast_exp(row[t] as f64 + cj - l.r);
                if left > CANCELLATION * l.exact {
                    l.sum = left;
                } else {
                    *l = self.exact_lse(t, &free);
                }
            });
            self.lse = Some(lse);
        }
        Some(j)
    }

    /// Smallest whitened squared residual of `t` over the free rows.
    fn best_residual(&self, t: usize) -> f64 {
        self.free_rows().iter().map(|&j| -2.0 * self.ll(j, t)).fold(f64::INFINITY, f64::min)
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

fn argmax64(v: &[f64]) -> usize {
    (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b]).then(b.cmp(&a))).unwrap_or(0)
}

/// State carried across steps.
struct Decoder<'a> {
    attack: &'a SequentialDecoding,
    ev: &'a Evidence<'a>,
    ctx_ops: Vec<OpId>,
    recovered: Vec<Vec<u32>>,
    guesses: Vec<Vec<Guess>>,
    fallbacks: usize,
    positions: usize,
}

impl Decoder<'_> {
    /// Decodes step `k`, whose dictionary-op call (if any) is `dict_call`.
    fn step(&mut self, k: usize, mut dict_call: Option<CallLikelihood>, cands: &mut dyn Candidates) -> Result<()> {
        let vocab = cands.vocab_size();
        let ev = self.ev;
        let ctx_calls: Vec<(OpId, &Rows64)> = self.ctx_ops.iter().filter_map(|&id| ev.call(k, id).map(|c| (id, &c.data))).collect();
        let mut ctx_used: Vec<Vec<bool>> = ctx_calls.iter().map(|(_, y)| vec![false; y.rows]).collect();
        for &(s, p) in &ev.steps[k].rows {
            self.positions += 1;
            let prefix = self.recovered[s][..p.min(self.recovered[s].len())].to_vec();
            let (mut pool, prior): (Vec<usize>, Option<Vec<f64>>) = match self.attack.mode {
                DecodeMode::Exhaustive => ((0..vocab).collect(), None),
                DecodeMode::Fast { top_k: kk } => match cands.next_token_logits(&prefix)? {
                    Some(logits) => (top_k(&logits, kk), Some(log_softmax(&logits))),
                    None => ((0..vocab).collect(), None),
                },
            };
            let mut score = dict_call.as_mut().map_or_else(|| vec![0.0; pool.len()], |dc| dc.scores(&pool));
            // χ² check in fast mode: the true token leaves a whitened residual
            // ≈ d_in; far above that, the prior missed it: scan everything.
            if let (DecodeMode::Fast { .. }, Some(dc)) = (self.attack.mode, &mut dict_call) {
                let d = dc.dim as f64;
                if dc.best_residual(pool[argmax64(&score)]) > d + 6.0 * (2.0 * d).sqrt() {
                    self.fallbacks += 1;
                    pool = (0..vocab).collect();
                    score = dc.scores(&pool);
                }
            }
            let mut ctx_tables = Vec::new();
            if !ctx_calls.is_empty() {
                let keep = top_k(&score.iter().map(|&v| v as f32).collect::<Vec<_>>(), self.attack.rerank.max(1));
                pool = keep.iter().map(|&i| pool[i]).collect();
                score = keep.iter().map(|&i| score[i]).collect();
                let toks: Vec<u32> = pool.iter().map(|&t| t as u32).collect();
                let rows = cands.contextual_rows(&prefix, &toks)?;
                let local: Vec<usize> = (0..toks.len()).collect();
                for (ci, (id, y)) in ctx_calls.iter().enumerate() {
                    let Some((_, cr)) = rows.iter().find(|(rid, _)| rid == id) else { continue };
                    let mut cl = CallLikelihood::new(y, cr, &ev.noise(*id, y.cols).precision(), ctx_used[ci].clone());
                    score.iter_mut().zip(cl.scores(&local)).for_each(|(a, b)| *a += b);
                    ctx_tables.push((ci, cl));
                }
            }
            if let Some(pr) = &prior {
                score.iter_mut().zip(&pool).for_each(|(s, &t)| *s += pr[t]);
            }
            let bi = argmax64(&score);
            let best = pool[bi];
            for (ci, mut cl) in ctx_tables {
                cl.assign(bi);
                ctx_used[ci] = cl.used;
            }
            let row = dict_call.as_mut().and_then(|dc| dc.assign(best));
            self.recovered[s].push(best as u32);
            self.guesses[k].push(Guess { token: best as u32, row });
        }
        Ok(())
    }
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
        let dict_op = ev.dictionary_op(cands).map(|(id, d)| (id, d.cols));
        let present: Vec<OpId> = ev.steps.iter().flat_map(|s| s.calls.iter().map(|&i| ev.rec.calls[i].id)).collect();
        let ctx_ops: Vec<OpId> = cands.contextual_ops().into_iter().filter(|id| present.contains(id)).collect();
        if dict_op.is_none() && ctx_ops.is_empty() {
            return Ok(None);
        }
        if matches!(self.mode, DecodeMode::Fast { .. }) && !cands.runs_model() {
            return Ok(None);
        }
        let n_seq = ev.steps.iter().flat_map(|s| s.rows.iter().map(|r| r.0 + 1)).max().unwrap_or(0);
        let mut dec = Decoder {
            attack: self,
            ev,
            ctx_ops,
            recovered: vec![Vec::new(); n_seq],
            guesses: vec![Vec::new(); ev.steps.len()],
            fallbacks: 0,
            positions: 0,
        };
        match &ev.view {
            Some(v) => {
                // The dictionary op does not depend on the prefix: its tables
                // are the shared whitened products (⟨y/σ, x/σ⟩ = ⟨y/σ², x⟩).
                let q: Vec<f64> = v.norms2.iter().map(|&n| n as f64).collect();
                for k in 0..ev.steps.len() {
                    let call = v.step_dots(k).zip(v.step_rows(k)).map(|(s, rows)| {
                        let yy = (0..rows.rows).map(|j| rows.row(j).iter().map(|x| x * x).sum()).collect();
                        CallLikelihood::from_table(s, q.clone(), yy, vec![false; rows.rows], rows.cols)
                    });
                    dec.step(k, call, cands)?;
                }
            }
            None => {
                for k in 0..ev.steps.len() {
                    dec.step(k, None, cands)?;
                }
            }
        }
        let mut notes = match self.mode {
            DecodeMode::Fast { .. } => format!("χ² fallback at {}/{} positions", dec.fallbacks, dec.positions),
            DecodeMode::Exhaustive if !dec.ctx_ops.is_empty() => {
                format!("{} prefix-dependent ops re-rank the top {}", dec.ctx_ops.len(), self.rerank)
            }
            DecodeMode::Exhaustive => String::new(),
        };
        if let Some((id, cols)) = dict_op {
            if !ev.noise(id, cols).announced {
                notes.push_str(" (no channel scales in the manifest: assumed 1)");
            }
        }
        Ok(Some(AttackOutcome { guesses: dec.guesses, notes }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_sums_match_fresh_tables_through_assignments() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let (m, v, d) = (20, 300, 64);
        let cands = Rows32::from_vec(v, d, (0..v * d).map(|_| rng.random::<f32>() * 4.0 - 2.0).collect()).unwrap();
        // Rows = candidates 0, 0, 5, 10, … plus noise, so some terms dominate.
        let y = Rows64::from_vec(
            m,
            d,
            (0..m)
                .flat_map(|j| cands.row(5 * (j / 2) + j % 2).iter().map(|&x| x as f64 + rng.random::<f64>() - 0.5).collect::<Vec<_>>())
                .collect(),
        )
        .unwrap();
        let prec = vec![1.0; d];
        let mut inc = CallLikelihood::new(&y, &cands, &prec, vec![false; m]);
        let all: Vec<usize> = (0..v).collect();
        for step in 0..m {
            let got = inc.scores(&all);
            let fresh = CallLikelihood::new(&y, &cands, &prec, inc.used.clone()).scores(&all.iter().rev().copied().collect::<Vec<_>>());
            for t in 0..v {
                assert!(
                    (got[t] - fresh[v - 1 - t]).abs() < 1e-6 * got[t].abs().max(1.0),
                    "step {step} t {t}: {} vs {}",
                    got[t],
                    fresh[v - 1 - t]
                );
            }
            let best = argmax64(&got);
            inc.assign(best);
        }
    }

    #[test]
    fn log_sum_exp_is_stable() {
        assert!((log_sum_exp(&[1000.0, 1000.0]) - (1000.0 + 2f64.ln())).abs() < 1e-9);
        assert_eq!(log_sum_exp(&[f64::NEG_INFINITY]), f64::NEG_INFINITY);
    }

    #[test]
    fn call_likelihood_prefers_the_true_row_and_assigns_once() {
        let cands = Rows32::from_vec(3, 2, vec![1.0, 0.0, 0.0, 1.0, -1.0, 0.0]).unwrap();
        let y = Rows64::from_vec(2, 2, vec![0.0, 1.1, 0.9, 0.1]).unwrap();
        let mut cl = CallLikelihood::new(&y, &cands, &[1.0, 1.0], vec![false; 2]);
        let s = cl.scores(&[0, 1, 2]);
        assert!(s[0] > s[2] && s[1] > s[2]);
        // Matches the direct log-sum-exp.
        let direct = log_sum_exp(&[cl.ll(0, 0), cl.ll(1, 0)]);
        assert!((s[0] - direct).abs() < 1e-9);
        // The gather path (a candidate subset) agrees with the contiguous one.
        let sub = cl.scores(&[2, 0]);
        assert!((sub[0] - s[2]).abs() < 1e-9 && (sub[1] - s[0]).abs() < 1e-9);
        assert_eq!(cl.assign(0), Some(1));
        assert_eq!(cl.free_rows(), vec![0]);
        let s = cl.scores(&[0, 1, 2]);
        assert!(s[1] > s[0], "row 1 is used up: token 0 now has to explain row 0");
        // The running sums agree with a fresh computation after assignment.
        let fresh = CallLikelihood::new(&y, &cands, &[1.0, 1.0], vec![false, true]).scores(&[2, 0]);
        assert!((fresh[0] - s[2]).abs() < 1e-9 && (fresh[1] - s[0]).abs() < 1e-9);
    }
}
