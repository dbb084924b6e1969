//! The attacks (docs/DESIGN.md §2, §6). Each reads a recording (the worker's
//! view) plus what the attacker computes itself (candidate rows, public
//! parameters) and guesses the tokens of every forward step.

pub mod chosen_pads;
pub mod complement;
pub mod dict_view;
pub mod fastica;
pub mod likelihood;
pub mod nearest;
pub mod omp;
pub mod omp_dict;
pub mod omp_frame;
pub mod pad_gram;
pub mod pad_ica;
pub mod pad_structure;
pub mod pad_subtract;
pub mod set_decoder;
pub mod span;

#[cfg(test)]
mod tests;

use anyhow::Result;
use talaria_models::OpId;

use super::candidates::Candidates;
use super::mat::{Rows32, Rows64};
use super::noise::NoiseModel;
use super::recording::{Call, Recording};
use super::steps::Step;

/// What an attack relies on beyond the recording itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assumption {
    /// Layer-0 qkv inputs are gain-free RMSNorm embedding rows: a public
    /// dictionary of V candidates.
    DictionaryRows,
    /// The pad law: `σ_c = κ·s_c`, κ and `s_c` public.
    PublicNoiseScales,
    /// Runs the plain model on a recovered prefix (deeper-layer candidates,
    /// next-token distribution).
    PlainModel,
    /// Noise lives in the same secret low-rank subspace in every call.
    PersistentSubspace,
    /// The law of the secret row mixing (iid Gaussian entries), used to
    /// estimate how often a token repeats inside a call.
    MixingLaw,
    /// Sees the pad batches `U = M·R` and that online pads are rows of `R`.
    PadBatches,
    /// The public form of `M` (rounds of permutation, diagonal, WHT).
    ButterflyForm,
    /// The number of real rows per step (lengths are not hidden).
    RowCounts,
    /// Submits its own requests and knows their tokens (chosen plaintext),
    /// including the steps where they run alone.
    OwnRequests,
}

impl Assumption {
    pub fn short(self) -> &'static str {
        match self {
            Self::DictionaryRows => "dict",
            Self::PublicNoiseScales => "sigma",
            Self::PlainModel => "model",
            Self::PersistentSubspace => "subspace",
            Self::MixingLaw => "mixlaw",
            Self::PadBatches => "pads",
            Self::ButterflyForm => "butterfly",
            Self::RowCounts => "rows",
            Self::OwnRequests => "own",
        }
    }
}

/// One guessed token; `row` is the row of the step's dictionary-op call
/// it explains, when the attack knows (per-row decoders do, set tests
/// do not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Guess {
    pub token: u32,
    pub row: Option<usize>,
}

impl Guess {
    pub fn unattributed(token: u32) -> Self {
        Self { token, row: None }
    }
}

/// Guesses per step, at most as many as the step's real rows (a set test
/// that detects nothing abstains).
#[derive(Clone, Debug, Default)]
pub struct AttackOutcome {
    pub guesses: Vec<Vec<Guess>>,
    /// Diagnostics (test statistics) for the report.
    pub notes: String,
}

pub trait Attack {
    fn name(&self) -> String;
    fn assumptions(&self) -> Vec<Assumption>;
    /// Whether guesses use the language model's prior (then its no-signal
    /// baseline is the prior's own accuracy, not 1/V).
    fn uses_prior(&self) -> bool {
        false
    }
    /// `None` when the recording holds nothing this attack applies to.
    fn run(&self, ev: &Evidence, cands: &mut dyn Candidates) -> Result<Option<AttackOutcome>>;
}

/// The worker's view, grouped into steps.
pub struct Evidence<'a> {
    pub rec: &'a Recording,
    pub steps: &'a [Step],
    /// The shared whitened dictionary products (see `dict_view`).
    pub view: Option<dict_view::DictView>,
}

impl Evidence<'_> {
    pub fn real_rows(&self, step: usize) -> usize {
        self.steps[step].rows.len()
    }

    /// The step's call for `id`, if it has one.
    pub fn call(&self, step: usize, id: OpId) -> Option<&Call> {
        self.steps[step].calls.iter().map(|&i| &self.rec.calls[i]).find(|c| c.id == id)
    }

    pub fn noise(&self, id: OpId, cols: usize) -> NoiseModel {
        NoiseModel::for_op(&self.rec.manifest, id, cols)
    }

    /// The first op with a candidate dictionary that the steps carry.
    pub fn dictionary_op<'c>(&self, cands: &'c dyn Candidates) -> Option<(OpId, &'c Rows32)> {
        let mut ids: Vec<OpId> = self.steps.iter().flat_map(|s| s.calls.iter().map(|&i| self.rec.calls[i].id)).collect();
        ids.sort();
        ids.dedup();
        ids.into_iter().find_map(|id| cands.dictionary(id).map(|d| (id, d)))
    }

    /// Every row of op `id` over all steps, stacked, with its owner.
    pub fn stack(&self, id: OpId) -> StackedRows {
        let mut rows: Option<Rows64> = None;
        let mut owner = Vec::new();
        for k in 0..self.steps.len() {
            if let Some(c) = self.call(k, id) {
                owner.extend((0..c.data.rows).map(|r| (k, r)));
                match &mut rows {
                    Some(m) => m.extend(&c.data),
                    None => rows = Some(c.data.clone()),
                }
            }
        }
        StackedRows { rows: rows.unwrap_or_else(|| Rows64::empty(0)), owner }
    }
}

/// All rows of one op, with (step, row within the call) per row.
pub struct StackedRows {
    pub rows: Rows64,
    pub owner: Vec<(usize, usize)>,
}

impl StackedRows {
    /// Per-step guesses from one (token, confidence) per stacked row: each
    /// step keeps its real-row count of most confident rows (padding rows
    /// and rows that match nothing drop out).
    pub fn guesses_from_rows(&self, ev: &Evidence, per_row: &[(u32, f64)]) -> Vec<Vec<Guess>> {
        let mut by_step: Vec<Vec<(Guess, f64)>> = vec![Vec::new(); ev.steps.len()];
        for (&(k, r), &(token, conf)) in self.owner.iter().zip(per_row) {
            by_step[k].push((Guess { token, row: Some(r) }, conf));
        }
        by_step
            .into_iter()
            .enumerate()
            .map(|(k, mut v)| {
                v.sort_by(|a, b| b.1.total_cmp(&a.1));
                v.into_iter().take(ev.real_rows(k)).map(|(g, _)| g).collect()
            })
            .collect()
    }
}
