//! Paged KV cache in CVM memory. Storage is one pool of fixed-size blocks per
//! layer; each sequence owns a `SeqBlocks` table whose blocks go back to the
//! free list on `Drop`, so a finished, cancelled or preempted sequence can
//! never leak cache memory.

use std::sync::{Arc, Mutex};

use talaria_kernels::cpu::{KernelError, PagedKv, PagedKvMut};
use talaria_models::LlamaConfig;

use crate::precision::Precision;

pub const DEFAULT_BLOCK_SIZE: usize = 16;

#[derive(Debug, thiserror::Error)]
#[error("KV cache full: {needed} more blocks needed, {free} free of {total}")]
pub struct KvFull {
    pub needed: usize,
    pub free: usize,
    pub total: usize,
}

/// Free-list of block ids shared by the pool and every `SeqBlocks`.
#[derive(Debug)]
struct FreeList {
    free: Vec<u32>,
    total: usize,
}

#[derive(Clone, Debug)]
pub struct BlockAllocator(Arc<Mutex<FreeList>>);

impl BlockAllocator {
    fn new(total: usize) -> Self {
        // Pop from the end: hand out low ids first (warm memory).
        Self(Arc::new(Mutex::new(FreeList { free: (0..total as u32).rev().collect(), total })))
    }

    pub fn free_blocks(&self) -> usize {
        self.0.lock().expect("allocator lock").free.len()
    }

    pub fn total_blocks(&self) -> usize {
        self.0.lock().expect("allocator lock").total
    }

    fn take(&self, n: usize) -> Result<Vec<u32>, KvFull> {
        let mut fl = self.0.lock().expect("allocator lock");
        if fl.free.len() < n {
            return Err(KvFull { needed: n, free: fl.free.len(), total: fl.total });
        }
        let at = fl.free.len() - n;
        Ok(fl.free.split_off(at))
    }

    fn give_back(&self, blocks: &mut Vec<u32>) {
        self.0.lock().expect("allocator lock").free.append(blocks);
    }
}

/// One sequence's block table. Dropping it frees its blocks.
#[derive(Debug)]
pub struct SeqBlocks {
    blocks: Vec<u32>,
    /// Tokens whose K/V are written.
    len: usize,
    block_size: usize,
    alloc: BlockAllocator,
}

impl SeqBlocks {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn block_table(&self) -> &[u32] {
        &self.blocks
    }

    /// Blocks still needed to hold `extra` more tokens.
    pub fn blocks_needed(&self, extra: usize) -> usize {
        (self.len + extra).div_ceil(self.block_size).saturating_sub(self.blocks.len())
    }

    /// Makes room for `extra` more tokens (all or nothing).
    pub fn reserve(&mut self, extra: usize) -> Result<(), KvFull> {
        let n = self.blocks_needed(extra);
        if n > 0 {
            self.blocks.extend(self.alloc.take(n)?);
        }
        Ok(())
    }

    /// Records that `n` more tokens were written (after a forward step).
    pub fn advance(&mut self, n: usize) {
        self.len += n;
        debug_assert!(self.len <= self.blocks.len() * self.block_size);
    }

    /// (block id, offset in block) of token position `pos`.
    pub fn slot(&self, pos: usize) -> (u32, usize) {
        (self.blocks[pos / self.block_size], pos % self.block_size)
    }
}

impl Drop for SeqBlocks {
    fn drop(&mut self) {
        self.alloc.give_back(&mut self.blocks);
    }
}

/// K and V storage for every layer: `[layer][block][offset][kv_head][head_dim]`
/// (K blocks transposed, see the attention kernel), in the activations'
/// precision.
pub struct KvPool {
    store: KvStore,
    pub block_size: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    alloc: BlockAllocator,
}

enum KvStore {
    F32 { k: Vec<Vec<f32>>, v: Vec<Vec<f32>> },
    F64 { k: Vec<Vec<f64>>, v: Vec<Vec<f64>> },
}

