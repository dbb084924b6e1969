// A tiny CUDA execution emulator for checking the Talaria kernels' indexing
// on a machine without a GPU: every CUDA thread of a block is a std::thread,
// __syncthreads is a block barrier, warp shuffles and the two mma.sync
// instructions are warp-collective operations over an exchange buffer that
// follow the PTX ISA fragment layouts. Blocks run one after another, so
// `__shared__` can simply be `static`. Slow (fine for small shapes), and only
// as right as its reading of the PTX layouts, which it states in one place.
#pragma once
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

#define TALARIA_EMU 1
#define TALARIA_DEVICE inline
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(n)

struct uint2 { unsigned x, y; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(16) double2 { double x, y; };
inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
inline float2 make_float2(float x, float y) { return {x, y}; }
inline double2 make_double2(double x, double y) { return {x, y}; }

struct EmuDim { unsigned x = 1, y = 1, z = 1; };
inline thread_local EmuDim threadIdx, blockIdx;
inline EmuDim blockDim, gridDim;

struct EmuWarp {
    std::barrier<> bar{32};
    uint64_t slot[32][4];
};
inline thread_local std::barrier<>* emu_block_bar = nullptr;
inline thread_local EmuWarp* emu_warp = nullptr;

inline void __syncthreads() { emu_block_bar->arrive_and_wait(); }
inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
// Round-to-nearest single operations (C++20 is ISO mode: g++ does not fuse them).
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline int emu_lane() { return threadIdx.x & 31; }

template <class T>
T __shfl_xor_sync(unsigned, T v, int mask) {
    static_assert(sizeof(T) <= 8);
    int lane = emu_lane();
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    emu_warp->slot[lane][0] = bits;
    emu_warp->bar.arrive_and_wait();
    uint64_t other = emu_warp->slot[lane ^ mask][0];
    emu_warp->bar.arrive_and_wait();
    T r;
    std::memcpy(&r, &other, sizeof(T));
    return r;
}

// mma.m8n8k4.row.col.f64: a = A[g][t], b = B[t][g], d[i] = D[g][2t+i].
inline void mma_f64_m8n8k4(double* d, double a, double b) {
    int lane = emu_lane(), g = lane >> 2, t = lane & 3;
    std::memcpy(&emu_warp->slot[lane][0], &a, 8);
    std::memcpy(&emu_warp->slot[lane][1], &b, 8);
    emu_warp->bar.arrive_and_wait();
    double out[2];
    for (int i = 0; i < 2; ++i) {
        int col = 2 * t + i;
        double s = d[i];
        for (int k = 0; k < 4; ++k) {
            double av, bv;
            std::memcpy(&av, &emu_warp->slot[g * 4 + k][0], 8);    // A[g][k]: lane (g, k)
            std::memcpy(&bv, &emu_warp->slot[col * 4 + k][1], 8);  // B[k][col]: lane (col, k)
            s = std::fma(av, bv, s);
        }
        out[i] = s;
    }
    emu_warp->bar.arrive_and_wait();
    d[0] = out[0];
    d[1] = out[1];
}

// mma.m16n8k16.row.col.f32.bf16: A element (r, c) is in lane (r%8)*4 + (c%8)/2,
// register (r/8) + 2*(c/8), half c%2; B element (k, n) in lane n*4 + (k%8)/2,
// register k/8, half k%2; d[0..2] = D[g][2t..], d[2..4] = D[g+8][2t..].
inline void mma_bf16_m16n8k16(float* d, const unsigned* a, const unsigned* b) {
    int lane = emu_lane(), g = lane >> 2, t = lane & 3;
    for (int i = 0; i < 4; ++i) emu_warp->slot[lane][i] = a[i];
    emu_warp->bar.arrive_and_wait();
    float A[16][16];
    for (int r = 0; r < 16; ++r)
        for (int c = 0; c < 16; ++c) {
            unsigned reg = (unsigned)emu_warp->slot[(r % 8) * 4 + (c % 8) / 2][(r / 8) + 2 * (c / 8)];
            unsigned h = (c % 2) ? reg >> 16 : reg & 0xffffu;
            A[r][c] = __uint_as_float(h << 16);
        }
    emu_warp->bar.arrive_and_wait();
    for (int i = 0; i < 2; ++i) emu_warp->slot[lane][i] = b[i];
    emu_warp->bar.arrive_and_wait();
    float B[16][8];
    for (int k = 0; k < 16; ++k)
        for (int n = 0; n < 8; ++n) {
            unsigned reg = (unsigned)emu_warp->slot[n * 4 + (k % 8) / 2][k / 8];
            unsigned h = (k % 2) ? reg >> 16 : reg & 0xffffu;
            B[k][n] = __uint_as_float(h << 16);
        }
    emu_warp->bar.arrive_and_wait();
    for (int e = 0; e < 4; ++e) {
        int row = g + (e / 2) * 8, col = 2 * t + (e % 2);
        float s = d[e];
        for (int k = 0; k < 16; ++k) s += A[row][k] * B[k][col];
        d[e] = s;
    }
}

// Runs `kernel` over the grid, one block at a time, a thread per CUDA thread.
inline void emu_launch(EmuDim grid, EmuDim block, const std::function<void()>& kernel) {
    gridDim = grid;
    blockDim = block;
    const unsigned n = block.x;  // 1-D blocks only
    for (unsigned by = 0; by < grid.y; ++by)
        for (unsigned bx = 0; bx < grid.x; ++bx) {
            std::barrier<> bar(n);
            std::vector<EmuWarp> warps((n + 31) / 32);
            std::vector<std::thread> threads;
            for (unsigned tid = 0; tid < n; ++tid)
                threads.emplace_back([&, tid] {
                    threadIdx = {tid, 0, 0};
                    blockIdx = {bx, by, 0};
                    emu_block_bar = &bar;
                    emu_warp = &warps[tid / 32];
                    kernel();
                    // A thread that returned early must not block the others' barriers.
                    bar.arrive_and_drop();
                    emu_warp->bar.arrive_and_drop();
                });
            for (auto& th : threads) th.join();
        }
}
