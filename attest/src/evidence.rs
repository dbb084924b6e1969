use serde::{Deserialize, Serialize};

/// Which kind of report a piece of evidence holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TeeKind {
    SevSnp,
    Tdx,
    /// Software-signed by a published test key: proves nothing.
    Simulated,
}

/// One attestation report and what is needed to check it offline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub kind: TeeKind,
    /// The raw report (SNP: the 1184-byte report; TDX: the quote).
    #[serde(with = "hex::serde")]
    pub report: Vec<u8>,
    /// SNP: the VCEK (and optionally ASK/ARK) certificates; TDX: the quote
    /// collateral; simulated: empty.
    #[serde(with = "hex::serde")]
    pub endorsements: Vec<u8>,
}

impl Evidence {
    /// The bytes embedded in an RA-TLS certificate extension.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("evidence serializes")
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self, crate::VerifyError> {
        serde_json::from_slice(b).map_err(|e| crate::VerifyError::Malformed(format!("evidence encoding: {e}")))
    }
}
