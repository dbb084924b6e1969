//! The compiled kernels of one context, launched on device buffers.

use std::collections::HashMap;
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaStream, CudaView, CudaViewMut, DevicePtr, DevicePtrMut, PushKernelArg};

use super::device_weight::{DeviceWeight, DeviceWeightData};
use super::error::{catch_library_panic, CudaError, DriverContext};
use super::plan::{choose_variant, entry_name, launch_config, GemmShape, KernelVariant, MatmulMode};
use super::probe::DeviceInfo;
use super::source::{compile_for_device, SOURCES};

/// Every Talaria GEMM kernel, compiled by NVRTC for one device and loaded
/// into its context.
pub struct GemmKernels {
    functions: HashMap<&'static str, CudaFunction>,
    compute_capability: (i32, i32),
    context: usize,
}

impl GemmKernels {
    /// Compiles both sources for `info`'s architecture and loads them.
    pub fn load(ctx: &Arc<CudaContext>, info: &DeviceInfo) -> Result<Self, CudaError> {
        let mut functions = HashMap::new();
        for source in SOURCES {
            let ptx = compile_for_device(&source, info.compute_capability)?;
            let what = format!("loading {} into the context", source.name);
            let module = catch_library_panic(&what, || ctx.load_module(ptx).ctx(&what))?;
            for &entry in source.entries {
                let f = module.load_function(entry).ctx(format!("looking up {entry}"))?;
                functions.insert(entry, f);
            }
        }
        Ok(Self { functions, compute_capability: info.compute_capability, context: ctx.cu_ctx() as usize })
    }

    pub fn compute_capability(&self) -> (i32, i32) {
        self.compute_capability
    }

    /// Exact mode: `y (rows × d_out) = x (rows × d_in) · Wᵀ` in f64. `variant`
    /// overrides the automatic choice (for checks); returns the one used.
    /// Queued on `stream`, not waited for.
    pub fn launch_exact(
        &self,
        stream: &Arc<CudaStream>,
        x: &CudaView<'_, f64>,
        w: &DeviceWeight,
        y: &mut CudaViewMut<'_, f64>,
        rows: usize,
        variant: Option<KernelVariant>,
    ) -> Result<KernelVariant, CudaError> {
        self.launch(MatmulMode::Exact, stream, x, w, y, rows, variant)
    }

    /// Fast (3 bf16 limbs) or plain (bf16) mode, f32 in and out (no
    /// tensor-core kernel for f16 or f32 W). As [`Self::launch_exact`] otherwise.
    #[allow(clippy::too_many_arguments)]
    pub fn launch_bf16(
        &self,
        mode: MatmulMode,
        stream: &Arc<CudaStream>,
        x: &CudaView<'_, f32>,
        w: &DeviceWeight,
        y: &mut CudaViewMut<'_, f32>,
        rows: usize,
        variant: Option<KernelVariant>,
    ) -> Result<KernelVariant, CudaError> {
        if mode == MatmulMode::Exact {
            return Err(CudaError::Shape("exact mode takes f64 activations".into()));
        }
        self.launch(mode, stream, x, w, y, rows, variant)
    }

    #[allow(clippy::too_many_arguments)]
    fn launch<T>(
        &self,
        mode: MatmulMode,
        stream: &Arc<CudaStream>,
        x: &CudaView<'_, T>,
        w: &DeviceWeight,
        y: &mut CudaViewMut<'_, T>,
        rows: usize,
        variant: Option<KernelVariant>,
    ) -> Result<KernelVariant, CudaError> {
        if w.context != self.context || stream.context().cu_ctx() as usize != self.context {
            return Err(CudaError::ForeignWeight);
        }
        let shape = GemmShape { rows, d_in: w.cols(), d_out: w.rows() };
        shape.validate()?;
        if x.len() < rows * shape.d_in || y.len() < rows * shape.d_out {
            return Err(CudaError::Shape(format!(
                "{rows} rows of {}→{} need {} inputs and {} outputs, buffers hold {} and {}",
                shape.d_in,
                shape.d_out,
                rows * shape.d_in,
                rows * shape.d_out,
                x.len(),
                y.len()
            )));
        }
        // The kernels' vector loads and paired stores assume 16-byte aligned
        // bases (fresh allocations are 256-byte aligned; a sub-view may not be).
        let x_addr = x.device_ptr(stream).0;
        let y_addr = y.device_ptr_mut(stream).0;
        if x_addr % 16 != 0 || y_addr % 16 != 0 {
            return Err(CudaError::Shape(format!("device buffers must start 16-byte aligned (x at {x_addr:#x}, y at {y_addr:#x})")));
        }
        let variant = variant.unwrap_or_else(|| choose_variant(mode, rows, self.compute_capability));
        if variant == KernelVariant::TensorCore && self.compute_capability.0 < 8 {
            return Err(CudaError::ArchTooOld {
                kernel: "the tensor-core GEMM",
                major: self.compute_capability.0,
                minor: self.compute_capability.1,
            });
        }
        if variant == KernelVariant::TensorCoreSm90 && self.compute_capability.0 < 9 {
            return Err(CudaError::ArchTooOld {
                kernel: "the sm_90 DMMA GEMM",
                major: self.compute_capability.0,
                minor: self.compute_capability.1,
            });
        }
        let name = entry_name(mode, variant, w.dtype())?;
        if rows == 0 {
            return Ok(variant);
        }
        let func = self.functions.get(name).ok_or_else(|| CudaError::Shape(format!("kernel {name} was not loaded")))?;
        let (m, n, k) = (rows as i32, shape.d_out as i32, shape.d_in as i32);
        let vec = i32::from(shape.vectorized());
        let cfg = launch_config(variant, shape);
        let mut builder = stream.launch_builder(func);
        builder.arg(x);
        match &w.data {
            DeviceWeightData::Half(d) => builder.arg(d),
            DeviceWeightData::F32(d) => builder.arg(d),
            DeviceWeightData::Blocks(d) => builder.arg(d),
        };
        builder.arg(y).arg(&m).arg(&n).arg(&k).arg(&vec);
        // SAFETY: the argument list matches the kernel signature
        // (const X*, const W*, Y*, int M, int N, int K, int vec), the element
        // types match the entry chosen for `mode` and `w.dtype()`, and the
        // buffer lengths were checked against M, N and K above.
        unsafe { builder.launch(cfg) }.ctx(format!("launching {name} ({rows}×{k}→{n})"))?;
        Ok(variant)
    }
}
