//! Test-only fault injection (`--fault KIND@N`, hidden): lets the CVM's
//! fault tests run against a real worker process that crashes or answers
//! garbage at call N of its session.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// The process exits abruptly (a crash).
    Exit,
    /// The answer is full of NaN.
    Nan,
    /// The answer has the wrong number of columns.
    Shape,
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
            "shape" => FaultKind::Shape,
            other => return Err(format!("unknown fault {other:?} (exit, nan, shape)")),
        };
        let at_call = n.parse().map_err(|_| format!("bad call index {n:?}"))?;
        Ok(Self { kind, at_call })
    }
}
