//! Per-request caps that keep one hostile request from starving the rest
//! (flags of `talaria-serve`, shared with the handlers through `AppState`),
//! and the server-wide gates behind them: the bounded request queue and the
//! bounded pool of tokenizer threads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use talaria_engine::prefix_hash::CacheSalt;
use tokio::sync::Semaphore;

/// Most choices one request may ask for.
pub const MAX_N: usize = 32;
/// Most top logprobs per token.
pub const MAX_LOGPROBS: usize = 20;
/// Most stop token ids per request (each sampled token is looked up in them).
pub const MAX_STOP_TOKEN_IDS: usize = 1024;
/// Seconds a client refused for a full queue is told to wait (`Retry-After`).
pub const RETRY_AFTER_S: u32 = 1;
/// Most prompts tokenized at once (each on a blocking thread): more would
/// only take CPU from the engine thread.
const MAX_CONCURRENT_TOKENIZATIONS: usize = 4;

/// Limits on what one request may ask for, and on how many may wait.
#[derive(clap::Args, Debug, Clone)]
pub struct RequestLimits {
    /// Largest request body accepted, in bytes (413 above).
    #[arg(long, default_value_t = 4 << 20)]
    pub max_body_bytes: usize,
    /// Most stop strings per request (400 above).
    #[arg(long, default_value_t = 16)]
    pub max_stop_strings: usize,
    /// Longest stop string, in bytes (400 above). Every generated token is
    /// matched against each stop string, so this bounds that cost.
    #[arg(long, default_value_t = 1024)]
    pub max_stop_string_bytes: usize,
    /// Largest `max_tokens` / `max_completion_tokens` a request may ask for
    /// (400 above); also the default when a request gives none. Without it,
    /// only the context length bounds a completion.
    #[arg(long)]
    pub max_tokens_cap: Option<usize>,
    /// Longest prompt, in characters (chat: all messages together), refused
    /// with 400 before it is tokenized.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_prompt_chars: usize,
    /// Most prompts in one `/v1/completions` request (a list, as vLLM
    /// takes), refused with 400 above. Each prompt gets `n` choices, and
    /// every choice counts against `--max-waiting-requests`.
    #[arg(long, default_value_t = 64)]
    pub max_prompts_per_request: usize,
    /// Most sequences waiting for the engine: a request that arrives when
    /// this many wait gets 503 with `Retry-After` instead of queueing.
    #[arg(long, default_value_t = 256)]
    pub max_waiting_requests: usize,
    /// Prefix caching: the K/V of prompt blocks computed before is reused,
    /// so those rows are neither computed nor masked and sent again.
    /// `salted` caches only requests that give a `cache_salt`, each salt
    /// apart (one client cannot time whether another sent a prefix);
    /// `shared` also caches requests without one, all in one cache (a
    /// server with a single client); `off` caches nothing.
    #[arg(long, value_enum, default_value_t = PrefixCaching::Salted)]
    pub prefix_caching: PrefixCaching,
    /// Run the `chat_template` a chat request may send (vLLM's field)
    /// instead of refusing it with 400. It runs in the CVM bounded in size,
    /// work and output, but one template instruction can build a 100 MB
    /// string: allow it only for clients trusted with the server's memory
    /// (as vLLM's flag of the same name).
    #[arg(long)]
    pub trust_request_chat_template: bool,
    /// The server-wide state of these limits (not a flag).
    #[arg(skip)]
    pub gates: Arc<LimitGates>,
}

/// Longest `cache_salt`, in bytes.
pub const MAX_CACHE_SALT_BYTES: usize = 1024;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrefixCaching {
    Salted,
    Shared,
    Off,
}

impl PrefixCaching {
    /// The salt a request's blocks are cached under, from its `cache_salt`
    /// field (`None`: not cached). Tagged, so that no request salt equals
    /// the shared cache's.
    pub fn salt_for(self, requested: Option<&str>) -> Option<CacheSalt> {
        match (self, requested) {
            (Self::Off, _) | (Self::Salted, None) => None,
            (_, Some(s)) => Some(CacheSalt::new(&[b"request\0", s.as_bytes()].concat())),
            (Self::Shared, None) => Some(CacheSalt::new(b"shared")),
        }
    }
}

