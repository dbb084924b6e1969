//! Where a worker is: `shm:/dev/shm/<file>` or `tcp://host:port`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::connection::Connection;
use crate::error::{Result, TransportError};
use crate::shm_ring::ShmRing;
use crate::tcp::TcpConnection;

/// A parsed worker address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkerAddress {
    /// A shared-memory region file made by [`ShmRing::create`].
    Shm(PathBuf),
    /// A worker listening on TCP. `host` keeps IPv6 brackets (`[::1]`).
    Tcp { host: String, port: u16 },
}

impl WorkerAddress {
    /// Connects to (TCP) or opens (shm) the worker's end. `timeout` bounds
    /// the TCP connect.
    pub fn connect(&self, timeout: Duration) -> Result<Box<dyn Connection>> {
        Ok(match self {
            WorkerAddress::Shm(path) => Box::new(ShmRing::open(path)?),
            WorkerAddress::Tcp { .. } => Box::new(TcpConnection::connect(&self.socket_addr_string(), timeout)?),
        })
    }

    /// "host:port" for TCP addresses (empty for shm).
    pub fn socket_addr_string(&self) -> String {
        match self {
            WorkerAddress::Tcp { host, port } => format!("{host}:{port}"),
            WorkerAddress::Shm(_) => String::new(),
        }
    }
}

impl FromStr for WorkerAddress {
    type Err = TransportError;

    fn from_str(input: &str) -> Result<Self> {
        let bad = |reason: &str| TransportError::BadAddress { input: input.to_string(), reason: reason.to_string() };
        let input_trimmed = input.trim();
        if let Some(rest) = input_trimmed.strip_prefix("shm:") {
            // Accept shm:/path and shm:///path (URL style).
            let path = match rest.strip_prefix("//") {
                Some(p) if p.starts_with('/') => p,
                Some(_) => return Err(bad("use shm:/absolute/path or shm:///absolute/path")),
                None => rest,
            };
            if path.is_empty() {
                return Err(bad("missing the region file path"));
            }
            return Ok(WorkerAddress::Shm(PathBuf::from(path)));
        }
        if let Some(rest) = input_trimmed.strip_prefix("tcp://") {
            let rest = rest.strip_suffix('/').unwrap_or(rest);
            let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("expected tcp://host:port"))?;
            if host.is_empty() {
                return Err(bad("missing host"));
            }
            if host.contains(['/', '?', '#', '@']) || host.chars().any(char::is_whitespace) {
                return Err(bad("host contains a path, query, user or space"));
            }
            let bracketed = host.starts_with('[') && host.ends_with(']') && host.len() > 2;
            if host.contains(':') && !bracketed {
                return Err(bad("IPv6 hosts must be bracketed, e.g. tcp://[::1]:9000"));
            }
            let port: u16 = port.parse().map_err(|_| bad("port must be a number from 1 to 65535"))?;
            if port == 0 {
                return Err(bad("port must be a number from 1 to 65535"));
            }
            return Ok(WorkerAddress::Tcp { host: host.to_string(), port });
        }
        Err(bad("expected shm:/path/to/region or tcp://host:port"))
    }
}

impl fmt::Display for WorkerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkerAddress::Shm(path) => write!(f, "shm:{}", path.display()),
            WorkerAddress::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
        }
    }
}
