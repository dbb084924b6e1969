//! Producing evidence: one trait, chosen by `--attestation`.

use crate::{AttestError, Evidence, ReportData, TeeKind};

/// Makes evidence whose user data is `data`.
pub trait Attester: Send + Sync {
    fn kind(&self) -> TeeKind;
    fn attest(&self, data: &ReportData) -> Result<Evidence, AttestError>;
}

/// `--attestation`: `auto` uses configfs-tsm when the kernel offers it and
/// falls back to `simulated` (with a loud warning) elsewhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttesterChoice {
    Auto,
    SevSnp,
    Tdx,
    Simulated,
}

impl std::str::FromStr for AttesterChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "sev-snp" => Ok(Self::SevSnp),
            "tdx" => Ok(Self::Tdx),
            "simulated" => Ok(Self::Simulated),
            o => Err(format!("unknown attestation backend {o:?} (auto, sev-snp, tdx, simulated)")),
        }
    }
}

impl AttesterChoice {
    pub fn build(self) -> Result<Box<dyn Attester>, AttestError> {
        todo!("attester backends")
    }
}
