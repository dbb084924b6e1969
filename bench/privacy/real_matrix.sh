#!/usr/bin/env bash
# The privacy matrix on real recordings: the 20 prompts of prompts.txt run
# through the real CVM and a real recording worker (chat template, greedy,
# prefill then decode at batch 1), once unmasked (--mode plain) and once
# per ReMO κ, then every attack on every recording. The weak reference
# schemes (permute, mix, low-rank) cannot be selected on the serving path,
# so they are covered by `bench privacy --synthetic`.
#
#   bench/privacy/real_matrix.sh [extra bench-privacy flags, e.g. --quick]
#   env: OUT (default target/privacy-real), KAPPAS, FAST_KAPPAS (the
#   fast mode, `--precision fast`: f32 pads), MAX_TOKENS, LAYERS
#
# LAYERS (default 0) are the layers the worker writes: a recording of every
# layer of 20 prompts is ~5 GB per κ; layer 0 is where rows are dictionary
# items and every attack but `--deep` sequential decoding reads only it.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-target/privacy-real}
KAPPAS=${KAPPAS-"1 10 100 1000 10000"}
FAST_KAPPAS=${FAST_KAPPAS-"100 1000"}
MAX_TOKENS=${MAX_TOKENS:-24}
LAYERS=${LAYERS:-0}
cargo build --release -q
rm -rf "$OUT/rec"
mkdir -p "$OUT/rec"
record() {
    local name=$1
    shift
    echo "recording $name" >&2
    target/release/talaria generate --chat --prompts-file bench/privacy/prompts.txt --max-tokens "$MAX_TOKENS" \
        --record "$OUT/rec/$name" --record-layers "$LAYERS" "$@" >"$OUT/rec/$name.log" 2>&1
}
record plain --mode plain --insecure
for k in $KAPPAS; do
    record "remo-k$k" --privacy-level "$k"
done
for k in $FAST_KAPPAS; do
    record "remo-fast-k$k" --precision fast --privacy-level "$k"
done
args=()
for d in "$OUT"/rec/*/; do
    args+=(--recording "$d")
done
target/release/bench privacy "${args[@]}" --out "$OUT" "$@"
