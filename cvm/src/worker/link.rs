//! The CVM's connection to its worker: handshake (same model on both
//! sides), calls with validated answers, and recovery. A lost worker is
//! respawned (local) or reconnected (remote) and the call in flight is
//! re-sent; a worker's error frame is retried. A garbage answer (wrong
//! shape, NaN, a frame out of protocol) is a lie: the session is ended at
//! once (no retry against a lying worker) and the call fails with
//! `RemoError::AnswerRejected`. No answer is ever used without validation.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use talaria_kernels::{Float, Rows, RowsMut};
use talaria_models::{Op, OpId};
use talaria_protocol::{
    copy_first_non_finite, first_non_finite, Hello, HelloAck, PublicParams, WorkerBusy, WorkerCall, WorkerError, WORKER_PROTOCOL,
};
use talaria_remo::RemoError;
use talaria_transport::{Connection, FrameHeader, FrameKind, Received, WorkerAddress};
use tracing::{info, warn};

use super::spawn::{LocalWorker, SpawnConfig};
use super::tls_link::RemoteSecurity;

/// Attempts per call before giving up (each may reconnect).
const MAX_ATTEMPTS: usize = 6;
/// A worker that has not answered a call in this long is treated as lost.
const CALL_TIMEOUT: Duration = Duration::from_secs(300);
/// Loading weights can take a while on a cold machine.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long to keep trying to reach a remote worker that restarts.
const RECONNECT_WINDOW: Duration = Duration::from_secs(60);
/// Largest frame accepted before the worker's `HelloAck` (its op table).
const ACK_PAYLOAD_LIMIT: u64 = 4 << 20;
/// Largest `Error` or `Pong` frame accepted: a message, a busy-time report.
/// Outside a call's wait for its answer, nothing bigger is legitimate.
const CONTROL_PAYLOAD_LIMIT: u64 = 64 << 10;
/// How long a NaN answer waits for the worker's error frame that admits
/// the failure (an honest worker sends it right after).
const ADMISSION_WAIT: Duration = Duration::from_secs(5);
/// How a non-finite answer is described (and recognised).
const NON_FINITE: &str = "non-finite value";
/// Most rows the link puts in one frame.
const MAX_ROWS_PER_FRAME: usize = 1 << 15;

#[derive(Clone, Debug)]
pub enum WorkerTarget {
    /// Spawn `talaria-gpu-worker` on this host over shared memory.
    Local(SpawnConfig),
    /// A worker listening on TCP, over mutual TLS (or plain with
    /// `--insecure`). Every reconnect runs the TLS handshake again.
    Remote(WorkerAddress, RemoteSecurity),
}

/// Counters for the time split and the fault log.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct LinkStats {
    pub calls: u64,
    pub rows: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Wall time from sending a call to holding its validated answer.
    pub round_trip_s: f64,
    /// The same per call kind (calls counted, seconds in `busy_s`).
    pub per_kind: WorkerBusy,
    pub retries: u64,
    pub reconnects: u64,
}

pub struct WorkerLink {
    target: WorkerTarget,
    hello: Hello,
    conn: Option<Box<dyn Connection>>,
    /// Largest payload the transport carries per frame (what calls are
    /// chunked to), as it was before the link lowered its receive limit.
    frame_capacity: u64,
    local: Option<LocalWorker>,
    spawns: usize,
    next_call_id: u64,
    shapes: HashMap<OpId, (usize, usize)>,
    pub ack: Option<HelloAck>,
    pub stats: LinkStats,
    /// How long one attempt at a call may take ([`CALL_TIMEOUT`]; shorter
    /// in tests).
    call_timeout: Duration,
}

enum Failure {
    /// The connection is unusable: reconnect, then re-send.
    Lost(anyhow::Error),
    /// The worker reported an error (or a ping went wrong): retry.
    BadAnswer(anyhow::Error),
    /// The answer is malformed: the worker lied; end the session.
    Invalid(anyhow::Error),
}

impl WorkerLink {
    pub fn connect(target: WorkerTarget, manifest_hash: String, remo: PublicParams) -> anyhow::Result<Self> {
        let hello = Hello { protocol: WORKER_PROTOCOL, manifest_hash, remo };
        let mut link = Self {
            target,
            hello,
            conn: None,
            frame_capacity: 0,
            local: None,
            spawns: 0,
            next_call_id: 1,
            shapes: HashMap::new(),
            ack: None,
            stats: LinkStats::default(),
            call_timeout: CALL_TIMEOUT,
        };
        link.ensure_connected()?;
        Ok(link)
    }

