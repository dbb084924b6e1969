//! The CVM's connection to its worker: handshake (same model on both
//! sides), calls with validated answers, and recovery. A lost worker is
//! respawned (local) or reconnected (remote) and the call in flight is
//! re-sent; a garbage answer (wrong shape, NaN, bad frame) is logged and the
//! call retried. No answer is ever used without validation.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use talaria_gpu_worker::{CallKind, Hello, HelloAck, WorkerBusy, WorkerError, WORKER_PROTOCOL};
use talaria_models::{Op, OpId};
use talaria_transport::{Connection, Element, FrameHeader, FrameKind, WorkerAddress};
use tracing::{info, warn};

use super::spawn::{LocalWorker, SpawnConfig};

/// Attempts per call before giving up (each may reconnect).
const MAX_ATTEMPTS: usize = 6;
/// A worker that has not answered a call in this long is treated as lost.
const CALL_TIMEOUT: Duration = Duration::from_secs(300);
/// Loading weights can take a while on a cold machine.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long to keep trying to reach a remote worker that restarts.
const RECONNECT_WINDOW: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub enum WorkerTarget {
    /// Spawn `talaria-gpu-worker` on this host over shared memory.
    Local(SpawnConfig),
    /// A worker listening on TCP.
    Remote(WorkerAddress),
}

/// Counters for the time split and the fault log.
#[derive(Clone, Debug, Default)]
pub struct LinkStats {
    pub calls: u64,
    pub rows: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Wall time from sending a call to holding its validated answer.
    pub round_trip_s: f64,
    pub per_kind_s: HashMap<&'static str, f64>,
    pub retries: u64,
    pub reconnects: u64,
}

impl LinkStats {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "calls": self.calls, "rows": self.rows, "bytes_sent": self.bytes_sent, "bytes_received": self.bytes_received,
            "round_trip_s": self.round_trip_s, "per_kind_s": self.per_kind_s, "retries": self.retries, "reconnects": self.reconnects,
        })
    }
}

pub struct WorkerLink {
    target: WorkerTarget,
    hello: Hello,
    conn: Option<Box<dyn Connection>>,
    local: Option<LocalWorker>,
    spawns: usize,
    next_call_id: u64,
    shapes: HashMap<OpId, (usize, usize)>,
    pub ack: Option<HelloAck>,
    pub stats: LinkStats,
}

/// One chunk of a call: which op, why, and its shape.
#[derive(Clone, Copy)]
struct Call {
    id: OpId,
    kind: CallKind,
    rows: usize,
    d_in: usize,
    d_out: usize,
}

enum Failure {
    /// The connection is unusable: reconnect, then re-send.
    Lost(anyhow::Error),
    /// The worker answered, wrongly: retry.
    BadAnswer(anyhow::Error),
}

/// Element types calls carry.
pub trait WireFloat: Element + Copy + Sync + Into<f64> + bytemuck::Pod {}
impl WireFloat for f64 {}
impl WireFloat for f32 {}

