//! Per-request caps that keep one hostile request from starving the rest
//! (flags of `talaria-serve`, shared with the handlers through `AppState`).

/// Limits on what one request may ask for.
#[derive(clap::Args, Debug, Clone)]
pub struct RequestLimits {
    /// Largest request body accepted, in bytes (413 above).
    #[arg(long, default_value_t = 4 << 20)]
    pub max_body_bytes: usize,
}
