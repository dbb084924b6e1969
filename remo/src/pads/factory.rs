//! Pad production off the engine thread: a pool of CVM threads runs the
//! CVM stages of pad batches (drawing and mixing ahead of need, unmixing,
//! checking and keeping after the worker's answer), so the engine thread
//! only moves `U` into the frame and `U·W` out of it. With a GPU worker the
//! worker's share of a batch is microseconds and these stages are what is
//! left of pad production.
//!
//! Results come back over a channel in completion order; the pools take
//! them on the engine thread (`PadPools::collect`), where a finished
//! batch's verdict is accounted before any of its pads can be handed out.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use talaria_models::OpId;

use crate::error::RemoError;
use crate::pads::batch::{AnsweredBatch, BatchShape, FinishedBatch, PreparedBatch, Verify};
use crate::pads::pad_buffers::PadBuffers;
use crate::pads::secure_rng::SecureRng;
use crate::verify::BatchVerifier;
use talaria_kernels::Float;

/// The pad threads' nice value (Linux: per thread).
const PAD_THREAD_NICE: libc::c_int = 10;

/// One job's result.
pub enum FactoryOutput<P: Float> {
    Prepared(OpId, Result<PreparedBatch<P>, RemoError>),
    Finished(OpId, anyhow::Result<FinishedBatch<P>>),
}

pub struct PadFactory<P: Float> {
    threads: rayon::ThreadPool,
    tx: Sender<FactoryOutput<P>>,
    rx: Receiver<FactoryOutput<P>>,
    /// Keys each job's own generator.
    rng: SecureRng,
    buffers: PadBuffers<P>,
    /// Jobs sent whose result has not been received.
    outstanding: usize,
    /// The pad threads' kernel thread ids, for their CPU time.
    tids: Arc<Mutex<Vec<i32>>>,
}

impl<P: Float> PadFactory<P> {
    /// `threads` CVM threads (≥ 1) sharing the pools' recycled storage.
    pub fn new(threads: usize, rng: &mut SecureRng, buffers: PadBuffers<P>) -> Result<Self, RemoError> {
        let tids: Arc<Mutex<Vec<i32>>> = Arc::default();
        let started = Arc::clone(&tids);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("pad-{i}"))
            .start_handler(move |_| {
                // SAFETY: gettid has no preconditions.
                let tid = unsafe { libc::gettid() };
                // Background priority: pad production is paced ahead of
                // need, so the engine thread and (on shared cores) the
                // worker go first; a pool that runs short waits for these
                // threads, which then have the cores to themselves.
                // SAFETY: setpriority on this thread's own id; a failure
                // (not permitted) leaves the default priority.
                unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, PAD_THREAD_NICE) };
                started.lock().unwrap_or_else(|e| e.into_inner()).push(tid)
            })
            .build()
            .map_err(|e| RemoError::Param(format!("cannot start the pad threads: {e}")))?;
        let (tx, rx) = channel();
        Ok(Self { threads: pool, tx, rx, rng: rng.fork(), buffers, outstanding: 0, tids })
    }

    pub fn threads(&self) -> usize {
        self.threads.current_num_threads()
    }

    /// CPU time the pad threads have used (from the kernel's per-thread
    /// scheduler statistics; zero where it keeps none).
    pub fn cpu_time(&self) -> Duration {
        let tids = self.tids.lock().unwrap_or_else(|e| e.into_inner());
        let on_cpu_ns = |tid: &i32| {
            std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
                .unwrap_or(0)
        };
        Duration::from_nanos(tids.iter().map(on_cpu_ns).sum())
    }

    /// Jobs in progress.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Draws and mixes a batch of `shape` on the pad threads.
    pub fn prepare(&mut self, shape: BatchShape) {
        let (tx, buffers, mut rng) = (self.tx.clone(), self.buffers.clone(), self.rng.fork());
        self.outstanding += 1;
        self.threads.spawn(move || {
            let id = shape.id;
            // The engine may be gone (session over): the batch is dropped,
            // and its secrets zeroized with it.
            let _ = tx.send(FactoryOutput::Prepared(id, PreparedBatch::draw(shape, &mut rng, &buffers)));
        });
    }

    /// Unmixes, checks (against `verifier`) and keeps an answered batch on
    /// the pad threads.
    pub fn finish(&mut self, answered: AnsweredBatch<P>, verifier: BatchVerifier) {
        let (tx, mut rng) = (self.tx.clone(), self.rng.fork());
        self.outstanding += 1;
        self.threads.spawn(move || {
            let id = answered.id();
            let _ = tx.send(FactoryOutput::Finished(id, answered.finish(Verify::Shared(&verifier), &mut rng)));
        });
    }

    /// Reserves recycled storage of these lengths on the pad threads, in
    /// the background, split between them (`PadBuffers::reserve`, up to its
    /// cap: faulting pages in is the kernel's work, per thread); `done`
    /// hears once from each job. Returns the number of jobs.
    pub fn reserve(&self, lens: Vec<usize>, done: Sender<()>) -> usize {
        let jobs = self.threads().min(lens.len()).max(1);
        for j in 0..jobs {
            let (buffers, done) = (self.buffers.clone(), done.clone());
            let share: Vec<usize> = lens.iter().copied().skip(j).step_by(jobs).collect();
            self.threads.spawn(move || {
                for len in share {
                    if !buffers.reserve(len) {
                        break;
                    }
                }
                let _ = done.send(());
            });
        }
        jobs
    }

    /// A result if one is ready.
    pub fn try_next(&mut self) -> Option<FactoryOutput<P>> {
        let out = self.rx.try_recv().ok()?;
        self.outstanding -= 1;
        Some(out)
    }

    /// The next result, waiting for it (`None` when no job is in progress).
    pub fn wait_next(&mut self) -> Option<FactoryOutput<P>> {
        if self.outstanding == 0 {
            return None;
        }
        // Every job sends exactly once (a panic inside one would not: it
        // aborts with the panic message instead of hanging here).
        let out = self.rx.recv().ok()?;
        self.outstanding -= 1;
        Some(out)
    }
}
