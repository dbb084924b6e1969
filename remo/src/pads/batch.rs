//! The three stages of one pad batch, split so that the CVM's share can run
//! on any thread:
//!
//! 1. [`PreparedBatch::draw`]: Gaussian `R`, a fresh mixing `M` and
//!    `U = M·R` (CVM compute, any thread);
//! 2. [`PreparedBatch::exchange`]: the worker call, `U` in and `U·W` out
//!    (the thread that owns the worker link);
//! 3. [`AnsweredBatch::finish`]: `R·W = M⁻¹·(U·W)`, checked, and a uniformly
//!    random `usable` of the `N_p` rows kept as pads (any thread).

use std::time::{Duration, Instant};

use talaria_models::OpId;

use crate::error::RemoError;
use crate::mixing::butterfly::Mixing;
use crate::online::worker::{call_into_private, check_private_finite, CallKind, WorkerCall, WorkerMatmul};
use crate::pads::pad::{BatchStore, Pad};
use crate::pads::pad_buffers::PadBuffers;
use crate::pads::pool::RefillPhases;
use crate::pads::secure_rng::SecureRng;
use crate::pads::wipe::{wipe, SecretVec};
use crate::verify::{BatchVerdict, BatchVerifier, OpCheck};
use talaria_kernels::Float;

/// What a batch of one op is made of (public: the op's shape and σ).
#[derive(Clone, Debug)]
pub struct BatchShape {
    pub id: OpId,
    pub d_in: usize,
    pub d_out: usize,
    /// Rows of the batch, `N_p`.
    pub n_p: usize,
    /// Rows kept as pads.
    pub usable: usize,
    /// Per input channel, `κ·s_c`.
    pub sigma: Vec<f64>,
    pub mixing_rounds: usize,
}

/// Stage 1 done: `R`, `M` and `U = M·R`, ready to send.
pub struct PreparedBatch<P: Float> {
    shape: BatchShape,
    r: SecretVec<P>,
    mixing: Mixing,
    u: SecretVec<P>,
    phases: RefillPhases,
    buffers: PadBuffers<P>,
}

/// Stage 2 done: the worker's `U·W`, copied out of the transport (a worker
/// on shared memory cannot change it any more).
pub struct AnsweredBatch<P: Float> {
    shape: BatchShape,
    r: SecretVec<P>,
    mixing: Mixing,
    /// `U` as sent, zeroized and recycled by `finish` (off the thread
    /// that owns the link).
    u: SecretVec<P>,
    uw: SecretVec<P>,
    phases: RefillPhases,
    buffers: PadBuffers<P>,
    /// The exchange's wall time less the copy of `U` in (the copy of `U·W`
    /// out is the transport's check pass, inside the call).
    pub worker_time: Duration,
    /// The exchange's wall time.
    pub exchange_time: Duration,
}

