//! Runtime probe: is there a driver, how many devices, what are they.

use std::sync::Arc;

use cudarc::driver::sys::{CUdevice_attribute, CUresult};
use cudarc::driver::CudaContext;

use super::error::{catch_library_panic, CudaError, DriverContext};
use super::library::driver_present;

/// What the kernels need to know about a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    pub ordinal: usize,
    pub name: String,
    /// (major, minor), e.g. (9, 0) for H100.
    pub compute_capability: (i32, i32),
    pub sm_count: i32,
    pub total_mem_bytes: usize,
}

impl DeviceInfo {
    /// FP64 and bf16 `mma.sync` exist from sm_80 on.
    pub fn has_mma(&self) -> bool {
        self.compute_capability.0 >= 8
    }
}

/// Number of CUDA devices; `DriverNotFound` / `NoDevice` when there are none.
pub fn device_count() -> Result<usize, CudaError> {
    if !driver_present() {
        return Err(CudaError::DriverNotFound);
    }
    catch_library_panic("cuInit / cuDeviceGetCount", || match CudaContext::device_count() {
        Ok(0) => Err(CudaError::NoDevice),
        Ok(n) => Ok(n as usize),
        Err(e) if e.0 == CUresult::CUDA_ERROR_NO_DEVICE => Err(CudaError::NoDevice),
        Err(e) => Err(e).ctx("cuInit / cuDeviceGetCount"),
    })
}

/// Describes every device the driver reports.
pub fn probe_devices() -> Result<Vec<DeviceInfo>, CudaError> {
    let count = device_count()?;
    (0..count).map(|ordinal| open_device(ordinal).map(|(info, _)| info)).collect()
}

/// Opens (retains) the primary context of device `ordinal` and describes it.
pub(crate) fn open_device(ordinal: usize) -> Result<(DeviceInfo, Arc<CudaContext>), CudaError> {
    let count = device_count()?;
    if ordinal >= count {
        return Err(CudaError::NoSuchDevice { ordinal, count });
    }
    catch_library_panic("opening a CUDA device", || {
        let ctx = CudaContext::new(ordinal).ctx(format!("creating a context on device {ordinal}"))?;
        let info = DeviceInfo {
            ordinal,
            name: ctx.name().ctx("cuDeviceGetName")?,
            compute_capability: ctx.compute_capability().ctx("reading the compute capability")?,
            sm_count: ctx.attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT).ctx("reading the SM count")?,
            total_mem_bytes: ctx.total_mem().ctx("cuDeviceTotalMem")?,
        };
        Ok((info, ctx))
    })
}
