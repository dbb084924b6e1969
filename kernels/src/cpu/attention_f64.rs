//! Paged attention of the exact mode: f64 queries, f64 K/V pools in the
//! f32 kernel's layout (K blocks transposed, `[n_kv_heads][head_dim]
//! [block_size]`; V `[n_kv_heads][block_size][head_dim]`), f64 scores,
//! softmax and sums. Like the f32 kernel, each row's result depends on its
//! own query and context alone (batch-invariant).

use rayon::prelude::*;

use super::attention::{check_call, head_parts, AttnQuery, PagedKv};
use super::error::KernelError;
use super::exp_f64::exp_f64;
use super::features::CpuFeatures;

/// Below this many multiply-adds a call stays on one thread.
const PARALLEL_MACS: usize = 1 << 16;

/// `out[i] = softmax(scale · q_h · Kᵀ) · V` for every query `i` and head
/// `h`, all in f64; head `h` reads KV head `h / (n_heads / n_kv_heads)`.
pub fn paged_attention_f64(
    queries: &[AttnQuery<f64>],
    kv: &PagedKv<f64>,
    n_heads: usize,
    scale: f64,
    out: &mut [f64],
) -> Result<(), KernelError> {
    let work = check_call(queries, kv, n_heads, out.len())?;
    let hd = kv.head_dim;
    let group = n_heads / kv.n_kv_heads;
    let features = CpuFeatures::get();
    let n_kv = kv.n_kv_heads;
    // One task per (query, KV head, part of its query heads), as in the f32
    // kernel: the heads are adjacent in both the query row and the output row.
    let parts = head_parts(work, queries.len() * n_kv, group);
    let heads = group / parts;
    let task = |(idx, o): (usize, &mut [f64])| {
        let (qi, g, part) = (idx / (n_kv * parts), idx / parts % n_kv, idx % parts);
        let query = &queries[qi];
        let first = g * group + part * heads;
        let qg = &query.q[first * hd..(first + heads) * hd];
        #[cfg(target_arch = "x86_64")]
        if super::attention_f64_group::attend_group_64x16(features, qg, query, kv, g, scale, o) {
            return;
        }
        for (qh, oh) in qg.chunks_exact(hd).zip(o.chunks_exact_mut(hd)) {
            match (hd, kv.block_size) {
                (64, 16) => attend_head_fixed::<64, 16, 32>(qh, query, kv, g, scale, oh),
                (128, 16) => attend_head_fixed::<128, 16, 32>(qh, query, kv, g, scale, oh),
                _ => attend_head(qh, query, kv, g, scale, oh),
            }
        }
    };
    if work >= PARALLEL_MACS {
        out.par_chunks_exact_mut(heads * hd).enumerate().for_each(task);
    } else {
        out.chunks_exact_mut(heads * hd).enumerate().for_each(task);
    }
    Ok(())
}

/// One block's scores `s[j] = scale · Σ_d q[d]·K[d][j]`, summed over `d` in
/// order with fused multiply-adds (as `attend_head` does).
#[inline(always)]
fn score_block<const HD: usize, const BS: usize>(q: &[f64; HD], kt: &[f64], scale: f64, s: &mut [f64; BS]) {
    let mut acc = [0f64; BS];
    for (&qd, row) in q.iter().zip(kt.chunks_exact(BS)) {
        let row: &[f64; BS] = row.try_into().expect("BS per row");
        for j in 0..BS {
            acc[j] = qd.mul_add(row[j], acc[j]);
        }
    }
    for j in 0..BS {
        s[j] = acc[j] * scale;
    }
}

/// `attend_head` for the usual shapes: a block's scores and `VC` output
/// dimensions are accumulated in registers (fixed sizes let the compiler
/// keep them there). Every element sees the same operations in the same
/// order as in `attend_head`, so the results are the same bits.
#[inline(always)]
fn attend_head_fixed<const HD: usize, const BS: usize, const VC: usize>(
    q: &[f64],
    query: &AttnQuery<f64>,
    kv: &PagedKv<f64>,
    g: usize,
    scale: f64,
    out: &mut [f64],
) {
    let q: &[f64; HD] = q.try_into().expect("head_dim checked by the caller");
    let blocks = &query.block_table[..query.context_len.div_ceil(BS)];
    let mut scores = vec![0f64; blocks.len() * BS];
    for (&block, s) in blocks.iter().zip(scores.chunks_exact_mut(BS)) {
        score_block::<HD, BS>(q, k_block::<HD, BS>(kv, block, g), scale, s.try_into().expect("BS scores"));
    }
    softmax_weighted_v::<HD, BS, VC>(scores, query, kv, g, out);
}

