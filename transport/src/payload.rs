//! Typed views of payload bytes: borrowed when aligned, copied otherwise.
//!
//! Payloads are little-endian on the wire; the crate refuses to build on
//! big-endian targets (see `lib.rs`), so an in-place view is exact.

use std::borrow::Cow;

use bytemuck::Pod;

use crate::error::{Result, TransportError};
use crate::frame::DType;

/// A payload element type and the dtype code that carries it.
pub trait Element: Pod {
    const DTYPE: DType;
}

impl Element for f64 {
    const DTYPE: DType = DType::F64;
}
impl Element for f32 {
    const DTYPE: DType = DType::F32;
}
impl Element for half::bf16 {
    const DTYPE: DType = DType::BF16;
}
impl Element for half::f16 {
    const DTYPE: DType = DType::F16;
}
impl Element for u8 {
    const DTYPE: DType = DType::U8;
}

/// Views `bytes` as `[T]`: zero copy when `bytes` is aligned for `T`,
/// else an element-wise copy. Fails if the length is not a whole number of
/// elements.
pub fn cast_payload<T: Pod>(bytes: &[u8]) -> Result<Cow<'_, [T]>> {
    let elem = std::mem::size_of::<T>();
    if elem == 0 || !bytes.len().is_multiple_of(elem) {
        return Err(TransportError::RaggedPayload { len: bytes.len(), elem_size: elem });
    }
    match bytemuck::try_cast_slice::<u8, T>(bytes) {
        Ok(view) => Ok(Cow::Borrowed(view)),
        Err(_) => Ok(Cow::Owned(bytes.chunks_exact(elem).map(bytemuck::pod_read_unaligned::<T>).collect())),
    }
}

/// Views a payload of dtype `dtype` as `[T]`, checking that `T` is what the
/// header says the payload holds.
pub fn typed_payload<T: Element>(dtype: DType, bytes: &[u8]) -> Result<Cow<'_, [T]>> {
    if dtype != T::DTYPE {
        return Err(TransportError::WrongDType { expected: T::DTYPE, found: dtype });
    }
    cast_payload(bytes)
}

/// The bytes to send for a slice of elements (no copy).
pub fn as_payload_bytes<T: Element>(elements: &[T]) -> &[u8] {
    bytemuck::cast_slice(elements)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_is_borrowed_unaligned_is_copied() {
        let values = [1.5f64, -2.0, 3.25];
        // 64-byte aligned storage, so offset 1 is surely misaligned for f64.
        let mut storage = crate::aligned::AlignedBuf::zeroed(8 * 3 + 1);
        storage.as_mut_slice()[1..].copy_from_slice(as_payload_bytes(&values));
        let unaligned = &storage.as_slice()[1..];
        let copied = cast_payload::<f64>(unaligned).unwrap();
        assert!(matches!(copied, Cow::Owned(_)));
        assert_eq!(&*copied, &values);

        let borrowed = typed_payload::<f64>(DType::F64, as_payload_bytes(&values)).unwrap();
        assert!(matches!(borrowed, Cow::Borrowed(_)));
        assert_eq!(&*borrowed, &values);
    }

    #[test]
    fn wrong_dtype_and_ragged_are_errors() {
        let values = [1.0f32, 2.0];
        let bytes = as_payload_bytes(&values);
        assert!(matches!(typed_payload::<f64>(DType::F32, bytes), Err(TransportError::WrongDType { .. })));
        assert!(matches!(cast_payload::<f32>(&bytes[..7]), Err(TransportError::RaggedPayload { len: 7, elem_size: 4 })));
    }
}
