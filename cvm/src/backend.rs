//! Chooses the `Linear` backend at run time: plain (weights in this
//! process, the unprotected baseline) or confidential (ReMO to a worker).

use std::path::PathBuf;
use std::sync::Arc;

use clap::ValueEnum;
use talaria_engine::{Linear, LocalLinear};
use talaria_kernels::WeightDType;
use talaria_models::{Checkpoint, WorkerWeights};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Unprotected: weights in this process (the baseline).
    Plain,
}

#[derive(clap::Args, Clone, Debug)]
pub struct BackendArgs {
    #[arg(long, value_enum, default_value_t = Mode::Plain)]
    pub mode: Mode,
    /// Where the GPU worker runs: `tcp://host:port`; default: spawn a local
    /// worker over shared memory.
    #[arg(long)]
    pub worker: Option<String>,
    /// ReMO privacy level κ (pad σ = κ · channel RMS).
    #[arg(long, default_value_t = 1e4)]
    pub privacy_level: f64,
    /// Ask the (spawned) worker to record everything it receives here.
    #[arg(long)]
    pub record: Option<PathBuf>,
}

/// Builds the backend for `args` over the model in `ck`.
pub fn build_linear(args: &BackendArgs, ck: &Checkpoint, dtype: WeightDType) -> anyhow::Result<Box<dyn Linear>> {
    match args.mode {
        Mode::Plain => Ok(Box::new(LocalLinear::new(Arc::new(WorkerWeights::load(ck, dtype)?)))),
    }
}
