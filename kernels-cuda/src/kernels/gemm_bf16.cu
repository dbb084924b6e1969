// f32-activation GEMMs on bf16 tensor cores, Y (M×N, f32) = X (M×K, f32) ·
// Wᵀ with W (N×K, row-major) and f32 accumulation:
//
// * fast (LIMBS = 3): each x is split into three bf16 limbs, hi = bf16(x),
//   mid = bf16(x − hi), lo = bf16(x − hi − mid) (both differences are exact
//   in f32), so hi + mid + lo carries all 24 bits of x; each limb is
//   multiplied by W on the bf16 tensor cores and the three products summed
//   in the same f32 accumulators (smallest limb first).
// * plain (LIMBS = 1): x rounded once to bf16: the unprotected baseline.
//
// W is bf16 as stored, or GGUF quant blocks: their integer quants are exact
// in bf16, so the tensor cores multiply those, 16 values (one mma k-step)
// at a time, and the f32 epilogue of each step applies the rows' scale and
// min (value = s·q + m, see common.cuh): y += s·Σ x·q + m·Σ x.
//
// 64×64 block tile, 4 warps of 32×32 (2×4 mma.m16n8k16 tiles each), k-tiles
// of 32 double-buffered in shared memory, next tile prefetched in registers.
// The limb split happens once per element when the tile is stored.
//
// f32x_gemv: one warp per output column, 8 rows per block row, f32 FMA on
// CUDA cores over the weights widened to their exact f32 values (every
// weight type; rows <= 8, and the fallback below sm_80). Its "fast" flavour
// multiplies the unsplit f32 x, which is at least as accurate as 3 limbs.

#define BF_BM 64
#define BF_BN 64
#define BF_BK 32
#define BF_LD (BF_BK + 8)  // 40 u16 = 20 words per row: fragment reads are bank-conflict free
#define BF_THREADS 128
#define BF_TILE_U4 (BF_BM * BF_LD / 8)  // one 64×40 u16 tile in uint4 units

struct Bf16Prefetch {
    float x[16];      // X tile: 4 quads of 64×32
    uint4 w[2];       // W tile: 2 groups of 8 bf16 of 64×32
    float s[2], m[2]; // quant W: scale and min of each group's 16 values
};

// Eight 16-bit values (low halves of `h`) as one uint4, lowest index first.
TALARIA_DEVICE uint4 pack_bf16x8(const u32* h) {
    return make_uint4(h[0] | (h[1] << 16), h[2] | (h[3] << 16), h[4] | (h[5] << 16), h[6] | (h[7] << 16));
}

// The next X tile (zero outside the matrix) into registers.
TALARIA_DEVICE void x_load(Bf16Prefetch& p, const float* __restrict__ X, int M, int K, int m0, int k0, bool vec) {
    const int tid = threadIdx.x;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int u = tid + BF_THREADS * i;
        const int r = u >> 3, c = (u & 7) * 4;
        const int gm = m0 + r, gk = k0 + c;
        float v[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        if (gm < M) {
            const float* s = X + (size_t)gm * K + gk;
            if (vec) {
                if (gk < K) {
                    float4 q = *reinterpret_cast<const float4*>(s);
                    v[0] = q.x;
                    v[1] = q.y;
                    v[2] = q.z;
                    v[3] = q.w;
                }
            } else {
#pragma unroll
                for (int j = 0; j < 4; ++j)
                    if (gk + j < K) v[j] = s[j];
            }
        }
#pragma unroll
        for (int j = 0; j < 4; ++j) p.x[4 * i + j] = v[j];
    }
}

// bf16 weights: the W tile as stored.
struct Bf16Tile {
    typedef u16 T;
    enum { SCALED = 0, HAS_MIN = 0 };
    static TALARIA_DEVICE void load(Bf16Prefetch& p, const u16* __restrict__ W, int N, int K, int n0, int k0, bool vec) {
        const int tid = threadIdx.x;
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            const int u = tid + BF_THREADS * i;
            const int r = u >> 2, c = (u & 3) * 8;
            const int gn = n0 + r, gk = k0 + c;
            uint4 q = make_uint4(0u, 0u, 0u, 0u);
            if (gn < N) {
                const u16* s = W + (size_t)gn * K + gk;
                if (vec) {
                    if (gk < K) q = *reinterpret_cast<const uint4*>(s);
                } else {
                    u32 h[8];
#pragma unroll
                    for (int j = 0; j < 8; ++j) h[j] = gk + j < K ? (u32)s[j] : 0u;
                    q = pack_bf16x8(h);
                }
            }
            p.w[i] = q;
        }
    }
};

