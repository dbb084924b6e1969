// Shared prelude of every Talaria CUDA source. The Rust side prepends it to
// each .cu file before NVRTC sees it (NVRTC gets no include paths, so nothing
// here may include a header). bench/gpu/emu compiles the same text with g++
// (TALARIA_EMU defined) to run the kernels on a CPU thread emulator.

typedef unsigned short u16;
typedef unsigned int u32;

#ifndef TALARIA_EMU
#define TALARIA_DEVICE __device__ __forceinline__
#endif

// Tensor-core instructions exist from sm_80 on; the kernels that use them are
// compiled to a trap elsewhere and never launched there.
#if defined(TALARIA_EMU) || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800)
#define TALARIA_HAS_MMA 1
#else
#define TALARIA_HAS_MMA 0
#endif

// ---------------------------------------------------------------- conversions

TALARIA_DEVICE float bf16_to_f32(u32 h) { return __uint_as_float((h & 0xffffu) << 16); }

// Round-to-nearest-even to bf16, done in integer arithmetic so that it is the
// same on every architecture (and in the emulator). NaN stays NaN.
TALARIA_DEVICE u32 f32_to_bf16_rn(float f) {
    u32 u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x40u;
    u += 0x7fffu + ((u >> 16) & 1u);
    return u >> 16;
}

TALARIA_DEVICE float f16_to_f32(u32 h) {
#if defined(TALARIA_EMU)
    u32 sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0x1fu) return __uint_as_float(sign | 0x7f800000u | (man << 13));
    if (exp == 0u) {
        float v = (float)man * 5.9604644775390625e-8f;  // man · 2^-24 (zero or subnormal)
        return sign ? -v : v;
    }
    return __uint_as_float(sign | ((exp + 112u) << 23) | (man << 13));
#else
    float f;
    unsigned short hs = (unsigned short)h;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(hs));
    return f;
#endif
}

// ------------------------------------------------------------ weight loaders
// W is row-major N×K (d_out × d_in). Each loader widens to f32 (exact for all
// three storage types). `vec` is true when K % 8 == 0, which makes every
// 8-element group of a row start 16-byte aligned (device allocations are
// 256-byte aligned) and lie entirely inside the row.

struct WBf16 {
    typedef u16 T;
    enum { VALUES = 1 };
    static TALARIA_DEVICE float cvt(u32 v) { return bf16_to_f32(v); }
};
struct WF16 {
    typedef u16 T;
    enum { VALUES = 1 };
    static TALARIA_DEVICE float cvt(u32 v) { return f16_to_f32(v); }
};
struct WF32 {
    typedef float T;
    enum { VALUES = 1 };
    static TALARIA_DEVICE float cvt(float v) { return v; }
};

// GGUF quant blocks as stored (ggml-common.h layouts), read in place: each
// loader gives value `i` of a block (VALUES values in BYTES bytes) as the
// exact f32 value ggml's dequantize_row_* gives (kernels/src/weight on the
// CPU side): every product of a scale and a quant is exact, and the one
// rounding, where there is one, is ggml's. Rows are whole blocks.
typedef unsigned char u8;

TALARIA_DEVICE float f16_at(const u8* p) { return f16_to_f32((u32)p[0] | ((u32)p[1] << 8)); }
// Quant `i` of 32 nibbles in 16 bytes: low nibbles first, then high ones.
TALARIA_DEVICE int nibble_at(const u8* qs, int i) { return i < 16 ? qs[i] & 15 : qs[i - 16] >> 4; }
TALARIA_DEVICE int fifth_bit(const u8* qh, int i) { return ((qh[i >> 3] >> (i & 7)) & 1) << 4; }

