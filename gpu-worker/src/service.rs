//! The worker's request loop: validates every frame, answers calls, and
//! turns every problem into an `Error` frame instead of crashing.

use std::sync::Arc;

use talaria_models::{op_dims, LlamaConfig, Op, OpId, WorkerWeights};
use talaria_transport::{Connection, DType, FrameHeader, FrameKind, TransportError};
use tracing::{info, warn};

use crate::backend::MatmulBackend;
use crate::fault::{Fault, FaultKind};
use crate::protocol::{first_non_finite, CallKind, Hello, HelloAck, OpShape, WorkerBusy, WorkerError, WORKER_PROTOCOL};
use crate::recorder::Recorder;

/// Largest rows of one call; bigger inputs are chunked by the client.
pub const MAX_CALL_ROWS: u32 = 1 << 16;
/// How long the compute threads keep polling after a call: longer than the
/// CVM's work between two calls of a decode step, short against idle time.
const POOL_LINGER: std::time::Duration = std::time::Duration::from_millis(3);

pub struct WorkerService {
    pub config: LlamaConfig,
    pub manifest_hash: String,
    pub weights: Arc<WorkerWeights>,
    pub backend: Box<dyn MatmulBackend>,
    pub recorder: Option<Recorder>,
    pub weight_dtype: String,
    /// Test-only misbehaviour (see `fault.rs`).
    pub fault: Option<Fault>,
    pub calls_served: u64,
    pub busy: [(u64, f64); 4],
}

/// Why a session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionEnd {
    Shutdown,
    PeerGone,
}

impl WorkerService {
    fn ops(&self) -> Vec<OpShape> {
        self.weights
            .op_ids()
            .into_iter()
            .map(|id| {
                let (d_in, d_out) = op_dims(&self.config, id.op);
                OpShape { layer: id.layer, op: id.op.code(), d_in, d_out }
            })
            .collect()
    }

