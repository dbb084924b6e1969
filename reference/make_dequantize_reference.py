"""Random GGUF quant blocks of every type Talaria reads, with the `gguf` package's
reference dequantization (gguf.quants.dequantize), as bit patterns.

Writes kernels/testdata/dequantize_reference.json. Scales are random finite f16 values
(both signs, any exponent); every other byte is random. CI never runs this.
Needs: pip install gguf numpy (tested with gguf 0.19, numpy 2.4).
"""

import json
import os

import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf import quants

OUT = os.path.join(os.path.dirname(__file__), "..", "kernels", "testdata", "dequantize_reference.json")
BLOCKS = 6

# Type -> (block bytes, byte offsets of its f16 scales)
LAYOUT = {
    Q.Q4_0: (18, [0]), Q.Q4_1: (20, [0, 2]), Q.Q8_0: (34, [0]),
    Q.Q5_0: (22, [0]), Q.Q5_1: (24, [0, 2]),
    Q.Q4_K: (144, [0, 2]), Q.Q5_K: (176, [0, 2]), Q.Q6_K: (210, [208]),
}
# Q8_K (ggml's activation type, which GGUF files practically never store) has no
# reference dequantizer in the gguf package; its unit test in the Rust code checks it.


def random_f16(rng):
    while True:
        v = np.frombuffer(rng.integers(0, 256, 2, dtype=np.uint8).tobytes(), dtype=np.float16)[0]
        if np.isfinite(v):
            return v


def main():
    rng = np.random.default_rng(20261206)
    out = {}
    for qtype, (size, f16_at) in LAYOUT.items():
        raw = bytearray(rng.integers(0, 256, size * BLOCKS, dtype=np.uint8).tobytes())
        for b in range(BLOCKS):
            for off in f16_at:
                raw[b * size + off:b * size + off + 2] = np.float16(random_f16(rng)).tobytes()
        values = quants.dequantize(np.frombuffer(bytes(raw), dtype=np.uint8), qtype).astype(np.float32).ravel()
        assert np.all(np.isfinite(values)), qtype.name
        out[qtype.name] = {"bytes": bytes(raw).hex(), "value_bits": values.view(np.uint32).tolist()}
    with open(OUT, "w") as f:
        json.dump(out, f, separators=(",", ":"))
    print("wrote", OUT, {k: len(v["value_bits"]) for k, v in out.items()})


if __name__ == "__main__":
    main()
