//! Paged KV cache in CVM memory. Storage is one pool of fixed-size blocks per
//! layer; each sequence owns a `SeqBlocks` table whose blocks go back to the
//! free list on `Drop`, so a finished, cancelled or preempted sequence can
//! never leak cache memory.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

pub use crate::prefix_hash::BlockHash;

use talaria_kernels::cpu::{KernelError, PagedKv, PagedKvMut};
use talaria_kernels::{Float, Precision};
use talaria_models::ModelConfig;

pub const DEFAULT_BLOCK_SIZE: usize = 16;

#[derive(Debug, thiserror::Error)]
#[error("KV cache full: {needed} more blocks needed, {free} free of {total}")]
pub struct KvFull {
    pub needed: usize,
    pub free: usize,
    pub total: usize,
}

/// Free-list of block ids shared by the pool and every `SeqBlocks`, with
/// each block's reference count (blocks of a prompt are shared by the
/// choices forked from it), and the prefix cache: full blocks known by the
/// hash of everything up to their end (`BlockHash`), kept after their last
/// holder lets go until their memory is needed.
#[derive(Debug)]
struct FreeList {
    free: Vec<u32>,
    refs: Vec<u32>,
    total: usize,
    cached: HashMap<BlockHash, u32>,
    hash_of: Vec<Option<BlockHash>>,
    /// Cached blocks nobody holds, by release order (oldest evicted first).
    evictable: BTreeMap<u64, u32>,
    released_at: Vec<u64>,
    clock: u64,
}

impl FreeList {
    /// Forgets the oldest unheld cached block and hands it out.
    fn evict_oldest(&mut self) -> Option<u32> {
        let (_, b) = self.evictable.pop_first()?;
        if let Some(h) = self.hash_of[b as usize].take() {
            self.cached.remove(&h);
        }
        Some(b)
    }

    fn available(&self) -> usize {
        self.free.len() + self.evictable.len()
    }
}

#[derive(Clone, Debug)]
pub struct BlockAllocator(Arc<Mutex<FreeList>>);

impl BlockAllocator {
    fn new(total: usize) -> Self {
        // Pop from the end: hand out low ids first (warm memory).
        Self(Arc::new(Mutex::new(FreeList {
            free: (0..total as u32).rev().collect(),
            refs: vec![0; total],
            total,
            cached: HashMap::new(),
            hash_of: vec![None; total],
            evictable: BTreeMap::new(),
            released_at: vec![0; total],
            clock: 0,
        })))
    }

    /// Blocks a sequence can get: free ones and cached ones nobody holds.
    pub fn free_blocks(&self) -> usize {
        self.0.lock().expect("allocator lock").available()
    }

    /// Cached blocks nobody holds (counted in `free_blocks`).
    pub fn cached_idle_blocks(&self) -> usize {
        self.0.lock().expect("allocator lock").evictable.len()
    }

    pub fn total_blocks(&self) -> usize {
        self.0.lock().expect("allocator lock").total
    }

    fn take(&self, n: usize) -> Result<Vec<u32>, KvFull> {
        let mut fl = self.0.lock().expect("allocator lock");
        if fl.available() < n {
            return Err(KvFull { needed: n, free: fl.available(), total: fl.total });
        }
        let at = fl.free.len().saturating_sub(n);
        let mut taken = fl.free.split_off(at);
        while taken.len() < n {
            taken.push(fl.evict_oldest().expect("counted available"));
        }
        taken.iter().for_each(|&b| fl.refs[b as usize] = 1);
        Ok(taken)
    }

    /// One more holder of each of `blocks` (a cached block nobody held is
    /// no longer evictable).
    fn share(&self, blocks: &[u32]) {
        let mut fl = self.0.lock().expect("allocator lock");
        for &b in blocks {
            if fl.refs[b as usize] == 0 {
                let at = fl.released_at[b as usize];
                fl.evictable.remove(&at);
            }
            fl.refs[b as usize] += 1;
        }
    }

