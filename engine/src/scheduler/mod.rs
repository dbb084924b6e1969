//! Continuous batching: requests join and leave between steps, every step
//! runs all scheduled sequences (decodes first, then prefill chunks) through
//! one forward pass, and KV pressure is relieved by preemption (recompute).
//!
//! - `request`: what callers submit and the events they get back;
//! - `sequence`: one sequence's tokens, KV blocks, sampler and text state;
//! - `policy`: which sequences run in a step, and preemption;
//! - `step`: the forward pass and the sampling of one plan (shared with
//!   `generate()`);
//! - `engine`: one step = schedule, forward, sample, emit;
//! - `handle`: the engine thread and the channels to it;
//! - `stats`: counters the HTTP side reads without a round trip.
mod engine;
#[cfg(test)]
mod engine_tests;
mod handle;
mod policy;
#[cfg(test)]
mod policy_tests;
mod request;
mod sequence;
mod stats;
mod step;

pub use engine::{Engine, EngineLimits, StepReport};
pub use handle::EngineHandle;
pub(crate) use policy::Scheduler;
pub use policy::{PlannedChunk, SchedulerConfig, StepPlan};
pub use request::{EngineRequest, EventSink, FinishReason, RejectReason, RequestEvent, RequestId, SeqOutput};
pub(crate) use sequence::{SeqSpec, Sequence};
pub use stats::{EngineStats, StatsSnapshot};
pub(crate) use step::{advance_and_sample, forward_plan};