// Quant blocks (K a multiple of 32, so a k-tile of a row lies in one block
// or one K-quant chunk): the tile holds the quants as bf16, the scale and
// min of each row's two 16-value halves go beside it.
template <class WL>
struct QuantTile {
    typedef u8 T;
    enum { SCALED = 1, HAS_MIN = WL::HAS_MIN };
    static TALARIA_DEVICE void load(Bf16Prefetch& p, const u8* __restrict__ W, int N, int K, int n0, int k0, bool) {
        const int tid = threadIdx.x;
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            const int u = tid + BF_THREADS * i;
            const int r = u >> 2, c = (u & 3) * 8;
            const int gn = n0 + r, gk = k0 + c;
            u32 h[8] = {0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u};
            p.s[i] = p.m[i] = 0.0f;
            if (gn < N && gk < K) {
                const u8* b = W + ((size_t)gn * (K / WL::VALUES) + gk / WL::VALUES) * WL::BYTES;
                const int at = gk % WL::VALUES;
#pragma unroll
                for (int j = 0; j < 8; ++j) h[j] = f32_to_bf16_rn((float)WL::quant(b, at + j));
                if ((c & 15) == 0) WL::split(b, at, &p.s[i], &p.m[i]);
            }
            p.w[i] = pack_bf16x8(h);
        }
    }
};

// Splits x into LIMBS bf16 limbs (limb 0 = hi).
template <int LIMBS>
TALARIA_DEVICE void split_limbs(float x, u32* limb) {
    float rest = x;
#pragma unroll
    for (int l = 0; l < LIMBS; ++l) {
        limb[l] = f32_to_bf16_rn(rest);
        rest = rest - bf16_to_f32(limb[l]);
    }
}

// Shared memory of one pipeline stage: X limbs, W, and for quant W each
// row's scales and mins and each X row's sums over 16 values.
template <int LIMBS>
struct MmaStage {
    uint4 a[LIMBS * BF_TILE_U4];
    uint4 b[BF_TILE_U4];
    float s[BF_BN][2], m[BF_BN][2], xsum[BF_BM][2];
};

template <int LIMBS, class WT>
TALARIA_DEVICE void mma_store(const Bf16Prefetch& p, MmaStage<LIMBS>& st) {
    const int tid = threadIdx.x;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int u = tid + BF_THREADS * i;
        const int r = u >> 3, c = (u & 7) * 4;
        u32 limb[4][LIMBS];
#pragma unroll
        for (int j = 0; j < 4; ++j) split_limbs<LIMBS>(p.x[4 * i + j], limb[j]);
#pragma unroll
        for (int l = 0; l < LIMBS; ++l) {
            uint2* dst = reinterpret_cast<uint2*>(reinterpret_cast<u16*>(st.a + l * BF_TILE_U4) + r * BF_LD + c);
            *dst = make_uint2(limb[0][l] | (limb[1][l] << 16), limb[2][l] | (limb[3][l] << 16));
        }
        if constexpr (WT::HAS_MIN) {
            // Σ x over the 16 values of a half (the limbs' sum: x itself for
            // fast, bf16(x) for plain), from 4 lanes of 4 values each.
            float sum = 0.0f;
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                float x = 0.0f;
#pragma unroll
                for (int l = LIMBS - 1; l >= 0; --l) x += bf16_to_f32(limb[j][l]);
                sum += x;
            }
            sum += __shfl_xor_sync(0xffffffffu, sum, 1);
            sum += __shfl_xor_sync(0xffffffffu, sum, 2);
            if ((u & 3) == 0) st.xsum[r][(u & 7) >> 2] = sum;
        }
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        const int u = tid + BF_THREADS * i;
        const int r = u >> 2, c = (u & 3) * 8;
        st.b[(r * BF_LD + c) / 8] = p.w[i];
        if constexpr (WT::SCALED) {
            if ((c & 15) == 0) {
                st.s[r][c >> 4] = p.s[i];
                st.m[r][c >> 4] = p.m[i];
            }
        }
    }
}

// A warp's 32×32 accumulators (2×4 mma tiles of 4 per lane), zeroed.
TALARIA_DEVICE void zero_warp_tile(float (&v)[2][4][4]) {
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) v[i][j][e] = 0.0f;
}

