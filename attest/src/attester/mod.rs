//! Producing evidence: one trait, chosen by `--attestation`.

mod configfs_tsm;
mod simulated;
mod snp_cert_table;

use std::path::Path;

pub use configfs_tsm::{ConfigfsTsmAttester, TSM_REPORT_DIR};
pub use simulated::{measure_file, simulated_measurement_of, SimulatedAttester};
pub use snp_cert_table::{find_certificate as find_snp_certificate, VCEK_GUID};

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
    /// The attester; `kind()` of the result says which one `Auto` chose.
    pub fn build(self) -> Result<Box<dyn Attester>, AttestError> {
        let tsm = Path::new(TSM_REPORT_DIR);
        match self {
            Self::SevSnp => Ok(Box::new(ConfigfsTsmAttester::new(tsm, Some(TeeKind::SevSnp))?)),
            Self::Tdx => Ok(Box::new(ConfigfsTsmAttester::new(tsm, Some(TeeKind::Tdx))?)),
            Self::Simulated => Ok(Box::new(SimulatedAttester::new()?)),
            Self::Auto if tsm.is_dir() => Ok(Box::new(ConfigfsTsmAttester::new(tsm, None)?)),
            Self::Auto => {
                eprintln!(
                    "WARNING: {TSM_REPORT_DIR} is absent: no TEE found, using SIMULATED attestation. \
                     It is signed by a published key and proves NOTHING; clients refuse it unless --allow-simulated."
                );
                Ok(Box::new(SimulatedAttester::new()?))
            }
        }
    }
}
