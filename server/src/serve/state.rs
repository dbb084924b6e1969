//! What every handler shares: the engine handle, the tokenizer, the
//! served name, the metrics, and the edge's identity and credentials.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use talaria_engine::scheduler::EngineHandle;
use talaria_models::Tokenizer;

use super::attestation::AttestationService;
use super::auth::ApiKey;
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
    /// Fresh evidence bound to the TLS key (`/v1/attestation`); `None` with
    /// `--plain-http`, where there is no key to bind.
    pub attestation: Option<AttestationService>,
    /// `--api-key`: required on every route but /v1/attestation and
    /// /health (and /metrics, when `metrics_key` is set).
    pub api_key: Option<ApiKey>,
    /// `--metrics-key`: required on /metrics instead of the API key.
    pub metrics_key: Option<ApiKey>,
    /// How long a client gets to send a request body.
    pub body_timeout: Duration,
}

pub type SharedState = Arc<AppState>;

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