impl WorkerLink {
    pub fn connect(target: WorkerTarget, manifest_hash: String, remo: serde_json::Value) -> anyhow::Result<Self> {
        let hello = Hello { protocol: WORKER_PROTOCOL, manifest_hash, remo };
        let mut link = Self {
            target,
            hello,
            conn: None,
            local: None,
            spawns: 0,
            next_call_id: 1,
            shapes: HashMap::new(),
            ack: None,
            stats: LinkStats::default(),
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
        let mut conn: Box<dyn Connection> = match &self.target {
            WorkerTarget::Local(cfg) => {
                self.local = None; // reap a dead predecessor first
                let extra = if self.spawns == 0 { cfg.first_spawn_args.clone() } else { Vec::new() };
                let (worker, endpoint) = LocalWorker::spawn(cfg, &extra)?;
                self.spawns += 1;
                self.local = Some(worker);
                Box::new(endpoint)
            }
            WorkerTarget::Remote(addr) => connect_with_retry(addr)?,
        };
        let body = serde_json::to_vec(&self.hello)?;
        conn.send(&FrameHeader::bytes(FrameKind::Hello, body.len()), &body).context("sending the handshake")?;
        let frame = conn.recv(Some(HANDSHAKE_TIMEOUT)).context("waiting for the worker's handshake")?;
        let ack: HelloAck = match frame.kind {
            FrameKind::HelloAck => serde_json::from_slice(frame.payload()).context("bad handshake answer")?,
            FrameKind::Error => bail!("worker refused the session: {}", error_message(frame.payload())),
            k => bail!("worker answered the handshake with a {k:?} frame"),
        };
        drop(frame);
        if ack.manifest_hash != self.hello.manifest_hash {
            bail!("worker holds a different model ({}) than the CVM ({})", ack.manifest_hash, self.hello.manifest_hash);
        }
        self.shapes =
            ack.ops.iter().filter_map(|s| Op::from_code(s.op).map(|op| (OpId { layer: s.layer, op }, (s.d_in, s.d_out)))).collect();
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

    /// The worker's own busy time per call kind since it started (a Ping;
    /// its Pong carries the figures). A respawned worker starts again at 0.
    pub fn worker_busy(&mut self) -> anyhow::Result<WorkerBusy> {
        self.ensure_connected()?;
        let call_id = self.next_call_id;
        self.next_call_id += 1;
        let conn = self.conn.as_mut().expect("connected");
        conn.send(&FrameHeader::new(FrameKind::Ping).with_call(call_id, 0, 0, 0), &[]).context("sending a ping")?;
        for _ in 0..64 {
            let frame = conn.recv(Some(CALL_TIMEOUT)).context("waiting for the pong")?;
            if frame.call_id != call_id {
                continue;
            }
            anyhow::ensure!(frame.kind == FrameKind::Pong, "worker answered a ping with a {:?} frame", frame.kind);
            return serde_json::from_slice(frame.payload()).context("the worker's pong carries no busy-time report");
        }
        bail!("no pong with call id {call_id} among 64 frames")
    }

    /// `out = x · W_idᵀ` on the worker, rows chunked to fit the transport.
    pub fn matmul<T: WireFloat>(&mut self, id: OpId, kind: CallKind, x: &[T], rows: usize, out: &mut [T]) -> anyhow::Result<()> {
        let (d_in, d_out) = self.shape(id).ok_or_else(|| anyhow!("the worker does not serve {id}"))?;
        anyhow::ensure!(x.len() == rows * d_in && out.len() == rows * d_out, "{id}: {rows} rows do not match x/out sizes");
        let chunk = self.rows_per_frame::<T>(d_in, d_out);
        let t0 = Instant::now();
        for (xc, oc) in x.chunks(chunk * d_in).zip(out.chunks_mut(chunk * d_out)) {
            let bytes: &[u8] = bytemuck::cast_slice(xc);
            let c = Call { id, kind, rows: xc.len() / d_in, d_in, d_out };
            self.call_with_retry(c, &mut |buf| buf.copy_from_slice(bytes), &mut |vals: &[T]| oc.copy_from_slice(vals))?;
        }
        self.count(kind, rows, t0);
        Ok(())
    }

    /// The same product without intermediate buffers: `fill` writes the
    /// `rows × d_in` input straight into the outgoing frame and `take` reads
    /// the validated `rows × d_out` answer straight from the incoming one
    /// (a pad batch is tens of MB each way). Both run again when the call is
    /// retried. Returns `Ok(false)`, having called neither, when the rows do
    /// not fit one frame.
    pub fn matmul_in_place<T: WireFloat>(
        &mut self,
        id: OpId,
        kind: CallKind,
        rows: usize,
        fill: &mut dyn FnMut(&mut [T]),
        take: &mut dyn FnMut(&[T]),
    ) -> anyhow::Result<bool> {
        let (d_in, d_out) = self.shape(id).ok_or_else(|| anyhow!("the worker does not serve {id}"))?;
        if rows > self.rows_per_frame::<T>(d_in, d_out) {
            return Ok(false);
        }
        let t0 = Instant::now();
        let mut fill_bytes = |buf: &mut [u8]| match bytemuck::try_cast_slice_mut::<u8, T>(buf) {
            Ok(x) => fill(x),
            Err(_) => {
                // Payloads are 64-byte aligned on both transports; stay correct if not.
                let mut x = vec![T::zeroed(); buf.len() / std::mem::size_of::<T>()];
                fill(&mut x);
                buf.copy_from_slice(bytemuck::cast_slice(&x));
            }
        };
        self.call_with_retry(Call { id, kind, rows, d_in, d_out }, &mut fill_bytes, take)?;
        self.count(kind, rows, t0);
        Ok(true)
    }

    /// Rows of one op that fit a frame each way (at most 32 Ki).
    fn rows_per_frame<T>(&self, d_in: usize, d_out: usize) -> usize {
        let max_payload = self.conn.as_ref().map(|c| c.max_payload_len()).unwrap_or(64 << 20) as usize;
        let per_row = d_in.max(d_out) * std::mem::size_of::<T>() + 256;
        (max_payload / 2 / per_row).clamp(1, 1 << 15)
    }

    fn count(&mut self, kind: CallKind, rows: usize, t0: Instant) {
        let dt = t0.elapsed().as_secs_f64();
        self.stats.round_trip_s += dt;
        *self.stats.per_kind_s.entry(kind.name()).or_default() += dt;
        self.stats.calls += 1;
        self.stats.rows += rows as u64;
    }

    fn call_with_retry<T: WireFloat>(
        &mut self,
        c: Call,
        fill: &mut dyn FnMut(&mut [u8]),
        take: &mut dyn FnMut(&[T]),
    ) -> anyhow::Result<()> {
        let Call { id, .. } = c;
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
            match self.try_call(c, fill, take) {
                Ok(()) => return Ok(()),
                Err(Failure::Lost(e)) => {
                    warn!("{id}: worker lost ({e:#}); reconnecting and re-sending the call");
                    self.drop_connection();
                    last = Some(e);
                }
                Err(Failure::BadAnswer(e)) => {
                    warn!("{id}: rejected the worker's answer ({e:#}); retrying");
                    self.stats.retries += 1;
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("no attempt made"))).with_context(|| format!("{id}: the worker failed {MAX_ATTEMPTS} times"))
    }

    fn try_call<T: WireFloat>(&mut self, c: Call, fill: &mut dyn FnMut(&mut [u8]), take: &mut dyn FnMut(&[T])) -> Result<(), Failure> {
        let Call { id, kind, rows, d_in, d_out } = c;
        let call_id = self.next_call_id;
        self.next_call_id += 1;
        let conn = self.conn.as_mut().expect("connected");
        let header = FrameHeader::matrix(FrameKind::Call, T::DTYPE, rows as u32, d_in as u32).with_call(
            call_id,
            id.layer,
            id.op.code(),
            kind.code(),
        );
        conn.send_with(header, fill).map_err(|e| Failure::Lost(e.into()))?;
        self.stats.bytes_sent += (rows * d_in * std::mem::size_of::<T>()) as u64;
        // Frames of earlier, abandoned attempts may still arrive: skip them.
        for _ in 0..64 {
            let frame = conn.recv(Some(CALL_TIMEOUT)).map_err(|e| Failure::Lost(e.into()))?;
            let h = *frame.header();
            if h.call_id != call_id {
                continue;
            }
            return match h.kind {
                FrameKind::Result => {
                    if h.dtype != T::DTYPE || h.rows as usize != rows || h.cols as usize != d_out {
                        return Err(Failure::BadAnswer(anyhow!(
                            "answer is {}×{} {:?}, expected {rows}×{d_out} {:?}",
                            h.rows,
                            h.cols,
                            h.dtype,
                            T::DTYPE
                        )));
                    }
                    let vals = frame.elements::<T>().map_err(|e| Failure::BadAnswer(e.into()))?;
                    if let Some(i) = talaria_gpu_worker::first_non_finite(&vals) {
                        return Err(Failure::BadAnswer(anyhow!("non-finite value at element {i} of the answer")));
                    }
                    take(&vals);
                    self.stats.bytes_received += frame.payload().len() as u64;
                    Ok(())
                }
                FrameKind::Error => Err(Failure::BadAnswer(anyhow!("worker error: {}", error_message(frame.payload())))),
                k => Err(Failure::BadAnswer(anyhow!("unexpected {k:?} frame"))),
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

fn connect_with_retry(addr: &WorkerAddress) -> anyhow::Result<Box<dyn Connection>> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(50);
    loop {
        match addr.connect(Duration::from_secs(5)) {
            Ok(c) => return Ok(c),
            Err(e) if start.elapsed() < RECONNECT_WINDOW => {
                warn!("connecting to the worker at {}: {e}; retrying", addr.socket_addr_string());
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e).with_context(|| format!("cannot reach the worker at {}", addr.socket_addr_string())),
        }
    }
}

fn error_message(payload: &[u8]) -> String {
    serde_json::from_slice::<WorkerError>(payload).map(|e| e.message).unwrap_or_else(|_| String::from_utf8_lossy(payload).into_owned())
}
