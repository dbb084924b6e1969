//! Test-only fault injection (`--fault KIND@N`, hidden; built only with the
//! `fault-injection` feature): a backend wrapper that lets the CVM's fault
//! tests run against a real worker process that crashes or answers garbage
//! at call N of its session. Production builds do not carry it.

use talaria_kernels::{Rows, RowsMut};
use talaria_protocol::WorkerCall;
use tracing::warn;

use crate::backend::MatmulBackend;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// The process exits abruptly (a crash).
    Exit,
    /// The answer is full of NaN.
    Nan,
    /// The backend fails the call (the worker answers an error frame).
    Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    /// 1-based index of the call that misbehaves.
    pub at_call: u64,
}

impl std::str::FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (k, n) = s.split_once('@').ok_or("expected KIND@N, e.g. exit@40")?;
        let kind = match k {
            "exit" => FaultKind::Exit,
            "nan" => FaultKind::Nan,
            "error" => FaultKind::Error,
            other => return Err(format!("unknown fault {other:?} (exit, nan, error)")),
        };
        let at_call = n.parse().map_err(|_| format!("bad call index {n:?}"))?;
        Ok(Self { kind, at_call })
    }
}

/// A backend that misbehaves once, at its `fault.at_call`-th call.
pub struct FaultyBackend {
    inner: Box<dyn MatmulBackend>,
    fault: Fault,
    calls: u64,
}

impl FaultyBackend {
    pub fn new(inner: Box<dyn MatmulBackend>, fault: Fault) -> Self {
        Self { inner, fault, calls: 0 }
    }
}

impl MatmulBackend for FaultyBackend {
    fn name(&self) -> String {
        format!("{} (fault injection: {:?} at call {})", self.inner.name(), self.fault.kind, self.fault.at_call)
    }

    fn matmul(&mut self, call: &WorkerCall, x: Rows<'_>, mut out: RowsMut<'_>) -> anyhow::Result<()> {
        self.calls += 1;
        if self.calls != self.fault.at_call {
            return self.inner.matmul(call, x, out);
        }
        warn!("fault injection: {:?} at call {}", self.fault.kind, self.calls);
        match self.fault.kind {
            FaultKind::Exit => std::process::exit(3),
            FaultKind::Nan => {
                out.poison();
                Ok(())
            }
            FaultKind::Error => anyhow::bail!("injected failure at call {}", self.calls),
        }
    }
}
