// bf16 tensor-core GEMMs, Y (M×N, f32) = X (M×K, f32) · Wᵀ with W (N×K,
// row-major) in bf16 and f32 accumulation:
//
// * fast (LIMBS = 3): each x is split into three bf16 limbs, hi = bf16(x),
//   mid = bf16(x − hi), lo = bf16(x − hi − mid) (both differences are exact
//   in f32), so hi + mid + lo carries all 24 bits of x; each limb is
//   multiplied by W on the bf16 tensor cores and the three products summed
//   in the same f32 accumulators (smallest limb first).
// * plain (LIMBS = 1): x rounded once to bf16: the unprotected baseline.
//
// 64×64 block tile, 4 warps of 32×32 (2×4 mma.m16n8k16 tiles each), k-tiles
// of 32 double-buffered in shared memory, next tile prefetched in registers.
// The limb split happens once per element when the tile is stored.
//
// bf16_gemv: one warp per output column, 8 rows per block row, f32 FMA on
// CUDA cores (rows <= 8, and the fallback below sm_80). Its "fast" flavour
// multiplies the unsplit f32 x, which is at least as accurate as 3 limbs.

#define BF_BM 64
#define BF_BN 64
#define BF_BK 32
#define BF_LD (BF_BK + 8)  // 40 u16 = 20 words per row: fragment reads are bank-conflict free
#define BF_THREADS 128
#define BF_TILE_U4 (BF_BM * BF_LD / 8)  // one 64×40 u16 tile in uint4 units

struct Bf16Prefetch {
    float x[16];  // X tile: 4 quads of 64×32
    uint4 w[2];   // W tile: 2 groups of 8 bf16 of 64×32
};

TALARIA_DEVICE void bf16_load(Bf16Prefetch& p, const float* __restrict__ X,
                              const u16* __restrict__ W, int M, int N, int K, int m0, int n0,
                              int k0, bool vec) {
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
                q = make_uint4(h[0] | (h[1] << 16), h[2] | (h[3] << 16), h[4] | (h[5] << 16),
                               h[6] | (h[7] << 16));
            }
        }
        p.w[i] = q;
    }
}

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

template <int LIMBS>
TALARIA_DEVICE void bf16_store(const Bf16Prefetch& p, uint4* sA /* [LIMBS][tile] */, uint4* sB) {
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
            uint2* dst = reinterpret_cast<uint2*>(reinterpret_cast<u16*>(sA + l * BF_TILE_U4) +
                                                  r * BF_LD + c);
            *dst = make_uint2(limb[0][l] | (limb[1][l] << 16), limb[2][l] | (limb[3][l] << 16));
        }
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        const int u = tid + BF_THREADS * i;
        const int r = u >> 2, c = (u & 3) * 8;
        sB[(r * BF_LD + c) / 8] = p.w[i];
    }
}

template <int LIMBS>
TALARIA_DEVICE void bf16_mma_gemm(const float* __restrict__ X, const u16* __restrict__ W,
                                  float* __restrict__ Y, int M, int N, int K, int vec_flag) {
    __shared__ uint4 sA[2][LIMBS * BF_TILE_U4];
    __shared__ uint4 sB[2][BF_TILE_U4];
    const bool vec = vec_flag != 0;
    const int m0 = blockIdx.y * BF_BM, n0 = blockIdx.x * BF_BN;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
    const int g = lane >> 2, t = lane & 3;

    float acc[2][4][4];
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

    const int k_tiles = (K + BF_BK - 1) / BF_BK;
    Bf16Prefetch p;
    bf16_load(p, X, W, M, N, K, m0, n0, 0, vec);
    bf16_store<LIMBS>(p, sA[0], sB[0]);
    __syncthreads();

    for (int kt = 0; kt < k_tiles; ++kt) {
        const int stage = kt & 1;
        if (kt + 1 < k_tiles) bf16_load(p, X, W, M, N, K, m0, n0, (kt + 1) * BF_BK, vec);
        const u16* a_s = reinterpret_cast<const u16*>(sA[stage]);
        const u16* b_s = reinterpret_cast<const u16*>(sB[stage]);
#pragma unroll
        for (int kk = 0; kk < BF_BK; kk += 16) {
            u32 b[4][2];
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const u16* q = b_s + (wn + j * 8 + g) * BF_LD + kk + 2 * t;
                b[j][0] = *reinterpret_cast<const u32*>(q);
                b[j][1] = *reinterpret_cast<const u32*>(q + 8);
            }
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
                    for (int j = 0; j < 4; ++j) mma_bf16_m16n8k16(acc[i][j], a, b[j]);
                }
            }
        }
        if (kt + 1 < k_tiles) bf16_store<LIMBS>(p, sA[stage ^ 1], sB[stage ^ 1]);
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

#define BG_ROWS 8  // rows per block row of bf16_gemv

template <bool ROUND_X>
TALARIA_DEVICE void bf16_gemv(const float* __restrict__ X, const u16* __restrict__ W,
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
        load_w8<WBf16>(W, N, K, n, k, vec, w);
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

extern "C" __global__ void __launch_bounds__(BF_THREADS)
    talaria_fast_mma_bf16(const float* X, const u16* W, float* Y, int M, int N, int K, int vec) {
    bf16_mma_gemm<3>(X, W, Y, M, N, K, vec);
}

extern "C" __global__ void __launch_bounds__(BF_THREADS)
    talaria_plain_mma_bf16(const float* X, const u16* W, float* Y, int M, int N, int K, int vec) {
    bf16_mma_gemm<1>(X, W, Y, M, N, K, vec);
}

extern "C" __global__ void talaria_fast_gemv_bf16(const float* X, const u16* W, float* Y, int M,
                                                  int N, int K, int vec) {
    bf16_gemv<false>(X, W, Y, M, N, K, vec);
}

extern "C" __global__ void talaria_plain_gemv_bf16(const float* X, const u16* W, float* Y, int M,
                                                   int N, int K, int vec) {
    bf16_gemv<true>(X, W, Y, M, N, K, vec);
}
