//! The bytes of one weight file, either memory-mapped (the worker, local
//! mode, offline tools) or read with positional reads (the CVM: it never maps
//! a weight file, so it never has the worker's matrices in its address space;
//! docs/DESIGN.md §1, §8). Positional reads are counted, so tests can check
//! what the CVM actually read.

use std::borrow::Cow;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use memmap2::Mmap;
use sha2::{Digest, Sha256};

use crate::error::{ModelError, Result};

/// How a weight file is accessed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The whole file mapped read-only.
    Mapped,
    /// No mapping: only the byte ranges asked for are read.
    Positional,
}

/// Bytes read through positional reads, by purpose.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Headers: GGUF header, metadata and tensor table; safetensors headers.
    pub header_bytes: u64,
    /// Tensors read to be used (dequantized, copied).
    pub tensor_bytes: u64,
    /// Tensors streamed through SHA-256 in bounded chunks and dropped (the
    /// worker manifest hash of an unsplit file, see `Checkpoint::manifest_hash`).
    pub hashed_bytes: u64,
}

/// Shared counters of one checkpoint's positional reads.
#[derive(Debug, Default)]
pub(crate) struct ReadCounter {
    header: AtomicU64,
    tensor: AtomicU64,
    hashed: AtomicU64,
}

impl ReadCounter {
    pub(crate) fn stats(&self) -> ReadStats {
        ReadStats {
            header_bytes: self.header.load(Ordering::Relaxed),
            tensor_bytes: self.tensor.load(Ordering::Relaxed),
            hashed_bytes: self.hashed.load(Ordering::Relaxed),
        }
    }
}

/// Why bytes are read (for the counters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    Header,
    Tensor,
}

/// Chunk size of streamed hashing: the most tensor bytes held at once.
const HASH_CHUNK: usize = 1 << 20;

pub(crate) struct StoredFile {
    path: PathBuf,
    len: u64,
    bytes: Bytes,
    counter: Arc<ReadCounter>,
}

enum Bytes {
    Mapped(Mmap),
    Positional(File),
}

impl StoredFile {
    pub(crate) fn open(path: &Path, access: Access, counter: Arc<ReadCounter>) -> Result<Self> {
        let file = File::open(path).map_err(|e| ModelError::io(path, e))?;
        let len = file.metadata().map_err(|e| ModelError::io(path, e))?.len();
        let bytes = match access {
            // SAFETY: a read-only map of a file we never modify; a concurrent
            // truncation by another process is outside what a loader can defend against.
            Access::Mapped => Bytes::Mapped(unsafe { Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?),
            Access::Positional => Bytes::Positional(file),
        };
        Ok(Self { path: path.to_path_buf(), len, bytes, counter })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn access(&self) -> Access {
        match self.bytes {
            Bytes::Mapped(_) => Access::Mapped,
            Bytes::Positional(_) => Access::Positional,
        }
    }

    /// `len` bytes at `offset`; an error naming `what` when they lie past the end.
    pub(crate) fn read(&self, offset: u64, len: u64, purpose: Purpose, what: &str) -> Result<Cow<'_, [u8]>> {
        let end = offset.checked_add(len).filter(|&e| e <= self.len).ok_or_else(|| {
            ModelError::corrupt(
                &self.path,
                self.len,
                format!("file is truncated: {what} needs bytes {offset}..{} of {}", offset.saturating_add(len), self.len),
            )
        })?;
        match &self.bytes {
            Bytes::Mapped(m) => Ok(Cow::Borrowed(&m[offset as usize..end as usize])),
            Bytes::Positional(f) => {
                let n = usize::try_from(len).map_err(|_| ModelError::corrupt(&self.path, offset, format!("{what}: {len} bytes")))?;
                let mut buf = vec![0u8; n];
                f.read_exact_at(&mut buf, offset).map_err(|e| ModelError::io(&self.path, e))?;
                let counter = match purpose {
                    Purpose::Header => &self.counter.header,
                    Purpose::Tensor => &self.counter.tensor,
                };
                counter.fetch_add(len, Ordering::Relaxed);
                Ok(Cow::Owned(buf))
            }
        }
    }

    /// SHA-256 of `len` bytes at `offset`. Positional files are streamed in
    /// `HASH_CHUNK` pieces, so the bytes are never held whole.
    pub(crate) fn sha256(&self, offset: u64, len: u64, what: &str) -> Result<[u8; 32]> {
        if offset.checked_add(len).is_none_or(|e| e > self.len) {
            return Err(ModelError::corrupt(
                &self.path,
                self.len,
                format!("file is truncated: {what} needs bytes {offset}..{}", offset.saturating_add(len)),
            ));
        }
        let mut h = Sha256::new();
        match &self.bytes {
            Bytes::Mapped(m) => h.update(&m[offset as usize..(offset + len) as usize]),
            Bytes::Positional(f) => {
                let mut buf = vec![0u8; HASH_CHUNK.min(len as usize)];
                let mut at = offset;
                while at < offset + len {
                    let n = ((offset + len - at) as usize).min(buf.len());
                    f.read_exact_at(&mut buf[..n], at).map_err(|e| ModelError::io(&self.path, e))?;
                    h.update(&buf[..n]);
                    self.counter.hashed.fetch_add(n as u64, Ordering::Relaxed);
                    at += n as u64;
                }
            }
        }
        Ok(h.finalize().into())
    }
}
