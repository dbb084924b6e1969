use std::fmt;

use serde::{Deserialize, Deserializer};

/// A 48-byte launch measurement (SNP MEASUREMENT, TDX MRTD/RTMR, simulated
/// executable hash), written in policy files as 96 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Measurement(pub [u8; 48]);

impl Measurement {
    pub fn from_hex(s: &str) -> Result<Self, String> {
        let bytes = hex::decode(s.trim()).map_err(|e| format!("{s:?} is not hex: {e}"))?;
        let arr: [u8; 48] =
            bytes.try_into().map_err(|b: Vec<u8>| format!("a measurement is 48 bytes (96 hex digits), {s:?} has {} bytes", b.len()))?;
        Ok(Measurement(arr))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Measurement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Display for Measurement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl From<[u8; 48]> for Measurement {
    fn from(b: [u8; 48]) -> Self {
        Measurement(b)
    }
}

impl<'de> Deserialize<'de> for Measurement {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Measurement::from_hex(&s).map_err(serde::de::Error::custom)
    }
}
