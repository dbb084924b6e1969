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

/// SEV-SNP: the guest's MEASUREMENT must be listed, the reported,
/// committed and launch TCBs at least `min_tcb` (and the reported one the
/// VCEK was issued for), the report requested at a VMPL in `allowed_vmpls`
/// (default only 0); a guest policy allowing debugging is refused unless
/// `allow_debug`, one allowing a migration agent always.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpPolicy {
    pub measurements: Vec<Measurement>,
    #[serde(default)]
    pub min_tcb: SnpMinTcb,
    #[serde(default)]
    pub allow_debug: bool,
    /// VMPLs a report may be requested from (0..=3; default `[0]`, the most
    /// privileged level, where the guest kernel runs without an SVSM).
    #[serde(default = "vmpl_zero_only")]
    pub allowed_vmpls: Vec<u32>,
}

impl Default for SnpPolicy {
    fn default() -> Self {
        SnpPolicy { measurements: Vec::new(), min_tcb: SnpMinTcb::default(), allow_debug: false, allowed_vmpls: vmpl_zero_only() }
    }
}

fn vmpl_zero_only() -> Vec<u32> {
    vec![0]
}

/// Minimum security version numbers (0: any) of the reported, committed
/// and launch TCBs alike; `fmc` applies to TCBs that have one (Turin).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpMinTcb {
    #[serde(default)]
    pub fmc: u8,
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
/// `accepted_tcb_status` (default: only "UpToDate"), and RTMR0..3 must
/// equal one of the `rtmrs` entries. MRTD covers only the TD firmware; the
/// kernel, command line and application are measured into the RTMRs, so a
/// policy must name them: in a file `rtmrs` is required, either a
/// non-empty list or the string `"any"` (`rtmrs_any`: RTMRs are not checked,
/// UNSAFE, said in `Verified::tcb`). A policy made in code with no RTMR
/// set and without `rtmrs_any` refuses every quote. Collateral comes from
/// the evidence, else from the `collateral` file (read when the policy is
/// loaded, into `collateral_json`).
#[derive(Clone, Debug, Deserialize)]
#[serde(from = "file::TdxPolicyFile")]
pub struct TdxPolicy {
    pub mrtd: Vec<Measurement>,
    pub accepted_tcb_status: Vec<String>,
    /// Accepted RTMR0..3 values, one array per accepted set.
    pub rtmrs: Vec<[Measurement; 4]>,
    /// `"rtmrs": "any"`: accept any RTMRs (UNSAFE: the OS and application
    /// are then unverified).
    pub rtmrs_any: bool,
    /// Path of a dcap-qvl `QuoteCollateralV3` JSON file, relative to the policy file.
    pub collateral: Option<PathBuf>,
    /// The collateral file's bytes (or collateral set by code).
    pub collateral_json: Option<Vec<u8>>,
}

fn up_to_date_only() -> Vec<String> {
    vec!["UpToDate".to_string()]
}

impl TdxPolicy {
    /// Accepts these MRTDs with the default TCB rule (only "UpToDate") and
    /// the given collateral (dcap-qvl `QuoteCollateralV3` JSON), if any.
    /// No RTMR set is accepted yet: add them with [`TdxPolicy::with_rtmrs`]
    /// (or, unsafely, [`TdxPolicy::with_any_rtmrs`]).
    pub fn new(mrtd: Vec<Measurement>, collateral_json: Option<Vec<u8>>) -> Self {
        TdxPolicy { mrtd, accepted_tcb_status: up_to_date_only(), rtmrs: Vec::new(), rtmrs_any: false, collateral: None, collateral_json }
    }

    /// Also accepts these RTMR0..3 sets.
    pub fn with_rtmrs(mut self, sets: impl IntoIterator<Item = [Measurement; 4]>) -> Self {
        self.rtmrs.extend(sets);
        self
    }

    /// Accepts any RTMRs. UNSAFE: MRTD covers only the firmware, so the
    /// kernel and application go unverified (for development).
    pub fn with_any_rtmrs(mut self) -> Self {
        self.rtmrs_any = true;
        self
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
