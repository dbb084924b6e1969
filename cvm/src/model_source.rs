//! Where the model comes from: `--model PATH` (a GGUF file or an HF folder),
//! or a model fetched by name (the default one when absent) and cached on
//! first use.

use std::path::PathBuf;

use anyhow::Context;
use talaria_models::fetch::resolve_model;

#[derive(clap::Args, Clone, Debug)]
pub struct ModelArgs {
    /// A GGUF file, an HF folder (config.json, *.safetensors,
    /// tokenizer.json), or a model fetched by name on first use
    /// (smollm2-135m, gemma3-270m). Default: smollm2-135m.
    #[arg(long, env = "TALARIA_MODEL")]
    pub model: Option<PathBuf>,
    /// Never download; fail if the default model is not cached.
    #[arg(long)]
    pub offline: bool,
    /// How the weights are held in memory: `stored` keeps the file's own
    /// quant blocks or floats (the model's exact values, at the file's
    /// size); `f32` is exact too but larger; `bf16` and `f16` round the
    /// weights (not the model's answer).
    #[arg(long, default_value = "stored")]
    pub dtype: talaria_kernels::WeightFormat,
}

impl ModelArgs {
    pub fn resolve(&self) -> anyhow::Result<PathBuf> {
        resolve_model(self.model.as_deref(), self.offline).context("getting the model")
    }
}
