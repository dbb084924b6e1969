"""Check that interleaved RoPE on the GGUF's permuted q/k equals HF rotate-half RoPE
on the un-permuted (HF-order) weights: same logits up to float32 rounding.

This guards the layout claim in llama_reference.py; it writes nothing.
"""

import numpy as np

from gguf_tokenizer import load_tokenizer
from llama_reference import F32, KvCache, LlamaReference
from model_path import MODEL_PATH


def unpermute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of llama.cpp's convert permutation on weight rows (out_features first)."""
    hd = w.shape[0] // n_head
    return w.reshape(n_head, hd // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


class RotateHalfReference(LlamaReference):
    """HF-layout variant: un-permuted q/k weights, rotate-half RoPE on pairs (j, j + hd/2)."""

    def __init__(self, path: str):
        super().__init__(path)
        c = self.cfg
        for i in range(c.n_layer):
            q, k = f"blk.{i}.attn_q.weight", f"blk.{i}.attn_k.weight"
            self.w[q] = np.ascontiguousarray(unpermute_rows(self.w[q], c.n_head))
            self.w[k] = np.ascontiguousarray(unpermute_rows(self.w[k], c.n_head_kv))

    def rope(self, x, positions):
        ang = positions[:, None].astype(np.float64) * self.inv_freq[None, :]
        cos = np.cos(ang).astype(F32)
        sin = np.sin(ang).astype(F32)
        half = x.shape[-1] // 2
        x0, x1 = x[..., :half], x[..., half:]
        return np.concatenate([x0 * cos - x1 * sin, x0 * sin + x1 * cos], axis=-1)


def main() -> None:
    tok, _, _ = load_tokenizer(MODEL_PATH)
    ids = tok.encode("The capital of France is Paris, and the capital of Italy is").ids
    a = LlamaReference(MODEL_PATH).forward(ids, KvCache())
    b = RotateHalfReference(MODEL_PATH).forward(ids, KvCache())
    diff = float(np.abs(a - b).max())
    print(f"max |interleaved - rotate_half| logit difference: {diff:.3e} "
          f"(logit range {a.min():.2f}..{a.max():.2f}); argmax equal: "
          f"{bool((a.argmax(-1) == b.argmax(-1)).all())}")
    if diff > 1e-3:
        raise SystemExit("RoPE layouts disagree: the permutation claim is wrong")


if __name__ == "__main__":
    main()
