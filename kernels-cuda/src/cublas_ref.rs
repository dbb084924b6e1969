//! cuBLAS reference GEMMs (DGEMM and bf16 GemmEx), for checking and timing
//! the Talaria kernels against the vendor library.

use std::sync::Arc;

use cudarc::cublas::sys::{cublasComputeType_t, cublasGemmAlgo_t, cublasOperation_t, cudaDataType};
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{CudaStream, CudaView, CudaViewMut, DevicePtr, DevicePtrMut};

use super::error::{catch_library_panic, CudaError};
use super::library::cublas_present;

/// A cuBLAS handle bound to one stream.
pub struct CublasReference {
    blas: CudaBlas,
    stream: Arc<CudaStream>,
}

fn dims(rows: usize, d_in: usize, d_out: usize) -> Result<(i32, i32, i32), CudaError> {
    let cast = |v: usize| i32::try_from(v).map_err(|_| CudaError::Shape(format!("dimension {v} exceeds i32")));
    Ok((cast(rows)?, cast(d_in)?, cast(d_out)?))
}

fn check_len(what: &str, have: usize, need: usize) -> Result<(), CudaError> {
    if have < need {
        return Err(CudaError::Shape(format!("{what} holds {have} elements, needs {need}")));
    }
    Ok(())
}

impl CublasReference {
    pub fn new(stream: Arc<CudaStream>) -> Result<Self, CudaError> {
        if !cublas_present() {
            return Err(CudaError::CublasNotFound);
        }
        let blas = catch_library_panic("creating a cuBLAS handle", || {
            CudaBlas::new(stream.clone()).map_err(|e| CudaError::Cublas { context: "cublasCreate".into(), status: format!("{e:?}") })
        })?;
        Ok(Self { blas, stream })
    }

    /// `y (rows × d_out) = x (rows × d_in) · wᵀ`, all row-major f64 (w is
    /// `d_out × d_in`). In cuBLAS's column-major terms: yᵀ = op(w)·xᵀ with
    /// op = transpose.
    pub fn dgemm(
        &self,
        x: &CudaView<'_, f64>,
        w: &CudaView<'_, f64>,
        y: &mut CudaViewMut<'_, f64>,
        rows: usize,
        d_in: usize,
        d_out: usize,
    ) -> Result<(), CudaError> {
        let (m, k, n) = dims(rows, d_in, d_out)?;
        check_len("x", x.len(), rows * d_in)?;
        check_len("w", w.len(), d_in * d_out)?;
        check_len("y", y.len(), rows * d_out)?;
        let cfg = GemmConfig {
            transa: cublasOperation_t::CUBLAS_OP_T,
            transb: cublasOperation_t::CUBLAS_OP_N,
            m: n,
            n: m,
            k,
            alpha: 1.0f64,
            lda: k,
            ldb: k,
            beta: 0.0f64,
            ldc: n,
        };
        // SAFETY: buffer lengths were checked against the dimensions above.
        unsafe { self.blas.gemm(cfg, w, x, y) }.map_err(|e| CudaError::Cublas { context: "cublasDgemm".into(), status: format!("{e:?}") })
    }

    /// As [`Self::dgemm`] with bf16 `x` and `w` (raw bits) and f32 `y`,
    /// accumulated in f32 (`cublasGemmEx`, CUBLAS_COMPUTE_32F).
    pub fn gemm_bf16(
        &self,
        x: &CudaView<'_, u16>,
        w: &CudaView<'_, u16>,
        y: &mut CudaViewMut<'_, f32>,
        rows: usize,
        d_in: usize,
        d_out: usize,
    ) -> Result<(), CudaError> {
        let (m, k, n) = dims(rows, d_in, d_out)?;
        check_len("x", x.len(), rows * d_in)?;
        check_len("w", w.len(), d_in * d_out)?;
        check_len("y", y.len(), rows * d_out)?;
        let (alpha, beta) = (1.0f32, 0.0f32);
        let (w_ptr, _w_sync) = w.device_ptr(&self.stream);
        let (x_ptr, _x_sync) = x.device_ptr(&self.stream);
        let (y_ptr, _y_sync) = y.device_ptr_mut(&self.stream);
        // SAFETY: pointers come from live device buffers whose lengths were
        // checked against the dimensions; alpha/beta are host f32 as
        // CUBLAS_COMPUTE_32F requires.
        unsafe {
            cudarc::cublas::result::gemm_ex(
                *self.blas.handle(),
                cublasOperation_t::CUBLAS_OP_T,
                cublasOperation_t::CUBLAS_OP_N,
                n,
                m,
                k,
                (&alpha) as *const f32 as *const _,
                w_ptr as *const _,
                cudaDataType::CUDA_R_16BF,
                k,
                x_ptr as *const _,
                cudaDataType::CUDA_R_16BF,
                k,
                (&beta) as *const f32 as *const _,
                y_ptr as *mut _,
                cudaDataType::CUDA_R_32F,
                n,
                cublasComputeType_t::CUBLAS_COMPUTE_32F,
                cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(|e| CudaError::Cublas { context: "cublasGemmEx (bf16)".into(), status: format!("{e:?}") })
    }
}
