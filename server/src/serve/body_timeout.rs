//! Reading the request body under a deadline and a size cap, before any
//! handler runs: a client that trickles its body (slowloris) gets 408 and
//! frees its connection instead of holding a task forever.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::state::SharedState;

pub async fn read_body_in_time(State(st): State<SharedState>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let read = axum::body::to_bytes(body, st.limits.max_body_bytes);
    let bytes = match tokio::time::timeout(st.body_timeout, read).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) if is_length_limit(&e) => return too_large(st.limits.max_body_bytes),
        Ok(Err(e)) => return ApiError::bad_request(format!("cannot read the request body: {e}")).into_response(),
        Err(_) => return timed_out(st.body_timeout.as_secs_f64()),
    };
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

fn too_large(limit: usize) -> Response {
    let err =
        ApiError { status: StatusCode::PAYLOAD_TOO_LARGE, ..ApiError::bad_request(format!("the request body is over {limit} bytes")) };
    err.into_response()
}

fn timed_out(secs: f64) -> Response {
    let err = ApiError {
        status: StatusCode::REQUEST_TIMEOUT,
        ..ApiError::bad_request(format!("the request body did not arrive within {secs} s"))
    };
    let mut resp = err.into_response();
    // The rest of the body may still be on its way: do not reuse the connection.
    resp.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
    resp
}