// Besides `value`, each type gives its values as `s·q + m` with a small
// integer q (|q| <= 128, exact in bf16) and a scale s and min m shared by
// 16 consecutive values (`split(b, i, &s, &m)` for values i..i+16 of block
// b, i a multiple of 16): the fast and plain tensor-core kernels multiply
// the quants and apply s and m per 16 values. HAS_MIN: m is not always 0.
struct WQ4_0 {
    typedef u8 T;
    enum { VALUES = 32, BYTES = 18, HAS_MIN = 0 };
    static TALARIA_DEVICE int quant(const u8* b, int i) { return nibble_at(b + 2, i) - 8; }
    static TALARIA_DEVICE float value(const u8* b, int i) { return (float)quant(b, i) * f16_at(b); }
    static TALARIA_DEVICE void split(const u8* b, int, float* s, float* m) { *s = f16_at(b); *m = 0.0f; }
};
struct WQ4_1 {
    typedef u8 T;
    enum { VALUES = 32, BYTES = 20, HAS_MIN = 1 };
    static TALARIA_DEVICE int quant(const u8* b, int i) { return nibble_at(b + 4, i); }
    static TALARIA_DEVICE float value(const u8* b, int i) {
        return __fadd_rn(__fmul_rn((float)quant(b, i), f16_at(b)), f16_at(b + 2));
    }
    static TALARIA_DEVICE void split(const u8* b, int, float* s, float* m) { *s = f16_at(b); *m = f16_at(b + 2); }
};
struct WQ5_0 {
    typedef u8 T;
    enum { VALUES = 32, BYTES = 22, HAS_MIN = 0 };
    static TALARIA_DEVICE int quant(const u8* b, int i) { return (nibble_at(b + 6, i) | fifth_bit(b + 2, i)) - 16; }
    static TALARIA_DEVICE float value(const u8* b, int i) { return (float)quant(b, i) * f16_at(b); }
    static TALARIA_DEVICE void split(const u8* b, int, float* s, float* m) { *s = f16_at(b); *m = 0.0f; }
};
struct WQ5_1 {
    typedef u8 T;
    enum { VALUES = 32, BYTES = 24, HAS_MIN = 1 };
    static TALARIA_DEVICE int quant(const u8* b, int i) { return nibble_at(b + 8, i) | fifth_bit(b + 4, i); }
    static TALARIA_DEVICE float value(const u8* b, int i) {
        return __fadd_rn(__fmul_rn((float)quant(b, i), f16_at(b)), f16_at(b + 2));
    }
    static TALARIA_DEVICE void split(const u8* b, int, float* s, float* m) { *s = f16_at(b); *m = f16_at(b + 2); }
};
struct WQ8_0 {
    typedef u8 T;
    enum { VALUES = 32, BYTES = 34, HAS_MIN = 0 };
    static TALARIA_DEVICE int quant(const u8* b, int i) { return (signed char)b[2 + i]; }
    static TALARIA_DEVICE float value(const u8* b, int i) { return (float)quant(b, i) * f16_at(b); }
    static TALARIA_DEVICE void split(const u8* b, int, float* s, float* m) { *s = f16_at(b); *m = 0.0f; }
};
// Q4_K / Q5_K: sub-block s = i / 32 has a 6-bit scale and min packed in 12
// bytes (ggml's get_scale_min_k4); value = d·sc · q − dmin·m.
TALARIA_DEVICE void k_scale_min(const u8* b, int s, float* d1, float* m1) {
    const u8* sc = b + 4;
    int scale, min;
    if (s < 4) {
        scale = sc[s] & 63;
        min = sc[s + 4] & 63;
    } else {
        scale = (sc[s + 4] & 15) | ((sc[s - 4] >> 6) << 4);
        min = (sc[s + 4] >> 4) | ((sc[s] >> 6) << 4);
    }
    *d1 = __fmul_rn(f16_at(b), (float)scale);
    *m1 = __fmul_rn(f16_at(b + 2), (float)min);
}
TALARIA_DEVICE int k_quant(const u8* qs, const u8* qh, int i) {
    const int s = i >> 5, l = i & 31;
    const int byte = qs[(s >> 1) * 32 + l];
    int q = (s & 1) ? byte >> 4 : byte & 15;
    if (qh) q |= ((qh[l] >> s) & 1) << 4;
    return q;
}
TALARIA_DEVICE float k_value(const u8* b, const u8* qs, const u8* qh, int i) {
    float d1, m1;
    k_scale_min(b, i >> 5, &d1, &m1);
    return __fsub_rn(__fmul_rn(d1, (float)k_quant(qs, qh, i)), m1);
}
TALARIA_DEVICE void k_split(const u8* b, int i, float* s, float* m) {
    k_scale_min(b, i >> 5, s, m);
    *m = -*m;
}
struct WQ4K {
    typedef u8 T;
    enum { VALUES = 256, BYTES = 144, HAS_MIN = 1 };
    static TALARIA_DEVICE int quant(const u8* b, int i) { return k_quant(b + 16, nullptr, i); }
    static TALARIA_DEVICE float value(const u8* b, int i) { return k_value(b, b + 16, nullptr, i); }
    static TALARIA_DEVICE void split(const u8* b, int i, float* s, float* m) { k_split(b, i, s, m); }
};
struct WQ5K {
    typedef u8 T;
    enum { VALUES = 256, BYTES = 176, HAS_MIN = 1 };
    static TALARIA_DEVICE int quant(const u8* b, int i) { return k_quant(b + 48, b + 16, i); }
    static TALARIA_DEVICE float value(const u8* b, int i) { return k_value(b, b + 48, b + 16, i); }
    static TALARIA_DEVICE void split(const u8* b, int i, float* s, float* m) { k_split(b, i, s, m); }
};
// Q6_K: ql[128], qh[64], 16 signed 8-bit scales (one per 16 values), d;
// value = (d·sc)·(q − 32).
struct WQ6K {
    typedef u8 T;
    enum { VALUES = 256, BYTES = 210, HAS_MIN = 0 };
    static TALARIA_DEVICE int quant(const u8* b, int i) {
        const int half = i >> 7, g = (i >> 5) & 3, l = i & 31;
        const u8* ql = b + half * 64 + (g & 1) * 32;
        const u8* qh = b + 128 + half * 32;
        return (((ql[l] >> ((g >> 1) * 4)) & 15) | (((qh[l] >> (2 * g)) & 3) << 4)) - 32;
    }
    static TALARIA_DEVICE float scale(const u8* b, int i) {
        return __fmul_rn(f16_at(b + 208), (float)(signed char)b[192 + (i >> 4)]);
    }
    static TALARIA_DEVICE float value(const u8* b, int i) { return __fmul_rn(scale(b, i), (float)quant(b, i)); }
    static TALARIA_DEVICE void split(const u8* b, int i, float* s, float* m) { *s = scale(b, i); *m = 0.0f; }
};

