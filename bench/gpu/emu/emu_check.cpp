// Runs every Talaria CUDA kernel on the CPU emulator (emu.h) against a
// double-precision reference, on shapes that hit the tile edges, both the
// vectorised (K % 8 == 0) and the scalar load paths, and several row blocks.
// With a fixture file (argv[1], written by kernels-cuda/tests/cuda_emu.rs:
// random GGUF quant blocks and their exact values from the CPU side), also
// the exact kernels reading those blocks in place.
// Build and run: bash bench/gpu/emu/run.sh
#include "emu.h"

#include <cstdio>
#include <random>
#include <string>

#include "../../../kernels-cuda/src/kernels/common.cuh"
#include "../../../kernels-cuda/src/kernels/gemm_exact.cu"
#include "../../../kernels-cuda/src/kernels/gemm_bf16.cu"

static std::mt19937_64 rng(12345);
static int failures = 0;

static double uniform() { return std::uniform_real_distribution<double>(-1.0, 1.0)(rng); }

static float round_bf16(float v) { return bf16_to_f32(f32_to_bf16_rn(v)); }

enum class WType { Bf16, F16, F32 };

struct Weights {
    std::vector<float> wide;  // values as the kernel sees them after widening
    std::vector<u16> h;       // bf16 / f16 bits
    std::vector<float> f;     // f32 storage
};

static Weights make_weights(int n, int k, WType type) {
    Weights w;
    for (int i = 0; i < n * k; ++i) {
        float v = (float)uniform();
        if (type == WType::Bf16) {
            u16 b = (u16)f32_to_bf16_rn(v);
            w.h.push_back(b);
            w.wide.push_back(bf16_to_f32(b));
        } else if (type == WType::F16) {
            _Float16 hv = (_Float16)v;
            u16 b;
            std::memcpy(&b, &hv, 2);
            w.h.push_back(b);
            w.wide.push_back((float)hv);
        } else {
            w.f.push_back(v);
            w.wide.push_back(v);
        }
    }
    return w;
}

static void report(const char* what, int m, int n, int k, double err, double limit, bool below) {
    bool ok = below ? err <= limit : err > limit;
    if (!ok) ++failures;
    std::printf("%-28s M=%3d N=%3d K=%3d  rel err %.3e (%s %.1e)  %s\n", what, m, n, k, err,
                below ? "<=" : ">", limit, ok ? "ok" : "FAIL");
}

template <class T>
static double rel_err(const std::vector<T>& y, const std::vector<double>& ref) {
    double num = 0, den = 0;
    for (size_t i = 0; i < y.size(); ++i) {
        num = std::max(num, std::fabs((double)y[i] - ref[i]));
        den = std::max(den, std::fabs(ref[i]));
    }
    return num / den;
}

static std::vector<double> reference(const std::vector<double>& x, const std::vector<float>& w,
                                     int m, int n, int k) {
    std::vector<double> y(m * n);
    for (int r = 0; r < m; ++r)
        for (int c = 0; c < n; ++c) {
            long double s = 0;
            for (int i = 0; i < k; ++i) s += (long double)x[r * k + i] * w[c * k + i];
            y[r * n + c] = (double)s;
        }
    return y;
}

static void check_exact(bool gemv, WType type, int m, int n, int k) {
    Weights w = make_weights(n, k, type);
    std::vector<double> x(m * k);
    for (auto& v : x) v = uniform() * 1e4;  // masked rows are large: x + κ·pad
    std::vector<double> y(m * n, -7.0);
    const int vec = k % 8 == 0;
    auto run = [&] {
        const double* X = x.data();
        double* Y = y.data();
        if (gemv) {
            if (type == WType::Bf16) talaria_exact_gemv_bf16(X, w.h.data(), Y, m, n, k, vec);
            if (type == WType::F16) talaria_exact_gemv_f16(X, w.h.data(), Y, m, n, k, vec);
            if (type == WType::F32) talaria_exact_gemv_f32(X, w.f.data(), Y, m, n, k, vec);
        } else {
            if (type == WType::Bf16) talaria_exact_dmma_bf16(X, w.h.data(), Y, m, n, k, vec);
            if (type == WType::F16) talaria_exact_dmma_f16(X, w.h.data(), Y, m, n, k, vec);
            if (type == WType::F32) talaria_exact_dmma_f32(X, w.f.data(), Y, m, n, k, vec);
        }
    };
    if (gemv)
        emu_launch({(unsigned)(n + 7) / 8, (unsigned)(m + 7) / 8, 1}, {256, 1, 1}, run);
    else
        emu_launch({(unsigned)(n + 63) / 64, (unsigned)(m + 63) / 64, 1}, {128, 1, 1}, run);
    const char* tn = type == WType::Bf16 ? "bf16" : type == WType::F16 ? "f16" : "f32";
    char name[64];
    std::snprintf(name, sizeof name, "exact_%s_%s", gemv ? "gemv" : "dmma", tn);
    report(name, m, n, k, rel_err(y, reference(x, w.wide, m, n, k)), 1e-13, true);
}

