//! What a verifier accepts, per TEE kind (docs/DESIGN.md §8).

mod file;
mod measurement;

use std::path::PathBuf;

use serde::Deserialize;

pub use measurement::Measurement;

/// What a verifier accepts: allow-lists of launch measurements and minimum
/// TCB per TEE kind (a JSON file, see docs), and whether simulated evidence
/// is tolerated (only from the `--allow-simulated` flag, never the file).
/// A kind without an entry is refused (`VerifyError::NoPolicyFor`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub sev_snp: Option<SnpPolicy>,
    #[serde(default)]
    pub tdx: Option<TdxPolicy>,
    #[serde(default)]
    pub simulated: Option<SimulatedPolicy>,
    /// Set by code only (`--allow-simulated`); a file naming it is refused.
    #[serde(skip)]
    pub allow_simulated: bool,
}

/// SEV-SNP: the guest's MEASUREMENT must be listed, the reported TCB at
/// least `min_tcb`, and a guest policy allowing debugging is refused unless
/// `allow_debug`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpPolicy {
    pub measurements: Vec<Measurement>,
    #[serde(default)]
    pub min_tcb: SnpMinTcb,
    #[serde(default)]
    pub allow_debug: bool,
}

/// Minimum security version numbers of the reported TCB (0: any).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpMinTcb {
    #[serde(default)]
    pub bootloader: u8,
    #[serde(default)]
    pub tee: u8,
    #[serde(default)]
    pub snp: u8,
    #[serde(default)]
    pub microcode: u8,
}

/// TDX: MRTD must be listed, the quote's TCB status one of
/// `accepted_tcb_status` (default: only "UpToDate"), and, when `rtmrs` is
/// non-empty, RTMR0..3 must equal one of its entries. Collateral comes from
/// the evidence, else from the `collateral` file (read when the policy is
/// loaded, into `collateral_json`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdxPolicy {
    pub mrtd: Vec<Measurement>,
    #[serde(default = "up_to_date_only")]
    pub accepted_tcb_status: Vec<String>,
    #[serde(default)]
    pub rtmrs: Vec<[Measurement; 4]>,
    #[serde(default)]
    pub allow_debug: bool,
    /// Path of a dcap-qvl `QuoteCollateralV3` JSON file, relative to the policy file.
    #[serde(default)]
    pub collateral: Option<PathBuf>,
    /// The collateral file's bytes (or collateral set by code).
    #[serde(skip)]
    pub collateral_json: Option<Vec<u8>>,
}

fn up_to_date_only() -> Vec<String> {
    vec!["UpToDate".to_string()]
}

impl TdxPolicy {
    /// Accepts these MRTDs with the default TCB rule (only "UpToDate") and
    /// the given collateral (dcap-qvl `QuoteCollateralV3` JSON), if any.
    pub fn new(mrtd: Vec<Measurement>, collateral_json: Option<Vec<u8>>) -> Self {
        TdxPolicy { mrtd, accepted_tcb_status: up_to_date_only(), rtmrs: Vec::new(), allow_debug: false, collateral: None, collateral_json }
    }
}

/// Simulated evidence (development only): the executable's hash must be listed.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatedPolicy {
    pub measurements: Vec<Measurement>,
}

impl Policy {
    /// Reads a policy file (JSON; unknown fields refused; errors name the
    /// file and the field). A TDX `collateral` path is read too.
    pub fn from_file(path: &std::path::Path) -> Result<Self, String> {
        file::load(path)
    }

    /// Parses a policy document; relative collateral paths resolve against `base_dir`.
    pub fn from_json(text: &str, base_dir: &std::path::Path) -> Result<Self, String> {
        file::parse(text, base_dir)
    }

    /// Accepts only simulated evidence of this executable hash, and turns
    /// `allow_simulated` on: for tests and development.
    pub fn simulated_only(measurement: impl Into<Measurement>) -> Self {
        Policy { simulated: Some(SimulatedPolicy { measurements: vec![measurement.into()] }), allow_simulated: true, ..Policy::default() }
    }

    pub fn with_sev_snp(mut self, p: SnpPolicy) -> Self {
        self.sev_snp = Some(p);
        self
    }

    pub fn with_tdx(mut self, p: TdxPolicy) -> Self {
        self.tdx = Some(p);
        self
    }

    pub fn with_simulated(mut self, p: SimulatedPolicy) -> Self {
        self.simulated = Some(p);
        self
    }

    pub fn with_allow_simulated(mut self, allow: bool) -> Self {
        self.allow_simulated = allow;
        self
    }
}