    /// The blocks cached under `hashes`, in order, up to the first miss;
    /// each gets one more holder.
    fn share_cached(&self, hashes: &[BlockHash]) -> Vec<u32> {
        let hits: Vec<u32> = {
            let fl = self.0.lock().expect("allocator lock");
            hashes.iter().map_while(|h| fl.cached.get(h).copied()).collect()
        };
        self.share(&hits);
        hits
    }

    /// Caches each block (full, held by the caller) under its hash, unless
    /// that content is cached already or the block is.
    fn cache(&self, blocks: &[u32], hashes: &[BlockHash]) {
        let mut fl = self.0.lock().expect("allocator lock");
        for (&b, &h) in blocks.iter().zip(hashes) {
            if fl.hash_of[b as usize].is_none() && !fl.cached.contains_key(&h) {
                fl.cached.insert(h, b);
                fl.hash_of[b as usize] = Some(h);
            }
        }
    }

    /// Drops one holder of each block; blocks nobody holds are free again.
    fn give_back(&self, blocks: &mut Vec<u32>) {
        let mut fl = self.0.lock().expect("allocator lock");
        for b in blocks.drain(..) {
            let r = &mut fl.refs[b as usize];
            *r -= 1;
            if *r > 0 {
                continue;
            }
            if fl.hash_of[b as usize].is_some() {
                let at = fl.clock;
                fl.clock += 1;
                fl.released_at[b as usize] = at;
                fl.evictable.insert(at, b);
            } else {
                fl.free.push(b);
            }
        }
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

/// K and V storage of one precision for every layer:
/// `[layer][block][offset][kv_head][head_dim]` (K blocks transposed, see the
/// attention kernel).
pub struct KvCache<T> {
    k: Vec<Vec<T>>,
    v: Vec<Vec<T>>,
    block_size: usize,
    n_kv_heads: usize,
    head_dim: usize,
}

impl<T: Float> KvCache<T> {
    /// Zero-initialised lazily by the OS, so an unused budget costs
    /// address space only.
    fn new(cfg: &ModelConfig, num_blocks: usize, block_size: usize) -> Self {
        let per_layer = num_blocks * block_size * cfg.kv_dim();
        let layers = cfg.num_hidden_layers;
        Self {
            k: (0..layers).map(|_| vec![T::default(); per_layer]).collect(),
            v: (0..layers).map(|_| vec![T::default(); per_layer]).collect(),
            block_size,
            n_kv_heads: cfg.num_key_value_heads,
            head_dim: cfg.head_dim,
        }
    }

    /// Stores one token's K and V rows (`kv_dim` each) of `layer`, in the
    /// attention kernel's layout (`PagedKvMut::write`).
    pub fn write(&mut self, layer: usize, block: u32, offset: usize, k: &[T], v: &[T]) -> Result<(), KernelError> {
        let (block_size, n_kv_heads, head_dim) = (self.block_size, self.n_kv_heads, self.head_dim);
        PagedKvMut { k: &mut self.k[layer], v: &mut self.v[layer], block_size, n_kv_heads, head_dim }.write(block, offset, k, v)
    }

    /// The pools of `layer`, for the attention kernel.
    pub fn layer(&self, layer: usize) -> PagedKv<'_, T> {
        PagedKv { k: &self.k[layer], v: &self.v[layer], block_size: self.block_size, n_kv_heads: self.n_kv_heads, head_dim: self.head_dim }
    }

    /// The K and V of `blocks`, every layer (layer-major, K then V).
    fn read_blocks(&self, blocks: &[u32]) -> Vec<T> {
        let len = self.block_size * self.n_kv_heads * self.head_dim;
        let mut out = Vec::with_capacity(2 * self.k.len() * blocks.len() * len);
        for (k, v) in self.k.iter().zip(&self.v) {
            for pool in [k, v] {
                for &b in blocks {
                    out.extend_from_slice(&pool[b as usize * len..][..len]);
                }
            }
        }
        out
    }

    /// Writes back what `read_blocks` read, into `blocks`.
    fn write_blocks(&mut self, blocks: &[u32], data: &[T]) {
        let len = self.block_size * self.n_kv_heads * self.head_dim;
        let mut chunks = data.chunks_exact(len);
        for (k, v) in self.k.iter_mut().zip(self.v.iter_mut()) {
            for pool in [k, v] {
                for &b in blocks {
                    pool[b as usize * len..][..len].copy_from_slice(chunks.next().expect("swapped data of the same shape"));
                }
            }
        }
    }

    /// Copies block `from` into block `to`, every layer's K and V.
    fn copy_block(&mut self, from: u32, to: u32) {
        let len = self.block_size * self.n_kv_heads * self.head_dim;
        let (from, to) = (from as usize * len, to as usize * len);
        for pool in self.k.iter_mut().chain(self.v.iter_mut()) {
            pool.copy_within(from..from + len, to);
        }
    }

    fn prefault(&mut self) {
        let stride = (4096 / std::mem::size_of::<T>()).max(1);
        for pool in self.k.iter_mut().chain(self.v.iter_mut()) {
            pool.iter_mut().step_by(stride).for_each(|v| *v = T::default());
        }
    }
}

/// The KV cache of a model run: blocks of the precision the linear backend
/// computes in (chosen at run time), and the allocator every sequence's
/// `SeqBlocks` draws from.
pub struct KvPool {
    precision: Precision,
    layers: usize,
    kv_dim: usize,
    /// A `KvCache<f32>` or `KvCache<f64>`, per `precision`.
    cache: Box<dyn Any + Send>,
    pub block_size: usize,
    alloc: BlockAllocator,
}

impl KvPool {
    /// An f32 pool of `num_blocks` blocks (see `with_precision`).
    pub fn new(cfg: &ModelConfig, num_blocks: usize, block_size: usize) -> Self {
        Self::with_precision(cfg, num_blocks, block_size, Precision::F32)
    }

