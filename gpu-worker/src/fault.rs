//! Test-only fault injection (`--fault KIND@N`, hidden; built only with the
//! `fault-injection` feature): a backend wrapper that lets the CVM's fault
//! tests run against a real worker process that crashes or answers garbage
//! at call N of its session, or lies in a well-formed answer (the tampering
//! the CVM's answer checks must catch). Production builds do not carry it.

use talaria_kernels::{Float, Rows, RowsMut};
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
    /// One element of one row is off by 1e-3 of that row's norm.
    Element,
    /// Every row gets the same added vector (1e-3 of the rows' rms norm).
    Bias,
    /// The whole answer is scaled by 1 + 1e-3.
    Scale,
}

/// Size of the tampering faults, relative to the answer (for a masked call,
/// about κ times the true product).
const TAMPER: f64 = 1e-3;

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
            "element" => FaultKind::Element,
            "bias" => FaultKind::Bias,
            "scale" => FaultKind::Scale,
            other => return Err(format!("unknown fault {other:?} (exit, nan, error, element, bias, scale)")),
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
            FaultKind::Element | FaultKind::Bias | FaultKind::Scale => {
                self.inner.matmul(call, x, out.reborrow())?;
                match out {
                    RowsMut::F32(y) => tamper(y, call.d_out, self.fault.kind),
                    RowsMut::F64(y) => tamper(y, call.d_out, self.fault.kind),
                }
                Ok(())
            }
        }
    }
}

/// Changes a well-formed answer (`rows × d_out`) the way `kind` says.
fn tamper<T: Float>(y: &mut [T], d_out: usize, kind: FaultKind) {
    let rows = y.len() / d_out.max(1);
    if rows == 0 {
        return;
    }
    let norm = |r: &[T]| r.iter().map(|v| v.to_f64().powi(2)).sum::<f64>().sqrt();
    match kind {
        FaultKind::Element => {
            let row = &mut y[(rows / 2) * d_out..(rows / 2 + 1) * d_out];
            let delta = TAMPER * norm(row);
            let v = &mut row[d_out / 3];
            *v = T::from_f64(v.to_f64() + delta);
        }
        FaultKind::Bias => {
            let rms = (y.iter().map(|v| v.to_f64().powi(2)).sum::<f64>() / rows as f64).sqrt();
            let step = TAMPER * rms / (d_out as f64).sqrt();
            for row in y.chunks_exact_mut(d_out) {
                row.iter_mut().enumerate().for_each(|(c, v)| *v = T::from_f64(v.to_f64() + if c % 2 == 0 { step } else { -step }));
            }
        }
        FaultKind::Scale => y.iter_mut().for_each(|v| *v = T::from_f64(v.to_f64() * (1.0 + TAMPER))),
        _ => {}
    }
}
