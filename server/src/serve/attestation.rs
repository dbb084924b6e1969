//! `GET /v1/attestation?nonce=HEX`: fresh evidence whose report data binds
//! the TLS key (SHA-256 of its SPKI) and the client's nonce, so a client
//! knows the report is not a replay and that the key it is talking to lives
//! in the attested CVM.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::json;
use talaria_attest::{Attester, ReportData};
use tokio::sync::Semaphore;

use super::error::ApiError;
use super::state::SharedState;

/// Nonce length bounds in bytes: long enough to be unguessable, short
/// enough to keep the request trivial.
const NONCE_BYTES: std::ops::RangeInclusive<usize> = 16..=64;

/// How long a request waits for its turn at the attester.
const QUEUE_WAIT: Duration = Duration::from_secs(10);

/// The attester and the identity it vouches for.
pub struct AttestationService {
    attester: Arc<dyn Attester>,
    cert_pem: String,
    spki_der: Vec<u8>,
    /// Hex SHA-256 of the SPKI (the report data's first half).
    pub key_sha256: String,
    /// One report at a time: configfs-tsm reports are slow and serialised
    /// by the kernel, and each one costs the host a firmware call.
    turn: Semaphore,
}

impl AttestationService {
    pub fn new(attester: Arc<dyn Attester>, cert_pem: String, spki_der: Vec<u8>) -> Self {
        let key_sha256 = hex::encode(ReportData::bind(&spki_der, None).key_hash());
        Self { attester, cert_pem, spki_der, key_sha256, turn: Semaphore::new(1) }
    }
}

/// The `nonce` parameter of a query string, decoded and bounds-checked.
fn parse_nonce(query: Option<&str>) -> Result<Vec<u8>, ApiError> {
    let hex_nonce = query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("nonce="))
        .ok_or_else(|| ApiError::bad_param("nonce", "missing ?nonce=HEX (16 to 64 random bytes, hex)"))?;
    let nonce = hex::decode(hex_nonce).map_err(|e| ApiError::bad_param("nonce", format!("nonce is not hex: {e}")))?;
    if !NONCE_BYTES.contains(&nonce.len()) {
        return Err(ApiError::bad_param(
            "nonce",
            format!("nonce is {} bytes; give {} to {}", nonce.len(), NONCE_BYTES.start(), NONCE_BYTES.end()),
        ));
    }
    Ok(nonce)
}

pub async fn attestation(State(st): State<SharedState>, RawQuery(query): RawQuery) -> Result<Json<serde_json::Value>, ApiError> {
    let Some(svc) = &st.attestation else {
        return Err(ApiError::not_found("no attestation: this server runs with --plain-http, so there is no TLS key to bind"));
    };
    let nonce = parse_nonce(query.as_deref())?;
    let _turn = match tokio::time::timeout(QUEUE_WAIT, svc.turn.acquire()).await {
        Ok(Ok(permit)) => permit,
        _ => return Err(too_busy()),
    };
    let data = ReportData::bind(&svc.spki_der, Some(&nonce));
    let attester = svc.attester.clone();
    let evidence = tokio::task::spawn_blocking(move || attester.attest(&data))
        .await
        .map_err(|e| ApiError::internal(format!("the attester panicked: {e}")))?
        .map_err(|e| {
            tracing::error!("attestation failed: {e}");
            ApiError::unavailable(format!("attestation failed: {e}"))
        })?;
    Ok(Json(json!({
        "evidence": evidence,
        "certificate": svc.cert_pem,
        "tls_key_sha256": svc.key_sha256,
        "nonce": hex::encode(&nonce),
    })))
}

fn too_busy() -> ApiError {
    ApiError { status: StatusCode::TOO_MANY_REQUESTS, kind: "server_error", ..ApiError::bad_request("attestation is busy; retry shortly") }
        .with_code("rate_limit_exceeded")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_must_be_hex_of_16_to_64_bytes() {
        let n16 = "ab".repeat(16);
        assert_eq!(parse_nonce(Some(&format!("nonce={n16}"))).unwrap().len(), 16);
        assert_eq!(parse_nonce(Some(&format!("x=1&nonce={}", "00".repeat(64)))).unwrap().len(), 64);
        for bad in [None, Some(""), Some("nonce="), Some("nonce=zz"), Some("nonce=abc"), Some(&*format!("nonce={}", "ab".repeat(15)))] {
            let e = parse_nonce(bad).unwrap_err();
            assert_eq!((e.status, e.param.as_deref()), (StatusCode::BAD_REQUEST, Some("nonce")), "{bad:?}");
        }
        assert!(parse_nonce(Some(&format!("nonce={}", "00".repeat(65)))).is_err());
    }
}
