use serde::{Deserialize, Serialize};
use talaria_kernels::Precision;
use talaria_models::{Op, OpId};
use talaria_transport::{DType, FrameHeader, FrameKind};

/// Why a matrix is sent.
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

/// One call to the worker: which op, why, in which precision, and its
/// shape. The frame header of a call and of its answer are derived from it,
/// and the worker parses a header back into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerCall {
    pub id: OpId,
    pub kind: CallKind,
    /// f64 rows: the exact mode; f32: the fast masked mode, or plain rows
    /// (which a backend may round, e.g. to bf16).
    pub precision: Precision,
    pub rows: usize,
    pub d_in: usize,
    pub d_out: usize,
}

impl WorkerCall {
    /// Largest rows of one call; bigger inputs are chunked by the client.
    pub const MAX_ROWS: usize = 1 << 16;

    /// The same call on `rows` rows (a chunk of it).
    pub fn with_rows(self, rows: usize) -> Self {
        Self { rows, ..self }
    }

    /// The header of the `Call` frame carrying the `rows × d_in` input.
    pub fn header(&self, call_id: u64) -> FrameHeader {
        self.frame(FrameKind::Call, self.d_in, call_id)
    }

    /// The header of the `Result` frame carrying the `rows × d_out` answer.
    pub fn answer_header(&self, call_id: u64) -> FrameHeader {
        self.frame(FrameKind::Result, self.d_out, call_id)
    }

    fn frame(&self, kind: FrameKind, cols: usize, call_id: u64) -> FrameHeader {
        FrameHeader::matrix(kind, dtype_of(self.precision), self.rows as u32, cols as u32).with_call(
            call_id,
            self.id.layer,
            self.id.op.code(),
            self.kind.code(),
        )
    }

    /// Bytes of the input and of the answer.
    pub fn bytes(&self) -> (usize, usize) {
        let b = self.precision.bytes();
        (self.rows * self.d_in * b, self.rows * self.d_out * b)
    }

    /// Parses and checks a `Call` header against the ops the worker serves
    /// (`dims` gives an op's `(d_in, d_out)`): op, kind, dtype, shape.
    pub fn from_header(h: &FrameHeader, dims: impl Fn(OpId) -> Option<(usize, usize)>) -> Result<Self, String> {
        let op = Op::from_code(h.op).ok_or_else(|| format!("unknown op code {}", h.op))?;
        let kind = CallKind::from_code(h.call_kind).ok_or_else(|| format!("unknown call kind {}", h.call_kind))?;
        let id = OpId { layer: h.layer, op };
        let (d_in, d_out) = dims(id).ok_or_else(|| format!("no such op: {id}"))?;
        if h.cols as usize != d_in {
            return Err(format!("{id}: {} columns sent, the op takes {d_in}", h.cols));
        }
        if h.rows == 0 || h.rows as usize > Self::MAX_ROWS {
            return Err(format!("{id}: {} rows (allowed 1..={})", h.rows, Self::MAX_ROWS));
        }
        let precision = precision_of(h.dtype).ok_or_else(|| format!("{id}: dtype {:?} not allowed for {} calls", h.dtype, kind.name()))?;
        Ok(Self { id, kind, precision, rows: h.rows as usize, d_in, d_out })
    }

    /// Checks an answer's header: the precision and shape this call expects.
    pub fn check_answer(&self, h: &FrameHeader) -> Result<(), String> {
        let want = dtype_of(self.precision);
        if h.dtype != want || h.rows as usize != self.rows || h.cols as usize != self.d_out {
            return Err(format!("answer is {}×{} {:?}, expected {}×{} {want:?}", h.rows, h.cols, h.dtype, self.rows, self.d_out));
        }
        Ok(())
    }
}

/// The wire dtype of rows of a precision.
pub fn dtype_of(p: Precision) -> DType {
    match p {
        Precision::F32 => DType::F32,
        Precision::F64 => DType::F64,
    }
}

/// The precision of a matrix dtype calls may carry.
pub fn precision_of(d: DType) -> Option<Precision> {
    match d {
        DType::F32 => Some(Precision::F32),
        DType::F64 => Some(Precision::F64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_round_trips_through_its_header() {
        let call =
            WorkerCall { id: OpId::new(3, Op::GateUp), kind: CallKind::Online, precision: Precision::F64, rows: 5, d_in: 576, d_out: 3072 };
        let h = FrameHeader::decode(&call.header(7).encode()).unwrap();
        assert_eq!(h.payload_len, 5 * 576 * 8);
        assert_eq!(WorkerCall::from_header(&h, |_| Some((576, 3072))).unwrap(), call);
        let a = call.answer_header(7);
        assert_eq!((a.kind, a.rows, a.cols, a.payload_len), (FrameKind::Result, 5, 3072, 5 * 3072 * 8));
        assert!(call.check_answer(&a).is_ok());
        assert!(call.check_answer(&FrameHeader { cols: 3071, ..a }).is_err());
        assert!(WorkerCall::from_header(&h, |_| Some((575, 3072))).unwrap_err().contains("columns"));
        assert!(WorkerCall::from_header(&h, |_| None).unwrap_err().contains("no such op"));
    }
}
