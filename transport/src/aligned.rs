//! A growable byte buffer whose start is 64-byte aligned, so payloads read
//! into it can be viewed as `&[f64]` / `&[f32]` without a copy.

use bytemuck::{Pod, Zeroable};

/// Alignment guaranteed for payloads (ring slots and receive buffers).
pub const PAYLOAD_ALIGN: usize = 64;

#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C, align(64))]
struct Block([u8; PAYLOAD_ALIGN]);

/// Bytes in 64-byte aligned storage. Growing zero-fills; shrinking keeps the
/// allocation for reuse.
#[derive(Clone, Default)]
pub struct AlignedBuf {
    blocks: Vec<Block>,
    len: usize,
}

impl AlignedBuf {
    pub fn new() -> Self {
        Self::default()
    }

    /// A zeroed buffer of `len` bytes.
    pub fn zeroed(len: usize) -> Self {
        let mut b = Self::new();
        b.resize(len);
        b
    }

    /// A buffer holding a copy of `bytes`.
    pub fn from_slice(bytes: &[u8]) -> Self {
        let mut b = Self::zeroed(bytes.len());
        b.as_mut_slice().copy_from_slice(bytes);
        b
    }

    /// Sets the length; bytes beyond the old allocation are zero, bytes
    /// within it keep whatever they held.
    pub fn resize(&mut self, len: usize) {
        let blocks = len.div_ceil(PAYLOAD_ALIGN);
        if blocks > self.blocks.len() {
            self.blocks.resize(blocks, Block::zeroed());
        }
        self.len = len;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_slice(&self) -> &[u8] {
        &bytemuck::cast_slice::<Block, u8>(&self.blocks)[..self.len]
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut::<Block, u8>(&mut self.blocks)[..self.len]
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBuf").field("len", &self.len).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_resizable() {
        let mut b = AlignedBuf::from_slice(&[1, 2, 3]);
        assert_eq!(b.as_slice(), &[1, 2, 3]);
        assert_eq!(b.as_slice().as_ptr() as usize % PAYLOAD_ALIGN, 0);
        b.resize(1000);
        assert_eq!(&b.as_slice()[..3], &[1, 2, 3]);
        assert!(b.as_slice()[3..].iter().all(|&x| x == 0));
        assert_eq!(b.as_slice().as_ptr() as usize % PAYLOAD_ALIGN, 0);
        b.resize(0);
        assert!(b.is_empty());
    }
}
