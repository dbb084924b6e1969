//! `CudaMatmul`: the host-facing CUDA backend. Owns a context, two streams,
//! the compiled kernels and reusable staging buffers; weights are uploaded
//! once as [`DeviceWeight`]s and every call copies activations in, runs one
//! kernel and copies the result out.

use std::ops::Range;
use std::sync::Arc;

use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{CudaContext, CudaStream, CudaView, CudaViewMut, DeviceRepr, ValidAsZeroBits};

use talaria_kernels::WeightMatrix;

use super::device_weight::DeviceWeight;
use super::error::{catch_library_panic, CudaError, DriverContext};
use super::gemm::GemmKernels;
use super::library::{ensure_nvrtc, NvrtcLocation};
use super::plan::{choose_variant, entry_name, MatmulMode};
use super::probe::{open_device, DeviceInfo};
use super::staging::{ensure, Staging};

/// Calls with at least this many rows are cut into chunks that alternate
/// between two streams, so that copying chunk i+1 in, multiplying chunk i and
/// copying chunk i−1 out overlap (the copies dominate: the output alone is
/// `d_out/d_in` times the input).
pub const PIPELINE_MIN_ROWS: usize = 256;
const PIPELINE_CHUNKS: usize = 4;

pub struct CudaMatmul {
    info: DeviceInfo,
    nvrtc: NvrtcLocation,
    // Field order is drop order: buffers and kernels before the streams and
    // the context they belong to.
    staging_f64: Option<Staging<f64>>,
    staging_f32: Option<Staging<f32>>,
    kernels: GemmKernels,
    streams: [Arc<CudaStream>; 2],
    ctx: Arc<CudaContext>,
}

impl CudaMatmul {
    /// Opens device `ordinal` and compiles the kernels for it. Fails with a
    /// typed error (no driver, no device, no NVRTC, …) so that callers can
    /// fall back to the CPU.
    pub fn new(ordinal: usize) -> Result<Self, CudaError> {
        let (info, ctx) = open_device(ordinal)?;
        let nvrtc = ensure_nvrtc()?;
        catch_library_panic("setting up the CUDA matmul backend", || {
            // Every call waits for its own work before returning and the
            // chunks in flight use disjoint buffer ranges, so cudarc's
            // per-buffer event tracking (which would serialize the two
            // streams) is not needed. Nothing was allocated in `ctx` yet.
            unsafe { ctx.disable_event_tracking() };
            let streams = [ctx.new_stream().ctx("creating stream 0")?, ctx.new_stream().ctx("creating stream 1")?];
            let kernels = GemmKernels::load(&ctx, &info)?;
            tracing::info!(device = %info.name, cc = ?info.compute_capability, "CUDA matmul ready");
            Ok(Self { info, nvrtc, staging_f64: None, staging_f32: None, kernels, streams, ctx })
        })
    }

    /// The first device, or `None` (with the reason logged) when CUDA is not
    /// usable here: the CPU fallback decision in one call.
    pub fn try_default() -> Option<Self> {
        match Self::new(0) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::info!("CUDA backend unavailable: {e}");
                None
            }
        }
    }

    pub fn device(&self) -> &DeviceInfo {
        &self.info
    }

    pub fn nvrtc_location(&self) -> &NvrtcLocation {
        &self.nvrtc
    }

    /// The kernels, for launching on device buffers (benchmarks, fused use).
    pub fn kernels(&self) -> &GemmKernels {
        &self.kernels
    }

    /// The stream weights are uploaded on; device-buffer launches may use it.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.streams[0]
    }

    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// Copies a weight matrix to the device (once; reuse the handle).
    pub fn upload_weight(&self, w: &WeightMatrix) -> Result<DeviceWeight, CudaError> {
        DeviceWeight::upload(&self.streams[0], w)
    }

    /// `out (rows × d_out) = x (rows × d_in) · Wᵀ` with f64 activations,
    /// products and sums (the masked "exact" mode). Any weight dtype.
    pub fn matmul_exact(&mut self, x: &[f64], rows: usize, w: &DeviceWeight, out: &mut [f64]) -> Result<(), CudaError> {
        let kernels = &self.kernels;
        run_pipelined(&self.ctx, &self.streams, &mut self.staging_f64, x, rows, w, out, |s, xv, yv, r| {
            kernels.launch_exact(s, xv, w, yv, r, None).map(drop)
        })
    }

    /// Whether a `mode` call of `rows` rows on `w` has a kernel on this
    /// device (the f32-activation modes have no tensor-core kernel for f16
    /// or f32 weights: callers run those on the CPU).
    pub fn takes(&self, mode: MatmulMode, rows: usize, w: &DeviceWeight) -> bool {
        entry_name(mode, choose_variant(mode, rows, self.info.compute_capability), w.dtype()).is_ok()
    }

    /// Fast masked mode: f32 activations as three bf16 limbs on the bf16
    /// tensor cores (bf16 or quant-block W), f32 accumulation.
    pub fn matmul_fast(&mut self, x: &[f32], rows: usize, w: &DeviceWeight, out: &mut [f32]) -> Result<(), CudaError> {
        self.matmul_bf16(MatmulMode::Fast, x, rows, w, out)
    }

    /// Unprotected baseline: activations rounded to bf16, bf16 tensor cores,
    /// f32 accumulation. As [`Self::matmul_fast`] for W.
    pub fn matmul_plain(&mut self, x: &[f32], rows: usize, w: &DeviceWeight, out: &mut [f32]) -> Result<(), CudaError> {
        self.matmul_bf16(MatmulMode::Plain, x, rows, w, out)
    }

    fn matmul_bf16(&mut self, mode: MatmulMode, x: &[f32], rows: usize, w: &DeviceWeight, out: &mut [f32]) -> Result<(), CudaError> {
        let kernels = &self.kernels;
        run_pipelined(&self.ctx, &self.streams, &mut self.staging_f32, x, rows, w, out, |s, xv, yv, r| {
            kernels.launch_bf16(mode, s, xv, w, yv, r, None).map(drop)
        })
    }
}