template <int LIMBS, class WT>
TALARIA_DEVICE void mma_gemm(const float* __restrict__ X, const typename WT::T* __restrict__ W,
                             float* __restrict__ Y, int M, int N, int K, int vec_flag) {
    __shared__ MmaStage<LIMBS> stages[2];
    const bool vec = vec_flag != 0;
    const int m0 = blockIdx.y * BF_BM, n0 = blockIdx.x * BF_BN;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
    const int g = lane >> 2, t = lane & 3;

    float acc[2][4][4];
    zero_warp_tile(acc);

    const int k_tiles = (K + BF_BK - 1) / BF_BK;
    Bf16Prefetch p;
    x_load(p, X, M, K, m0, 0, vec);
    WT::load(p, W, N, K, n0, 0, vec);
    mma_store<LIMBS, WT>(p, stages[0]);
    __syncthreads();

    for (int kt = 0; kt < k_tiles; ++kt) {
        const MmaStage<LIMBS>& st = stages[kt & 1];
        if (kt + 1 < k_tiles) {
            x_load(p, X, M, K, m0, (kt + 1) * BF_BK, vec);
            WT::load(p, W, N, K, n0, (kt + 1) * BF_BK, vec);
        }
        const u16* a_s = reinterpret_cast<const u16*>(st.a);
        const u16* b_s = reinterpret_cast<const u16*>(st.b);
#pragma unroll
        for (int kk = 0; kk < BF_BK; kk += 16) {
            u32 b[4][2];
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const u16* q = b_s + (wn + j * 8 + g) * BF_LD + kk + 2 * t;
                b[j][0] = *reinterpret_cast<const u32*>(q);
                b[j][1] = *reinterpret_cast<const u32*>(q + 8);
            }
            // Scaled W: this step's Σ x·q, then y += s·Σ + m·Σx.
            float part[2][4][4];
            zero_warp_tile(part);
#pragma unroll
            for (int l = LIMBS - 1; l >= 0; --l) {
#pragma unroll
                for (int i = 0; i < 2; ++i) {
                    const u16* q = a_s + l * BF_TILE_U4 * 8 + (wm + i * 16 + g) * BF_LD + kk + 2 * t;
                    u32 a[4];
                    a[0] = *reinterpret_cast<const u32*>(q);
                    a[1] = *reinterpret_cast<const u32*>(q + 8 * BF_LD);
                    a[2] = *reinterpret_cast<const u32*>(q + 8);
                    a[3] = *reinterpret_cast<const u32*>(q + 8 * BF_LD + 8);
#pragma unroll
                    for (int j = 0; j < 4; ++j) mma_bf16_m16n8k16(WT::SCALED ? part[i][j] : acc[i][j], a, b[j]);
                }
            }
            if constexpr (WT::SCALED) {
                const int h = kk >> 4;
#pragma unroll
                for (int i = 0; i < 2; ++i)
#pragma unroll
                    for (int j = 0; j < 4; ++j)
#pragma unroll
                        for (int e = 0; e < 4; ++e) {
                            const int row = wm + i * 16 + g + (e >> 1) * 8, col = wn + j * 8 + 2 * t + (e & 1);
                            acc[i][j][e] = fmaf(st.s[col][h], part[i][j][e], acc[i][j][e]);
                            if constexpr (WT::HAS_MIN) acc[i][j][e] = fmaf(st.m[col][h], st.xsum[row][h], acc[i][j][e]);
                        }
            }
        }
        if (kt + 1 < k_tiles) mma_store<LIMBS, WT>(p, stages[(kt & 1) ^ 1]);
        __syncthreads();
    }

    const bool pair_ok = (N & 1) == 0;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
#pragma unroll
        for (int half = 0; half < 2; ++half) {
            const int row = m0 + wm + i * 16 + g + half * 8;
            if (row >= M) continue;
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const int col = n0 + wn + j * 8 + 2 * t;
                float* dst = Y + (size_t)row * N + col;
                const float v0 = acc[i][j][2 * half], v1 = acc[i][j][2 * half + 1];
                if (pair_ok && col + 1 < N) {
                    *reinterpret_cast<float2*>(dst) = make_float2(v0, v1);
                } else {
                    if (col < N) dst[0] = v0;
                    if (col + 1 < N) dst[1] = v1;
                }
            }
        }
    }
}

#define BG_ROWS 8  // rows per block row of f32x_gemv