impl KvPool {
    /// An f32 pool of `num_blocks` blocks (see `with_precision`).
    pub fn new(cfg: &LlamaConfig, num_blocks: usize, block_size: usize) -> Self {
        Self::with_precision(cfg, num_blocks, block_size, Precision::F32)
    }

    /// A pool of `num_blocks` blocks for activations of `precision` (the
    /// backend's: `Linear::precision`). Memory is zero-initialised lazily
    /// by the OS, so an unused budget costs address space only.
    pub fn with_precision(cfg: &LlamaConfig, num_blocks: usize, block_size: usize, precision: Precision) -> Self {
        let per_layer = num_blocks * block_size * cfg.kv_dim();
        let layers = cfg.num_hidden_layers;
        let store = match precision {
            Precision::F32 => KvStore::F32 {
                k: (0..layers).map(|_| vec![0f32; per_layer]).collect(),
                v: (0..layers).map(|_| vec![0f32; per_layer]).collect(),
            },
            Precision::F64 => KvStore::F64 {
                k: (0..layers).map(|_| vec![0f64; per_layer]).collect(),
                v: (0..layers).map(|_| vec![0f64; per_layer]).collect(),
            },
        };
        Self { store, block_size, n_kv_heads: cfg.num_key_value_heads, head_dim: cfg.head_dim, alloc: BlockAllocator::new(num_blocks) }
    }

    /// Writes every page of the pools once, so that no later step pays a
    /// first-touch page fault (benchmarks; a server may prefer to pay at
    /// start-up too).
    pub fn prefault(&mut self) {
        fn touch<T: Default + Copy>(pools: &mut [Vec<T>]) {
            let stride = (4096 / std::mem::size_of::<T>()).max(1);
            for pool in pools {
                pool.iter_mut().step_by(stride).for_each(|v| *v = T::default());
            }
        }
        match &mut self.store {
            KvStore::F32 { k, v } => {
                touch(k);
                touch(v);
            }
            KvStore::F64 { k, v } => {
                touch(k);
                touch(v);
            }
        }
    }

    pub fn precision(&self) -> Precision {
        match self.store {
            KvStore::F32 { .. } => Precision::F32,
            KvStore::F64 { .. } => Precision::F64,
        }
    }

    /// Number of blocks that fit in `bytes` of memory.
    pub fn blocks_for_budget(cfg: &LlamaConfig, bytes: usize, block_size: usize, precision: Precision) -> usize {
        (bytes / (block_size * Self::bytes_per_token(cfg, precision))).max(1)
    }

    pub fn bytes_per_token(cfg: &LlamaConfig, precision: Precision) -> usize {
        2 * cfg.num_hidden_layers * cfg.kv_dim() * precision.bytes()
    }

    pub fn new_sequence(&self) -> SeqBlocks {
        SeqBlocks { blocks: Vec::new(), len: 0, block_size: self.block_size, alloc: self.alloc.clone() }
    }

    pub fn allocator(&self) -> &BlockAllocator {
        &self.alloc
    }

    /// Stores one token's K and V rows (`kv_dim` each) of `layer` in an f32
    /// pool. The pool layout is the attention kernel's (`PagedKvMut::write`).
    pub fn write(&mut self, layer: usize, block: u32, offset: usize, k: &[f32], v: &[f32]) -> Result<(), KernelError> {
        let (block_size, n_kv_heads, head_dim) = (self.block_size, self.n_kv_heads, self.head_dim);
        match &mut self.store {
            KvStore::F32 { k: kp, v: vp } => {
                PagedKvMut { k: &mut kp[layer], v: &mut vp[layer], block_size, n_kv_heads, head_dim }.write(block, offset, k, v)
            }
            KvStore::F64 { .. } => Err(mismatch(Precision::F64)),
        }
    }

