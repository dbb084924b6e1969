//! The engine thread and its command channel. The thread owns the `Engine`
//! (model, KV pool, linear backend); callers submit, cancel and abort
//! through `EngineHandle`, and read counters from the shared stats.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::engine::{Engine, EngineLimits};
use super::request::{EngineRequest, EventSink, RejectReason, RequestId};
use super::stats::{EngineStats, StatsSnapshot};
use talaria_models::progress::{Progress, Unit};

/// Longest stretch of idle backend work before checking for new commands.
const IDLE_SLICE: Duration = Duration::from_millis(50);
/// How often the serving log line is written (while anything happens).
const LOG_EVERY: Duration = Duration::from_secs(10);

enum Command {
    // Boxed: a request is large, the other commands are a word or two.
    Submit { id: RequestId, req: Box<EngineRequest>, sink: EventSink },
    Cancel(RequestId),
    AbortAll(String),
    Shutdown,
}

pub struct EngineHandle {
    tx: Sender<Command>,
    next_id: AtomicU64,
    limits: EngineLimits,
    stats: Arc<EngineStats>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl EngineHandle {
    /// Moves the engine onto its own thread and starts serving commands.
    pub fn spawn(engine: Engine) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let limits = engine.limits();
        let stats = engine.stats();
        let thread = std::thread::Builder::new().name("talaria-engine".into()).spawn(move || run(engine, rx))?;
        Ok(Self { tx, next_id: AtomicU64::new(1), limits, stats, thread: Mutex::new(Some(thread)) })
    }

