//! Paged attention with grouped-query heads, for a continuous-batching
//! engine: every query row has its own block table and causal context.
//!
//! Pools: K is `[num_blocks][n_kv_heads][head_dim][block_size]` (each
//! block transposed, so one query's scores for a block's positions are a
//! vector of independent FMA chains over `head_dim`), V is
//! `[num_blocks][n_kv_heads][block_size][head_dim]`. The query heads that
//! share a KV head are computed together (each K value loaded once for all
//! of them). Every score, exponential, sum and output element is computed
//! in an order fixed by its own query and context alone, so a row's result
//! does not depend on the other queries in the call (batch-invariant).

#[cfg(target_arch = "x86_64")]
use super::attention_tile::Avx512;
use super::attention_tile::{block_scores, weighted_v, Baseline, TileIsa};
use super::error::KernelError;
use super::exp::{exp, sum_f64};
use super::features::CpuFeatures;
use super::parallel::threads;
use super::scratch::with_f32;
use rayon::prelude::*;

/// Below this many score·dim multiply-adds a call stays on one thread.
const PARALLEL_MACS: usize = 1 << 16;
/// From this many, a group of query heads may be split over threads (below,
/// handing half a group to another thread costs more than it saves).
const SPLIT_MACS: usize = 1 << 19;
/// Query heads scored at once against one KV head.
const HEADS_PER_PASS: usize = 4;

/// Read-only view of a layer's paged K and V pools (f32, or f64 for the
/// exact mode's `paged_attention_f64`; same layout). A block of K holds,
/// per KV head, its `head_dim × block_size` transpose; a block of V holds,
/// per KV head, its `block_size × head_dim` rows. So one KV head's part of
/// a block is one contiguous run in either pool: with V rows interleaved
/// by head, a head's weighted sum walked memory in strides of a whole
/// token and read a 512-2048-token SmolLM2 cache 18-30 % slower.
#[derive(Clone, Copy, Debug)]
pub struct PagedKv<'a, T = f32> {
    pub k: &'a [T],
    pub v: &'a [T],
    pub block_size: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

/// Mutable view of the same pools, for storing new tokens.
#[derive(Debug)]
pub struct PagedKvMut<'a, T = f32> {
    pub k: &'a mut [T],
    pub v: &'a mut [T],
    pub block_size: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

/// One query row: `n_heads × head_dim` values attending to positions
/// `window_start..context_len` of the sequence whose blocks are
/// `block_table` (`window_start` is 0 but in sliding-window layers).
#[derive(Clone, Copy, Debug)]
pub struct AttnQuery<'a, T = f32> {
    pub q: &'a [T],
    pub block_table: &'a [u32],
    pub context_len: usize,
    pub window_start: usize,
}

impl<T> PagedKv<'_, T> {
    pub(super) fn token_len(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Where KV head `g`'s V row for slot `slot` of block `block` starts.
    #[inline(always)]
    pub(super) fn v_row(&self, block: u32, slot: usize, g: usize) -> usize {
        v_row(block, slot, g, self.block_size, self.n_kv_heads, self.head_dim)
    }

    /// Blocks in the pools (after checking both pools agree).
    pub fn num_blocks(&self) -> Result<usize, KernelError> {
        check_pools(self.k.len(), self.v.len(), self.block_size, self.n_kv_heads, self.head_dim)
    }
}

impl<T: Copy> PagedKvMut<'_, T> {
    /// Stores one token's K and V rows (`n_kv_heads × head_dim` each) at
    /// slot `offset` of block `block`.
    pub fn write(&mut self, block: u32, offset: usize, k_row: &[T], v_row: &[T]) -> Result<(), KernelError> {
        let num_blocks = check_pools(self.k.len(), self.v.len(), self.block_size, self.n_kv_heads, self.head_dim)?;
        let token = self.n_kv_heads * self.head_dim;
        if k_row.len() != token || v_row.len() != token {
            return Err(KernelError::AttentionShape(format!("K/V rows have {} and {} values, not {token}", k_row.len(), v_row.len())));
        }
        if block as usize >= num_blocks {
            return Err(KernelError::BlockOutOfRange { block, num_blocks });
        }
        if offset >= self.block_size {
            return Err(KernelError::AttentionShape(format!("offset {offset} is beyond block size {}", self.block_size)));
        }
        let bs = self.block_size;
        let kt = &mut self.k[block as usize * bs * token..][..bs * token];
        for (d, &x) in k_row.iter().enumerate() {
            // Element d of head g sits in row g·hd + d of the transposed block.
            kt[d * bs + offset] = x;
        }
        let hd = self.head_dim;
        for (g, row) in v_row.chunks_exact(hd).enumerate() {
            let at = self::v_row(block, offset, g, bs, self.n_kv_heads, hd);
            self.v[at..at + hd].copy_from_slice(row);
        }
        Ok(())
    }

    pub fn as_ref(&self) -> PagedKv<'_, T> {
        PagedKv { k: self.k, v: self.v, block_size: self.block_size, n_kv_heads: self.n_kv_heads, head_dim: self.head_dim }
    }
}

