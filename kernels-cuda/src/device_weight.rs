//! Weight matrices resident on the device, uploaded once.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream};

use talaria_kernels::{WeightDType, WeightMatrix};

use super::error::{catch_library_panic, CudaError, DriverContext};

/// Device storage of one weight matrix (bf16 and f16 as their raw bits,
/// GGUF quant blocks as their stored bytes).
pub(crate) enum DeviceWeightData {
    Half(CudaSlice<u16>),
    F32(CudaSlice<f32>),
    Blocks(CudaSlice<u8>),
}

/// A `d_out × d_in` row-major weight matrix on one device. Freed when dropped.
pub struct DeviceWeight {
    rows: usize,
    cols: usize,
    dtype: WeightDType,
    pub(crate) data: DeviceWeightData,
    /// The CUcontext it lives in, as an address (launches check it).
    pub(crate) context: usize,
}

impl std::fmt::Debug for DeviceWeight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceWeight").field("rows", &self.rows).field("cols", &self.cols).field("dtype", &self.dtype).finish()
    }
}

impl DeviceWeight {
    /// Copies `w` to the device (synchronously: the upload is finished when
    /// this returns).
    pub(crate) fn upload(stream: &Arc<CudaStream>, w: &WeightMatrix) -> Result<Self, CudaError> {
        let expected =
            w.rows.checked_mul(w.cols).ok_or_else(|| CudaError::Shape(format!("weight matrix {}×{} overflows", w.rows, w.cols)))?;
        let len = w.data.values();
        if len != expected || expected == 0 {
            return Err(CudaError::Shape(format!("weight matrix {}×{} holds {len} values", w.rows, w.cols)));
        }
        let what = format!("uploading a {}×{} {} weight", w.rows, w.cols, w.dtype().name());
        catch_library_panic(&what, || {
            // Quant blocks go up as stored: every kernel reads them in place.
            let (data, dtype) = talaria_kernels::match_weight_data!(&w.data,
                F32(v) => (DeviceWeightData::F32(stream.clone_htod(v).ctx(&what)?), WeightDType::F32),
                Bf16(v) => (DeviceWeightData::Half(stream.clone_htod(bytemuck::cast_slice::<_, u16>(v)).ctx(&what)?), WeightDType::Bf16),
                F16(v) => (DeviceWeightData::Half(stream.clone_htod(bytemuck::cast_slice::<_, u16>(v)).ctx(&what)?), WeightDType::F16),
                Blocks(blocks) => (DeviceWeightData::Blocks(stream.clone_htod(bytemuck::cast_slice::<_, u8>(blocks)).ctx(&what)?), w.dtype()),
            );
            stream.synchronize().ctx(&what)?;
            Ok(Self { rows: w.rows, cols: w.cols, dtype, data, context: stream.context().cu_ctx() as usize })
        })
    }

    /// `d_out`.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// `d_in`.
    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn dtype(&self) -> WeightDType {
        self.dtype
    }

    pub fn size_bytes(&self) -> usize {
        self.dtype.bytes_for(self.rows * self.cols).expect("rows are whole blocks")
    }
}
