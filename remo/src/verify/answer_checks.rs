//! The answer checks of every op of a session, made before anything is
//! sent: calibration's unmasked calls (public text) are recorded against
//! them and checked as soon as each op's first pad batch gives its
//! reference.

use std::collections::BTreeMap;

use talaria_kernels::{Precision, Rows, RowsMut};
use talaria_models::{op_dims, ModelConfig, OpId};

use crate::error::RemoError;
use crate::online::worker::{matmul, CallKind, WorkerCall, WorkerMatmul};
use crate::pads::secure_rng::SecureRng;
use crate::setup::{outsourced_ops, RemoSetup};
use crate::verify::op_check::{CheckStats, OpCheck};

pub struct AnswerChecks {
    ops: BTreeMap<OpId, OpCheck>,
}

impl AnswerChecks {
    /// Fresh secret check vectors for ops of the given `(id, d_in, d_out)`.
    pub fn new(shapes: impl IntoIterator<Item = (OpId, usize, usize)>) -> Result<Self, RemoError> {
        let mut rng = SecureRng::from_os()?;
        Ok(Self { ops: shapes.into_iter().map(|(id, d_in, d_out)| (id, OpCheck::new(id, d_in, d_out, &mut rng))).collect() })
    }

    /// For every op the worker runs for `cfg` (before calibration, which
    /// the setup's scales come from).
    pub fn for_config(cfg: &ModelConfig) -> Result<Self, RemoError> {
        Self::new(outsourced_ops(cfg).into_iter().map(|id| {
            let (d_in, d_out) = op_dims(cfg, id.op);
            (id, d_in, d_out)
        }))
    }

    /// For every op of `setup`.
    pub fn for_setup(setup: &RemoSetup) -> Result<Self, RemoError> {
        Self::new(setup.ids().into_iter().filter_map(|id| setup.get(id).map(|s| (id, s.d_in, s.d_out))))
    }

    /// Moves an op's check out (to its pad pool).
    pub fn take(&mut self, id: OpId) -> Option<OpCheck> {
        self.ops.remove(&id)
    }

    pub fn get(&self, id: OpId) -> Option<&OpCheck> {
        self.ops.get(&id)
    }

    pub fn stats(&self) -> CheckStats {
        let mut s = CheckStats::default();
        self.ops.values().for_each(|c| s.add(&c.stats()));
        s
    }

    /// `out = x·W_idᵀ` by an unmasked call (public data only) on f32 rows,
    /// computed exactly (an f64 call, so the answer is checked as tightly as
    /// the exact mode's; a plain f32 kernel may round rows to bf16), its
    /// answer recorded for checking.
    pub fn plain_matmul(
        &mut self,
        worker: &mut dyn WorkerMatmul,
        id: OpId,
        rows: usize,
        x: Rows<'_>,
        out: RowsMut<'_>,
    ) -> anyhow::Result<()> {
        let check = self.ops.get_mut(&id).ok_or(RemoError::UnknownOp { id })?;
        let (d_in, d_out) = (check.d_in(), check.d_out());
        if x.len() != rows * d_in || out.len() != rows * d_out {
            return Err(RemoError::Shape { id, what: "plain call", got: x.len(), expected: rows * d_in }.into());
        }
        let call = WorkerCall { id, kind: CallKind::Plain, precision: Precision::F64, rows, d_in, d_out };
        let x32: Vec<f32> = match x {
            Rows::F32(v) => v.to_vec(),
            Rows::F64(v) => v.iter().map(|&a| a as f32).collect(),
        };
        let x64: Vec<f64> = x32.iter().map(|&a| f64::from(a)).collect();
        // Our own copy of the answer is checked and used: a worker on
        // shared memory could still rewrite its buffer.
        let y = matmul::<f64>(worker, call, &x64)?;
        check.record_plain(&x32, &y)?;
        match out {
            RowsMut::F32(o) => o.iter_mut().zip(&y).for_each(|(o, &v)| *o = v as f32),
            RowsMut::F64(o) => o.copy_from_slice(&y),
        }
        Ok(())
    }
}