/// Parts to split each group of `group` query heads into, for a call of
/// `work` multiply-adds over `pairs` (query, KV head) pairs: more than one
/// only when there are fewer pairs than threads (a lone decode query of a
/// one-KV-head model left all threads but one idle). Each head's sums are
/// the same whatever its part.
pub(super) fn head_parts(work: usize, pairs: usize, group: usize) -> usize {
    let mut parts = 1;
    while work >= SPLIT_MACS && pairs * parts < threads() && group.is_multiple_of(2 * parts) {
        parts *= 2;
    }
    parts
}

/// The V pool's layout (see `PagedKv`).
#[inline(always)]
fn v_row(block: u32, slot: usize, g: usize, block_size: usize, n_kv_heads: usize, head_dim: usize) -> usize {
    ((block as usize * n_kv_heads + g) * block_size + slot) * head_dim
}

fn check_pools(k_len: usize, v_len: usize, block_size: usize, n_kv_heads: usize, head_dim: usize) -> Result<usize, KernelError> {
    let block_len = block_size * n_kv_heads * head_dim;
    if block_len == 0 {
        return Err(KernelError::AttentionShape("block_size, n_kv_heads and head_dim must be non-zero".into()));
    }
    if k_len != v_len || !k_len.is_multiple_of(block_len) {
        return Err(KernelError::AttentionShape(format!(
            "K pool ({k_len}) and V pool ({v_len}) must be equal whole blocks of {block_len}"
        )));
    }
    Ok(k_len / block_len)
}

/// `out[i] = softmax(scale · q_h · Kᵀ) · V` for every query `i` and head `h`
/// (`out` is `queries.len() × n_heads × head_dim`); head `h` reads KV head
/// `h / (n_heads / n_kv_heads)`.
pub fn paged_attention(queries: &[AttnQuery], kv: &PagedKv, n_heads: usize, scale: f32, out: &mut [f32]) -> Result<(), KernelError> {
    let work = check_call(queries, kv, n_heads, out.len())?;
    let hd = kv.head_dim;
    let (group, n_kv) = (n_heads / kv.n_kv_heads, kv.n_kv_heads);
    let parallel = work >= PARALLEL_MACS;
    // One task per (query, KV head, part of its query heads): the heads are
    // adjacent in both the query row and the output row.
    let parts = head_parts(work, queries.len() * n_kv, group);
    let heads = group / parts;
    let avx512 = CpuFeatures::get().avx512;
    let task = |(idx, o): (usize, &mut [f32])| {
        let (qi, g, part) = (idx / (n_kv * parts), idx / parts % n_kv, idx % parts);
        let q = &queries[qi];
        let first = g * group + part * heads;
        let group = HeadGroup { q: &q.q[first * hd..(first + heads) * hd], query: q, kv, g, scale };
        group.attend(avx512, o);
    };
    if parallel {
        out.par_chunks_exact_mut(heads * hd).enumerate().for_each(task);
    } else {
        out.chunks_exact_mut(heads * hd).enumerate().for_each(task);
    }
    Ok(())
}

