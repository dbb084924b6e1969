//! Groups a recording's calls into forward steps. Every step sends its
//! ops in forward order starting with layer 0's qkv, so a (0, qkv) call
//! that is not a pad batch opens a new step. Which (sequence, position)
//! each real row holds comes from tokens.json (scoring only).

use anyhow::{ensure, Result};
use talaria_models::{Op, OpId};

use super::recording::{CallKind, Recording};
use super::tokens::{RowRef, TokensFile};

#[derive(Clone, Debug)]
pub struct Step {
    /// The real rows, in the CVM's order before masking (ground truth).
    pub rows: Vec<RowRef>,
    /// Indices into `Recording::calls` of this step's online/plain calls.
    pub calls: Vec<usize>,
    /// Ground truth (scoring only): for each row of the layer-0 qkv call,
    /// the index into `rows` it carries; `None` when unknown or mixed.
    pub row_sources: Option<Vec<Option<usize>>>,
    /// The tokens of the step's rows that belong to the attacker's own
    /// requests (chosen plaintext): the worker knows these.
    pub own: Vec<u32>,
}

impl Step {
    /// Whether every real row is the attacker's own (it is alone in the step).
    pub fn attacker_alone(&self) -> bool {
        !self.own.is_empty() && self.own.len() == self.rows.len()
    }
}

pub fn group_steps(rec: &Recording, tokens: &TokensFile) -> Result<Vec<Step>> {
    let truth = tokens.steps();
    let first = OpId::new(0, Op::Qkv);
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, c) in rec.calls.iter().enumerate() {
        if c.kind == CallKind::PadBatch {
            continue;
        }
        if c.id == first || groups.is_empty() {
            ensure!(c.id == first, "call {} ({}) comes before any layer-0 qkv call; cannot find step boundaries", c.seq, c.id);
            groups.push(Vec::new());
        }
        groups.last_mut().expect("a group is open").push(i);
    }
    ensure!(groups.len() == truth.len(), "the recording has {} forward steps but tokens.json lists {}", groups.len(), truth.len());
    let mut steps = Vec::with_capacity(truth.len());
    for (k, (calls, rows)) in groups.into_iter().zip(truth).enumerate() {
        for &ci in &calls {
            let c = &rec.calls[ci];
            ensure!(
                c.data.rows >= rows.len(),
                "step {k}: call {} has {} rows but the step has {} real rows",
                c.seq,
                c.data.rows,
                rows.len()
            );
        }
        let row_sources = tokens.row_sources.as_ref().and_then(|rs| rs[k].clone());
        if let Some(src) = &row_sources {
            let first_rows = rec.calls[calls[0]].data.rows;
            ensure!(src.len() == first_rows, "step {k}: row_sources lists {} rows, its layer-0 qkv call has {first_rows}", src.len());
        }
        let own = rows.iter().filter(|&&(s, _)| tokens.sequences[s].attacker).map(|&r| tokens.token(r)).collect();
        steps.push(Step { rows, calls, row_sources, own });
    }
    Ok(steps)
}
