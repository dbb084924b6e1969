//! Where the model comes from: `--model PATH` (a GGUF file or an HF folder)
//! or the default model, fetched and cached on first use.

use std::path::PathBuf;

use anyhow::Context;
use talaria_models::fetch::ensure_default_model;

#[derive(clap::Args, Clone, Debug)]
pub struct ModelArgs {
    /// A GGUF file or an HF folder (config.json, *.safetensors,
    /// tokenizer.json). Default: SmolLM2-135M-Instruct, fetched on first use.
    #[arg(long, env = "TALARIA_MODEL")]
    pub model: Option<PathBuf>,
    /// Never download; fail if the default model is not cached.
    #[arg(long)]
    pub offline: bool,
    /// Weight precision in memory: f32 or bf16.
    #[arg(long, default_value = "bf16", value_parser = parse_dtype)]
    pub dtype: talaria_kernels::WeightDType,
}

fn parse_dtype(s: &str) -> Result<talaria_kernels::WeightDType, String> {
    talaria_kernels::WeightDType::parse(s).ok_or_else(|| format!("unknown dtype {s:?} (f32, bf16, f16)"))
}

impl ModelArgs {
    pub fn resolve(&self) -> anyhow::Result<PathBuf> {
        match &self.model {
            Some(p) => Ok(p.clone()),
            None => ensure_default_model(self.offline).context("getting the default model"),
        }
    }
}