    /// A pool of `num_blocks` blocks for activations of `precision` (the
    /// backend's: `Linear::precision`).
    pub fn with_precision(cfg: &ModelConfig, num_blocks: usize, block_size: usize, precision: Precision) -> Self {
        let cache: Box<dyn Any + Send> = match precision {
            Precision::F32 => Box::new(KvCache::<f32>::new(cfg, num_blocks, block_size)),
            Precision::F64 => Box::new(KvCache::<f64>::new(cfg, num_blocks, block_size)),
        };
        Self { precision, layers: cfg.num_hidden_layers, kv_dim: cfg.kv_dim(), cache, block_size, alloc: BlockAllocator::new(num_blocks) }
    }

    /// Writes every page of the pools once, so that no later step pays a
    /// first-touch page fault (benchmarks; a server may prefer to pay at
    /// start-up too).
    pub fn prefault(&mut self) {
        match self.precision {
            Precision::F32 => self.cache_mut::<f32>().map(KvCache::prefault),
            Precision::F64 => self.cache_mut::<f64>().map(KvCache::prefault),
        }
        .expect("the cache holds its own precision");
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The cache as `T`, or an error naming both precisions.
    pub fn cache_mut<T: Float>(&mut self) -> Result<&mut KvCache<T>, KernelError> {
        let held = self.precision;
        self.cache.downcast_mut().ok_or_else(|| mismatch(held, T::PRECISION))
    }

    /// Read-only [`cache_mut`](Self::cache_mut).
    pub fn cache<T: Float>(&self) -> Result<&KvCache<T>, KernelError> {
        self.cache.downcast_ref().ok_or_else(|| mismatch(self.precision, T::PRECISION))
    }

    /// Number of blocks that fit in `bytes` of memory.
    pub fn blocks_for_budget(cfg: &ModelConfig, bytes: usize, block_size: usize, precision: Precision) -> usize {
        (bytes / (block_size * Self::bytes_per_token(cfg, precision))).max(1)
    }

    pub fn bytes_per_token(cfg: &ModelConfig, precision: Precision) -> usize {
        2 * cfg.num_hidden_layers * cfg.kv_dim() * precision.bytes()
    }

    pub fn new_sequence(&self) -> SeqBlocks {
        SeqBlocks { blocks: Vec::new(), len: 0, block_size: self.block_size, alloc: self.alloc.clone() }
    }

    pub fn allocator(&self) -> &BlockAllocator {
        &self.alloc
    }

    /// Moves a sequence's K/V out of the pool into CVM memory (preemption
    /// without recomputing: nothing is sent to the worker again); its
    /// blocks go back.
    pub fn swap_out(&mut self, seq: SeqBlocks) -> SwappedKv {
        let written = seq.len.div_ceil(seq.block_size);
        let blocks = &seq.blocks[..written];
        let data: Box<dyn Any + Send> = match self.precision {
            Precision::F32 => Box::new(self.cache::<f32>().expect("own precision").read_blocks(blocks)),
            Precision::F64 => Box::new(self.cache::<f64>().expect("own precision").read_blocks(blocks)),
        };
        let bytes = self.swap_bytes(&seq);
        SwappedKv { len: seq.len, blocks: written, bytes, data }
    }

    /// Puts swapped K/V back into fresh blocks, or hands it back when the
    /// pool lacks them.
    pub fn swap_in(&mut self, swapped: SwappedKv) -> Result<SeqBlocks, SwappedKv> {
        let Ok(blocks) = self.alloc.take(swapped.blocks) else {
            return Err(swapped);
        };
        let seq = SeqBlocks { blocks, len: swapped.len, block_size: self.block_size, alloc: self.alloc.clone() };
        match self.precision {
            Precision::F32 => {
                self.cache_mut::<f32>().map(|c| c.write_blocks(&seq.blocks, swapped.data.downcast_ref::<Vec<f32>>().expect("f32 data")))
            }
            Precision::F64 => {
                self.cache_mut::<f64>().map(|c| c.write_blocks(&seq.blocks, swapped.data.downcast_ref::<Vec<f64>>().expect("f64 data")))
            }
        }
        .expect("the cache holds its own precision");
        Ok(seq)
    }

    /// Bytes `swap_out` would take for `seq`.
    pub fn swap_bytes(&self, seq: &SeqBlocks) -> usize {
        seq.len.div_ceil(seq.block_size) * self.block_size * 2 * self.n_layers_kv_dim() * self.precision.bytes()
    }

    /// Bytes the whole pool holds.
    pub fn bytes(&self) -> usize {
        self.alloc.total_blocks() * self.block_size * 2 * self.n_layers_kv_dim() * self.precision.bytes()
    }

    fn n_layers_kv_dim(&self) -> usize {
        self.layers * self.kv_dim
    }

    /// A second sequence with the same K/V as `seq` (a choice forked from a
    /// prompt computed once): its full blocks are shared, read-only from
    /// now on (a sequence only writes past its length), and its last,
    /// partly written block is copied, so each goes on writing its own.
    /// Without a free block for the copy, the fork holds the full blocks
    /// only (its length says how many tokens it must still compute).
    pub fn fork(&mut self, seq: &SeqBlocks) -> SeqBlocks {
        let full = seq.len / seq.block_size;
        let shared = seq.blocks[..full].to_vec();
        self.alloc.share(&shared);
        // Built first, so the shared references go back if the copy fails.
        let mut fork = SeqBlocks { blocks: shared, len: seq.len, block_size: seq.block_size, alloc: self.alloc.clone() };
        if seq.len > full * seq.block_size {
            let Ok(fresh) = self.alloc.take(1) else {
                fork.len = full * seq.block_size;
                return fork;
            };
            let fresh = fresh[0];
            fork.blocks.push(fresh);
            let from = seq.blocks[full];
            match self.precision {
                Precision::F32 => self.cache_mut::<f32>().map(|c| c.copy_block(from, fresh)),
                Precision::F64 => self.cache_mut::<f64>().map(|c| c.copy_block(from, fresh)),
            }
            .expect("the cache holds its own precision");
        }
        fork
    }
}

impl KvPool {
    /// A new sequence holding the cached blocks of the longest prefix of
    /// `hashes` (its length says how many tokens it must still compute).
    pub fn new_sequence_from_cache(&self, hashes: &[BlockHash]) -> SeqBlocks {
        let blocks = self.alloc.share_cached(hashes);
        SeqBlocks { len: blocks.len() * self.block_size, blocks, block_size: self.block_size, alloc: self.alloc.clone() }
    }