    /// Serves one CVM session until it shuts down or goes away.
    pub fn serve(&mut self, conn: &mut dyn Connection) -> anyhow::Result<SessionEnd> {
        let mut greeted = false;
        let mut bad_frame: Option<String> = None;
        loop {
            if let Some(msg) = bad_frame.take() {
                send_error(conn, 0, &msg)?;
            }
            let mut frame = match conn.recv(None) {
                Ok(f) => f,
                Err(e) if e.is_peer_gone() => return Ok(SessionEnd::PeerGone),
                Err(e @ TransportError::Io { .. }) => {
                    warn!("transport error, ending session: {e}");
                    return Ok(SessionEnd::PeerGone);
                }
                Err(e) => {
                    // A malformed frame: say so, keep serving.
                    warn!("bad frame: {e}");
                    bad_frame = Some(format!("bad frame: {e}"));
                    continue;
                }
            };
            let h = *frame.header();
            match h.kind {
                FrameKind::Hello => {
                    let reply = self.hello(frame.payload());
                    drop(frame);
                    match reply {
                        Ok(ack) => {
                            let body = serde_json::to_vec(&ack)?;
                            conn.send(&FrameHeader::bytes(FrameKind::HelloAck, body.len()), &body)?;
                            greeted = true;
                        }
                        Err(msg) => send_error(conn, 0, &msg)?,
                    }
                }
                FrameKind::Call if !greeted => {
                    drop(frame);
                    send_error(conn, h.call_id, "call before handshake")?;
                }
                FrameKind::Call => {
                    let result = self.check_call(&h).and_then(|(id, kind, d_out)| {
                        let payload = frame.payload();
                        if let Some(rec) = self.recorder.as_mut() {
                            rec.record(kind, id.op, &h, payload).map_err(|e| format!("recording failed: {e:#}"))?;
                        }
                        let out_header = FrameHeader::matrix(FrameKind::Result, h.dtype, h.rows, d_out as u32).with_call(
                            h.call_id,
                            h.layer,
                            h.op,
                            h.call_kind,
                        );
                        Ok((id, kind, out_header))
                    });
                    match result {
                        Err(msg) => {
                            drop(frame);
                            send_error(conn, h.call_id, &msg)?;
                        }
                        Ok((id, kind, out_header)) => {
                            let started = std::time::Instant::now();
                            talaria_kernels::cpu::keep_pool_warm(POOL_LINGER);
                            self.calls_served += 1;
                            let fault = self.fault.filter(|f| f.at_call == self.calls_served).map(|f| f.kind);
                            match fault {
                                Some(FaultKind::Exit) => {
                                    warn!("fault injection: exiting at call {}", self.calls_served);
                                    std::process::exit(3);
                                }
                                Some(FaultKind::Nan) | Some(FaultKind::Shape) => {
                                    warn!("fault injection: garbage answer at call {}", self.calls_served);
                                    let cols = if fault == Some(FaultKind::Shape) { out_header.cols - 1 } else { out_header.cols };
                                    let bad = FrameHeader::matrix(FrameKind::Result, h.dtype, h.rows, cols).with_call(
                                        h.call_id,
                                        h.layer,
                                        h.op,
                                        h.call_kind,
                                    );
                                    let sent = frame.reply_with(bad, &mut |_, out| poison(h.dtype, out));
                                    drop(frame);
                                    sent?;
                                    continue;
                                }
                                None => {}
                            }
                            if let Err(msg) = check_finite(h.dtype, frame.payload()) {
                                drop(frame);
                                send_error(conn, h.call_id, &format!("{id}: {msg}"))?;
                                continue;
                            }
                            let backend = &mut self.backend;
                            let mut failure: Option<String> = None;
                            let rows = h.rows as usize;
                            let sent = frame.reply_with(out_header, &mut |input, out| {
                                if let Err(e) = compute(backend.as_mut(), id, kind, h.dtype, input, rows, out) {
                                    poison(h.dtype, out);
                                    failure = Some(e);
                                }
                            });
                            drop(frame);
                            sent?;
                            let t = &mut self.busy[h.call_kind.min(3) as usize];
                            t.0 += 1;
                            t.1 += started.elapsed().as_secs_f64();
                            if let Some(msg) = failure {
                                // The NaN-filled result is rejected by the CVM; say why too.
                                send_error(conn, h.call_id, &msg)?;
                            }
                        }
                    }
                }
                FrameKind::Ping => {
                    drop(frame);
                    let body = serde_json::to_vec(&self.busy_report())?;
                    conn.send(&FrameHeader::bytes(FrameKind::Pong, body.len()).with_call(h.call_id, 0, 0, 0), &body)?;
                }
                FrameKind::Shutdown => {
                    for (kind, (n, secs)) in self.busy.iter().enumerate().filter(|(_, b)| b.0 > 0) {
                        info!("call kind {kind}: {n} calls, {:.1} ms serving, {:.1} µs each", secs * 1e3, secs * 1e6 / *n as f64);
                    }
                    return Ok(SessionEnd::Shutdown);
                }
                other => {
                    drop(frame);
                    send_error(conn, h.call_id, &format!("unexpected frame kind {other:?}"))?;
                }
            }
        }
    }

    fn busy_report(&self) -> WorkerBusy {
        let mut report = WorkerBusy::default();
        for kind in CallKind::ALL {
            let (n, secs) = self.busy[kind.code() as usize];
            report.calls.insert(kind.name().into(), n);
            report.busy_s.insert(kind.name().into(), secs);
        }
        report
    }

    fn hello(&mut self, payload: &[u8]) -> Result<HelloAck, String> {
        let hello: Hello = serde_json::from_slice(payload).map_err(|e| format!("bad hello: {e}"))?;
        if hello.protocol != WORKER_PROTOCOL {
            return Err(format!("protocol {} not supported (worker speaks {WORKER_PROTOCOL})", hello.protocol));
        }
        if hello.manifest_hash != self.manifest_hash {
            return Err(format!("model mismatch: CVM loaded {}, worker holds {}", hello.manifest_hash, self.manifest_hash));
        }
        if let Some(rec) = &self.recorder {
            rec.write_manifest(&self.config, &hello.remo).map_err(|e| format!("{e:#}"))?;
        }
        info!("session started ({})", hello.remo);
        Ok(HelloAck {
            protocol: WORKER_PROTOCOL,
            manifest_hash: self.manifest_hash.clone(),
            backend: self.backend.name(),
            weight_dtype: self.weight_dtype.clone(),
            ops: self.ops(),
        })
    }