/// Rows per chunk: all of them for small calls, else about a quarter, in
/// whole 64-row tiles.
pub fn chunk_rows(rows: usize) -> usize {
    if rows < PIPELINE_MIN_ROWS {
        rows.max(1)
    } else {
        rows.div_ceil(PIPELINE_CHUNKS).div_ceil(64) * 64
    }
}

type Launch<'a, T> = dyn Fn(&Arc<CudaStream>, &CudaView<'_, T>, &mut CudaViewMut<'_, T>, usize) -> Result<(), CudaError> + 'a;

#[allow(clippy::too_many_arguments)]
fn run_pipelined<T: DeviceRepr + ValidAsZeroBits + Copy>(
    ctx: &Arc<CudaContext>,
    streams: &[Arc<CudaStream>; 2],
    slot: &mut Option<Staging<T>>,
    x: &[T],
    rows: usize,
    w: &DeviceWeight,
    out: &mut [T],
    launch: impl Fn(&Arc<CudaStream>, &CudaView<'_, T>, &mut CudaViewMut<'_, T>, usize) -> Result<(), CudaError>,
) -> Result<(), CudaError> {
    let (d_in, d_out) = (w.cols(), w.rows());
    let n_in = rows.checked_mul(d_in);
    let n_out = rows.checked_mul(d_out);
    if n_in != Some(x.len()) || n_out != Some(out.len()) {
        return Err(CudaError::Shape(format!(
            "{rows} rows of {d_in}→{d_out} need {} inputs and {} outputs, got {} and {}",
            rows.saturating_mul(d_in),
            rows.saturating_mul(d_out),
            x.len(),
            out.len()
        )));
    }
    if rows == 0 {
        return Ok(());
    }
    let staging = ensure(slot, ctx, &streams[0], x.len(), out.len())?;
    catch_library_panic("a CUDA matmul call", || {
        let result = issue_and_collect(streams, staging, x, rows, d_in, d_out, out, &launch);
        if result.is_err() {
            // Nothing may still be in flight into buffers we hand back.
            for s in streams {
                let _ = s.synchronize();
            }
        }
        result
    })
}

#[allow(clippy::too_many_arguments)]
fn issue_and_collect<T: DeviceRepr + ValidAsZeroBits + Copy>(
    streams: &[Arc<CudaStream>; 2],
    staging: &mut Staging<T>,
    x: &[T],
    rows: usize,
    d_in: usize,
    d_out: usize,
    out: &mut [T],
    launch: &Launch<'_, T>,
) -> Result<(), CudaError> {
    let Staging { host_in, host_out, dev_in, dev_out } = staging;
    let host_in = host_in.as_mut_slice().ctx("waiting for the pinned input buffer")?;
    let host_out = host_out.as_mut_slice().ctx("waiting for the pinned output buffer")?;
    let chunk = chunk_rows(rows);
    let mut pending: Vec<(cudarc::driver::CudaEvent, Range<usize>)> = Vec::new();
    for (i, r0) in (0..rows).step_by(chunk).enumerate() {
        let r1 = (r0 + chunk).min(rows);
        let stream = &streams[i % 2];
        let (xr, yr) = (r0 * d_in..r1 * d_in, r0 * d_out..r1 * d_out);
        host_in[xr.clone()].copy_from_slice(&x[xr.clone()]);
        stream.memcpy_htod(&host_in[xr.clone()], &mut dev_in.slice_mut(xr.clone())).ctx("copying activations to the device")?;
        launch(stream, &dev_in.slice(xr), &mut dev_out.slice_mut(yr.clone()), r1 - r0)?;
        stream.memcpy_dtoh(&dev_out.slice(yr.clone()), &mut host_out[yr.clone()]).ctx("copying results to the host")?;
        let done = stream.record_event(Some(CUevent_flags::CU_EVENT_DISABLE_TIMING)).ctx("recording a chunk event")?;
        pending.push((done, yr));
    }
    for (done, yr) in pending {
        done.synchronize().ctx("waiting for a matmul chunk")?;
        out[yr.clone()].copy_from_slice(&host_out[yr]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_calls_are_one_chunk_and_large_ones_about_four_tiles() {
        assert_eq!(chunk_rows(1), 1);
        assert_eq!(chunk_rows(255), 255);
        assert_eq!(chunk_rows(256), 64);
        assert_eq!(chunk_rows(512), 128);
        assert_eq!(chunk_rows(4096), 1024);
        assert_eq!(chunk_rows(300), 128); // 3 chunks: 128 + 128 + 44
    }
}
