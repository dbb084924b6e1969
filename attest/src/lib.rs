//! Attestation for the CVM (docs/DESIGN.md §7): evidence from the hardware
//! (SEV-SNP or TDX through configfs-tsm) or a loudly insecure simulation,
//! its verification against a [`Policy`], and RA-TLS identities whose
//! certificate carries evidence bound to the certificate's own key.
//!
//! Nothing here is hand-written cryptography: signatures and certificate
//! chains are checked by `sev` (SNP), `dcap-qvl` (TDX) and `ring`/`rustls`.

pub mod attester;
mod error;
mod evidence;
mod policy;
pub mod ratls;
mod report_data;
mod simulated_report;
pub mod verify;

pub use attester::{Attester, AttesterChoice};
pub use error::{AttestError, VerifyError};
pub use evidence::{Evidence, TeeKind};
pub use policy::{Measurement, Policy, SimulatedPolicy, SnpMinTcb, SnpPolicy, TdxPolicy};
pub use report_data::ReportData;
pub use simulated_report::INSECURE_SIMULATED_SIGNING_SEED;
pub use verify::{verify, Verified};
