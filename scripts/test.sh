#!/usr/bin/env bash
# The test command: everything CI runs. Needs the Rust toolchain and
# python3/pip; fetches the default model (~93 MB) on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

# NVRTC without a GPU (PyPI wheel), so the CUDA kernels are compiled to PTX
# in the tests; skipped cleanly if unavailable.
if [ -f bench/gpu/nvrtc_env.sh ]; then
  # shellcheck disable=SC1091
  source bench/gpu/nvrtc_env.sh || echo "NVRTC unavailable: CUDA PTX test will skip"
fi

cargo build --release --workspace --all-targets
cargo run --release -q -p talaria-cvm --bin talaria -- fetch >/dev/null
cargo test --release --workspace