    /// (d_in, d_out) of an op, as the worker announced it.
    pub fn shape(&self, id: OpId) -> Option<(usize, usize)> {
        self.shapes.get(&id).copied()
    }

    /// The pid of the local worker process, if any (tests kill it).
    pub fn local_pid(&self) -> Option<u32> {
        self.local.as_ref().map(|w| w.pid())
    }

    fn ensure_connected(&mut self) -> anyhow::Result<()> {
        if self.conn.is_some() {
            return Ok(());
        }
        let (mut conn, ack): (Box<dyn Connection>, HelloAck) = match &self.target {
            WorkerTarget::Local(cfg) => {
                self.local = None; // reap a dead predecessor first
                let extra = if self.spawns == 0 { cfg.first_spawn_args.clone() } else { Vec::new() };
                let (worker, mut endpoint) = LocalWorker::spawn(cfg, &extra)?;
                self.spawns += 1;
                self.frame_capacity = endpoint.max_payload_len();
                let ack = handshake(&mut endpoint, &self.hello)?;
                // The region is inherited by our child alone: whoever
                // attached to it must be that child.
                let pid = worker.pid();
                anyhow::ensure!(
                    endpoint.peer_pid() == Some(pid),
                    "the shared-memory region was attached by pid {:?}, not by the spawned worker {pid}",
                    endpoint.peer_pid()
                );
                self.local = Some(worker);
                (Box::new(endpoint), ack)
            }
            WorkerTarget::Remote(addr, security) => {
                let mut conn = connect_with_retry(addr, security)?;
                self.frame_capacity = conn.max_payload_len();
                let ack = handshake(&mut conn, &self.hello)?;
                (conn, ack)
            }
        };
        if ack.manifest_hash != self.hello.manifest_hash {
            bail!("worker holds a different model ({}) than the CVM ({})", ack.manifest_hash, self.hello.manifest_hash);
        }
        self.shapes =
            ack.ops.iter().filter_map(|s| Op::from_code(s.op).map(|op| (OpId { layer: s.layer, op }, (s.d_in, s.d_out)))).collect();
        // The op table is the worker's word: no receive limit comes from
        // it. Between calls only small frames are legitimate; each wait for
        // an answer raises the limit to that call's own answer size
        // (`answer_payload_limit`), so a lying header cannot make us
        // allocate more than we asked for (TCP reads into our own buffer).
        conn.set_max_payload_len(CONTROL_PAYLOAD_LIMIT);
        // A worker that stops reading must not hold the engine thread in a
        // send for good (frames are megabytes, past any socket buffer).
        conn.set_send_timeout(Some(self.call_timeout)).context("bounding sends to the worker")?;
        info!("worker ready: backend {}, {} weights, {} ops", ack.backend, ack.weight_dtype, ack.ops.len());
        self.ack = Some(ack);
        self.conn = Some(conn);
        Ok(())
    }

    fn drop_connection(&mut self) {
        self.conn = None;
        self.local = None;
        self.stats.reconnects += 1;
    }

    /// Ends the session with this worker (caught lying): the connection is
    /// dropped and a local worker process killed; the next call connects
    /// (or spawns) afresh.
    pub fn end_session(&mut self) {
        if self.conn.is_some() || self.local.is_some() {
            self.drop_connection();
        }
    }

    /// The worker's own busy time per call kind since it started (a Ping;
    /// its Pong carries the figures). A respawned worker starts again at 0.
    pub fn worker_busy(&mut self) -> anyhow::Result<WorkerBusy> {
        self.ensure_connected()?;
        let call_id = self.next_call_id;
        self.next_call_id += 1;
        let conn = self.conn.as_mut().expect("connected");
        match await_pong(conn.as_mut(), call_id, self.call_timeout) {
            Ok(busy) => Ok(busy),
            Err(Failure::BadAnswer(e) | Failure::Invalid(e)) => Err(e),
            Err(Failure::Lost(e)) => {
                // The stream may be out of step (a refused header leaves
                // its payload unread): start afresh next time.
                self.drop_connection();
                Err(e)
            }
        }
    }

