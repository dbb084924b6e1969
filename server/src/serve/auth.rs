//! `--api-key`: every route needs `Authorization: Bearer KEY` except
//! /health and /v1/attestation, which a client calls before it trusts the
//! server with anything, key included. An allow-list of open routes, so a
//! route added later is guarded. /metrics is not open (vLLM's is): its
//! counters give exact per-step row and sequence counts, which the row
//! buckets hide from the worker; `--metrics-key` gives it its own key.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::state::SharedState;

/// The key's SHA-256: comparing fixed-length digests in constant time
/// reveals neither the key's bytes nor its length through timing.
pub struct ApiKey {
    digest: [u8; 32],
}

impl ApiKey {
    pub fn new(key: &str) -> Self {
        Self { digest: Sha256::digest(key.as_bytes()).into() }
    }

    pub fn matches(&self, presented: &[u8]) -> bool {
        let d: [u8; 32] = Sha256::digest(presented).into();
        d.ct_eq(&self.digest).into()
    }
}

/// Whether `path` is behind the key.
fn protected(path: &str) -> bool {
    !matches!(path, "/health" | "/v1/attestation")
}

/// The token of an `Authorization: Bearer TOKEN` header.
fn bearer(req: &Request) -> Option<&[u8]> {
    let v = req.headers().get(header::AUTHORIZATION)?.as_bytes();
    let scheme = v.get(..7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then(|| v[7..].trim_ascii())
}

pub async fn require_api_key(State(st): State<SharedState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let key = if path == "/metrics" { st.metrics_key.as_ref().or(st.api_key.as_ref()) } else { st.api_key.as_ref() };
    if let Some(key) = key {
        if protected(path) && !bearer(&req).is_some_and(|t| key.matches(t)) {
            return unauthorized();
        }
    }
    next.run(req).await
}

fn unauthorized() -> Response {
    let err = ApiError {
        status: StatusCode::UNAUTHORIZED,
        ..ApiError::bad_request("Incorrect or missing API key: send `Authorization: Bearer <key>`.")
    }
    .with_code("invalid_api_key");
    let mut resp = err.into_response();
    resp.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_matches_only_itself() {
        let k = ApiKey::new("s3cret");
        assert!(k.matches(b"s3cret"));
        assert!(!k.matches(b"s3cre"));
        assert!(!k.matches(b"s3cret "));
        assert!(!k.matches(b""));
    }

    #[test]
    fn which_paths_need_the_key() {
        assert!(protected("/v1/completions"));
        assert!(protected("/v1/models"));
        assert!(protected("/v1/attestation/"));
        assert!(!protected("/v1/attestation"));
        assert!(!protected("/health"));
        assert!(protected("/metrics"));
        // Tokenizing is work a stranger must not be able to queue.
        assert!(protected("/tokenize"));
        assert!(protected("/detokenize"));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let req = |v: &str| Request::builder().header(header::AUTHORIZATION, v).body(axum::body::Body::empty()).unwrap();
        assert_eq!(bearer(&req("Bearer abc")), Some(&b"abc"[..]));
        assert_eq!(bearer(&req("bearer  abc ")), Some(&b"abc"[..]));
        assert_eq!(bearer(&req("Basic abc")), None);
        assert_eq!(bearer(&req("Bear")), None);
    }
}
