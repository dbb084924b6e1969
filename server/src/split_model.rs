//! `talaria split-model MODEL --out DIR`: writes the model as a CVM bundle
//! and a worker bundle (docs/DESIGN.md §1, §8), so the CVM's machine is
//! given only `DIR/cvm.*` and never holds, maps or streams a weight matrix.
//! The logic is `talaria_models::split_model`.

use std::path::PathBuf;

use anyhow::Context;

#[derive(clap::Args, Debug)]
pub struct SplitModelArgs {
    /// The model to split: a GGUF file or an HF Llama folder.
    pub model: PathBuf,
    /// Folder to write `cvm.*`, `worker.*` and `manifest.json` into (created if absent).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: SplitModelArgs) -> anyhow::Result<()> {
    let m = talaria_models::split_model(&args.model, &args.out)
        .with_context(|| format!("splitting {} into {}", args.model.display(), args.out.display()))?;
    for b in [&m.cvm, &m.worker] {
        println!("{}  {} ({} tensors, {} bytes, sha256 {})", args.out.join(&b.file).display(), m.weights, b.tensors, b.bytes, b.sha256);
    }
    println!("worker manifest hash {}", m.worker_manifest_hash);
    println!("give the CVM host only {}; give both sides the same folder", args.out.join(&m.cvm.file).display());
    Ok(())
}