    /// Checks a call header against the model: op, shape, dtype, kind.
    fn check_call(&self, h: &FrameHeader) -> Result<(OpId, CallKind, usize), String> {
        let op = Op::from_code(h.op).ok_or_else(|| format!("unknown op code {}", h.op))?;
        let kind = CallKind::from_code(h.call_kind).ok_or_else(|| format!("unknown call kind {}", h.call_kind))?;
        let id = OpId { layer: h.layer, op };
        if self.weights.get(id).is_none() {
            return Err(format!("no such op: {id}"));
        }
        let (d_in, d_out) = op_dims(&self.config, op);
        if h.cols as usize != d_in {
            return Err(format!("{id}: {} columns sent, the op takes {d_in}", h.cols));
        }
        if h.rows == 0 || h.rows > MAX_CALL_ROWS {
            return Err(format!("{id}: {} rows (allowed 1..={MAX_CALL_ROWS})", h.rows));
        }
        match h.dtype {
            DType::F64 | DType::F32 => {}
            d => return Err(format!("{id}: dtype {d:?} not allowed for {} calls", kind.name())),
        }
        Ok((id, kind, d_out))
    }
}

/// f64 rows are the exact mode; f32 rows are plain calls (which a backend
/// may round) or the fast masked mode (which it must take exactly).
fn compute(
    backend: &mut dyn MatmulBackend,
    id: OpId,
    kind: CallKind,
    dtype: DType,
    input: &[u8],
    rows: usize,
    out: &mut [u8],
) -> Result<(), String> {
    match (dtype, kind) {
        (DType::F64, _) => compute_typed::<f64>(input, out, |x, y| backend.matmul_f64(id, x, rows, y)),
        (DType::F32, CallKind::Plain) => compute_typed::<f32>(input, out, |x, y| backend.matmul_f32(id, x, rows, y)),
        (DType::F32, _) => compute_typed::<f32>(input, out, |x, y| backend.matmul_fast(id, x, rows, y)),
        (other, _) => Err(format!("dtype {other:?}")),
    }
}

/// Writes the product straight into the outgoing frame when it is aligned (it is on both transports).
fn compute_typed<T: bytemuck::Pod>(
    input: &[u8],
    out: &mut [u8],
    mut f: impl FnMut(&[T], &mut [T]) -> anyhow::Result<()>,
) -> Result<(), String> {
    let x = cast::<T>(input);
    match bytemuck::try_cast_slice_mut::<u8, T>(out) {
        Ok(y) => f(&x, y).map_err(|e| format!("{e:#}")),
        Err(_) => {
            let mut y = vec![T::zeroed(); out.len() / std::mem::size_of::<T>()];
            f(&x, &mut y).map_err(|e| format!("{e:#}"))?;
            out.copy_from_slice(bytemuck::cast_slice(&y));
            Ok(())
        }
    }
}

/// Rejects NaN/∞ inputs before computing (an honest CVM never sends them).
fn check_finite(dtype: DType, payload: &[u8]) -> Result<(), String> {
    let bad = match dtype {
        DType::F64 => first_non_finite(&cast::<f64>(payload)),
        DType::F32 => first_non_finite(&cast::<f32>(payload)),
        _ => None,
    };
    match bad {
        Some(i) => Err(format!("non-finite input at element {i}")),
        None => Ok(()),
    }
}

/// Fills a result the worker could not compute with NaN, which every
/// client rejects, so a failed call can never pass as an answer.
fn poison(dtype: DType, out: &mut [u8]) {
    match dtype {
        DType::F64 => out.chunks_exact_mut(8).for_each(|c| c.copy_from_slice(&f64::NAN.to_le_bytes())),
        _ => out.chunks_exact_mut(4).for_each(|c| c.copy_from_slice(&f32::NAN.to_le_bytes())),
    }
}

/// Zero-copy view when aligned (payloads are 64-byte aligned), else a copy.
fn cast<T: bytemuck::Pod>(b: &[u8]) -> std::borrow::Cow<'_, [T]> {
    match bytemuck::try_cast_slice(b) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => std::borrow::Cow::Owned(b.chunks_exact(std::mem::size_of::<T>()).map(bytemuck::pod_read_unaligned).collect()),
    }
}

fn send_error(conn: &mut dyn Connection, call_id: u64, msg: &str) -> anyhow::Result<()> {
    let body = serde_json::to_vec(&WorkerError { message: msg.into() })?;
    conn.send(&FrameHeader::bytes(FrameKind::Error, body.len()).with_call(call_id, 0, 0, 0), &body)?;
    Ok(())
}
