#!/usr/bin/env bash
# Stages what bench/gpu/check.sh needs on a GPU machine that has no network
# and maybe no CUDA toolkit: the stripped test and check binaries (built
# here) and the pinned NVRTC wheel, under bench/out/gpu_carry (git-ignored,
# ~35 MB: within the device runner's 64 MiB carry limit). Then run there:
#   bash bench/gpu/check.sh          (with bench/out/gpu_carry carried along)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
carry=bench/out/gpu_carry
rm -rf "$carry" && mkdir -p "$carry/bin"

cargo build --release -p talaria-kernels --example cuda_check --test cuda_ptx
cargo build --release -p talaria-cvm --bin talaria -p talaria-gpu-worker
cp target/release/examples/cuda_check "$carry/bin/cuda_check"
cp target/release/talaria target/release/talaria-gpu-worker "$carry/bin/"
# The newest cuda_ptx test binary (cargo names it cuda_ptx-<hash>).
ptx_test="$(ls -t target/release/deps/cuda_ptx-* | grep -v '\.d$' | head -1)"
cp "$ptx_test" "$carry/bin/cuda_ptx"
strip "$carry/bin/cuda_check" "$carry/bin/cuda_ptx" "$carry/bin/talaria" "$carry/bin/talaria-gpu-worker"

python3 -m pip download --quiet --disable-pip-version-check --no-deps \
    --dest "$carry" "nvidia-cuda-nvrtc-cu12==12.4.127"
du -sh "$carry" "$carry"/* "$carry"/bin/*
echo "staged; on the GPU machine run: bash bench/gpu/check.sh  (carry: $carry)"
