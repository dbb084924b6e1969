use serde::{Deserialize, Serialize};

use crate::call::CallKind;

/// Calls served and seconds spent serving them, for one call kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KindBusy {
    pub calls: u64,
    pub busy_s: f64,
}

/// The worker's own time serving calls since it started, per call kind: the
/// payload of its answer to a Ping, so the CVM can split a step's time into
/// worker compute and transport exactly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerBusy {
    pub pad_batch: KindBusy,
    pub online: KindBusy,
    pub plain: KindBusy,
}

impl WorkerBusy {
    pub fn get(&self, kind: CallKind) -> KindBusy {
        match kind {
            CallKind::PadBatch => self.pad_batch,
            CallKind::Online => self.online,
            CallKind::Plain => self.plain,
        }
    }

    pub fn add(&mut self, kind: CallKind, seconds: f64) {
        let k = match kind {
            CallKind::PadBatch => &mut self.pad_batch,
            CallKind::Online => &mut self.online,
            CallKind::Plain => &mut self.plain,
        };
        k.calls += 1;
        k.busy_s += seconds;
    }

    /// Busy seconds over all kinds.
    pub fn total_s(&self) -> f64 {
        CallKind::ALL.iter().map(|&k| self.get(k).busy_s).sum()
    }
}