    /// The call's shape as the worker announced it (its `d_in`/`d_out`
    /// must match).
    fn checked(&self, call: WorkerCall) -> anyhow::Result<WorkerCall> {
        let id = call.id;
        let shape = self.shape(id).ok_or_else(|| anyhow!("the worker does not serve {id}"))?;
        anyhow::ensure!(shape == (call.d_in, call.d_out), "{id}: the worker's shape {shape:?} is not {}×{}", call.d_in, call.d_out);
        Ok(call)
    }

    /// `out = x · W_idᵀ` on the worker, rows chunked to fit the transport.
    pub fn matmul<T: Float>(&mut self, call: WorkerCall, x: &[T], out: &mut [T]) -> anyhow::Result<()> {
        let call = self.checked(WorkerCall { precision: T::PRECISION, ..call })?;
        let (rows, d_in, d_out) = (call.rows, call.d_in, call.d_out);
        anyhow::ensure!(x.len() == rows * d_in && out.len() == rows * d_out, "{}: {rows} rows do not match x/out sizes", call.id);
        let chunk = self.rows_per_frame(call);
        let t0 = Instant::now();
        for (xc, oc) in x.chunks(chunk * d_in).zip(out.chunks_mut(chunk * d_out)) {
            let bytes: &[u8] = bytemuck::cast_slice(xc);
            let mut oc = T::rows_mut(oc);
            self.call_with_retry(call.with_rows(xc.len() / d_in), &mut |buf| buf.copy_from_slice(bytes), &mut AnswerSink::Copy(&mut oc))?;
        }
        self.count(call, t0);
        Ok(())
    }

