//! The one error type of the transport layer.

use std::path::PathBuf;
use std::time::Duration;

use crate::codes::DType;

/// Result alias used throughout the crate.
pub type Result<T, E = TransportError> = std::result::Result<T, E>;

/// Everything that can go wrong while encoding, moving or decoding a frame.
///
/// Variants say exactly what was wrong so that the CVM can log it and the
/// worker can put it in an error frame.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    #[error("frame header too short: got {got} bytes, need {need}")]
    ShortHeader { got: usize, need: usize },

    #[error("bad frame magic {found:02x?} (expected {expected:02x?}): not a Talaria frame, or the stream is out of sync")]
    BadMagic { found: [u8; 4], expected: [u8; 4] },

    #[error("unsupported frame protocol version {found} (this build speaks version {supported})")]
    UnsupportedVersion { found: u16, supported: u16 },

    #[error("unknown frame kind code {0}")]
    UnknownKind(u8),

    #[error("unknown dtype code {0}")]
    UnknownDType(u8),

    #[error("reserved frame header bytes at offset {offset} are not zero")]
    ReservedNotZero { offset: usize },

    #[error("payload_len {payload_len} does not match {rows} rows x {cols} cols of {dtype:?} (= {expected} bytes)")]
    PayloadLenMismatch { rows: u32, cols: u32, dtype: DType, expected: u128, payload_len: u64 },

    #[error("payload of {len} bytes exceeds the limit of {max} bytes; split it into smaller frames")]
    PayloadTooLarge { len: u64, max: u64 },

    #[error("payload slice has {actual} bytes but the header declares {declared}")]
    PayloadSizeMismatch { declared: u64, actual: usize },

    #[error("frame needs {needed} bytes of ring space but the ring holds {capacity}; split it into smaller frames")]
    FrameTooLarge { needed: u64, capacity: u64 },

    #[error("payload dtype is {found:?}, but {expected:?} was requested")]
    WrongDType { expected: DType, found: DType },

    #[error("payload of {len} bytes is not a whole number of {elem_size}-byte elements")]
    RaggedPayload { len: usize, elem_size: usize },

    #[error("truncated frame: {what}: expected {expected} bytes, got {got} before the peer closed")]
    Truncated { what: &'static str, expected: u64, got: u64 },

    #[error("peer gone: {0}")]
    PeerGone(String),

    #[error("timed out after {waited:?} waiting for {waiting_for}")]
    Timeout { waited: Duration, waiting_for: &'static str },

    #[error("shared-memory region {path}: {reason}")]
    BadRegion { path: PathBuf, reason: String },

    #[error("ring state corrupted (peer misbehaving?): {0}")]
    Corrupt(String),

    #[error("connection unusable after an earlier error: {0}")]
    Broken(String),

    #[error("the peer stopped sending mid-frame: no {what} byte for {stall:?} ({got} of {expected} bytes read); connection closed")]
    Stalled { stall: Duration, what: &'static str, got: u64, expected: u64 },

    #[error("{0}")]
    Tls(String),

    #[error("bad worker address {input:?}: {reason}")]
    BadAddress { input: String, reason: String },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl TransportError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        TransportError::Io { context: context.into(), source }
    }

    /// True when the other side is gone for good (reconnect / respawn needed).
    pub fn is_peer_gone(&self) -> bool {
        matches!(self, TransportError::PeerGone(_) | TransportError::Truncated { .. })
    }

    /// True for a timeout after which the connection is still usable.
    pub fn is_timeout(&self) -> bool {
        matches!(self, TransportError::Timeout { .. })
    }
}
