//! The worker protocol on top of transport frames (DESIGN §5): the
//! handshake messages and the call kinds. Shared by the CVM's client and the
//! worker; it carries nothing secret beyond what the worker is sent anyway.

use serde::{Deserialize, Serialize};

/// Bumped whenever the meaning of a frame changes.
pub const WORKER_PROTOCOL: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallKind {
    /// A mixed pad batch `U = M·R` (ReMO refill).
    PadBatch,
    /// Masked, shuffled real rows `Π·(X + R)`.
    Online,
    /// Unmasked rows (`--mode plain`, the unprotected baseline).
    Plain,
}

impl CallKind {
    pub const ALL: [CallKind; 3] = [CallKind::PadBatch, CallKind::Online, CallKind::Plain];
    pub fn code(self) -> u8 {
        match self {
            CallKind::PadBatch => 1,
            CallKind::Online => 2,
            CallKind::Plain => 3,
        }
    }
    pub fn from_code(c: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == c)
    }
    pub fn name(self) -> &'static str {
        match self {
            CallKind::PadBatch => "pad_batch",
            CallKind::Online => "online",
            CallKind::Plain => "plain",
        }
    }
}

/// CVM → worker, first frame of a session.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u32,
    /// `Checkpoint::manifest_hash()` of the model the CVM loaded.
    pub manifest_hash: String,
    /// Public protocol parameters (mode, κ, …), stored in a recording's
    /// manifest so attacks know them.
    pub remo: serde_json::Value,
}

/// Worker → CVM answer to `Hello`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HelloAck {
    pub protocol: u32,
    pub manifest_hash: String,
    pub backend: String,
    pub weight_dtype: String,
    /// Every op the worker serves.
    pub ops: Vec<OpShape>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpShape {
    pub layer: i32,
    pub op: u8,
    pub d_in: usize,
    pub d_out: usize,
}

/// Body of an `Error` frame.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerError {
    pub message: String,
}

/// The worker's own time serving calls since it started, per call kind
/// (keys: [`CallKind::name`]): the payload of its answer to a Ping, so the
/// CVM can split a step's time into worker compute and transport exactly.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerBusy {
    pub calls: std::collections::BTreeMap<String, u64>,
    pub busy_s: std::collections::BTreeMap<String, f64>,
}

/// The index of the first NaN or ∞ in a payload, checked on all threads
/// when large (a pad batch is up to 25 MB each way). Both sides reject
/// non-finite values: an honest peer never sends them.
pub fn first_non_finite<T: Copy + Sync + Into<f64>>(vals: &[T]) -> Option<usize> {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 15;
    // A branch-free pass (it vectorizes); the index is searched only on failure.
    let bad = |chunk: &[T]| !chunk.iter().fold(true, |ok, &v| ok & v.into().is_finite());
    let bad_chunk = if vals.len() <= CHUNK { bad(vals).then_some(0) } else { vals.par_chunks(CHUNK).position_first(bad) }?;
    let start = bad_chunk * CHUNK;
    vals[start..].iter().position(|&v| !v.into().is_finite()).map(|i| start + i)
}

#[cfg(test)]
mod finite_tests {
    use super::first_non_finite;

    #[test]
    fn finds_the_first_non_finite_value_in_small_and_large_payloads() {
        for len in [10usize, 100_000] {
            let mut v = vec![1.5f64; len];
            assert_eq!(first_non_finite(&v), None);
            v[len - 3] = f64::INFINITY;
            v[len / 2 + 1] = f64::NAN;
            assert_eq!(first_non_finite(&v), Some(len / 2 + 1));
        }
        assert_eq!(first_non_finite(&[f32::MAX, -f32::MAX, f32::NEG_INFINITY]), Some(2));
    }
}
