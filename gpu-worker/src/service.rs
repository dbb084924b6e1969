//! The worker's request loop: validates every frame, answers calls, and
//! turns every problem into an `Error` frame instead of crashing. One
//! session is a loop over frames; each kind of frame has its own stage
//! (handshake, call, ping, shutdown).

use std::sync::Arc;
use std::time::Instant;

use talaria_kernels::{Float, Precision};
use talaria_models::{op_dims, ModelConfig, OpId, WorkerWeights};
use talaria_protocol::{first_non_finite, CallKind, Hello, HelloAck, OpShape, WorkerBusy, WorkerCall, WorkerError, WORKER_PROTOCOL};
use talaria_transport::{Connection, FrameHeader, FrameKind, Received, TransportError};
use tracing::{info, warn};

use crate::backend::MatmulBackend;
use crate::recorder::Recorder;

/// How long the compute threads keep polling after a call: longer than the
/// CVM's work between two calls of a decode step, short against idle time.
const POOL_LINGER: std::time::Duration = std::time::Duration::from_millis(3);

/// Largest frame accepted before the handshake: a `Hello` is a small JSON
/// object, so nobody unauthenticated by the handshake makes us allocate more.
pub const HELLO_PAYLOAD_LIMIT: u64 = 64 << 10;

pub struct WorkerService {
    pub config: ModelConfig,
    pub manifest_hash: String,
    pub weights: Arc<WorkerWeights>,
    pub backend: Box<dyn MatmulBackend>,
    pub recorder: Option<Recorder>,
    pub weight_dtype: String,
    pub busy: WorkerBusy,
    /// `--insecure`: serve unmasked (`plain`) sessions too. Without it a
    /// `Hello` announcing κ = 0 or mode `plain` is refused, and a plain
    /// call is accepted only as calibration on public text, before the
    /// session's first masked call.
    pub insecure: bool,
}

/// What one session has negotiated so far.
#[derive(Default)]
struct Session {
    greeted: bool,
    /// A masked call (pad batch or online) has been served: from now on
    /// plain calls can only be private rows, never calibration.
    masked_started: bool,
}

/// Why a session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionEnd {
    Shutdown,
    PeerGone,
}

/// What the loop does after a frame.
enum Next {
    Continue,
    End(SessionEnd),
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

    /// The largest call payload a session may send: the widest op input
    /// at the most rows a call may have, in f64. Anything bigger is refused
    /// from its header alone.
    pub fn call_payload_limit(&self) -> u64 {
        let widest = self.ops().iter().map(|s| s.d_in.max(s.d_out)).max().unwrap_or(0) as u64;
        (widest * WorkerCall::MAX_ROWS as u64 * 8).max(HELLO_PAYLOAD_LIMIT)
    }

    /// Serves one CVM session until it shuts down or goes away. A frame the
    /// transport cannot decode (bad header, payload over the limit) ends
    /// the session, after an `Error` frame saying why: the stream cannot be
    /// trusted to be in sync after it.
    pub fn serve(&mut self, conn: &mut dyn Connection) -> anyhow::Result<SessionEnd> {
        let mut session = Session::default();
        conn.set_max_payload_len(HELLO_PAYLOAD_LIMIT);
        let failure = loop {
            let frame = match conn.recv(None) {
                Ok(f) => f,
                Err(e) => break e,
            };
            let h = *frame.header();
            let next = match h.kind {
                FrameKind::Hello => {
                    let reply = self.handshake(frame.payload());
                    drop(frame);
                    if reply.is_ok() {
                        session.greeted = true;
                        conn.set_max_payload_len(self.call_payload_limit());
                    }
                    self.answer_handshake(conn, reply)?
                }
                FrameKind::Call if !session.greeted => {
                    drop(frame);
                    send_error(conn, h.call_id, "call before handshake")?;
                    Next::Continue
                }
                FrameKind::Call => {
                    if let Err(msg) = self.admit_call(&mut session, &h) {
                        drop(frame);
                        warn!("{msg}");
                        send_error(conn, h.call_id, &msg)?;
                    } else if let Err(msg) = self.handle_call(frame)? {
                        send_error(conn, h.call_id, &msg)?;
                    }
                    Next::Continue
                }
                FrameKind::Ping => {
                    drop(frame);
                    let body = serde_json::to_vec(&self.busy)?;
                    conn.send(&FrameHeader::bytes(FrameKind::Pong, body.len()).with_call(h.call_id, 0, 0, 0), &body)?;
                    Next::Continue
                }
                FrameKind::Shutdown => {
                    self.log_busy();
                    Next::End(SessionEnd::Shutdown)
                }
                other => {
                    drop(frame);
                    send_error(conn, h.call_id, &format!("unexpected frame kind {other:?}"))?;
                    Next::Continue
                }
            };
            if let Next::End(end) = next {
                return Ok(end);
            }
        };
        match failure {
            e if e.is_peer_gone() => Ok(SessionEnd::PeerGone),
            e @ (TransportError::Io { .. } | TransportError::Broken(_) | TransportError::Stalled { .. } | TransportError::Corrupt(_)) => {
                Err(anyhow::Error::new(e).context("transport failed; session ended"))
            }
            e => {
                // Say why before closing: the peer may be an honest CVM
                // with a bug, and the stream cannot be resynchronised.
                let _ = send_error(conn, 0, &format!("bad frame, closing the session: {e}"));
                Err(anyhow::Error::new(e).context("bad frame; session ended"))
            }
        }
    }