// 4 consecutive weights W[r][k..k+4] of a plain float type (zero outside
// the matrix). In vec mode k must be a multiple of 4.
template <class WL>
TALARIA_DEVICE void load_w4_plain(const typename WL::T* __restrict__ W, int K, int r, int k, bool vec, float* o) {
    const typename WL::T* s = W + (size_t)r * K + k;
    if (vec) {
        if (k >= K) return;
        if constexpr (sizeof(typename WL::T) == 2) {
            uint2 q = *reinterpret_cast<const uint2*>(s);
            o[0] = WL::cvt(q.x & 0xffffu);
            o[1] = WL::cvt(q.x >> 16);
            o[2] = WL::cvt(q.y & 0xffffu);
            o[3] = WL::cvt(q.y >> 16);
        } else {
            float4 q = *reinterpret_cast<const float4*>(s);
            o[0] = q.x;
            o[1] = q.y;
            o[2] = q.z;
            o[3] = q.w;
        }
    } else {
#pragma unroll
        for (int j = 0; j < 4; ++j)
            if (k + j < K) o[j] = WL::cvt(s[j]);
    }
}

// The same from a row of quant blocks.
template <class WL>
TALARIA_DEVICE void load_w4_blocks(const u8* __restrict__ W, int K, int r, int k, float* o) {
    const u8* row = W + (size_t)r * (K / WL::VALUES) * WL::BYTES;
#pragma unroll
    for (int j = 0; j < 4; ++j)
        if (k + j < K) o[j] = WL::value(row + (size_t)((k + j) / WL::VALUES) * WL::BYTES, (k + j) % WL::VALUES);
}