    /// The same product without intermediate buffers: `fill` writes the
    /// `rows × d_in` input straight into the outgoing frame and `take` reads
    /// the validated `rows × d_out` answer straight from the incoming one
    /// (a pad batch is tens of MB each way). Both run again when the call is
    /// retried. Returns `Ok(false)`, having called neither, when the rows do
    /// not fit one frame.
    pub fn matmul_in_place(
        &mut self,
        call: WorkerCall,
        fill: &mut dyn FnMut(RowsMut<'_>),
        take: &mut dyn FnMut(Rows<'_>),
    ) -> anyhow::Result<bool> {
        self.one_frame_call(call, fill, &mut AnswerSink::Take(take))
    }

    /// [`Self::matmul_in_place`] with the answer copied into `out`
    /// (private memory) and checked finite in the same pass, where the
    /// answer is wanted only as a copy (a pad batch's `U·W`).
    pub fn matmul_into(&mut self, call: WorkerCall, fill: &mut dyn FnMut(RowsMut<'_>), mut out: RowsMut<'_>) -> anyhow::Result<bool> {
        anyhow::ensure!(
            out.len() == call.rows * call.d_out,
            "{}: an answer buffer of {} values for {} rows",
            call.id,
            out.len(),
            call.rows
        );
        self.one_frame_call(call, fill, &mut AnswerSink::Copy(&mut out))
    }

    fn one_frame_call(
        &mut self,
        call: WorkerCall,
        fill: &mut dyn FnMut(RowsMut<'_>),
        answer: &mut AnswerSink<'_, '_>,
    ) -> anyhow::Result<bool> {
        let call = self.checked(call)?;
        if call.rows > self.rows_per_frame(call) {
            return Ok(false);
        }
        let t0 = Instant::now();
        let mut fill_bytes = |buf: &mut [u8]| match call.precision {
            talaria_kernels::Precision::F64 => fill_typed::<f64>(buf, fill),
            talaria_kernels::Precision::F32 => fill_typed::<f32>(buf, fill),
        };
        self.call_with_retry(call, &mut fill_bytes, answer)?;
        self.count(call, t0);
        Ok(true)
    }

    /// Rows of one op that fit a frame each way (at most 32 Ki).
    fn rows_per_frame(&self, call: WorkerCall) -> usize {
        let max_payload = if self.conn.is_some() { self.frame_capacity } else { 64 << 20 } as usize;
        let per_row = call.d_in.max(call.d_out) * call.precision.bytes() + 256;
        (max_payload / 2 / per_row).clamp(1, MAX_ROWS_PER_FRAME)
    }

    fn count(&mut self, call: WorkerCall, t0: Instant) {
        let dt = t0.elapsed().as_secs_f64();
        self.stats.round_trip_s += dt;
        self.stats.per_kind.add(call.kind, dt);
        self.stats.calls += 1;
        self.stats.rows += call.rows as u64;
    }

    fn call_with_retry(&mut self, c: WorkerCall, fill: &mut dyn FnMut(&mut [u8]), answer: &mut AnswerSink<'_, '_>) -> anyhow::Result<()> {
        let id = c.id;
        let mut last: Option<anyhow::Error> = None;
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(20 * attempt as u64));
            }
            if let Err(e) = self.ensure_connected() {
                warn!("{id}: cannot reach the worker (attempt {}): {e:#}", attempt + 1);
                self.drop_connection();
                last = Some(e);
                continue;
            }
            match self.try_call(c, fill, answer) {
                Ok(()) => return Ok(()),
                Err(Failure::Lost(e)) => {
                    warn!("{id}: worker lost ({e:#}); reconnecting and re-sending the call");
                    self.drop_connection();
                    last = Some(e);
                }
                Err(Failure::Invalid(e)) => {
                    warn!("{id}: the worker's answer is malformed ({e:#}); ending its session");
                    self.drop_connection();
                    return Err(RemoError::AnswerRejected { id, call: c.kind.name(), detail: format!("{e:#}") }.into());
                }
                Err(Failure::BadAnswer(e)) => {
                    warn!("{id}: the worker failed the call ({e:#}); retrying");
                    self.stats.retries += 1;
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("no attempt made"))).with_context(|| format!("{id}: the worker failed {MAX_ATTEMPTS} times"))
    }

    fn try_call(&mut self, c: WorkerCall, fill: &mut dyn FnMut(&mut [u8]), answer: &mut AnswerSink<'_, '_>) -> Result<(), Failure> {
        let call_id = self.next_call_id;
        self.next_call_id += 1;
        let conn = self.conn.as_mut().expect("connected");
        conn.send_with(c.header(call_id), fill).map_err(|e| Failure::Lost(e.into()))?;
        self.stats.bytes_sent += c.bytes().0 as u64;
        // Nothing legitimate that can arrive now is bigger than this call's
        // answer (or an Error frame): a header declaring more is refused
        // before its payload is read or anything is allocated for it.
        conn.set_max_payload_len(answer_payload_limit(c));
        // Frames of earlier, abandoned attempts may still arrive: skip them,
        // within one deadline for the attempt (a frame per timeout would
        // stretch it 64-fold).
        let deadline = Instant::now() + self.call_timeout;
        for _ in 0..64 {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = conn.recv(Some(left)).map_err(|e| Failure::Lost(e.into()))?;
            let h = *frame.header();
            if h.call_id != call_id {
                continue;
            }
            return match h.kind {
                FrameKind::Result => {
                    c.check_answer(&h).map_err(|e| Failure::Invalid(anyhow!(e)))?;
                    let taken = match c.precision {
                        talaria_kernels::Precision::F64 => take_checked::<f64>(&frame, answer),
                        talaria_kernels::Precision::F32 => take_checked::<f32>(&frame, answer),
                    };
                    self.stats.bytes_received += frame.payload().len() as u64;
                    drop(frame);
                    match taken {
                        // A worker whose backend failed answers NaN and then
                        // says why in an error frame: an admitted failure,
                        // retried. NaN without one is a lie.
                        Err(Failure::Invalid(e)) if e.to_string().starts_with(NON_FINITE) => match conn.recv(Some(ADMISSION_WAIT)) {
                            Ok(f) if f.kind == FrameKind::Error && f.call_id == call_id => {
                                Err(Failure::BadAnswer(anyhow!("worker error: {}", WorkerError::message_of(f.payload()))))
                            }
                            _ => Err(Failure::Invalid(e)),
                        },
                        other => other,
                    }
                }
                FrameKind::Error => Err(Failure::BadAnswer(anyhow!("worker error: {}", WorkerError::message_of(frame.payload())))),
                k => Err(Failure::Invalid(anyhow!("a {k:?} frame in answer to a call"))),
            };
        }
        Err(Failure::Lost(anyhow!("no answer with call id {call_id} among 64 frames")))
    }
}

impl Drop for WorkerLink {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            let _ = conn.send(&FrameHeader::new(FrameKind::Shutdown), &[]);
        }
    }
}