/// The transposed K block of KV head `g`.
#[inline(always)]
pub(super) fn k_block<'a, const HD: usize, const BS: usize>(kv: &PagedKv<'a, f64>, block: u32, g: usize) -> &'a [f64] {
    &kv.k[(block as usize * kv.token_len() + g * HD) * BS..][..HD * BS]
}

/// Softmax of the scores (one per context position, past the end ignored),
/// then the weighted sum of V rows, `VC` dimensions at a time.
#[inline(always)]
fn softmax_weighted_v<const HD: usize, const BS: usize, const VC: usize>(
    mut scores: Vec<f64>,
    query: &AttnQuery<f64>,
    kv: &PagedKv<f64>,
    g: usize,
    out: &mut [f64],
) {
    let ctx = query.context_len;
    out.fill(0.0);
    if ctx == 0 {
        return;
    }
    let scores = &mut scores[..ctx];
    softmax_from(scores, query.window_start);
    for (c0, o) in (0..HD).step_by(VC).zip(out.chunks_exact_mut(VC)) {
        let mut acc = [0f64; VC];
        for (p, &w) in scores.iter().enumerate() {
            let at = kv.v_row(query.block_table[p / BS], p % BS, g) + c0;
            let v: &[f64; VC] = kv.v[at..at + VC].try_into().expect("in the pool");
            acc.iter_mut().zip(v).for_each(|(o, &v)| *o = w.mul_add(v, *o));
        }
        o.copy_from_slice(&acc);
    }
}

fn attend_head(q: &[f64], query: &AttnQuery<f64>, kv: &PagedKv<f64>, g: usize, scale: f64, out: &mut [f64]) {
    let (hd, bs, token) = (kv.head_dim, kv.block_size, kv.token_len());
    let ctx = query.context_len;
    out.fill(0.0);
    if ctx == 0 {
        return;
    }
    let blocks = &query.block_table[..ctx.div_ceil(bs)];
    let mut scores = vec![0f64; ctx];
    for (bi, &block) in blocks.iter().enumerate() {
        // Row d of the transposed block holds dimension d for its positions.
        let kt = &kv.k[(block as usize * token + g * hd) * bs..][..hd * bs];
        let p0 = bi * bs;
        let n = bs.min(ctx - p0);
        let s = &mut scores[p0..p0 + n];
        for (d, &qd) in q.iter().enumerate() {
            s.iter_mut().zip(&kt[d * bs..d * bs + n]).for_each(|(s, &k)| *s = qd.mul_add(k, *s));
        }
        s.iter_mut().for_each(|s| *s *= scale);
    }
    softmax_from(&mut scores, query.window_start);
    for (p, &w) in scores.iter().enumerate() {
        let at = kv.v_row(blocks[p / bs], p % bs, g);
        out.iter_mut().zip(&kv.v[at..at + hd]).for_each(|(o, &v)| *o = w.mul_add(v, *o));
    }
}

/// Softmax of `s[start..]`; the positions before a sliding window get
/// weight 0 (an FMA with a zero weight leaves the sum's bits as they are).
#[inline(always)]
pub(super) fn softmax_from(s: &mut [f64], start: usize) {
    let (before, live) = s.split_at_mut(start);
    before.fill(0.0);
    softmax_in_place(live);
}

/// `s ← exp(s − max s) / Σ exp(s − max s)`, in the one order every path uses.
#[inline(always)]
fn softmax_in_place(s: &mut [f64]) {
    let m = max(s);
    s.iter_mut().for_each(|x| *x = exp_f64(*x - m));
    let inv = 1.0 / sum(s);
    s.iter_mut().for_each(|x| *x *= inv);
}

/// Maximum with 4 independent lanes (vectorizable).
#[inline(always)]
fn max(x: &[f64]) -> f64 {
    let mut acc = [f64::NEG_INFINITY; 4];
    let chunks = x.chunks_exact(4);
    let rest = chunks.remainder().iter().copied().fold(f64::NEG_INFINITY, f64::max);
    for c in chunks {
        for l in 0..4 {
            acc[l] = if c[l] > acc[l] { c[l] } else { acc[l] };
        }
    }
    acc.iter().copied().fold(rest, f64::max)
}

/// Sum with 8 independent lanes (vectorizable, fixed order).
#[inline(always)]
fn sum(x: &[f64]) -> f64 {
    let mut acc = [0f64; 8];
    let chunks = x.chunks_exact(8);
    let rest: f64 = chunks.remainder().iter().sum();
    for c in chunks {
        for l in 0..8 {
            acc[l] += c[l];
        }
    }
    acc.iter().sum::<f64>() + rest
}