    /// Caches full, written blocks under their hashes (block `blocks[i]`
    /// under `hashes[i]`), for later sequences with the same prefix.
    pub fn cache_blocks(&self, blocks: &[u32], hashes: &[BlockHash]) {
        self.alloc.cache(blocks, hashes);
    }
}

/// A preempted sequence's K/V, held in CVM memory outside the pool.
pub struct SwappedKv {
    /// Tokens whose K/V it holds.
    pub len: usize,
    /// Blocks it needs back.
    pub blocks: usize,
    pub bytes: usize,
    /// A `Vec<f32>` or `Vec<f64>`, per the pool's precision.
    data: Box<dyn Any + Send>,
}

impl std::fmt::Debug for SwappedKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SwappedKv {{ len: {}, blocks: {}, bytes: {} }}", self.len, self.blocks, self.bytes)
    }
}

fn mismatch(held: Precision, wanted: Precision) -> KernelError {
    KernelError::AttentionShape(format!("the KV pool holds {} values, the step's activations are {}", held.name(), wanted.name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ModelConfig {
        ModelConfig { max_position_embeddings: 64, ..ModelConfig::llama(16, 8, 16, 2, 2, 1) }
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
        pool.cache_mut::<f64>().unwrap().write(1, 0, 2, &[1.0, 2.0, 3.0, 4.0], &[5.0, 6.0, 7.0, 8.0]).unwrap();
        assert_eq!(pool.cache::<f64>().unwrap().layer(1).v[8..12], [5.0, 6.0, 7.0, 8.0]);
        assert!(pool.cache_mut::<f32>().is_err());
    }

    #[test]
    fn a_fork_shares_full_blocks_copies_the_partial_one_and_frees_by_reference() {
        let mut pool = KvPool::new(&cfg(), 6, 4);
        let mut a = pool.new_sequence();
        a.reserve(6).unwrap(); // blocks 0 (full) and 1 (2 of 4 written)
        for pos in 0..6 {
            let (block, off) = a.slot(pos);
            let k = [pos as f32; 4];
            pool.cache_mut::<f32>().unwrap().write(0, block, off, &k, &k).unwrap();
        }
        a.advance(6);
        let b = pool.fork(&a);
        assert_eq!(b.len(), 6);
        assert_eq!(b.block_table()[0], a.block_table()[0], "full blocks are shared");
        assert_ne!(b.block_table()[1], a.block_table()[1], "the partial block is copied");
        assert_eq!(pool.allocator().free_blocks(), 3);
        let cache = pool.cache::<f32>().unwrap().layer(0);
        let (src, dst) = (a.block_table()[1] as usize * 16, b.block_table()[1] as usize * 16);
        assert_eq!(cache.v[src..src + 8], cache.v[dst..dst + 8]);
        drop(a);
        assert_eq!(pool.allocator().free_blocks(), 4, "the shared block stays with the fork");
        drop(b);
        assert_eq!(pool.allocator().free_blocks(), 6);
        // No free block for the copy: the fork holds the full blocks only.
        let mut c = pool.new_sequence();
        c.reserve(6 * 4 - 2).unwrap();
        c.advance(6 * 4 - 2);
        let d = pool.fork(&c);
        assert_eq!((d.len(), d.block_table().len()), (5 * 4, 5));
    }

    #[test]
    fn a_swapped_sequence_comes_back_with_its_kv() {
        let mut pool = KvPool::with_precision(&cfg(), 4, 4, Precision::F64);
        let write = |pool: &mut KvPool, seq: &SeqBlocks, n: usize, value: &dyn Fn(usize) -> f64| {
            for pos in 0..n {
                let (block, off) = seq.slot(pos);
                let k = [value(pos); 4];
                pool.cache_mut::<f64>().unwrap().write(1, block, off, &k, &k).unwrap();
            }
        };
        let mut a = pool.new_sequence();
        a.reserve(5).unwrap();
        write(&mut pool, &a, 5, &|pos| pos as f64 + 0.5);
        a.advance(5);
        let swapped = pool.swap_out(a);
        assert_eq!((swapped.len, swapped.blocks, pool.allocator().free_blocks()), (5, 2, 4));
        // The freed blocks are overwritten meanwhile, and the pool is full.
        let mut other = pool.new_sequence();
        other.reserve(16).unwrap();
        write(&mut pool, &other, 16, &|_| -1.0);
        let swapped = pool.swap_in(swapped).expect_err("no room: handed back");
        drop(other);
        let b = pool.swap_in(swapped).unwrap();
        assert_eq!(b.len(), 5);
        let cache = pool.cache::<f64>().unwrap().layer(1);
        for pos in 0..5 {
            let (block, off) = b.slot(pos);
            assert_eq!(cache.v[(block as usize * 4 + off) * 4], pos as f64 + 0.5);
        }
    }

    #[test]
    fn cached_blocks_outlive_their_sequence_until_their_memory_is_needed() {
        use crate::prefix_hash::{extend_block_hashes, CacheSalt};
        let pool = KvPool::new(&cfg(), 4, 4);
        let mut hashes = Vec::new();
        extend_block_hashes(&CacheSalt::new(b"a"), &[1, 2, 3, 4, 5, 6, 7, 8, 9], 4, &mut hashes);
        let mut a = pool.new_sequence();
        a.reserve(9).unwrap();
        a.advance(9);
        pool.cache_blocks(&a.block_table()[..2], &hashes);
        let kept = a.block_table()[..2].to_vec();
        drop(a);
        assert_eq!(pool.allocator().free_blocks(), 4, "idle cached blocks count as free");
        assert_eq!(pool.allocator().cached_idle_blocks(), 2);
        // A later sequence with the same prefix holds the same blocks.
        let b = pool.new_sequence_from_cache(&hashes);
        assert_eq!((b.len(), b.block_table()), (8, &kept[..]));
        assert_eq!(pool.allocator().cached_idle_blocks(), 0, "held again: not evictable");
        let mut theirs = Vec::new();
        extend_block_hashes(&CacheSalt::new(b"b"), &[1, 2, 3, 4, 5, 6, 7, 8], 4, &mut theirs);
        assert!(pool.new_sequence_from_cache(&theirs).is_empty(), "another client's salt finds nothing");
        drop(b);
        // Free blocks go first; then the oldest released cached block.
        let mut c = pool.new_sequence();
        c.reserve(4 * 3).unwrap();
        assert_eq!(pool.allocator().cached_idle_blocks(), 1);
        assert_eq!(pool.new_sequence_from_cache(&hashes).len(), 0, "the first block was evicted, so the prefix is gone");
        c.reserve(4 * 4).unwrap();
        assert_eq!(pool.allocator().free_blocks(), 0);
        assert!(pool.new_sequence().reserve(1).is_err());
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