/// Validates a call's shapes and block tables; returns its multiply-adds.
pub(super) fn check_call<T>(queries: &[AttnQuery<T>], kv: &PagedKv<T>, n_heads: usize, out_len: usize) -> Result<usize, KernelError> {
    let num_blocks = kv.num_blocks()?;
    let hd = kv.head_dim;
    if n_heads == 0 || !n_heads.is_multiple_of(kv.n_kv_heads) {
        return Err(KernelError::AttentionShape(format!("{n_heads} query heads do not group over {} KV heads", kv.n_kv_heads)));
    }
    if out_len != queries.len() * n_heads * hd {
        return Err(KernelError::AttentionShape(format!("output has {out_len} values, not {} × {n_heads} × {hd}", queries.len())));
    }
    let mut work = 0usize;
    for (i, q) in queries.iter().enumerate() {
        if q.q.len() != n_heads * hd {
            return Err(KernelError::AttentionShape(format!("query {i} has {} values, not {n_heads} × {hd}", q.q.len())));
        }
        if q.window_start > 0 && q.window_start >= q.context_len {
            return Err(KernelError::AttentionShape(format!(
                "query {i}: window starts at {} of a {}-token context",
                q.window_start, q.context_len
            )));
        }
        let needed = q.context_len.div_ceil(kv.block_size);
        if q.block_table.len() < needed {
            return Err(KernelError::BlockTableTooShort { query: i, context_len: q.context_len, needed, have: q.block_table.len() });
        }
        if let Some(&block) = q.block_table[..needed].iter().find(|&&b| b as usize >= num_blocks) {
            return Err(KernelError::BlockOutOfRange { block, num_blocks });
        }
        work += q.context_len * n_heads * hd * 2;
    }
    Ok(work)
}

/// The query heads `q` (`n × head_dim`) of one query that share KV head
/// `g` (inputs validated by the caller).
struct HeadGroup<'a> {
    q: &'a [f32],
    query: &'a AttnQuery<'a>,
    kv: &'a PagedKv<'a>,
    g: usize,
    scale: f32,
}