/// Pings the worker and reads its busy-time report from the Pong; only
/// small frames are accepted meanwhile.
fn await_pong(conn: &mut dyn Connection, call_id: u64, timeout: Duration) -> Result<WorkerBusy, Failure> {
    conn.set_max_payload_len(CONTROL_PAYLOAD_LIMIT);
    conn.send(&FrameHeader::new(FrameKind::Ping).with_call(call_id, 0, 0, 0), &[]).context("sending a ping").map_err(Failure::Lost)?;
    let deadline = Instant::now() + timeout;
    for _ in 0..64 {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = conn.recv(Some(left)).context("waiting for the pong").map_err(Failure::Lost)?;
        if frame.call_id != call_id {
            continue;
        }
        if frame.kind != FrameKind::Pong {
            return Err(Failure::BadAnswer(anyhow!("worker answered a ping with a {:?} frame", frame.kind)));
        }
        return serde_json::from_slice(frame.payload())
            .context("the worker's pong carries no busy-time report")
            .map_err(Failure::BadAnswer);
    }
    Err(Failure::BadAnswer(anyhow!("no pong with call id {call_id} among 64 frames")))
}

/// The receive limit while waiting for the answer to `c`: the answer the
/// CVM asked for (`rows × d_out` of its own call, in its precision; the
/// caller's buffers fix `d_out`, the worker's op table only has to agree),
/// or an `Error` frame, whichever is larger.
fn answer_payload_limit(c: WorkerCall) -> u64 {
    let answer = (c.rows as u64).saturating_mul(c.d_out as u64).saturating_mul(c.precision.bytes() as u64);
    answer.max(CONTROL_PAYLOAD_LIMIT)
}

/// Sends our `Hello` and reads the worker's answer.
fn handshake(conn: &mut dyn Connection, hello: &Hello) -> anyhow::Result<HelloAck> {
    conn.set_max_payload_len(ACK_PAYLOAD_LIMIT);
    let body = serde_json::to_vec(hello)?;
    conn.send(&FrameHeader::bytes(FrameKind::Hello, body.len()), &body).context("sending the handshake")?;
    let frame = conn.recv(Some(HANDSHAKE_TIMEOUT)).map_err(|e| {
        // TLS 1.3: a client certificate the worker refused shows up here,
        // on our first read, as a fatal alert.
        let refused = e.to_string().contains("fatal alert");
        let err = anyhow::Error::new(e).context("waiting for the worker's handshake");
        if refused {
            err.context(
                "the worker refused this CVM at the TLS handshake (its attestation or certificate); the worker's log names the cause",
            )
        } else {
            err
        }
    })?;
    match frame.kind {
        FrameKind::HelloAck => serde_json::from_slice(frame.payload()).context("bad handshake answer"),
        FrameKind::Error => bail!("worker refused the session: {}", WorkerError::message_of(frame.payload())),
        k => bail!("worker answered the handshake with a {k:?} frame"),
    }
}

/// Connects, retrying a worker that is not reachable (yet), or whose TLS
/// handshake timed out (a worker still holding a dead session), for up to
/// [`RECONNECT_WINDOW`]; a TLS failure (a certificate refused on either
/// side) is not transient and fails at once.
fn connect_with_retry(addr: &WorkerAddress, security: &RemoteSecurity) -> anyhow::Result<Box<dyn Connection>> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(50);
    loop {
        match security.connect(addr, Duration::from_secs(5)) {
            Ok(c) => return Ok(c),
            Err(e @ talaria_transport::TransportError::Tls(_)) => {
                return Err(e).with_context(|| format!("TLS with the worker at {} failed", addr.socket_addr_string()))
            }
            Err(e) if start.elapsed() < RECONNECT_WINDOW => {
                warn!("connecting to the worker at {}: {e}; retrying", addr.socket_addr_string());
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e).with_context(|| format!("cannot reach the worker at {}", addr.socket_addr_string())),
        }
    }
}

/// `fill` on a frame's payload bytes viewed as `T` (payloads are 64-byte
/// aligned on both transports; stay correct if not).
fn fill_typed<T: Float>(buf: &mut [u8], fill: &mut dyn FnMut(RowsMut<'_>)) {
    match bytemuck::try_cast_slice_mut::<u8, T>(buf) {
        Ok(x) => fill(T::rows_mut(x)),
        Err(_) => {
            let mut x = vec![T::default(); buf.len() / std::mem::size_of::<T>()];
            fill(T::rows_mut(&mut x));
            buf.copy_from_slice(bytemuck::cast_slice(&x));
        }
    }
}

/// Where an arriving answer goes (again on each attempt).
enum AnswerSink<'a, 'b> {
    /// To `take`, in the frame, once all of it is found finite.
    Take(&'a mut dyn FnMut(Rows<'_>)),
    /// Copied into private memory, checked finite in the same pass.
    Copy(&'a mut RowsMut<'b>),
}