#[cfg(test)]
mod tests {
    use super::super::attention::{paged_attention, PagedKvMut};
    use super::*;

    /// Two sequences in shuffled blocks of 4; queries of the second attend
    /// to its first 7 positions.
    #[test]
    fn matches_the_f32_kernel_and_a_direct_f64_softmax() {
        let (bs, n_kv, hd, n_heads, blocks) = (4, 2, 8, 4, 6);
        let token = n_kv * hd;
        let (mut k32, mut v32) = (vec![0f32; blocks * bs * token], vec![0f32; blocks * bs * token]);
        let (mut k64, mut v64) = (vec![0f64; blocks * bs * token], vec![0f64; blocks * bs * token]);
        let table = [4u32, 1];
        let val = |i: usize| ((i * 7919 % 211) as f32 / 50.0 - 2.0).sin();
        let mut rows = Vec::new();
        for p in 0..7 {
            let kr: Vec<f32> = (0..token).map(|i| val(p * 100 + i)).collect();
            let vr: Vec<f32> = (0..token).map(|i| val(p * 100 + 50 + i)).collect();
            let (b, o) = (table[p / bs], p % bs);
            PagedKvMut { k: &mut k32, v: &mut v32, block_size: bs, n_kv_heads: n_kv, head_dim: hd }.write(b, o, &kr, &vr).unwrap();
            let (k6, v6): (Vec<f64>, Vec<f64>) = (kr.iter().map(|&x| x as f64).collect(), vr.iter().map(|&x| x as f64).collect());
            PagedKvMut { k: &mut k64, v: &mut v64, block_size: bs, n_kv_heads: n_kv, head_dim: hd }.write(b, o, &k6, &v6).unwrap();
            rows.push((kr, vr));
        }
        let q32: Vec<f32> = (0..n_heads * hd).map(|i| val(9000 + i)).collect();
        let q64: Vec<f64> = q32.iter().map(|&x| x as f64).collect();
        let scale = 1.0 / (hd as f64).sqrt();
        let mut o32 = vec![0f32; n_heads * hd];
        let kv32 = PagedKv { k: &k32, v: &v32, block_size: bs, n_kv_heads: n_kv, head_dim: hd };
        paged_attention(
            &[AttnQuery { q: &q32, block_table: &table, context_len: 7, window_start: 0 }],
            &kv32,
            n_heads,
            scale as f32,
            &mut o32,
        )
        .unwrap();
        let mut o64 = vec![0f64; n_heads * hd];
        let kv64 = PagedKv { k: &k64, v: &v64, block_size: bs, n_kv_heads: n_kv, head_dim: hd };
        paged_attention_f64(
            &[AttnQuery { q: &q64, block_table: &table, context_len: 7, window_start: 0 }],
            &kv64,
            n_heads,
            scale,
            &mut o64,
        )
        .unwrap();
        for h in 0..n_heads {
            let g = h / (n_heads / n_kv);
            let s: Vec<f64> =
                rows.iter().map(|(k, _)| scale * (0..hd).map(|d| q64[h * hd + d] * k[g * hd + d] as f64).sum::<f64>()).collect();
            let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for d in 0..hd {
                let want: f64 = rows.iter().zip(&e).map(|((_, v), w)| w / z * v[g * hd + d] as f64).sum();
                assert!((o64[h * hd + d] - want).abs() < 1e-14, "f64 head {h} dim {d}");
                assert!((o32[h * hd + d] as f64 - want).abs() < 1e-5, "f32 head {h} dim {d}");
            }
        }
    }