template <class WL, bool ROUND_X>
TALARIA_DEVICE void f32x_gemv(const float* __restrict__ X, const typename WL::T* __restrict__ W,
                              float* __restrict__ Y, int M, int N, int K, int vec_flag) {
    const bool vec = vec_flag != 0;
    const int lane = threadIdx.x & 31;
    const int n = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const int r0 = blockIdx.y * BG_ROWS;
    if (n >= N) return;  // warp-uniform, and no block-wide barrier follows
    const int rows = M - r0 < BG_ROWS ? M - r0 : BG_ROWS;

    float acc[BG_ROWS];
#pragma unroll
    for (int m = 0; m < BG_ROWS; ++m) acc[m] = 0.0f;

    for (int k = lane * 8; k < K; k += 32 * 8) {
        float w[8];
        load_w8<WL>(W, N, K, n, k, vec, w);
#pragma unroll
        for (int m = 0; m < BG_ROWS; ++m) {
            if (m >= rows) break;
            const float* x = X + (size_t)(r0 + m) * K + k;
            float xv[8];
            if (vec) {
                float4 lo = *reinterpret_cast<const float4*>(x);
                float4 hi = *reinterpret_cast<const float4*>(x + 4);
                xv[0] = lo.x;
                xv[1] = lo.y;
                xv[2] = lo.z;
                xv[3] = lo.w;
                xv[4] = hi.x;
                xv[5] = hi.y;
                xv[6] = hi.z;
                xv[7] = hi.w;
            } else {
#pragma unroll
                for (int j = 0; j < 8; ++j) xv[j] = k + j < K ? x[j] : 0.0f;
            }
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                const float xj = ROUND_X ? bf16_to_f32(f32_to_bf16_rn(xv[j])) : xv[j];
                acc[m] = fmaf(xj, w[j], acc[m]);
            }
        }
    }
#pragma unroll
    for (int m = 0; m < BG_ROWS; ++m) {
        if (m >= rows) break;
        const float s = warp_sum(acc[m]);
        if (lane == 0) Y[(size_t)(r0 + m) * N + n] = s;
    }
}

// The GEMV entries of one weight type (any: widened to exact f32).
#define TALARIA_GEMV_ENTRIES(SUFFIX, WL)                                                          \
    extern "C" __global__ void talaria_fast_gemv_##SUFFIX(const float* X, const WL::T* W, float* Y, \
                                                          int M, int N, int K, int vec) {          \
        f32x_gemv<WL, false>(X, W, Y, M, N, K, vec);                                              \
    }                                                                                             \
    extern "C" __global__ void talaria_plain_gemv_##SUFFIX(const float* X, const WL::T* W, float* Y, \
                                                           int M, int N, int K, int vec) {         \
        f32x_gemv<WL, true>(X, W, Y, M, N, K, vec);                                               \
    }

// The tensor-core entries of one W tile kind.
#define TALARIA_MMA_ENTRIES(SUFFIX, WT)                                                           \
    extern "C" __global__ void __launch_bounds__(BF_THREADS)                                      \
        talaria_fast_mma_##SUFFIX(const float* X, const WT::T* W, float* Y, int M, int N, int K, int vec) { \
        mma_gemm<3, WT>(X, W, Y, M, N, K, vec);                                                   \
    }                                                                                             \
    extern "C" __global__ void __launch_bounds__(BF_THREADS)                                      \
        talaria_plain_mma_##SUFFIX(const float* X, const WT::T* W, float* Y, int M, int N, int K, int vec) { \
        mma_gemm<1, WT>(X, W, Y, M, N, K, vec);                                                   \
    }

TALARIA_GEMV_ENTRIES(bf16, WBf16)
TALARIA_GEMV_ENTRIES(f16, WF16)
TALARIA_GEMV_ENTRIES(f32, WF32)
TALARIA_MMA_ENTRIES(bf16, Bf16Tile)
#define TALARIA_QUANT_F32X_ENTRIES(SUFFIX, WL) \
    TALARIA_GEMV_ENTRIES(SUFFIX, WL)           \
    TALARIA_MMA_ENTRIES(SUFFIX, QuantTile<WL>)
TALARIA_QUANT_F32X_ENTRIES(q4_0, WQ4_0)
TALARIA_QUANT_F32X_ENTRIES(q4_1, WQ4_1)
TALARIA_QUANT_F32X_ENTRIES(q5_0, WQ5_0)
TALARIA_QUANT_F32X_ENTRIES(q5_1, WQ5_1)
TALARIA_QUANT_F32X_ENTRIES(q8_0, WQ8_0)
TALARIA_QUANT_F32X_ENTRIES(q4_k, WQ4K)
TALARIA_QUANT_F32X_ENTRIES(q5_k, WQ5K)
TALARIA_QUANT_F32X_ENTRIES(q6_k, WQ6K)
