//! The stable byte codes of a frame header: what a frame is for, and the
//! element type of its payload.

/// What a frame is for. Codes are stable; 0 is never valid so that zeroed
/// memory is rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum FrameKind {
    /// Handshake from the CVM (payload: upper-layer JSON).
    Hello = 1,
    /// Handshake answer from the worker (payload: upper-layer JSON).
    HelloAck = 2,
    /// A linear call: the payload is the input matrix.
    Call = 3,
    /// The answer to a call: the payload is the output matrix.
    Result = 4,
    /// A call failed; the payload is a UTF-8 / JSON message.
    Error = 5,
    Ping = 6,
    Pong = 7,
    /// Orderly end of the session.
    Shutdown = 8,
}

impl FrameKind {
    /// Every kind this build knows, for tests and diagnostics.
    pub const ALL: [FrameKind; 8] = [
        FrameKind::Hello,
        FrameKind::HelloAck,
        FrameKind::Call,
        FrameKind::Result,
        FrameKind::Error,
        FrameKind::Ping,
        FrameKind::Pong,
        FrameKind::Shutdown,
    ];

    pub fn from_code(code: u8) -> Option<Self> {
        FrameKind::ALL.into_iter().find(|k| *k as u8 == code)
    }

    pub fn code(self) -> u8 {
        self as u8
    }
}

/// Element type of the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum DType {
    F32 = 1,
    F64 = 2,
    BF16 = 3,
    F16 = 4,
    /// Raw bytes (JSON, text). Not a matrix: rows/cols are not checked
    /// against the payload length.
    U8 = 5,
}

impl DType {
    pub const ALL: [DType; 5] = [DType::F32, DType::F64, DType::BF16, DType::F16, DType::U8];

    pub fn from_code(code: u8) -> Option<Self> {
        DType::ALL.into_iter().find(|d| *d as u8 == code)
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F64 => 8,
            DType::F32 => 4,
            DType::BF16 | DType::F16 => 2,
            DType::U8 => 1,
        }
    }

    /// Whether `payload_len` must equal `rows * cols * size`.
    pub fn is_matrix(self) -> bool {
        !matches!(self, DType::U8)
    }
}
