//! Produces, in-process, exactly what each scheme would send the worker
//! for layer 0's qkv (the rows are the dictionary rows of the tokens),
//! as a recording in the worker's format. Randomness is ChaCha20 from a
//! seed, so runs are reproducible (the real CVM seeds from the OS).

use anyhow::Result;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rand_distr::StandardNormal;
use talaria_models::{ModelConfig, Op, OpId};

use super::butterfly::Butterfly;
use super::scheme::Scheme;
use crate::privacy::linalg::{gemm_abt64, orthonormal_rows_from};
use crate::privacy::mat::{Rows32, Rows64};
use crate::privacy::npy::NpyDtype;
use crate::privacy::recording::{op_key, Call, CallKind, Manifest, Recording};
use crate::privacy::tokens::TokensFile;

/// Fraction of each pad batch that is ever used (docs/DESIGN.md §3).
const USED_FRACTION: f64 = 0.75;

pub struct SimInput<'a> {
    pub config: &'a ModelConfig,
    /// Layer-0 qkv inputs per token.
    pub dict: &'a Rows32,
    /// Public channel RMS `s_c` of layer-0 qkv inputs.
    pub scales: &'a [f64],
}

/// Pad rows per batch: the next power of two ≥ 1.25·d_in.
pub fn pad_rows(d: usize) -> usize {
    (d * 5).div_ceil(4).next_power_of_two()
}

fn gaussian(rows: usize, cols: usize, scale: impl Fn(usize) -> f64, rng: &mut impl Rng) -> Rows64 {
    let mut m = Rows64::zeros(rows, cols);
    for i in 0..rows {
        for (c, v) in m.row_mut(i).iter_mut().enumerate() {
            *v = rng.sample::<f64, _>(StandardNormal) * scale(c);
        }
    }
    m
}

/// Pads drawn from mixed batches; each pad used at most once and only a
/// random 75 % of a batch ever used.
struct PadPool {
    sigma: Vec<f64>,
    rounds: usize,
    batch: Rows64,
    unused: Vec<usize>,
}

impl PadPool {
    fn take(&mut self, n: usize, rng: &mut impl Rng, calls: &mut Vec<Call>, id: OpId) -> Result<Rows64> {
        let d = self.sigma.len();
        let mut out = Rows64::empty(d);
        while out.rows < n {
            if self.unused.is_empty() {
                let np = pad_rows(d);
                self.batch = gaussian(np, d, |c| self.sigma[c], rng);
                let mixed = Butterfly::random(np, self.rounds, rng)?.apply(&self.batch)?;
                calls.push(Call { seq: calls.len() as u64, kind: CallKind::PadBatch, id, dtype: NpyDtype::F64, data: mixed });
                let mut idx: Vec<usize> = (0..np).collect();
                idx.shuffle(rng);
                idx.truncate((np as f64 * USED_FRACTION) as usize);
                self.unused = idx;
            }
            let i = self.unused.pop().expect("refilled");
            out.extend(&self.batch.select(&[i]));
        }
        Ok(out)
    }
}

/// The recording, and the ground truth of the row shuffle per step (which
/// real row each sent row carries; `None` where rows are mixtures), for
/// tokens.json's `row_sources`.
pub type RowSources = Vec<Option<Vec<Option<usize>>>>;

pub fn simulate(scheme: Scheme, kappa: f64, tokens: &TokensFile, input: &SimInput, seed: u64) -> Result<(Recording, RowSources)> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let d = input.dict.cols;
    let id = OpId::new(0, Op::Qkv);
    let mean_scale = (input.scales.iter().map(|s| s * s).sum::<f64>() / d as f64).sqrt();
    let rank = d / 4;
    // The low-rank scheme's secret basis, fixed for the whole session.
    let basis = match scheme {
        Scheme::LowRank => Some(orthonormal_rows_from(&gaussian(rank, d, |_| 1.0, &mut rng))?),
        _ => None,
    };
    // The static-pad scheme's one pad, fixed for the whole session.
    let static_pad = match scheme {
        Scheme::StaticPad => Some(gaussian(1, d, |c| kappa * input.scales[c], &mut rng)),
        _ => None,
    };
    let mut pool = PadPool {
        sigma: input.scales.iter().map(|s| kappa * s).collect(),
        rounds: if let Scheme::Remo { rounds } = scheme { rounds } else { 0 },
        batch: Rows64::empty(d),
        unused: Vec::new(),
    };
    let mut calls: Vec<Call> = Vec::new();
    let mut sources: RowSources = Vec::new();
    for step in tokens.steps() {
        let idx: Vec<usize> = step.iter().map(|&r| tokens.token(r) as usize).collect();
        let x = input.dict.select(&idx).to_f64();
        let n = x.rows;
        let identity = Some((0..n).map(Some).collect());
        let (kind, dtype, data, src) = match scheme {
            Scheme::Plain => (CallKind::Plain, NpyDtype::F32, x, identity),
            Scheme::Permute => {
                let p = permutation(n, &mut rng);
                (CallKind::Online, NpyDtype::F32, x.select(&p), Some(p.into_iter().map(Some).collect()))
            }
            Scheme::Mix => {
                let a = gaussian(n, n, |_| 1.0, &mut rng);
                (CallKind::Online, NpyDtype::F64, gemm_abt64(&a, &x.transpose()), None)
            }
            Scheme::LowRank => {
                let b = basis.as_ref().expect("low-rank basis");
                let z = gaussian(n, rank, |_| kappa * mean_scale, &mut rng);
                let mut y = gemm_abt64(&z, &b.transpose());
                y.data.iter_mut().zip(&x.data).for_each(|(v, xv)| *v += xv);
                (CallKind::Online, NpyDtype::F64, y, identity)
            }
            Scheme::StaticPad | Scheme::Remo { .. } => {
                let r = match &static_pad {
                    Some(pad) => pad.select(&vec![0; n]),
                    None => pool.take(n, &mut rng, &mut calls, id)?,
                };
                let mut y = x;
                y.data.iter_mut().zip(&r.data).for_each(|(v, p)| *v += p);
                let p = permutation(n, &mut rng);
                (CallKind::Online, NpyDtype::F64, y.select(&p), Some(p.into_iter().map(Some).collect()))
            }
        };
        calls.push(Call { seq: calls.len() as u64, kind, id, dtype, data });
        sources.push(src);
    }
    let scales: Vec<f64> = input.scales.to_vec();
    let mut remo = serde_json::json!({
        "mode": if scheme == Scheme::Plain { "plain" } else { "exact" },
        "scheme": scheme.name(),
        "synthetic": true,
        "ops_recorded": "layer-0 qkv only",
        "channel_scales": { op_key(id): scales },
    });
    match scheme {
        Scheme::Remo { rounds } => {
            remo["kappa"] = kappa.into();
            remo["pad_rows"] = pad_rows(d).into();
            remo["mixing_rounds"] = rounds.into();
        }
        Scheme::StaticPad => remo["kappa"] = kappa.into(),
        Scheme::LowRank => {
            remo["rank"] = rank.into();
            remo["noise_kappa"] = kappa.into();
        }
        _ => {}
    }
    Ok((Recording { manifest: Manifest { format_version: 1, model: input.config.clone(), remo }, calls }, sources))
}

/// A random order: sent row i is real row `p[i]`.
fn permutation(n: usize, rng: &mut impl Rng) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    p.shuffle(rng);
    p
}
