#!/usr/bin/env bash
# Compiles the CUDA kernels for the CPU emulator and checks them against a
# double-precision reference (no GPU needed; needs g++ >= 12 for C++20).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${TMPDIR:-/tmp}/talaria_emu_check"
g++ -std=c++20 -O2 -pthread -Wno-unknown-pragmas -o "$out" "$here/emu_check.cpp"
"$out"
