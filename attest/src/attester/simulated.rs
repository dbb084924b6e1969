//! Simulated evidence: signed by a published key, proves nothing. For
//! development and tests on machines without a TEE.

use std::path::Path;
use std::sync::OnceLock;

use sha2::{Digest, Sha384};

use super::Attester;
use crate::simulated_report::SimulatedReport;
use crate::{AttestError, Evidence, ReportData, TeeKind};

/// Signs simulated reports carrying this executable's hash as measurement.
pub struct SimulatedAttester {
    measurement: [u8; 48],
}

impl SimulatedAttester {
    /// Measures the running executable (what a launch measurement covers),
    /// once per process: the file is large and does not change.
    pub fn new() -> Result<Self, AttestError> {
        static EXE_MEASUREMENT: OnceLock<[u8; 48]> = OnceLock::new();
        let measurement = match EXE_MEASUREMENT.get() {
            Some(m) => *m,
            None => {
                let exe = std::env::current_exe()
                    .map_err(|e| AttestError::Io { context: "finding the running executable to measure".into(), source: e })?;
                let m = measure_file(&exe)?;
                *EXE_MEASUREMENT.get_or_init(|| m)
            }
        };
        Ok(SimulatedAttester { measurement })
    }

    pub fn measurement(&self) -> [u8; 48] {
        self.measurement
    }
}

impl Attester for SimulatedAttester {
    fn kind(&self) -> TeeKind {
        TeeKind::Simulated
    }

    fn attest(&self, data: &ReportData) -> Result<Evidence, AttestError> {
        let report = SimulatedReport { report_data: data.0, measurement: self.measurement }.sign();
        Ok(Evidence { kind: TeeKind::Simulated, report, endorsements: Vec::new() })
    }
}

/// SHA-384 of a file, streamed (executables can be large).
pub fn measure_file(path: &Path) -> Result<[u8; 48], AttestError> {
    let io = |e| AttestError::Io { context: format!("measuring {}", path.display()), source: e };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut h = Sha384::new();
    std::io::copy(&mut f, &mut h).map_err(io)?;
    Ok(h.finalize().into())
}

/// The measurement (lowercase hex, as in policy files and `Verified`) that
/// simulated evidence from the executable at `path` reports.
pub fn simulated_measurement_of(path: &Path) -> Result<String, AttestError> {
    measure_file(path).map(hex::encode)
}