    pub fn limits(&self) -> &EngineLimits {
        &self.limits
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Checks and queues a request; its events go to `sink`.
    pub fn submit(&self, req: EngineRequest, sink: EventSink) -> Result<RequestId, RejectReason> {
        self.limits.check(&req)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.tx.send(Command::Submit { id, req: Box::new(req), sink }).map_err(|_| RejectReason::ShuttingDown)?;
        Ok(id)
    }

    /// Drops a request and frees its KV blocks (no further events).
    pub fn cancel(&self, id: RequestId) {
        let _ = self.tx.send(Command::Cancel(id));
    }

    /// Ends every request in flight with an `Aborted` event.
    pub fn abort_all(&self, reason: &str) {
        let _ = self.tx.send(Command::AbortAll(reason.to_string()));
    }

    /// Aborts what is in flight, stops the thread and waits for it.
    pub fn shutdown(&self) {
        self.shutdown_within(None);
    }

    /// Like `shutdown`, but gives up waiting after `limit` (a step stuck in
    /// the backend); returns whether the thread stopped.
    pub fn shutdown_within(&self, limit: Option<Duration>) -> bool {
        let _ = self.tx.send(Command::Shutdown);
        let Some(t) = self.thread.lock().map(|mut t| t.take()).unwrap_or(None) else { return true };
        if let Some(limit) = limit {
            let start = Instant::now();
            while !t.is_finished() {
                if start.elapsed() > limit {
                    tracing::error!("the engine thread did not stop within {limit:?}");
                    return false;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if t.join().is_err() {
            tracing::error!("the engine thread panicked");
        }
        true
    }
}

impl Drop for EngineHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn run(mut engine: Engine, rx: Receiver<Command>) {
    // This thread computes every step: make it a worker of its own pool.
    let _pool = talaria_kernels::cpu::pool_on_this_thread();
    let stats = engine.stats();
    let mut log = ServingLog::new(stats.snapshot());
    let mut fill = StartupFill::new(&engine);
    loop {
        log.maybe_write(&engine);
        // Busy: take what has arrived. Idle: let the backend work ahead
        // (pad refills) in short slices while nothing arrives, then block.
        let first = if engine.has_work() {
            rx.try_recv().ok()
        } else {
            let mut got = rx.try_recv().ok();
            while got.is_none() && engine.idle(IDLE_SLICE) {
                fill.update(&engine);
                got = rx.try_recv().ok();
            }
            fill.update(&engine);
            mark_ready(&engine);
            got.or_else(|| rx.recv().ok().or(Some(Command::Shutdown)))
        };
        let mut shutdown = false;
        for cmd in first.into_iter().chain(std::iter::from_fn(|| rx.try_recv().ok())) {
            match cmd {
                Command::Submit { id, req, sink } => engine.add_request(id, *req, sink),
                Command::Cancel(id) => engine.cancel_request(id),
                Command::AbortAll(reason) => engine.abort_all(&reason),
                Command::Shutdown => shutdown = true,
            }
            if shutdown {
                break;
            }
        }
        if shutdown {
            engine.abort_all("the server is shutting down");
            if let Some(summary) = engine.linear_summary() {
                tracing::info!("{} backend at shutdown:\n{summary}", engine.linear_name());
            }
            let s = stats.snapshot();
            tracing::info!(
                "preemptions {}: {} kept their K/V in CVM memory; {} rows were masked and sent again by recomputes (counted in the session total above)",
                s.preemptions_total,
                s.swaps_total,
                s.resent_rows_total
            );
            break;
        }
        if engine.has_work() {
            fill.update(&engine);
            mark_ready(&engine);
        }
        if engine.has_work() && catch_unwind(AssertUnwindSafe(|| engine.step())).is_err() {
            // A bug in a step must not take the server down: fail what was
            // in flight and keep serving.
            tracing::error!("engine step panicked; aborting the requests in flight");
            engine.abort_all("internal error in the engine step");
        }
    }
    stats.set_alive(false);
}

/// The periodic serving log line (as vLLM's): prompt and generation tokens/s
/// since the last line, running and waiting requests, KV-cache use and the
/// backend's pad-pool fill.
struct ServingLog {
    at: Instant,
    last: StatsSnapshot,
}

impl ServingLog {
    fn new(now: StatsSnapshot) -> Self {
        Self { at: Instant::now(), last: now }
    }

    fn maybe_write(&mut self, engine: &Engine) {
        let dt = self.at.elapsed();
        if dt < LOG_EVERY {
            return;
        }
        let now = engine.stats().snapshot();
        let busy = now.steps_total != self.last.steps_total || now.running_requests + now.waiting_requests > 0;
        if busy {
            let per_s = |a: u64, b: u64| (a - b) as f64 / dt.as_secs_f64();
            let kv = 100.0 * now.kv_used_blocks as f64 / now.kv_total_blocks.max(1) as f64;
            let pads = engine.background_fill().map(|f| format!(", pad pools {:.0} %", 100.0 * f)).unwrap_or_default();
            tracing::info!(
                "prompt {:.1} tok/s, generation {:.1} tok/s | running {} reqs, waiting {} reqs | KV cache {kv:.1} %{pads}",
                per_s(now.prompt_tokens_total, self.last.prompt_tokens_total),
                per_s(now.generation_tokens_total, self.last.generation_tokens_total),
                now.running_requests,
                now.waiting_requests,
            );
        }
        self.at = Instant::now();
        self.last = now;
    }
}

/// The progress of the backend's start-up work (ReMO: the first pad-pool
/// fill), shown until it is done.
struct StartupFill(Option<Progress>);

impl StartupFill {
    fn new(engine: &Engine) -> Self {
        let pending = engine.background_fill().is_some_and(|f| f < 1.0);
        Self(pending.then(|| Progress::new(format!("[{}] filling the pad pools", engine.linear_name()), 1000, Unit::Permille)))
    }

    fn update(&mut self, engine: &Engine) {
        let Some(progress) = &self.0 else { return };
        let fill = engine.background_fill().unwrap_or(1.0);
        progress.set((fill * 1000.0) as u64);
        if fill >= 1.0 {
            self.0 = None;
        }
    }
}

/// Ready once the backend's ahead-of-time work is full (ReMO: the pad pools
/// at their low-water marks; backends without any are ready at once):
/// checked while idle and between steps, so a server loaded from start-up
/// becomes ready too, and a failing refill does not count as done.
fn mark_ready(engine: &Engine) {
    let stats = engine.stats();
    if !stats.snapshot().ready && engine.background_fill().is_none_or(|f| f >= 1.0) && stats.set_ready() {
        tracing::info!("ready: the backend's start-up work is done (pad pools filled)");
    }
}
