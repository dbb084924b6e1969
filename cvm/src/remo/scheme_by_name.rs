//! Builds any scheme by name — for the attack suite and experiments. The
//! serving path uses `ServingScheme`, which cannot hold the insecure ones.

use super::insecure::{LowRankNoise, RowMixing, RowPermutation};
use super::params::RemoParams;
use super::plain::PlainScheme;
use super::remo_scheme::Remo;
use super::scheme::MaskScheme;
use super::setup::RemoSetup;

/// The names `scheme_by_name` accepts.
pub const SCHEME_NAMES: [&str; 6] = ["remo", "remo-fast", "plain", "permute", "mix", "lowrank"];

/// `"remo"` or `"remo-fast"` (f32 pads; with `kappa` and `setup`), `"plain"`, or one of the INSECURE
/// references `"permute"`, `"mix"`, `"lowrank"` (noise RMS `kappa` × data).
pub fn scheme_by_name(name: &str, kappa: f64, setup: &RemoSetup) -> anyhow::Result<Box<dyn MaskScheme>> {
    Ok(match name {
        "remo" => Box::new(Remo::<f64>::new(setup.clone(), RemoParams::with_kappa(kappa))?),
        "remo-fast" => Box::new(Remo::<f32>::new(setup.clone(), RemoParams::with_kappa(kappa))?),
        "plain" => Box::new(PlainScheme::new()),
        "permute" => Box::new(RowPermutation::new()?),
        "mix" => Box::new(RowMixing::new()?),
        "lowrank" => Box::new(LowRankNoise::new(kappa)?),
        other => anyhow::bail!("unknown masking scheme {other:?}; expected one of {}", SCHEME_NAMES.join(", ")),
    })
}