// Fast (f32 x) or plain (bf16-rounded x) f32-activation kernels: `run`
// launches the kernel on (X, Y); `wide` holds the weights' exact values.
static void check_f32x(const char* name, bool gemv, bool fast, int m, int n, int k, const std::vector<float>& wide,
                       double tol, const std::function<void(const float*, float*)>& run) {
    std::vector<float> x((size_t)m * k);
    for (auto& v : x) v = (float)(uniform() * 100.0);
    std::vector<double> xd(x.begin(), x.end()), xr((size_t)m * k);
    for (size_t i = 0; i < x.size(); ++i) xr[i] = round_bf16(x[i]);
    std::vector<float> y((size_t)m * n, -7.0f);
    auto launch = [&] { run(x.data(), y.data()); };
    if (gemv)
        emu_launch({(unsigned)(n + 7) / 8, (unsigned)(m + 7) / 8, 1}, {256, 1, 1}, launch);
    else
        emu_launch({(unsigned)(n + 63) / 64, (unsigned)(m + 63) / 64, 1}, {128, 1, 1}, launch);
    const double exact_err = rel_err(y, reference(xd, wide, m, n, k));
    if (fast) {
        report(name, m, n, k, exact_err, tol, true);
    } else {
        // Plain must match bf16-rounded activations, and so differ from exact.
        report(name, m, n, k, rel_err(y, reference(xr, wide, m, n, k)), tol, true);
        report("  (plain differs from exact)", m, n, k, exact_err, 1e-4, false);
    }
}

static void check_bf16(bool gemv, bool fast, int m, int n, int k) {
    Weights w = make_weights(n, k, WType::Bf16);
    const int vec = k % 8 == 0;
    char name[64];
    std::snprintf(name, sizeof name, "%s_%s_bf16", fast ? "fast" : "plain", gemv ? "gemv" : "mma");
    check_f32x(name, gemv, fast, m, n, k, w.wide, 2e-6, [&](const float* X, float* Y) {
        const u16* W = w.h.data();
        if (gemv) {
            if (fast) talaria_fast_gemv_bf16(X, W, Y, m, n, k, vec);
            else talaria_plain_gemv_bf16(X, W, Y, m, n, k, vec);
        } else {
            if (fast) talaria_fast_mma_bf16(X, W, Y, m, n, k, vec);
            else talaria_plain_mma_bf16(X, W, Y, m, n, k, vec);
        }
    });
}

// The GEMV kernels on f16 and f32 weights (the tensor-core ones take bf16
// and quant blocks only).
static void check_gemv_wide(WType type, bool fast, int m, int n, int k) {
    Weights w = make_weights(n, k, type);
    const int vec = k % 8 == 0;
    char name[64];
    std::snprintf(name, sizeof name, "%s_gemv_%s", fast ? "fast" : "plain", type == WType::F16 ? "f16" : "f32");
    check_f32x(name, true, fast, m, n, k, w.wide, 2e-6, [&](const float* X, float* Y) {
        if (type == WType::F16) {
            if (fast) talaria_fast_gemv_f16(X, w.h.data(), Y, m, n, k, vec);
            else talaria_plain_gemv_f16(X, w.h.data(), Y, m, n, k, vec);
        } else {
            if (fast) talaria_fast_gemv_f32(X, w.f.data(), Y, m, n, k, vec);
            else talaria_plain_gemv_f32(X, w.f.data(), Y, m, n, k, vec);
        }
    });
}

// One fixture case: a quant type's name, an n × k matrix of its blocks and
// the values the CPU side gives them.
struct QuantCase {
    std::string type;
    int n, k;
    std::vector<u8> bytes;
    std::vector<float> values;
};

static std::vector<QuantCase> read_fixture(const char* path) {
    std::vector<QuantCase> cases;
    FILE* f = std::fopen(path, "rb");
    if (!f) {
        std::printf("cannot open fixture %s FAIL\n", path);
        ++failures;
        return cases;
    }
    u32 head[4];  // name length, n, k, byte count
    while (std::fread(head, 4, 4, f) == 4) {
        QuantCase c;
        c.type.resize(head[0]);
        c.n = (int)head[1];
        c.k = (int)head[2];
        c.bytes.resize(head[3]);
        c.values.resize((size_t)c.n * c.k);
        bool ok = std::fread(c.type.data(), 1, head[0], f) == head[0] &&
                  std::fread(c.bytes.data(), 1, head[3], f) == head[3] &&
                  std::fread(c.values.data(), 4, c.values.size(), f) == c.values.size();
        if (!ok) {
            std::printf("truncated fixture FAIL\n");
            ++failures;
            break;
        }
        cases.push_back(std::move(c));
    }
    std::fclose(f);
    return cases;
}