    /// Unmasked calls: refused without `--insecure`, except public
    /// calibration before the session's first masked call.
    fn admit_call(&self, session: &mut Session, h: &FrameHeader) -> Result<(), String> {
        match CallKind::from_code(h.call_kind) {
            Some(CallKind::Plain) if !self.insecure && session.masked_started => Err(format!(
                "call {}: unmasked (plain) call after masked serving began refused: only public calibration may be unmasked (start the worker with --insecure for the plain baseline)",
                h.call_id
            )),
            Some(CallKind::PadBatch | CallKind::Online) => {
                session.masked_started = true;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Checks the CVM's `Hello`: protocol version, the model it loaded, and
    /// (without `--insecure`) that the session is masked.
    fn handshake(&mut self, payload: &[u8]) -> Result<HelloAck, String> {
        let hello: Hello = serde_json::from_slice(payload).map_err(|e| format!("bad hello: {e}"))?;
        if hello.protocol != WORKER_PROTOCOL {
            return Err(format!("protocol {} not supported (worker speaks {WORKER_PROTOCOL})", hello.protocol));
        }
        if hello.remo.is_unmasked() && !self.insecure {
            warn!("refused an unmasked session ({}, κ = {:e}): the worker runs without --insecure", hello.remo.scheme, hello.remo.kappa);
            return Err(format!(
                "unmasked (plain) sessions refused: mode {}, κ = {:e}; the worker serves them only with --insecure (development and measurement only)",
                hello.remo.mode, hello.remo.kappa
            ));
        }
        if hello.manifest_hash != self.manifest_hash {
            return Err(format!("model mismatch: CVM loaded {}, worker holds {}", hello.manifest_hash, self.manifest_hash));
        }
        if let Some(rec) = &self.recorder {
            rec.write_manifest(&self.config, &hello.remo).map_err(|e| format!("{e:#}"))?;
        }
        info!("session started ({}, κ = {:e})", hello.remo.scheme, hello.remo.kappa);
        Ok(HelloAck {
            protocol: WORKER_PROTOCOL,
            manifest_hash: self.manifest_hash.clone(),
            backend: self.backend.name(),
            weight_dtype: self.weight_dtype.clone(),
            ops: self.ops(),
        })
    }

    fn answer_handshake(&mut self, conn: &mut dyn Connection, reply: Result<HelloAck, String>) -> anyhow::Result<Next> {
        match reply {
            Ok(ack) => {
                let body = serde_json::to_vec(&ack)?;
                conn.send(&FrameHeader::bytes(FrameKind::HelloAck, body.len()), &body)?;
            }
            Err(msg) => send_error(conn, 0, &msg)?,
        }
        Ok(Next::Continue)
    }

    /// One call: header checked against the model, input recorded and
    /// checked finite, product written straight into the answer frame.
    /// `Ok(Err(message))`: the error frame to send once the call's frame
    /// is released.
    fn handle_call(&mut self, mut frame: Received<'_>) -> anyhow::Result<Result<(), String>> {
        let h = *frame.header();
        let weights = &self.weights;
        let config = &self.config;
        let dims = |id: OpId| weights.get(id).map(|_| op_dims(config, id.op));
        let call = match WorkerCall::from_header(&h, dims).and_then(|call| self.record(&call, &h, frame.payload()).map(|()| call)) {
            Ok(call) => call,
            Err(msg) => return Ok(Err(msg)),
        };
        if let Err(msg) = check_finite(call.precision, frame.payload()) {
            return Ok(Err(format!("{}: {msg}", call.id)));
        }
        let started = Instant::now();
        talaria_kernels::cpu::keep_pool_warm(POOL_LINGER);
        let backend = &mut self.backend;
        let mut failure: Option<String> = None;
        let sent = frame.reply_with(call.answer_header(h.call_id), &mut |input, out| {
            if let Err(e) = compute(backend.as_mut(), &call, input, out) {
                // NaN, which every client rejects, so a failed call can
                // never pass as an answer.
                poison(call.precision, out);
                failure = Some(e);
            }
        });
        drop(frame);
        sent?;
        self.busy.add(call.kind, started.elapsed().as_secs_f64());
        // The NaN-filled result is rejected by the CVM; say why too.
        Ok(failure.map_or(Ok(()), Err))
    }

    fn record(&mut self, call: &WorkerCall, h: &FrameHeader, payload: &[u8]) -> Result<(), String> {
        match self.recorder.as_mut() {
            Some(rec) => rec.record(call.kind, call.id.op, h, payload).map_err(|e| format!("recording failed: {e:#}")),
            None => Ok(()),
        }
    }

    fn log_busy(&self) {
        for kind in CallKind::ALL {
            let b = self.busy.get(kind);
            if b.calls > 0 {
                info!(
                    "{}: {} calls, {:.1} ms serving, {:.1} µs each",
                    kind.name(),
                    b.calls,
                    b.busy_s * 1e3,
                    b.busy_s * 1e6 / b.calls as f64
                );
            }
        }
    }
}

/// The product of one call, read from and written into frame bytes.
fn compute(backend: &mut dyn MatmulBackend, call: &WorkerCall, input: &[u8], out: &mut [u8]) -> Result<(), String> {
    match call.precision {
        Precision::F64 => compute_typed::<f64>(backend, call, input, out),
        Precision::F32 => compute_typed::<f32>(backend, call, input, out),
    }
}

/// Writes the product straight into the outgoing frame when it is aligned
/// (it is on both transports).
fn compute_typed<T: Float>(backend: &mut dyn MatmulBackend, call: &WorkerCall, input: &[u8], out: &mut [u8]) -> Result<(), String> {
    let x = cast::<T>(input);
    let run =
        |backend: &mut dyn MatmulBackend, y: &mut [T]| backend.matmul(call, T::rows(&x), T::rows_mut(y)).map_err(|e| format!("{e:#}"));
    match bytemuck::try_cast_slice_mut::<u8, T>(out) {
        Ok(y) => run(backend, y),
        Err(_) => {
            let mut y = vec![T::default(); out.len() / std::mem::size_of::<T>()];
            run(backend, &mut y)?;
            out.copy_from_slice(bytemuck::cast_slice(&y));
            Ok(())
        }
    }
}

/// Rejects NaN/∞ inputs before computing (an honest CVM never sends them).
fn check_finite(precision: Precision, payload: &[u8]) -> Result<(), String> {
    let bad = match precision {
        Precision::F64 => first_non_finite(&cast::<f64>(payload)),
        Precision::F32 => first_non_finite(&cast::<f32>(payload)),
    };
    match bad {
        Some(i) => Err(format!("non-finite input at element {i}")),
        None => Ok(()),
    }
}

fn poison(precision: Precision, out: &mut [u8]) {
    match precision {
        Precision::F64 => out.chunks_exact_mut(8).for_each(|c| c.copy_from_slice(&f64::NAN.to_le_bytes())),
        Precision::F32 => out.chunks_exact_mut(4).for_each(|c| c.copy_from_slice(&f32::NAN.to_le_bytes())),
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
    let body = WorkerError::payload(msg);
    conn.send(&FrameHeader::bytes(FrameKind::Error, body.len()).with_call(call_id, 0, 0, 0), &body)?;
    Ok(())
}
