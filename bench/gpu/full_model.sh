#!/usr/bin/env bash
# The whole default model on a GPU machine with no network: the model file
# arrives in parts (each device call carries at most 64 MiB), staged by
# earlier calls into /tmp/dev along with bins.tar.xz, the NVRTC wheel and
# model.sha (see bench/gpu/README.md). Joins and checks the model, runs
# bench/gpu/check.sh on it (kernels, greedy identity exact/fast, bench split),
# then bench serve with the worker on CUDA: local (CPU) vs plain vs
# confidential exact vs fast at 16 streams. Results under $OUT.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
dev=/tmp/dev
cat "$dev"/model.part* > /tmp/model.gguf
echo "$(cat "$dev/model.sha")  /tmp/model.gguf" | sha256sum -c - || exit 9
mkdir -p bench/out/gpu_carry && cp "$dev"/bins.tar.xz "$dev"/*.whl bench/out/gpu_carry/
export TALARIA_MODEL=/tmp/model.gguf CHECK_TIMEOUT_S="${CHECK_TIMEOUT_S:-90}"
timeout "${CHECK_LIMIT_S:-240}" bash bench/gpu/check.sh 2>&1 | tee "${OUT:-/tmp}/check.log"
export TALARIA_NVRTC_DIR=/tmp/talaria_nvrtc_wheel/nvidia/cuda_nvrtc/lib
export LD_LIBRARY_PATH="$TALARIA_NVRTC_DIR:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
bin=bench/out/gpu_carry/bin
timeout "${SERVE_LIMIT_S:-280}" "$bin/bench" serve --model /tmp/model.gguf --mode local,plain,confidential,confidential-fast \
    --max-concurrency 16 --num-prompts 32 --max-tokens 64 --ignore-eos --synthetic-sentences 0 --out "${OUT:-/tmp}/serve" 2>&1 | tail -30
grep -h "backend\|ready after" "${OUT:-/tmp}"/serve/server-*.log 2>/dev/null | head -8
