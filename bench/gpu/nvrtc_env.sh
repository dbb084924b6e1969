#!/usr/bin/env bash
# NVRTC without a CUDA toolkit or GPU: installs the pinned PyPI wheel
# nvidia-cuda-nvrtc-cu12 (libnvrtc.so.12 + libnvrtc-builtins, ~65 MB) into a
# cache folder and makes it visible to cudarc.
#
#   source bench/gpu/nvrtc_env.sh   # install if needed, export the variables
#   bash bench/gpu/nvrtc_env.sh     # install if needed, print the export line
#
# cudarc dlopen()s bare names (libnvrtc.so, libnvrtc.so.12, ...), so the
# folder must be on LD_LIBRARY_PATH for the dynamic linker to find it.
# TALARIA_NVRTC_DIR tells talaria-kernels the same folder; it also checks the
# default folder below on its own (kernels-cuda/src/library.rs), so plain
# `cargo test` finds the library once this has run. Never fails: without the
# wheel the NVRTC tests say "skipped: no NVRTC".
# Keep the version in step with NVRTC_WHEEL_VERSION in library.rs.

TALARIA_NVRTC_VERSION=12.4.127
_talaria_nvrtc_root="${TALARIA_NVRTC_ROOT:-$HOME/.cache/talaria/nvrtc-$TALARIA_NVRTC_VERSION}"
_talaria_nvrtc_lib="$_talaria_nvrtc_root/nvidia/cuda_nvrtc/lib"

if [ ! -f "$_talaria_nvrtc_lib/libnvrtc.so.12" ]; then
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        --no-deps --target "$_talaria_nvrtc_root" "nvidia-cuda-nvrtc-cu12==$TALARIA_NVRTC_VERSION" >&2 ||
        echo "nvrtc_env.sh: installing nvidia-cuda-nvrtc-cu12==$TALARIA_NVRTC_VERSION failed; NVRTC tests will be skipped" >&2
fi

if [ -f "$_talaria_nvrtc_lib/libnvrtc.so.12" ]; then
    _talaria_nvrtc_line="export LD_LIBRARY_PATH=\"$_talaria_nvrtc_lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\" TALARIA_NVRTC_DIR=\"$_talaria_nvrtc_lib\""
    if [ "${BASH_SOURCE[0]}" != "$0" ]; then
        eval "$_talaria_nvrtc_line"
    else
        echo "$_talaria_nvrtc_line"
    fi
fi
unset _talaria_nvrtc_root _talaria_nvrtc_lib _talaria_nvrtc_line
