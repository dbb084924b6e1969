//! What every handler shares: the engine handle, the tokenizer, the
//! served name and the metrics.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use talaria_engine::scheduler::EngineHandle;
use talaria_models::Tokenizer;

use super::limits::RequestLimits;
use super::metrics::ServerMetrics;

pub struct AppState {
    pub engine: EngineHandle,
    pub tokenizer: Arc<Tokenizer>,
    pub model_name: String,
    pub metrics: ServerMetrics,
    pub limits: RequestLimits,
    /// Unix time the server started (the model's `created`).
    pub started: u64,
}

pub type SharedState = Arc<AppState>;

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
