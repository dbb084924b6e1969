// Exact masked GEMM: Y (M×N, f64) = X (M×K, f64) · Wᵀ with W (N×K, row-major)
// stored in bf16 / f16 / f32 or GGUF quant blocks and widened in registers; products and sums are
// f64 throughout, so the result is an ordinary f64 dot product (only the
// summation order differs from a CPU loop).
//
// * exact_dmma: 64×64 block tile, 4 warps of 32×32, FP64 tensor cores
//   (mma.m8n8k4.f64), k-tiles of 16 double-buffered in shared memory with
//   the next tile prefetched into registers while the current one is used.
// * exact_dmma90: the same kernel issuing sm_90's m16n8k4 DMMA (on older
//   targets it compiles to the m8n8k4 pair).
// * exact_gemv: one warp per output column, up to 8 rows per block row
//   (grid.y covers more): the decode path (rows <= 8), where reading W once
//   is all that matters, and the fallback for GPUs without FP64 MMA.

#define EX_BM 64
#define EX_BN 64
#define EX_BK 16
#define EX_LD (EX_BK + 4)  // row stride 20 doubles: fragment reads are bank-conflict free
#define EX_THREADS 128

struct ExactPrefetch {
    double x[8];  // X tile: 4 pairs of 64×16
    float w[8];   // W tile: 2 quads of 64×16 (already widened)
};

template <class WL>
TALARIA_DEVICE void exact_load(ExactPrefetch& p, const double* __restrict__ X,
                               const typename WL::T* __restrict__ W, int M, int N, int K, int m0,
                               int n0, int k0, bool vec) {
    const int tid = threadIdx.x;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int u = tid + EX_THREADS * i;
        const int r = u >> 3, c = (u & 7) * 2;
        const int gm = m0 + r, gk = k0 + c;
        double v0 = 0.0, v1 = 0.0;
        if (gm < M) {
            const double* s = X + (size_t)gm * K + gk;
            if (vec) {
                if (gk < K) {
                    double2 d = *reinterpret_cast<const double2*>(s);
                    v0 = d.x;
                    v1 = d.y;
                }
            } else {
                if (gk < K) v0 = s[0];
                if (gk + 1 < K) v1 = s[1];
            }
        }
        p.x[2 * i] = v0;
        p.x[2 * i + 1] = v1;
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        const int u = tid + EX_THREADS * i;
        const int r = u >> 2, c = (u & 3) * 4;
        load_w4<WL>(W, N, K, n0 + r, k0 + c, vec, &p.w[4 * i]);
    }
}

TALARIA_DEVICE void exact_store(const ExactPrefetch& p, double2* sA, double2* sB) {
    const int tid = threadIdx.x;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int u = tid + EX_THREADS * i;
        const int r = u >> 3, c = (u & 7) * 2;
        sA[(r * EX_LD + c) / 2] = make_double2(p.x[2 * i], p.x[2 * i + 1]);
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        const int u = tid + EX_THREADS * i;
        const int r = u >> 2, c = (u & 3) * 4;
        sB[(r * EX_LD + c) / 2] = make_double2((double)p.w[4 * i], (double)p.w[4 * i + 1]);
        sB[(r * EX_LD + c) / 2 + 1] = make_double2((double)p.w[4 * i + 2], (double)p.w[4 * i + 3]);
    }
}

// SM90: issue sm_90's m16n8k4 DMMA (two 8-row tiles at once) instead of
// m8n8k4; the same tiles, fragments and summation order.
template <class WL, bool SM90>
TALARIA_DEVICE void exact_dmma(const double* __restrict__ X, const typename WL::T* __restrict__ W,
                               double* __restrict__ Y, int M, int N, int K, int vec_flag) {
    __shared__ double2 sA[2][EX_BM * EX_LD / 2];
    __shared__ double2 sB[2][EX_BN * EX_LD / 2];
    const bool vec = vec_flag != 0;
    const int m0 = blockIdx.y * EX_BM, n0 = blockIdx.x * EX_BN;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
    const int g = lane >> 2, t = lane & 3;

    double acc[4][4][2];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j][0] = acc[i][j][1] = 0.0;

    const int k_tiles = (K + EX_BK - 1) / EX_BK;
    ExactPrefetch p;
    exact_load<WL>(p, X, W, M, N, K, m0, n0, 0, vec);
    exact_store(p, sA[0], sB[0]);
    __syncthreads();

    for (int kt = 0; kt < k_tiles; ++kt) {
        const int stage = kt & 1;
        if (kt + 1 < k_tiles) exact_load<WL>(p, X, W, M, N, K, m0, n0, (kt + 1) * EX_BK, vec);
        const double* a_s = reinterpret_cast<const double*>(sA[stage]);
        const double* b_s = reinterpret_cast<const double*>(sB[stage]);
#pragma unroll
        for (int kk = 0; kk < EX_BK; kk += 4) {
            double a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) a[i] = a_s[(wm + i * 8 + g) * EX_LD + kk + t];
#pragma unroll
            for (int j = 0; j < 4; ++j) b[j] = b_s[(wn + j * 8 + g) * EX_LD + kk + t];
            if (SM90) {
#pragma unroll
                for (int i = 0; i < 4; i += 2)
#pragma unroll
                    for (int j = 0; j < 4; ++j) mma_f64_m16n8k4(acc[i][j], acc[i + 1][j], a[i], a[i + 1], b[j]);
            } else {
#pragma unroll
                for (int i = 0; i < 4; ++i)
#pragma unroll
                    for (int j = 0; j < 4; ++j) mma_f64_m8n8k4(acc[i][j], a[i], b[j]);
            }
        }
        // The other stage was last read before the previous barrier: safe to refill.
        if (kt + 1 < k_tiles) exact_store(p, sA[stage ^ 1], sB[stage ^ 1]);
        __syncthreads();
    }

    const bool pair_ok = (N & 1) == 0;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int row = m0 + wm + i * 8 + g;
        if (row >= M) continue;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int col = n0 + wn + j * 8 + 2 * t;
            double* dst = Y + (size_t)row * N + col;
            if (pair_ok && col + 1 < N) {
                *reinterpret_cast<double2*>(dst) = make_double2(acc[i][j][0], acc[i][j][1]);
            } else {
                if (col < N) dst[0] = acc[i][j][0];
                if (col + 1 < N) dst[1] = acc[i][j][1];
            }
        }
    }
}

