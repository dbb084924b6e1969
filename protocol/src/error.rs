use serde::{Deserialize, Serialize};

/// Body of an `Error` frame.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerError {
    pub message: String,
}

impl WorkerError {
    /// The message of an `Error` frame's payload (plain text if it is not
    /// the JSON body, so a misbehaving peer's text still shows).
    pub fn message_of(payload: &[u8]) -> String {
        serde_json::from_slice::<WorkerError>(payload).map(|e| e.message).unwrap_or_else(|_| String::from_utf8_lossy(payload).into_owned())
    }

    /// The JSON payload for `message`.
    pub fn payload(message: &str) -> Vec<u8> {
        serde_json::to_vec(&WorkerError { message: message.into() }).expect("a string serializes")
    }
}