    #[test]
    fn fixed_shape_path_is_bitwise_the_general_one() {
        let (bs, n_kv, hd, blocks) = (16, 2, 64, 6);
        let token = n_kv * hd;
        let val = |i: usize| ((i * 7919 % 211) as f64 / 50.0 - 2.0).sin();
        let k: Vec<f64> = (0..blocks * bs * token).map(val).collect();
        let v: Vec<f64> = (0..blocks * bs * token).map(|i| val(i + 77)).collect();
        let kv = PagedKv { k: &k, v: &v, block_size: bs, n_kv_heads: n_kv, head_dim: hd };
        let q: Vec<f64> = (0..hd).map(|i| val(5000 + i)).collect();
        for (ctx, start) in [(1, 0), (16, 0), (17, 3), (50, 0), (50, 20), (64, 0), (80, 33)] {
            let query = AttnQuery { q: &q, block_table: &[3, 0, 4, 2, 5], context_len: ctx, window_start: start };
            let (mut a, mut b) = (vec![0f64; hd], vec![0f64; hd]);
            attend_head_fixed::<64, 16, 32>(&q, &query, &kv, 1, 0.125, &mut a);
            attend_head(&q, &query, &kv, 1, 0.125, &mut b);
            assert_eq!(a, b, "context {ctx}");
            // One to five heads sharing KV head 1, against each alone, on
            // every group kernel this CPU runs.
            #[cfg(target_arch = "x86_64")]
            for features in [CpuFeatures::get(), CpuFeatures { avx512: false, amx_bf16: false, ..CpuFeatures::get() }] {
                for heads in 1..=5 {
                    let qs: Vec<f64> = (0..heads * hd).map(|i| val(7000 + i)).collect();
                    let query_s = AttnQuery { q: &qs, ..query };
                    let mut c = vec![0f64; heads * hd];
                    let ran = super::super::attention_f64_group::attend_group_64x16(features, &qs, &query_s, &kv, 1, 0.125, &mut c);
                    assert_eq!(ran, features.avx2 && (heads <= 4 || !features.avx512), "{features:?}, {heads} heads");
                    if ran {
                        for (qh, ch) in qs.chunks_exact(hd).zip(c.chunks_exact(hd)) {
                            attend_head(qh, &query_s, &kv, 1, 0.125, &mut b);
                            assert_eq!(ch, b.as_slice(), "{features:?}, {heads} heads, context {ctx}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_lone_query_split_over_threads_gives_the_same_bits() {
        // One KV head of the usual shape, four query heads, long enough to
        // split the group over threads.
        let (bs, n_kv, hd, n_heads, ctx) = (16usize, 1, 64, 4, 1100usize);
        let val = |i: usize| ((i * 7919 % 211) as f64 / 50.0 - 2.0).sin();
        let table: Vec<u32> = (0..ctx.div_ceil(bs) as u32).rev().collect();
        let k: Vec<f64> = (0..table.len() * bs * n_kv * hd).map(val).collect();
        let v: Vec<f64> = (0..k.len()).map(|i| val(i + 31)).collect();
        let kv = PagedKv { k: &k, v: &v, block_size: bs, n_kv_heads: n_kv, head_dim: hd };
        let q: Vec<f64> = (0..n_heads * hd).map(|i| val(9000 + i)).collect();
        let query = AttnQuery { q: &q, block_table: &table, context_len: ctx, window_start: 0 };
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut out = vec![0f64; n_heads * hd];
            pool.install(|| paged_attention_f64(&[query], &kv, n_heads, 0.125, &mut out)).unwrap();
            out
        };
        let one = run(1);
        for threads in [2, 4, 8] {
            assert_eq!(run(threads), one, "{threads} threads");
        }
    }

    #[test]
    fn a_window_on_a_block_edge_is_the_context_that_starts_there() {
        let (bs, n_kv, hd, n_heads) = (16, 1, 64, 2);
        let token = n_kv * hd;
        let val = |i: usize| ((i * 104_729 % 307) as f64 / 80.0 - 1.5).cos();
        let k: Vec<f64> = (0..5 * bs * token).map(val).collect();
        let v: Vec<f64> = (0..5 * bs * token).map(|i| val(i + 13)).collect();
        let kv = PagedKv { k: &k, v: &v, block_size: bs, n_kv_heads: n_kv, head_dim: hd };
        let q: Vec<f64> = (0..n_heads * hd).map(|i| val(900 + i)).collect();
        let table = [4, 1, 3, 0];
        let (mut a, mut b) = (vec![0f64; n_heads * hd], vec![0f64; n_heads * hd]);
        paged_attention_f64(&[AttnQuery { q: &q, block_table: &table, context_len: 57, window_start: 32 }], &kv, n_heads, 0.125, &mut a)
            .unwrap();
        paged_attention_f64(
            &[AttnQuery { q: &q, block_table: &table[2..], context_len: 25, window_start: 0 }],
            &kv,
            n_heads,
            0.125,
            &mut b,
        )
        .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn bad_block_tables_are_errors() {
        let (k, v) = (vec![0f64; 2 * 4 * 8], vec![0f64; 2 * 4 * 8]);
        let kv = PagedKv { k: &k, v: &v, block_size: 4, n_kv_heads: 1, head_dim: 8 };
        let q = vec![0f64; 8];
        let mut out = vec![0f64; 8];
        let err = paged_attention_f64(&[AttnQuery { q: &q, block_table: &[5], context_len: 3, window_start: 0 }], &kv, 1, 1.0, &mut out);
        assert_eq!(err, Err(KernelError::BlockOutOfRange { block: 5, num_blocks: 2 }));
    }
}
