//! Pinned host buffers and device buffers for the activations and results
//! of host-to-host matmul calls, grown on demand and reused.

use std::sync::Arc;

use cudarc::driver::sys::CU_MEMHOSTALLOC_WRITECOMBINED;
use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DeviceRepr, PinnedHostSlice, ValidAsZeroBits};

use super::error::{CudaError, DriverContext};

/// Buffers for one element type. The input staging buffer is write-combined
/// (the CPU only writes it); the output one is ordinary pinned memory (the
/// CPU reads it back).
pub(crate) struct Staging<T> {
    pub host_in: PinnedHostSlice<T>,
    pub host_out: PinnedHostSlice<T>,
    pub dev_in: CudaSlice<T>,
    pub dev_out: CudaSlice<T>,
}

impl<T: DeviceRepr + ValidAsZeroBits> Staging<T> {
    /// Buffers of at least `n_in` and `n_out` elements (rounded up to powers
    /// of two so that growing is rare). Synchronizes `stream` so that the
    /// device allocations are usable from any stream.
    pub fn allocate(ctx: &Arc<CudaContext>, stream: &Arc<CudaStream>, n_in: usize, n_out: usize) -> Result<Self, CudaError> {
        let n_in = n_in.max(1).next_power_of_two();
        let n_out = n_out.max(1).next_power_of_two();
        let what = |buf: &str, n: usize| format!("allocating the {buf} staging buffer ({n} × {} B)", std::mem::size_of::<T>());
        // SAFETY: the contents are uninitialised; every call writes the part
        // it reads (host_in by the CPU, host_out by a device copy).
        let host_in = unsafe { ctx.alloc_pinned_with_flags::<T>(n_in, CU_MEMHOSTALLOC_WRITECOMBINED) }.ctx(what("pinned input", n_in))?;
        let host_out = unsafe { ctx.alloc_pinned_with_flags::<T>(n_out, 0) }.ctx(what("pinned output", n_out))?;
        // SAFETY: as above, for the device buffers.
        let dev_in = unsafe { stream.alloc::<T>(n_in) }.ctx(what("device input", n_in))?;
        let dev_out = unsafe { stream.alloc::<T>(n_out) }.ctx(what("device output", n_out))?;
        stream.synchronize().ctx("waiting for staging allocations")?;
        Ok(Self { host_in, host_out, dev_in, dev_out })
    }

    pub fn fits(&self, n_in: usize, n_out: usize) -> bool {
        self.host_in.len() >= n_in && self.host_out.len() >= n_out
    }
}

/// Keeps `slot` holding buffers of at least `n_in`/`n_out` elements.
pub(crate) fn ensure<'a, T: DeviceRepr + ValidAsZeroBits>(
    slot: &'a mut Option<Staging<T>>,
    ctx: &Arc<CudaContext>,
    stream: &Arc<CudaStream>,
    n_in: usize,
    n_out: usize,
) -> Result<&'a mut Staging<T>, CudaError> {
    if !slot.as_ref().is_some_and(|s| s.fits(n_in, n_out)) {
        // Free the old buffers first: they may be large.
        *slot = None;
        *slot = Some(Staging::allocate(ctx, stream, n_in, n_out)?);
    }
    Ok(slot.as_mut().expect("staging buffers were just set"))
}