// 4 consecutive weights W[r][k..k+4] (zero outside the matrix). In vec mode
// k must be a multiple of 4.
template <class WL>
TALARIA_DEVICE void load_w4(const typename WL::T* __restrict__ W, int N, int K, int r, int k,
                            bool vec, float* o) {
    o[0] = o[1] = o[2] = o[3] = 0.0f;
    if (r >= N) return;
    if constexpr (WL::VALUES > 1)
        load_w4_blocks<WL>(W, K, r, k, o);
    else
        load_w4_plain<WL>(W, K, r, k, vec, o);
}

// 8 consecutive weights W[r][k..k+8]; in vec mode k must be a multiple of 8.
template <class WL>
TALARIA_DEVICE void load_w8(const typename WL::T* __restrict__ W, int N, int K, int r, int k,
                            bool vec, float* o) {
    if constexpr (sizeof(typename WL::T) == 2) {
        if (vec && r < N && k < K) {
            uint4 q = *reinterpret_cast<const uint4*>(W + (size_t)r * K + k);
            o[0] = WL::cvt(q.x & 0xffffu);
            o[1] = WL::cvt(q.x >> 16);
            o[2] = WL::cvt(q.y & 0xffffu);
            o[3] = WL::cvt(q.y >> 16);
            o[4] = WL::cvt(q.z & 0xffffu);
            o[5] = WL::cvt(q.z >> 16);
            o[6] = WL::cvt(q.w & 0xffffu);
            o[7] = WL::cvt(q.w >> 16);
            return;
        }
    }
    load_w4<WL>(W, N, K, r, k, vec, o);
    load_w4<WL>(W, N, K, r, k + 4, vec, o + 4);
}

// --------------------------------------------------------------- warp sums

TALARIA_DEVICE double warp_sum(double v) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

TALARIA_DEVICE float warp_sum(float v) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

// ------------------------------------------------------- tensor-core wrappers
// Fragment layouts (PTX ISA, "Matrix fragments for mma"), g = lane / 4,
// t = lane % 4:
//  m8n8k4 f64:   a = A[g][t], b = B[t][g], d[i] = D[g][2t + i].
//  m16n8k16 bf16: a[0] = A[g][2t..2t+2], a[1] = A[g+8][2t..], a[2] = A[g][2t+8..],
//                 a[3] = A[g+8][2t+8..]; b[0] = B[2t..2t+2][g], b[1] = B[2t+8..][g];
//                 d[0..2] = D[g][2t..2t+2], d[2..4] = D[g+8][2t..2t+2].
//  (the lower 16 bits of a packed register hold the lower column / row index)

#if !defined(TALARIA_EMU)
TALARIA_DEVICE void mma_f64_m8n8k4(double* d, double a, double b) {
#if TALARIA_HAS_MMA
    asm volatile("mma.sync.aligned.m8n8k4.row.col.f64.f64.f64.f64 {%0, %1}, {%2}, {%3}, {%0, %1};\n"
                 : "+d"(d[0]), "+d"(d[1])
                 : "d"(a), "d"(b));
#else
    asm volatile("trap;");
#endif
}

TALARIA_DEVICE void mma_bf16_m16n8k16(float* d, const u32* a, const u32* b) {
#if TALARIA_HAS_MMA
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
    asm volatile("trap;");
#endif
}
#endif

// sm_90's m16n8k4 DMMA: two vertically adjacent m8n8k4 tiles in one
// instruction, with the same A/B fragments (a0: row g, a1: row g + 8;
// d_lo: the upper tile's accumulators, d_hi: the lower one's).
TALARIA_DEVICE void mma_f64_m16n8k4(double* d_lo, double* d_hi, double a0, double a1, double b) {
#if TALARIA_HAS_MMA && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mma.sync.aligned.m16n8k4.row.col.f64.f64.f64.f64 {%0, %1, %2, %3}, {%4, %5}, {%6}, {%0, %1, %2, %3};\n"
                 : "+d"(d_lo[0]), "+d"(d_lo[1]), "+d"(d_hi[0]), "+d"(d_hi[1])
                 : "d"(a0), "d"(a1), "d"(b));
#else
    mma_f64_m8n8k4(d_lo, a0, b);
    mma_f64_m8n8k4(d_hi, a1, b);
#endif
}