impl HeadGroup<'_> {
    /// Their outputs (`out`: `n × head_dim`), the inner loops in AVX-512
    /// when `avx512` (the CPU must have it).
    fn attend(&self, avx512: bool, out: &mut [f32]) {
        let (hd, ctx) = (self.kv.head_dim, self.query.context_len);
        out.fill(0.0);
        if ctx == 0 {
            return;
        }
        with_f32(|scores| {
            // scores[j·ctx + p]: head j, position p.
            scores.resize(self.q.len() / hd * ctx, 0.0);
            // SAFETY: with `avx512` the caller checked the CPU has AVX-512F.
            unsafe { self.scores_in(avx512, scores) };
            self.softmax(scores);
            // SAFETY: as above.
            unsafe { self.values_in(avx512, scores, out) };
        });
    }

    /// `scores` in AVX-512 when `avx512` (the CPU must have it), else in
    /// the build's own ISA.
    unsafe fn scores_in(&self, avx512: bool, scores: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if avx512 {
            return self.scores_avx512(scores);
        }
        let _ = avx512;
        self.scores::<Baseline>(scores)
    }

    /// `values` in AVX-512 when `avx512` (the CPU must have it), else in
    /// the build's own ISA.
    unsafe fn values_in(&self, avx512: bool, weights: &[f32], out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if avx512 {
            return self.values_avx512(weights, out);
        }
        let _ = avx512;
        self.values::<Baseline>(weights, out)
    }

    /// `scores` and `values` compiled for AVX-512 (the intrinsics inline
    /// only into functions built with the feature).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn scores_avx512(&self, scores: &mut [f32]) {
        self.scores::<Avx512>(scores)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn values_avx512(&self, weights: &[f32], out: &mut [f32]) {
        self.values::<Avx512>(weights, out)
    }

    fn blocks(&self) -> &[u32] {
        &self.query.block_table[..self.query.context_len.div_ceil(self.kv.block_size)]
    }

    /// Scaled scores of every head against every position (the CPU must
    /// have `I`'s ISA).
    #[inline(always)]
    unsafe fn scores<I: TileIsa>(&self, scores: &mut [f32]) {
        let (hd, bs, token, g) = (self.kv.head_dim, self.kv.block_size, self.kv.token_len(), self.g);
        let (group, ctx, q, scale) = (self.q.len() / hd, self.query.context_len, self.q, self.scale);
        // Blocks wholly before the window are not scored (their weights stay 0).
        for (bi, &block) in self.blocks().iter().enumerate().skip(self.query.window_start / bs) {
            let kt = &self.kv.k[(block as usize * token + g * hd) * bs..][..hd * bs];
            let p0 = bi * bs;
            let n = bs.min(ctx - p0);
            for j0 in (0..group).step_by(HEADS_PER_PASS) {
                let qs = &q[j0 * hd..(j0 + HEADS_PER_PASS.min(group - j0)) * hd];
                let dst = &mut scores[j0 * ctx..];
                match qs.len() / hd {
                    1 => block_scores::<I, 1>(qs, kt, hd, bs, n, scale, dst, ctx, p0),
                    2 => block_scores::<I, 2>(qs, kt, hd, bs, n, scale, dst, ctx, p0),
                    3 => block_scores::<I, 3>(qs, kt, hd, bs, n, scale, dst, ctx, p0),
                    _ => block_scores::<I, HEADS_PER_PASS>(qs, kt, hd, bs, n, scale, dst, ctx, p0),
                }
            }
        }
    }

    /// Softmax weights, normalized before the weighted sum of V.
    fn softmax(&self, scores: &mut [f32]) {
        for s in scores.chunks_exact_mut(self.query.context_len) {
            let (before, s) = s.split_at_mut(self.query.window_start);
            before.fill(0.0);
            let m = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            if m == f32::NEG_INFINITY {
                s.fill(1.0);
            } else {
                s.iter_mut().for_each(|x| *x = exp(*x - m));
            }
            let inv = (1.0 / sum_f64(s)) as f32;
            s.iter_mut().for_each(|x| *x *= inv);
        }
    }

    /// The weighted sums of V (the CPU must have `I`'s ISA).
    #[inline(always)]
    unsafe fn values<I: TileIsa>(&self, weights: &[f32], out: &mut [f32]) {
        let (hd, bs, g, kv) = (self.kv.head_dim, self.kv.block_size, self.g, self.kv);
        let (group, ctx, blocks) = (self.q.len() / hd, self.query.context_len, self.blocks());
        let v_at = |p: usize| kv.v_row(blocks[p / bs], p % bs, g);
        for j0 in (0..group).step_by(HEADS_PER_PASS) {
            let nj = HEADS_PER_PASS.min(group - j0);
            let (w, o) = (&weights[j0 * ctx..(j0 + nj) * ctx], &mut out[j0 * hd..(j0 + nj) * hd]);
            match nj {
                1 => weighted_v::<I, 1>(w, ctx, kv.v, v_at, hd, o),
                2 => weighted_v::<I, 2>(w, ctx, kv.v, v_at, hd, o),
                3 => weighted_v::<I, 3>(w, ctx, kv.v, v_at, hd, o),
                _ => weighted_v::<I, HEADS_PER_PASS>(w, ctx, kv.v, v_at, hd, o),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    /// Naive attention over contiguous per-sequence K/V (`ctx × n_kv × hd`), in f64.
    #[allow(clippy::too_many_arguments)]
    fn reference(q: &[f32], k: &[f32], v: &[f32], ctx: usize, n_heads: usize, n_kv: usize, hd: usize, scale: f32) -> Vec<f64> {
        let mut out = vec![0f64; n_heads * hd];
        for h in 0..n_heads {
            let kvh = h / (n_heads / n_kv);
            let s: Vec<f64> = (0..ctx)
                .map(|p| (0..hd).map(|d| q[h * hd + d] as f64 * k[(p * n_kv + kvh) * hd + d] as f64).sum::<f64>() * scale as f64)
                .collect();
            let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for p in 0..ctx {
                for d in 0..hd {
                    out[h * hd + d] += e[p] / z * v[(p * n_kv + kvh) * hd + d] as f64;
                }
            }
        }
        out
    }

    struct Seq {
        k: Vec<f32>,
        v: Vec<f32>,
        table: Vec<u32>,
        len: usize,
    }

    #[test]
    fn matches_reference_across_blocks_with_gqa_and_is_batch_invariant() {
        // Blocks shorter than the score lanes, as long (the engine's 16),
        // longer; query-head groups of 3 and of 6 (beyond one pass).
        check_against_reference(4, 3, 16, 9, &[1, 9, 23]);
        check_against_reference(16, 3, 64, 9, &[5, 40]);
        check_against_reference(32, 2, 8, 12, &[70]);
    }

    fn check_against_reference(bs: usize, n_kv: usize, hd: usize, n_heads: usize, lens: &[usize]) {
        let num_blocks = lens.iter().map(|l| l.div_ceil(bs)).sum::<usize>() + 5;
        let token = n_kv * hd;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let mut k_pool = vec![0f32; num_blocks * bs * token];
        let mut v_pool = vec![0f32; num_blocks * bs * token];
        // Three sequences with scattered, interleaved blocks; lengths cross block edges.
        let mut free: Vec<u32> = (0..num_blocks as u32).rev().collect();
        let mut seqs = Vec::new();
        for &len in lens {
            let table: Vec<u32> = (0..len.div_ceil(bs)).map(|_| free.swap_remove(rng.random_range(0..free.len()))).collect();
            let k: Vec<f32> = (0..len * token).map(|_| rng.random_range(-1.0..1.0)).collect();
            let v: Vec<f32> = (0..len * token).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mut pools = PagedKvMut { k: &mut k_pool, v: &mut v_pool, block_size: bs, n_kv_heads: n_kv, head_dim: hd };
            for p in 0..len {
                pools.write(table[p / bs], p % bs, &k[p * token..(p + 1) * token], &v[p * token..(p + 1) * token]).unwrap();
            }
            seqs.push(Seq { k, v, table, len });
        }
        let kv = PagedKv { k: &k_pool, v: &v_pool, block_size: bs, n_kv_heads: n_kv, head_dim: hd };
        let scale = 1.0 / (hd as f32).sqrt();
        // Prefill-like: every position of every sequence, causal.
        let mut rows = Vec::new();
        for (s, seq) in seqs.iter().enumerate() {
            for ctx in 1..=seq.len {
                let q: Vec<f32> = (0..n_heads * hd).map(|_| rng.random_range(-2.0..2.0)).collect();
                rows.push((s, ctx, q));
            }
        }
        let queries: Vec<AttnQuery> =
            rows.iter().map(|(s, ctx, q)| AttnQuery { q, block_table: &seqs[*s].table, context_len: *ctx, window_start: 0 }).collect();
        let mut out = vec![0f32; queries.len() * n_heads * hd];
        paged_attention(&queries, &kv, n_heads, scale, &mut out).unwrap();
        for (i, (s, ctx, q)) in rows.iter().enumerate() {
            let seq = &seqs[*s];
            let want = reference(q, &seq.k, &seq.v, *ctx, n_heads, n_kv, hd, scale);
            let got = &out[i * n_heads * hd..(i + 1) * n_heads * hd];
            for (a, b) in got.iter().zip(&want) {
                assert!((*a as f64 - b).abs() < 2e-5, "row {i}: {a} vs {b}");
            }
            // Alone, the row gives the same bits.
            let mut alone = vec![0f32; n_heads * hd];
            paged_attention(&queries[i..i + 1], &kv, n_heads, scale, &mut alone).unwrap();
            assert_eq!(alone.as_slice(), got, "row {i} differs alone vs batched");
        }
    }

    #[test]
    fn a_lone_query_split_over_threads_gives_the_same_bits() {
        // One KV head, long enough to run in parallel: with more threads
        // than (query, KV head) pairs, the group of query heads is split.
        let (bs, n_kv, hd, n_heads, ctx) = (16usize, 1, 128, 4, 600usize);
        let token = n_kv * hd;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(12);
        let k: Vec<f32> = (0..ctx * token).map(|_| rng.random_range(-1.0..1.0)).collect();
        let v: Vec<f32> = (0..ctx * token).map(|_| rng.random_range(-1.0..1.0)).collect();
        let table: Vec<u32> = (0..ctx.div_ceil(bs) as u32).rev().collect();
        let (mut k_pool, mut v_pool) = (vec![0f32; table.len() * bs * token], vec![0f32; table.len() * bs * token]);
        let mut pools = PagedKvMut { k: &mut k_pool, v: &mut v_pool, block_size: bs, n_kv_heads: n_kv, head_dim: hd };
        for p in 0..ctx {
            pools.write(table[p / bs], p % bs, &k[p * token..(p + 1) * token], &v[p * token..(p + 1) * token]).unwrap();
        }
        let kv = PagedKv { k: &k_pool, v: &v_pool, block_size: bs, n_kv_heads: n_kv, head_dim: hd };
        let q: Vec<f32> = (0..n_heads * hd).map(|_| rng.random_range(-2.0..2.0)).collect();
        let query = AttnQuery { q: &q, block_table: &table, context_len: ctx, window_start: 0 };
        let scale = 1.0 / (hd as f32).sqrt();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut out = vec![0f32; n_heads * hd];
            pool.install(|| paged_attention(&[query], &kv, n_heads, scale, &mut out)).unwrap();
            out
        };
        let one = run(1);
        let want = reference(&q, &k, &v, ctx, n_heads, n_kv, hd, scale);
        assert!(one.iter().zip(&want).all(|(a, b)| (*a as f64 - b).abs() < 2e-5));
        for threads in [2, 3, 4, 8] {
            assert_eq!(run(threads), one, "{threads} threads");
        }
    }

    #[test]
    fn sliding_windows_match_the_reference_over_the_window() {
        let (bs, n_kv, hd, n_heads, ctx) = (16, 2, 32, 4, 45);
        let token = n_kv * hd;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
        let k: Vec<f32> = (0..ctx * token).map(|_| rng.random_range(-1.0..1.0)).collect();
        let v: Vec<f32> = (0..ctx * token).map(|_| rng.random_range(-1.0..1.0)).collect();
        let table = [2u32, 0, 1];
        let (mut kp, mut vp) = (vec![0f32; 3 * bs * token], vec![0f32; 3 * bs * token]);
        let mut w = PagedKvMut { k: &mut kp, v: &mut vp, block_size: bs, n_kv_heads: n_kv, head_dim: hd };
        for p in 0..ctx {
            w.write(table[p / bs], p % bs, &k[p * token..(p + 1) * token], &v[p * token..(p + 1) * token]).unwrap();
        }
        let kv = PagedKv { k: &kp, v: &vp, block_size: bs, n_kv_heads: n_kv, head_dim: hd };
        let q: Vec<f32> = (0..n_heads * hd).map(|_| rng.random_range(-2.0..2.0)).collect();
        for start in [0, 5, 16, 30, 44] {
            let mut out = vec![0f32; n_heads * hd];
            paged_attention(
                &[AttnQuery { q: &q, block_table: &table, context_len: ctx, window_start: start }],
                &kv,
                n_heads,
                0.2,
                &mut out,
            )
            .unwrap();
            let want = reference(&q, &k[start * token..], &v[start * token..], ctx - start, n_heads, n_kv, hd, 0.2);
            for (a, b) in out.iter().zip(&want) {
                assert!((*a as f64 - b).abs() < 2e-5, "window from {start}: {a} vs {b}");
            }
        }
        let mut out = vec![0f32; n_heads * hd];
        let past = [AttnQuery { q: &q, block_table: &table, context_len: ctx, window_start: ctx }];
        assert!(paged_attention(&past, &kv, n_heads, 0.2, &mut out).is_err(), "a window that excludes the query itself");
    }

    #[test]
    fn rejects_bad_tables_and_shapes() {
        let (k, v) = (vec![0f32; 2 * 4 * 8], vec![0f32; 2 * 4 * 8]);
        let kv = PagedKv { k: &k, v: &v, block_size: 4, n_kv_heads: 1, head_dim: 8 };
        let q = vec![0f32; 16];
        let mut out = vec![0f32; 16];
        let short = [AttnQuery { q: &q, block_table: &[0], context_len: 5, window_start: 0 }];
        assert!(matches!(paged_attention(&short, &kv, 2, 1.0, &mut out), Err(KernelError::BlockTableTooShort { .. })));
        let outside = [AttnQuery { q: &q, block_table: &[0, 7], context_len: 5, window_start: 0 }];
        assert_eq!(paged_attention(&outside, &kv, 2, 1.0, &mut out), Err(KernelError::BlockOutOfRange { block: 7, num_blocks: 2 }));
        let ok = [AttnQuery { q: &q, block_table: &[1, 0], context_len: 5, window_start: 0 }];
        assert!(paged_attention(&ok, &kv, 3, 1.0, &mut out).is_err());
        assert!(paged_attention(&ok, &kv, 2, 1.0, &mut out[..8]).is_err());
        paged_attention(&ok, &kv, 2, 1.0, &mut out).unwrap();
        let empty = [AttnQuery { q: &q, block_table: &[], context_len: 0, window_start: 0 }];
        paged_attention(&empty, &kv, 2, 1.0, &mut out).unwrap();
        assert!(out.iter().all(|&x| x == 0.0));
        let (mut k2, mut v2) = (k.clone(), v.clone());
        let mut w = PagedKvMut { k: &mut k2, v: &mut v2, block_size: 4, n_kv_heads: 1, head_dim: 8 };
        assert!(w.write(2, 0, &[0.0; 8], &[0.0; 8]).is_err());
        assert!(w.write(0, 4, &[0.0; 8], &[0.0; 8]).is_err());
        assert!(w.write(0, 0, &[0.0; 7], &[0.0; 8]).is_err());
    }
}
