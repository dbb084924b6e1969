#!/usr/bin/env bash
# The test command: everything CI runs. Needs the Rust toolchain and
# python3/pip; fetches the default model (~93 MB), Gemma 3 270M (~253 MB)
# and two small Python packages (the official `openai` client, NVRTC for
# PTX checks) on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

# Python packages go into a folder of the cache (`--target`), never into
# the system Python (which PEP 668 distributions refuse to change).
pydir="${TALARIA_CACHE:-$HOME/.cache/talaria}/python"
if ! PYTHONPATH="$pydir" python3 -c 'import openai' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check --upgrade --target "$pydir" "openai>=1.40,<3"
fi

# NVRTC without a GPU (PyPI wheel), so the CUDA kernels are compiled to PTX
# in the tests; the PTX test skips cleanly if this fails.
# shellcheck disable=SC1091
source bench/gpu/nvrtc_env.sh || echo "NVRTC unavailable: the CUDA PTX test will skip"

# Every declared dependency is used (fails on one that is not).
python3 scripts/unused_deps.py

# The worker's test-only fault injection (`--fault`) is a feature that plain
# builds leave out; the CVM's fault tests need it in the worker they spawn.
features=(--features talaria-gpu-worker/fault-injection)
cargo build --release --workspace --all-targets "${features[@]}"
target/release/talaria fetch >/dev/null
# The second model (Gemma 3 270M, ~253 MB), fetched once before tests that
# run in parallel would each start fetching it.
target/release/talaria fetch --model gemma3-270m >/dev/null

cargo test --release --workspace "${features[@]}"

# The official OpenAI client against a real talaria-serve (confidential:
# a real worker process behind it), streaming and not, over attested TLS
# (simulated attestation) with an API key: `talaria verify` checks the
# evidence and pins the certificate first, the client trusts only that.
PYTHONPATH="$pydir${PYTHONPATH:+:$PYTHONPATH}" python3 scripts/openai_check.py \
    --launch target/release/talaria-serve --talaria target/release/talaria