/// Hands an answer's values on once they are all finite.
fn take_checked<T: Float + talaria_transport::Element>(frame: &Received<'_>, answer: &mut AnswerSink<'_, '_>) -> Result<(), Failure> {
    let vals = frame.elements::<T>().map_err(|e| Failure::Invalid(e.into()))?;
    let bad = match answer {
        AnswerSink::Take(take) => {
            let bad = first_non_finite(&vals);
            if bad.is_none() {
                take(T::rows(&vals));
            }
            bad
        }
        AnswerSink::Copy(out) => {
            let room = out.len();
            let out = T::of_rows_mut(out.reborrow()).filter(|o| o.len() == vals.len()).ok_or_else(|| {
                Failure::Invalid(anyhow!("an answer of {} {} values for a buffer of {room}", vals.len(), T::PRECISION.name()))
            })?;
            copy_first_non_finite(&vals, out)
        }
    };
    match bad {
        Some(i) => Err(Failure::Invalid(anyhow!("{NON_FINITE} at element {i} of the answer"))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use talaria_kernels::Precision;
    use talaria_protocol::{CallKind, OpShape};
    use talaria_transport::{DType, TcpConnection, TcpWorkerListener, TransportError, MAX_PAYLOAD_LEN};

    use super::*;

    fn call(rows: usize, d_in: usize, d_out: usize, precision: Precision) -> WorkerCall {
        WorkerCall { id: OpId { layer: 0, op: Op::O }, kind: CallKind::Plain, precision, rows, d_in, d_out }
    }

    #[test]
    fn the_answer_limit_is_the_calls_own_answer() {
        assert_eq!(answer_payload_limit(call(100, 64, 4096, Precision::F64)), 100 * 4096 * 8);
        assert_eq!(answer_payload_limit(call(100, 64, 4096, Precision::F32)), 100 * 4096 * 4);
        // A small answer still leaves room for an Error frame.
        assert_eq!(answer_payload_limit(call(1, 4, 4, Precision::F32)), CONTROL_PAYLOAD_LIMIT);
        // The input's width plays no part.
        assert_eq!(answer_payload_limit(call(8, 1 << 20, 1024, Precision::F64)), 8 * 1024 * 8);
        assert_eq!(answer_payload_limit(call(usize::MAX, usize::MAX, usize::MAX, Precision::F64)), u64::MAX);
    }

    /// A worker that announces a huge op in its `HelloAck` and then answers
    /// a small call with a `Result` header declaring 1 GiB: the CVM refuses
    /// the header (its limit is the 256-byte answer it asked for) instead of
    /// allocating for it, and gives up after its retries.
    #[test]
    fn a_worker_declaring_a_huge_answer_is_refused_before_it_is_read() {
        const HUGE: usize = 1 << 25;
        let listener = TcpWorkerListener::bind("127.0.0.1:0").unwrap();
        let addr: WorkerAddress = format!("tcp://{}", listener.local_addr().unwrap()).parse().unwrap();
        let fake = std::thread::spawn(move || {
            for _ in 0..MAX_ATTEMPTS {
                let sock = listener.accept_socket().unwrap();
                let mut raw = sock.try_clone().unwrap();
                let mut conn = TcpConnection::from_stream(sock).unwrap();
                let h = greet_and_take_a_call(
                    &mut conn,
                    vec![
                        OpShape { layer: 0, op: Op::O.code(), d_in: 8, d_out: 8 },
                        OpShape { layer: 1, op: Op::Down.code(), d_in: HUGE, d_out: HUGE },
                    ],
                );
                // The lie: a well-formed header for 4 × 2^25 f64 (1 GiB),
                // with no payload behind it.
                let lie = FrameHeader::matrix(FrameKind::Result, DType::F64, h.rows, HUGE as u32).with_call(
                    h.call_id,
                    h.layer,
                    h.op,
                    h.call_kind,
                );
                assert_eq!(lie.payload_len, 1 << 30);
                assert!(lie.payload_len <= MAX_PAYLOAD_LEN);
                raw.write_all(&lie.encode()).unwrap();
                // Hold the socket until the CVM hangs up.
                let _ = conn.recv(Some(Duration::from_secs(10)));
            }
        });

        let mut link = WorkerLink::connect(WorkerTarget::Remote(addr, RemoteSecurity::Plain), "m".into(), params()).unwrap();
        let x = vec![1.0f64; 4 * 8];
        let mut out = vec![0.0f64; 4 * 8];
        let err = link.matmul(call(4, 8, 8, Precision::F64), &x, &mut out).unwrap_err();
        let refused = err.chain().any(|e| {
            matches!(e.downcast_ref::<TransportError>(), Some(TransportError::PayloadTooLarge { len, max }) if *len == 1 << 30 && *max == CONTROL_PAYLOAD_LIMIT)
        });
        assert!(refused, "{err:#}");
        assert!(out.iter().all(|&v| v == 0.0));
        assert_eq!(link.stats.reconnects as usize, MAX_ATTEMPTS);
        drop(link);
        fake.join().unwrap();
    }

    /// A worker that answers every call with frames of another call id,
    /// one every 250 ms, forever: each would pass a per-frame timeout, so
    /// an attempt that waited per frame would take 64 × 250 ms. One
    /// deadline covers the attempt (1 s here), then the link reconnects,
    /// and the call fails after its attempts in about as many seconds.
    #[test]
    fn stale_frames_do_not_stretch_an_attempt_past_its_deadline() {
        let listener = TcpWorkerListener::bind("127.0.0.1:0").unwrap();
        let addr: WorkerAddress = format!("tcp://{}", listener.local_addr().unwrap()).parse().unwrap();
        let fake = std::thread::spawn(move || {
            for _ in 0..MAX_ATTEMPTS {
                let sock = listener.accept_socket().unwrap();
                let mut conn = TcpConnection::from_stream(sock).unwrap();
                let h = greet_and_take_a_call(&mut conn, vec![OpShape { layer: 0, op: Op::O.code(), d_in: 8, d_out: 8 }]);
                let stale =
                    FrameHeader::matrix(FrameKind::Result, DType::F64, h.rows, 8).with_call(h.call_id + 1000, h.layer, h.op, h.call_kind);
                let payload = vec![0u8; h.rows as usize * 8 * 8];
                // Until the CVM hangs up (bounded, so the thread ends).
                for _ in 0..64 {
                    std::thread::sleep(Duration::from_millis(250));
                    if conn.send(&stale, &payload).is_err() {
                        break;
                    }
                }
            }
        });

        let mut link = WorkerLink::connect(WorkerTarget::Remote(addr, RemoteSecurity::Plain), "m".into(), params()).unwrap();
        link.call_timeout = Duration::from_secs(1);
        let x = vec![1.0f64; 4 * 8];
        let mut out = vec![0.0f64; 4 * 8];
        let started = Instant::now();
        let err = link.matmul(call(4, 8, 8, Precision::F64), &x, &mut out).unwrap_err();
        let took = started.elapsed();
        assert_eq!(link.stats.reconnects as usize, MAX_ATTEMPTS, "{err:#}");
        // Six attempts of 1 s and their back-off; per-frame waits took 96 s.
        assert!(took >= Duration::from_secs(MAX_ATTEMPTS as u64), "{took:?}: an attempt ended before its deadline");
        assert!(took < Duration::from_secs(20), "{took:?}: stale frames stretched the attempts");
        drop(link);
        fake.join().unwrap();
    }

    /// A fake worker's side of the handshake (announcing `ops`), then the
    /// header of the first call it receives.
    fn greet_and_take_a_call(conn: &mut TcpConnection, ops: Vec<OpShape>) -> FrameHeader {
        let hello = conn.recv(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(hello.kind, FrameKind::Hello);
        drop(hello);
        let ack =
            HelloAck { protocol: WORKER_PROTOCOL, manifest_hash: "m".into(), backend: "fake".into(), weight_dtype: "f64".into(), ops };
        let body = serde_json::to_vec(&ack).unwrap();
        conn.send(&FrameHeader::bytes(FrameKind::HelloAck, body.len()), &body).unwrap();
        let c = conn.recv(Some(Duration::from_secs(10))).unwrap();
        *c.header()
    }

    fn params() -> PublicParams {
        PublicParams { mode: "plain".into(), scheme: "plain".into(), kappa: 0.0, precision: "exact-f64".into(), calibration: "test".into() }
    }
}