#define GV_ROWS 8  // rows per block row of the GEMV kernels

template <class WL>
TALARIA_DEVICE void exact_gemv(const double* __restrict__ X, const typename WL::T* __restrict__ W,
                               double* __restrict__ Y, int M, int N, int K, int vec_flag) {
    const bool vec = vec_flag != 0;
    const int lane = threadIdx.x & 31;
    const int n = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const int r0 = blockIdx.y * GV_ROWS;
    if (n >= N) return;  // warp-uniform, and no block-wide barrier follows
    const int rows = M - r0 < GV_ROWS ? M - r0 : GV_ROWS;

    double acc[GV_ROWS];
#pragma unroll
    for (int m = 0; m < GV_ROWS; ++m) acc[m] = 0.0;

    for (int k = lane * 8; k < K; k += 32 * 8) {
        float w[8];
        load_w8<WL>(W, N, K, n, k, vec, w);
#pragma unroll
        for (int m = 0; m < GV_ROWS; ++m) {
            if (m >= rows) break;
            const double* x = X + (size_t)(r0 + m) * K + k;
            if (vec) {
#pragma unroll
                for (int j = 0; j < 8; j += 2) {
                    double2 xv = *reinterpret_cast<const double2*>(x + j);
                    acc[m] = fma(xv.x, (double)w[j], acc[m]);
                    acc[m] = fma(xv.y, (double)w[j + 1], acc[m]);
                }
            } else {
#pragma unroll
                for (int j = 0; j < 8; ++j)
                    if (k + j < K) acc[m] = fma(x[j], (double)w[j], acc[m]);
            }
        }
    }
#pragma unroll
    for (int m = 0; m < GV_ROWS; ++m) {
        if (m >= rows) break;
        const double s = warp_sum(acc[m]);
        if (lane == 0) Y[(size_t)(r0 + m) * N + n] = s;
    }
}

#define TALARIA_EXACT_ENTRIES(SUFFIX, WL)                                                         \
    extern "C" __global__ void __launch_bounds__(EX_THREADS)                                    \
        talaria_exact_dmma_##SUFFIX(const double* X, const WL::T* W, double* Y, int M, int N,     \
                                    int K, int vec) {                                           \
        exact_dmma<WL, false>(X, W, Y, M, N, K, vec);                                           \
    }                                                                                           \
    extern "C" __global__ void __launch_bounds__(EX_THREADS)                                    \
        talaria_exact_dmma90_##SUFFIX(const double* X, const WL::T* W, double* Y, int M, int N,   \
                                      int K, int vec) {                                         \
        exact_dmma<WL, true>(X, W, Y, M, N, K, vec);                                            \
    }                                                                                           \
    extern "C" __global__ void talaria_exact_gemv_##SUFFIX(const double* X, const WL::T* W,      \
                                                           double* Y, int M, int N, int K,       \
                                                           int vec) {                            \
        exact_gemv<WL>(X, W, Y, M, N, K, vec);                                                  \
    }

TALARIA_EXACT_ENTRIES(bf16, WBf16)
TALARIA_EXACT_ENTRIES(f16, WF16)
TALARIA_EXACT_ENTRIES(f32, WF32)
TALARIA_EXACT_ENTRIES(q4_0, WQ4_0)
TALARIA_EXACT_ENTRIES(q4_1, WQ4_1)
TALARIA_EXACT_ENTRIES(q5_0, WQ5_0)
TALARIA_EXACT_ENTRIES(q5_1, WQ5_1)
TALARIA_EXACT_ENTRIES(q8_0, WQ8_0)
TALARIA_EXACT_ENTRIES(q4_k, WQ4K)
TALARIA_EXACT_ENTRIES(q5_k, WQ5K)
TALARIA_EXACT_ENTRIES(q6_k, WQ6K)