/// Server-wide state the limits need; one per server, shared by handlers.
#[derive(Debug)]
pub struct LimitGates {
    /// Sequences submitted to the engine and not finished yet.
    pub in_flight_seqs: Arc<AtomicUsize>,
    /// Permits for tokenizing on a blocking thread.
    pub tokenizers: Arc<Semaphore>,
}

impl Default for LimitGates {
    fn default() -> Self {
        Self { in_flight_seqs: Arc::default(), tokenizers: Arc::new(Semaphore::new(MAX_CONCURRENT_TOKENIZATIONS)) }
    }
}

/// Sequences admitted into the engine's queue by one request; gives its
/// count back as its choices finish, and all of it when dropped.
#[derive(Debug)]
pub struct QueueSlot {
    in_flight_seqs: Arc<AtomicUsize>,
    /// This request's sequences still counted in `in_flight_seqs`.
    held: AtomicUsize,
}

impl QueueSlot {
    /// Admits `n` sequences unless the queue is full. `waiting` and
    /// `running` are the engine's latest counts; sequences submitted since
    /// then (not yet seen by the engine) count as waiting too, so a burst
    /// cannot slip past the bound between two engine steps.
    pub fn admit(gates: &LimitGates, n: usize, waiting: usize, running: usize, max_waiting: usize) -> Option<Self> {
        let total = gates.in_flight_seqs.fetch_add(n, Ordering::AcqRel) + n;
        let slot = Self { in_flight_seqs: gates.in_flight_seqs.clone(), held: AtomicUsize::new(n) };
        // What waits ahead of this request: the engine's count, or every
        // other in-flight sequence it does not run, whichever is larger.
        // Refused: dropping `slot` gives the count back.
        let queued = waiting.max(total.saturating_sub(running + n));
        (queued < max_waiting).then_some(slot)
    }

    /// One sequence finished.
    pub fn release_one(&self) {
        self.release(1);
    }

    /// Gives back up to `n` of this request's sequences.
    fn release(&self, n: usize) {
        let mut released = 0;
        let _ = self.held.fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
            released = h.min(n);
            Some(h - released)
        });
        self.in_flight_seqs.fetch_sub(released, Ordering::AcqRel);
    }

    /// Every sequence of this request is over.
    pub fn release_all(&self) {
        self.release(usize::MAX);
    }

    #[cfg(test)]
    fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }
}

impl Drop for QueueSlot {
    fn drop(&mut self) {
        self.release_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_bound_holds_across_a_burst_and_frees_on_finish() {
        let gates = LimitGates::default();
        // Engine idle: the first is admitted; one the engine has not seen
        // yet is waiting (in its command channel), so a second is refused.
        let a = QueueSlot::admit(&gates, 1, 0, 0, 1).expect("first is admitted");
        assert!(QueueSlot::admit(&gates, 1, 0, 0, 1).is_none(), "a burst must not slip past the bound");
        assert_eq!(gates.in_flight_seqs.load(Ordering::Acquire), 1, "a refused request gives its count back");
        // The engine runs `a`: one more may wait, not two.
        let b = QueueSlot::admit(&gates, 1, 0, 1, 1).expect("second waits behind the first");
        assert!(QueueSlot::admit(&gates, 1, 1, 1, 1).is_none());
        assert!(QueueSlot::admit(&gates, 1, 0, 1, 1).is_none(), "stale engine counts do not hide unseen requests");
        a.release_one();
        a.release_one();
        assert_eq!(a.held(), 0);
        assert_eq!(gates.in_flight_seqs.load(Ordering::Acquire), 1, "released at most once");
        drop(a);
        drop(b);
        assert_eq!(gates.in_flight_seqs.load(Ordering::Acquire), 0);
        assert!(QueueSlot::admit(&gates, 4, 0, 0, 1).is_some(), "n choices of an idle server are admitted");
    }
}