#define QUANT_KERNELS(SUFFIX)                                                              \
    if (c.type == #SUFFIX) {                                                               \
        if (gemv) talaria_exact_gemv_##SUFFIX(X, W, Y, m, c.n, c.k, 1);                    \
        else talaria_exact_dmma_##SUFFIX(X, W, Y, m, c.n, c.k, 1);                         \
    }

static void check_exact_quant(const QuantCase& c, bool gemv, int m) {
    std::vector<double> x((size_t)m * c.k);
    for (auto& v : x) v = uniform() * 1e4;
    std::vector<double> y((size_t)m * c.n, -7.0);
    auto run = [&] {
        const double* X = x.data();
        const u8* W = c.bytes.data();
        double* Y = y.data();
        QUANT_KERNELS(q4_0) QUANT_KERNELS(q4_1) QUANT_KERNELS(q5_0) QUANT_KERNELS(q5_1)
        QUANT_KERNELS(q8_0) QUANT_KERNELS(q4_k) QUANT_KERNELS(q5_k) QUANT_KERNELS(q6_k)
    };
    if (gemv)
        emu_launch({(unsigned)(c.n + 7) / 8, (unsigned)(m + 7) / 8, 1}, {256, 1, 1}, run);
    else
        emu_launch({(unsigned)(c.n + 63) / 64, (unsigned)(m + 63) / 64, 1}, {128, 1, 1}, run);
    char name[64];
    std::snprintf(name, sizeof name, "exact_%s_%s", gemv ? "gemv" : "dmma", c.type.c_str());
    report(name, m, c.n, c.k, rel_err(y, reference(x, c.values, m, c.n, c.k)), 1e-13, true);
}

#define F32X_QUANT_KERNELS(SUFFIX)                                                              \
    if (c.type == #SUFFIX) {                                                                    \
        if (gemv) (fast ? talaria_fast_gemv_##SUFFIX : talaria_plain_gemv_##SUFFIX)(X, W, Y, m, c.n, c.k, 1); \
        else (fast ? talaria_fast_mma_##SUFFIX : talaria_plain_mma_##SUFFIX)(X, W, Y, m, c.n, c.k, 1);        \
    }

// Fast and plain kernels reading quant blocks in place: the GEMV widens to
// the exact values, the tensor-core kernel multiplies the quants and scales
// per 16 values (sums in another order: a few f32 roundings more).
static void check_f32x_quant(const QuantCase& c, bool gemv, bool fast, int m) {
    char name[64];
    std::snprintf(name, sizeof name, "%s_%s_%s", fast ? "fast" : "plain", gemv ? "gemv" : "mma", c.type.c_str());
    check_f32x(name, gemv, fast, m, c.n, c.k, c.values, 1e-6, [&](const float* X, float* Y) {
        const u8* W = c.bytes.data();
        F32X_QUANT_KERNELS(q4_0) F32X_QUANT_KERNELS(q4_1) F32X_QUANT_KERNELS(q5_0) F32X_QUANT_KERNELS(q5_1)
        F32X_QUANT_KERNELS(q8_0) F32X_QUANT_KERNELS(q4_k) F32X_QUANT_KERNELS(q5_k) F32X_QUANT_KERNELS(q6_k)
    });
}

int main(int argc, char** argv) {
    if (argc > 1) {
        for (const QuantCase& c : read_fixture(argv[1])) {
            check_exact_quant(c, true, 9);    // two row blocks
            check_exact_quant(c, false, 20);  // partial tiles in M and N
            for (bool fast : {true, false}) {
                check_f32x_quant(c, true, fast, 9);
                check_f32x_quant(c, false, fast, 20);
            }
        }
    }
    for (WType t : {WType::Bf16, WType::F16, WType::F32}) {
        check_exact(false, t, 70, 130, 50);  // scalar loads, partial tiles in M, N, K
        check_exact(false, t, 64, 72, 48);   // vectorised loads
        check_exact(true, t, 19, 20, 264);   // 3 row blocks, K loop runs twice
        check_exact(true, t, 8, 20, 45);     // scalar loads
    }
    check_exact(false, WType::Bf16, 3, 9, 40);  // tiny M through the tensor-core path
    for (bool fast : {true, false}) {
        check_bf16(false, fast, 70, 130, 72);
        check_bf16(false, fast, 33, 65, 45);
        check_bf16(true, fast, 9, 37, 264);
        check_bf16(true, fast, 1, 20, 45);
        for (WType t : {WType::F16, WType::F32}) {
            check_gemv_wide(t, fast, 9, 37, 264);
            check_gemv_wide(t, fast, 1, 20, 45);
        }
    }
    std::printf("%d passed, %d failed\n", failures == 0 ? 1 : 0, failures == 0 ? 0 : 1);
    return failures == 0 ? 0 : 1;
}
