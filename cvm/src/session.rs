//! How a worker session starts (docs/DESIGN.md §3): calibration over
//! public text, its answers recorded by fresh secret answer checks, then a
//! ReMO scheme with empty pools that checks every later answer. A session
//! whose worker was caught lying is ended, and the next one starts here
//! again from nothing (new check vectors, new scales, new pads).

use std::path::PathBuf;

use anyhow::Context;
use talaria_engine::DecoderModel;
use talaria_kernels::{Precision, WeightFormat};
use talaria_models::{Checkpoint, CvmWeights, Role};
use talaria_remo::{leakage_bound_bits, AnswerChecks, RemoParams, RemoSetup};
use tracing::info;

use crate::calibration::channel_scales;
use crate::masked_linear::{ServingScheme, SessionStart};
use crate::worker::{PublicDataLinear, WorkerLink};

/// What a session of one serving mode is made from.
pub struct SessionRecipe {
    /// `None`: the plain baseline (nothing to calibrate or check).
    pub remo: Option<(Precision, RemoParams)>,
    /// The model, reopened for each later session (the CVM's tensors only).
    pub checkpoint: PathBuf,
    pub role: Role,
    pub dtype: WeightFormat,
}

impl SessionRecipe {
    /// A session over `link` with the model already open as `ck`.
    pub fn start_with(&self, ck: &Checkpoint, link: &mut WorkerLink) -> anyhow::Result<ServingScheme> {
        let Some((precision, params)) = self.remo else {
            return Ok(ServingScheme::plain());
        };
        let model = DecoderModel::new(ck.config.clone(), CvmWeights::load(ck, self.dtype)?)?;
        let mut checks = AnswerChecks::for_config(&ck.config)?;
        let scales = channel_scales(&model, &ck.tokenizer, &mut PublicDataLinear { link, checks: &mut checks })
            .context("calibrating channel scales")?;
        let setup = RemoSetup::from_config(&ck.config, scales)?;
        let bound = leakage_bound_bits(&ck.config, params.kappa);
        info!("ReMO {precision:?}, κ = {:e}: leakage bound {bound:.3e} bits per position", params.kappa);
        Ok(ServingScheme::remo(precision, setup, params, checks)?)
    }
}

impl SessionStart<WorkerLink> for SessionRecipe {
    fn start(&mut self, link: &mut WorkerLink) -> anyhow::Result<ServingScheme> {
        if self.remo.is_none() {
            return Ok(ServingScheme::plain());
        }
        let ck = Checkpoint::open_for(&self.checkpoint, self.role).with_context(|| format!("reopening {}", self.checkpoint.display()))?;
        self.start_with(&ck, link)
    }
}