    /// `write` for an f64 pool.
    pub fn write_f64(&mut self, layer: usize, block: u32, offset: usize, k: &[f64], v: &[f64]) -> Result<(), KernelError> {
        let (block_size, n_kv_heads, head_dim) = (self.block_size, self.n_kv_heads, self.head_dim);
        match &mut self.store {
            KvStore::F64 { k: kp, v: vp } => {
                PagedKvMut { k: &mut kp[layer], v: &mut vp[layer], block_size, n_kv_heads, head_dim }.write(block, offset, k, v)
            }
            KvStore::F32 { .. } => Err(mismatch(Precision::F32)),
        }
    }

    /// The f32 pools of `layer`.
    pub fn layer(&self, layer: usize) -> Result<PagedKv<'_>, KernelError> {
        match &self.store {
            KvStore::F32 { k, v } => Ok(self.view(&k[layer], &v[layer])),
            KvStore::F64 { .. } => Err(mismatch(Precision::F64)),
        }
    }

    /// The f64 pools of `layer`.
    pub fn layer_f64(&self, layer: usize) -> Result<PagedKv<'_, f64>, KernelError> {
        match &self.store {
            KvStore::F64 { k, v } => Ok(self.view(&k[layer], &v[layer])),
            KvStore::F32 { .. } => Err(mismatch(Precision::F32)),
        }
    }

    fn view<'a, T>(&self, k: &'a [T], v: &'a [T]) -> PagedKv<'a, T> {
        PagedKv { k, v, block_size: self.block_size, n_kv_heads: self.n_kv_heads, head_dim: self.head_dim }
    }
}

fn mismatch(pool: Precision) -> KernelError {
    KernelError::AttentionShape(format!("the KV pool holds {} values; the step's activations are of the other precision", pool.name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LlamaConfig {
        LlamaConfig {
            vocab_size: 16,
            hidden_size: 8,
            intermediate_size: 16,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            num_key_value_heads: 1,
            head_dim: 4,
            rms_norm_eps: 1e-5,
            rope_theta: 1e4,
            max_position_embeddings: 64,
            tie_word_embeddings: true,
        }
    }

    #[test]
    fn blocks_return_on_drop() {
        let pool = KvPool::new(&cfg(), 4, 4);
        let mut a = pool.new_sequence();
        a.reserve(9).unwrap(); // 3 blocks
        assert_eq!(pool.allocator().free_blocks(), 1);
        let mut b = pool.new_sequence();
        let err = b.reserve(5).unwrap_err();
        assert_eq!((err.needed, err.free), (2, 1));
        assert_eq!(pool.allocator().free_blocks(), 1, "failed reserve takes nothing");
        drop(a);
        assert_eq!(pool.allocator().free_blocks(), 4);
        b.reserve(5).unwrap();
        assert_eq!(b.block_table().len(), 2);
    }

    #[test]
    fn pools_hold_one_precision() {
        let mut pool = KvPool::with_precision(&cfg(), 2, 4, Precision::F64);
        assert_eq!(KvPool::bytes_per_token(&cfg(), Precision::F64), 2 * KvPool::bytes_per_token(&cfg(), Precision::F32));
        pool.write_f64(1, 0, 2, &[1.0, 2.0, 3.0, 4.0], &[5.0, 6.0, 7.0, 8.0]).unwrap();
        assert_eq!(pool.layer_f64(1).unwrap().v[8..12], [5.0, 6.0, 7.0, 8.0]);
        assert!(pool.write(0, 0, 0, &[0f32; 4], &[0f32; 4]).is_err());
        assert!(pool.layer(0).is_err());
    }

    #[test]
    fn reserve_is_incremental() {
        let pool = KvPool::new(&cfg(), 8, 4);
        let mut s = pool.new_sequence();
        s.reserve(3).unwrap();
        s.advance(3);
        assert_eq!(s.blocks_needed(1), 0);
        assert_eq!(s.blocks_needed(2), 1);
        s.reserve(2).unwrap();
        s.advance(2);
        assert_eq!(s.block_table().len(), 2);
        assert_eq!(s.slot(4).1, 0);
    }
}
