//! How long the CVM waits for its worker: every call's wall time less the
//! CVM's own writing of the rows and reading of the answer. What is left of
//! a step without that wait is the CVM side of serving (what a GPU worker
//! cannot speed up).

use std::time::{Duration, Instant};

use talaria_kernels::{Rows, RowsMut};
use talaria_remo::{WorkerBusy, WorkerCall, WorkerMatmul};

/// `inner`, with the time its calls spend waiting added to `wait`.
pub struct WaitTimed<'a, W: ?Sized> {
    pub inner: &'a mut W,
    pub wait: &'a mut Duration,
}

impl<W: WorkerMatmul + ?Sized> WorkerMatmul for WaitTimed<'_, W> {
    fn call(&mut self, call: WorkerCall, fill: &mut dyn FnMut(RowsMut<'_>), take: &mut dyn FnMut(Rows<'_>)) -> anyhow::Result<()> {
        let (mut own_in, mut own_out) = (Duration::ZERO, Duration::ZERO);
        let started = Instant::now();
        let result = self.inner.call(
            call,
            &mut |rows| {
                let t = Instant::now();
                fill(rows);
                own_in += t.elapsed();
            },
            &mut |rows| {
                let t = Instant::now();
                take(rows);
                own_out += t.elapsed();
            },
        );
        *self.wait += started.elapsed().saturating_sub(own_in + own_out);
        result
    }

    fn worker_busy(&mut self) -> Option<WorkerBusy> {
        self.inner.worker_busy()
    }

    fn end_session(&mut self) {
        self.inner.end_session()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use talaria_models::{Op, OpId};
    use talaria_remo::CallKind;

    /// A worker that takes 20 ms to answer.
    struct Slow;

    impl WorkerMatmul for Slow {
        fn call(&mut self, c: WorkerCall, fill: &mut dyn FnMut(RowsMut<'_>), take: &mut dyn FnMut(Rows<'_>)) -> anyhow::Result<()> {
            let mut x = vec![0f64; c.rows * c.d_in];
            fill(RowsMut::F64(&mut x));
            std::thread::sleep(Duration::from_millis(20));
            take(Rows::F64(&vec![0f64; c.rows * c.d_out]));
            Ok(())
        }
    }

    #[test]
    fn the_wait_excludes_the_cvms_own_work() {
        let mut wait = Duration::ZERO;
        let call = WorkerCall {
            id: OpId::new(0, Op::O),
            kind: CallKind::Online,
            precision: talaria_kernels::Precision::F64,
            rows: 2,
            d_in: 3,
            d_out: 4,
        };
        let mut timed = WaitTimed { inner: &mut Slow, wait: &mut wait };
        timed
            .call(call, &mut |_| std::thread::sleep(Duration::from_millis(30)), &mut |_| std::thread::sleep(Duration::from_millis(30)))
            .unwrap();
        assert!(wait >= Duration::from_millis(20), "{wait:?}");
        assert!(wait < Duration::from_millis(50), "the 60 ms of filling and reading counted as waiting: {wait:?}");
    }
}