/// How a finished batch is checked: here, against the op's own check
/// (which solves the reference from the op's first batch), or on another
/// thread against a read-only copy whose verdict the op accounts later.
pub enum Verify<'a> {
    Here(&'a mut OpCheck),
    Shared(&'a BatchVerifier),
}

/// Stage 3 done: checked pads, for the op's pool.
pub struct FinishedBatch<P: Float> {
    pub id: OpId,
    pub pads: Vec<Pad<P>>,
    /// `Some` when checked against a shared verifier: the pool must account
    /// it (and drop the pads if it is a rejection) before using them.
    pub verdict: Option<BatchVerdict>,
    pub phases: RefillPhases,
    pub worker_time: Duration,
    pub exchange_time: Duration,
    /// Rows of the batch and how many were kept.
    pub n_p: usize,
}

/// A buffer back to the recycler, zeroized first.
fn recycle<P: Float>(buffers: &PadBuffers<P>, v: SecretVec<P>) {
    let mut v = v.into_inner();
    wipe(&mut v);
    buffers.give_back(v);
}

impl<P: Float> PreparedBatch<P> {
    /// Draws `R ~ N(0, diag(σ²))` and a fresh `M`, and computes `U = M·R`.
    pub fn draw(shape: BatchShape, rng: &mut SecureRng, buffers: &PadBuffers<P>) -> Result<Self, RemoError> {
        let start = Instant::now();
        let (n_p, d_in) = (shape.n_p, shape.d_in);
        let mut r: SecretVec<P> = SecretVec::from(buffers.take(n_p * d_in));
        rng.fill_gaussian_rows(&mut r, &shape.sigma);
        let mixing = Mixing::sample(n_p, shape.mixing_rounds, rng)?;
        let drawn = Instant::now();
        let mut u: SecretVec<P> = SecretVec::from(buffers.take(n_p * d_in));
        mixing.apply_from(&r, &mut u, d_in)?;
        let phases = RefillPhases { draw: drawn - start, mix: drawn.elapsed(), ..RefillPhases::default() };
        Ok(Self { shape, r, mixing, u, phases, buffers: buffers.clone() })
    }

    pub fn id(&self) -> OpId {
        self.shape.id
    }

    /// Sends `U` and copies `U·W` out of the answer (on a retry, `U` is
    /// sent again).
    pub fn exchange(self, worker: &mut dyn WorkerMatmul) -> anyhow::Result<AnsweredBatch<P>> {
        let Self { shape, r, mixing, u, phases, buffers } = self;
        let (id, n_p, d_in, d_out) = (shape.id, shape.n_p, shape.d_in, shape.d_out);
        let mut uw: SecretVec<P> = SecretVec::from(buffers.take(n_p * d_out));
        let mut copy_in = Duration::ZERO;
        let asked = Instant::now();
        // `U·W` is copied out of the transport as it is checked finite (the
        // copy's time counts as the worker's).
        let sent = call_into_private::<P>(
            worker,
            WorkerCall { id, kind: CallKind::PadBatch, precision: P::PRECISION, rows: n_p, d_in, d_out },
            &mut |dst| {
                let t = Instant::now();
                dst.copy_from_slice(&u);
                copy_in += t.elapsed();
            },
            &mut uw,
        );
        let exchange_time = asked.elapsed();
        if let Err(e) = sent {
            recycle(&buffers, u);
            return Err(e.context(format!("{id}: pad batch")));
        }
        Ok(AnsweredBatch { shape, r, mixing, u, uw, phases, buffers, worker_time: exchange_time.saturating_sub(copy_in), exchange_time })
    }
}

impl<P: Float> AnsweredBatch<P> {
    pub fn id(&self) -> OpId {
        self.shape.id
    }

    /// Unmixes, checks, and keeps a uniformly random `usable` of the rows
    /// (in random order); the other rows are zeroized now, the kept ones
    /// when their last pad is dropped.
    pub fn finish(self, verify: Verify<'_>, rng: &mut SecureRng) -> anyhow::Result<FinishedBatch<P>> {
        let Self { shape, r, mixing, u, uw, mut phases, buffers, worker_time, exchange_time } = self;
        let (id, n_p, d_out) = (shape.id, shape.n_p, shape.d_out);
        let start = Instant::now();
        recycle(&buffers, u);
        let mut rw: SecretVec<P> = SecretVec::from(buffers.take(n_p * d_out));
        mixing.apply_inverse_from(&uw, &mut rw, d_out)?;
        recycle(&buffers, uw);
        drop(mixing);
        phases.unmix += start.elapsed();
        let checked = Instant::now();
        check_private_finite(id, CallKind::PadBatch, "the unmixed pads R·W", &rw)?;
        let verdict = match verify {
            Verify::Here(check) => {
                check.check_batch(&r, &rw, &shape.sigma)?;
                None
            }
            Verify::Shared(verifier) => Some(verifier.check(&r, &rw)?),
        };
        let kept = Instant::now();
        let mut order = Vec::with_capacity(n_p);
        rng.permutation(n_p, &mut order);
        let pads = BatchStore::into_pads(shape.d_in, d_out, r.into_inner(), rw.into_inner(), &order[..shape.usable], &buffers);
        wipe(&mut order);
        phases.check += kept - checked;
        phases.keep += kept.elapsed();
        Ok(FinishedBatch { id, pads, verdict, phases, worker_time, exchange_time, n_p })
    }
}
