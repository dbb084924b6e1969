#!/usr/bin/env python3
"""Writes a smaller GGUF cut from the default model, for the device check's
end-to-end step: the GPU runner has no network and takes at most 64 MiB
with the call, which the 98 MB default model exceeds.

The cut keeps the real tokenizer, the real weights of the first LAYERS
blocks and the final norm, and re-quantizes the token embedding (tied
lm_head) from Q8_0 to Q4_0. It is a real Llama-family model of the same
shapes, not the default model: its continuations are not SmolLM2's, but
confidential and plain must still agree token for token.

usage: make_device_model.py IN.gguf OUT.gguf [LAYERS]   (needs gguf-py)
"""
import sys
from pathlib import Path

import gguf
import numpy as np


def main() -> None:
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    layers = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    reader = gguf.GGUFReader(src)
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    writer = gguf.GGUFWriter(dst, arch=arch)
    block_count = gguf.Keys.LLM.BLOCK_COUNT.format(arch=arch)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        val_type = field.types[0]
        sub_type = field.types[-1] if val_type == gguf.GGUFValueType.ARRAY else None
        value = layers if field.name == block_count else field.contents()
        writer.add_key_value(field.name, value, val_type, sub_type=sub_type)

    def keep(name: str) -> bool:
        return not name.startswith("blk.") or int(name.split(".")[1]) < layers

    tensors = []
    for t in reader.tensors:
        if not keep(t.name):
            continue
        data, qtype = t.data, t.tensor_type
        if t.name == "token_embd.weight" and qtype == gguf.GGMLQuantizationType.Q8_0:
            rows = gguf.quants.dequantize(np.asarray(data), qtype)
            qtype = gguf.GGMLQuantizationType.Q4_0
            data = gguf.quants.quantize(rows.astype(np.float32), qtype)
        tensors.append((t.name, np.asarray(data), qtype))
    for name, data, qtype in tensors:
        # Quantized data goes in with its byte shape; the writer converts it.
        writer.add_tensor_info(name, data.shape, data.dtype, data.nbytes, qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for _, data, _ in tensors:
        writer.write_tensor_data(data)
    writer.close()
    print(f"{dst}: {layers} layers, {dst.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
