"""Independent float32 Llama forward pass over a GGUF, numpy only.

Every tensor is dequantized once to float32 with gguf.quants.dequantize and all
arithmetic is float32 (numpy matmuls accumulate in float32 via BLAS sgemm). Only the
RoPE angles are computed in float64 and rounded to float32 cos/sin tables, so they are
as exact as float32 allows.

RoPE layout. llama.cpp's converter permutes the rows of attn_q / attn_k of every head:
    w_gguf = w_hf.reshape(n_head, 2, head_dim // 2, d_in).swapaxes(1, 2).reshape(w_hf.shape)
so GGUF row 2*j + t of a head is HF row t*head_dim/2 + j. HF applies "rotate-half" RoPE
(pairs (j, j + head_dim/2)); on the permuted rows those pairs become adjacent
(2j, 2j+1). This reference therefore uses the weights as stored and applies the
interleaved "GPT-J / llama.cpp ROPE_TYPE_NORM" rotation to adjacent pairs, which is
mathematically identical to HF rotate-half on the un-permuted weights. Attention scores
are dot products over the whole head, so the within-head permutation of q and k cancels.
`unpermute_heads` maps a q/k vector back to HF order for diagnostics.
"""

from dataclasses import dataclass, field

import gguf
import numpy as np

F32 = np.float32


@dataclass
class LlamaConfig:
    n_layer: int
    d_model: int
    d_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    vocab: int
    rope_theta: float
    rms_eps: float

    @staticmethod
    def from_reader(reader: gguf.GGUFReader) -> "LlamaConfig":
        def get(key):
            f = reader.fields.get(key)
            if f is None:
                raise KeyError(f"GGUF metadata {key!r} missing")
            return f.contents()

        arch = get("general.architecture")
        if arch != "llama":
            raise ValueError(f"unsupported architecture {arch!r}")
        d_model = int(get("llama.embedding_length"))
        n_head = int(get("llama.attention.head_count"))
        head_dim = d_model // n_head
        rope_dims = reader.fields.get("llama.rope.dimension_count")
        if rope_dims is not None and int(rope_dims.contents()) != head_dim:
            raise ValueError("partial RoPE is not supported by this reference")
        return LlamaConfig(
            n_layer=int(get("llama.block_count")),
            d_model=d_model,
            d_ff=int(get("llama.feed_forward_length")),
            n_head=n_head,
            n_head_kv=int(get("llama.attention.head_count_kv")),
            head_dim=head_dim,
            vocab=int(get("llama.vocab_size")),
            rope_theta=float(get("llama.rope.freq_base")),
            rms_eps=float(get("llama.attention.layer_norm_rms_epsilon")),
        )


def dequantize_tensor(t) -> np.ndarray:
    """float32 array in numpy/PyTorch order: GGUF dims (ne0, ne1) become shape (ne1, ne0)."""
    out = gguf.quants.dequantize(t.data, t.tensor_type).astype(F32, copy=False)
    shape = tuple(int(d) for d in reversed(t.shape))
    return np.ascontiguousarray(out.reshape(shape))


def unpermute_heads(x: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's q/k row permutation on the last axis (n_head * head_dim values).

    The converter did  gguf = hf.reshape(n_head, 2, hd/2).swapaxes(1, 2)  i.e.
    gguf[h, j, t] = hf[h, t, j]; the inverse reshapes to (n_head, hd/2, 2) and swaps back.
    """
    lead = x.shape[:-1]
    hd = x.shape[-1] // n_head
    y = x.reshape(*lead, n_head, hd // 2, 2)
    return np.swapaxes(y, -1, -2).reshape(*lead, n_head * hd)


def rms_norm(x: np.ndarray, gain: np.ndarray, eps: float) -> np.ndarray:
    ms = np.mean(x * x, axis=-1, keepdims=True, dtype=F32)
    return (x / np.sqrt(ms + F32(eps))) * gain


def silu(x: np.ndarray) -> np.ndarray:
    return x / (F32(1.0) + np.exp(-x))


@dataclass
class KvCache:
    """Per-layer keys/values, shape (n_head_kv, positions, head_dim); keys already rotated."""

    keys: list = field(default_factory=list)
    values: list = field(default_factory=list)
    length: int = 0


class LlamaReference:
    def __init__(self, path: str):
        reader = gguf.GGUFReader(path)
        self.cfg = LlamaConfig.from_reader(reader)
        self.w = {t.name: dequantize_tensor(t) for t in reader.tensors}
        c = self.cfg
        self.embed = self.w["token_embd.weight"]
        if self.embed.shape != (c.vocab, c.d_model):
            raise ValueError(f"token_embd shape {self.embed.shape}")
        # Tied head unless the file has its own output matrix.
        self.head = self.w.get("output.weight", self.embed)
        self.inv_freq = 1.0 / (c.rope_theta ** (np.arange(0, c.head_dim, 2, dtype=np.float64) / c.head_dim))

    def layer(self, i: int, name: str) -> np.ndarray:
        return self.w[f"blk.{i}.{name}.weight"]

    def rope(self, x: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Interleaved RoPE on x of shape (heads, n, head_dim): rotates pairs (2j, 2j+1)."""
        ang = positions[:, None].astype(np.float64) * self.inv_freq[None, :]
        cos = np.cos(ang).astype(F32)
        sin = np.sin(ang).astype(F32)
        x0 = x[..., 0::2]
        x1 = x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = x0 * cos - x1 * sin
        out[..., 1::2] = x0 * sin + x1 * cos
        return out

    def attention(self, i: int, h: np.ndarray, cache: KvCache, positions: np.ndarray, trace):
        c = self.cfg
        n = h.shape[0]
        q = h @ self.layer(i, "attn_q").T  # (n, n_head*hd), GGUF (permuted) row order
        k = h @ self.layer(i, "attn_k").T
        v = h @ self.layer(i, "attn_v").T
        if trace is not None and i == 0:
            trace["layer0_q"], trace["layer0_k"], trace["layer0_v"] = q[-1], k[-1], v[-1]
        q = self.rope(q.reshape(n, c.n_head, c.head_dim).transpose(1, 0, 2), positions)
        k = self.rope(k.reshape(n, c.n_head_kv, c.head_dim).transpose(1, 0, 2), positions)
        v = v.reshape(n, c.n_head_kv, c.head_dim).transpose(1, 0, 2)
        if trace is not None and i == 0:
            trace["layer0_q_roped"] = q[:, -1, :].reshape(-1)
            trace["layer0_k_roped"] = k[:, -1, :].reshape(-1)

        if len(cache.keys) <= i:
            cache.keys.append(k)
            cache.values.append(v)
        else:
            cache.keys[i] = np.concatenate([cache.keys[i], k], axis=1)
            cache.values[i] = np.concatenate([cache.values[i], v], axis=1)
        keys, values = cache.keys[i], cache.values[i]
        total = keys.shape[1]

        # GQA: query head hq reads kv head hq // (n_head / n_head_kv).
        rep = c.n_head // c.n_head_kv
        keys = np.repeat(keys, rep, axis=0)
        values = np.repeat(values, rep, axis=0)
        scores = (q @ keys.transpose(0, 2, 1)) * F32(1.0 / np.sqrt(c.head_dim))
        # Causal: query at absolute position p sees keys 0..=p.
        mask = np.arange(total)[None, :] > positions[:, None]
        scores = np.where(mask[None, :, :], F32(-np.inf), scores)
        scores = scores - scores.max(axis=-1, keepdims=True)
        p = np.exp(scores)
        p = p / p.sum(axis=-1, keepdims=True, dtype=F32)
        ctx = (p @ values).transpose(1, 0, 2).reshape(n, c.n_head * c.head_dim)
        return ctx @ self.layer(i, "attn_output").T

    def forward(self, ids, cache: KvCache, trace: dict | None = None) -> np.ndarray:
        """Run `ids` at the positions following the cache; returns (n, vocab) float32 logits.

        `trace`, if given, receives diagnostics of the last position.
        """
        c = self.cfg
        ids = np.asarray(ids, dtype=np.int64)
        if ids.ndim != 1 or len(ids) == 0:
            raise ValueError("ids must be a non-empty 1-D sequence")
        if ids.min() < 0 or ids.max() >= c.vocab:
            raise ValueError("token id out of range")
        positions = np.arange(cache.length, cache.length + len(ids))
        x = self.embed[ids].astype(F32)
        if trace is not None:
            trace["embedding"] = x[-1].copy()
        for i in range(c.n_layer):
            h = rms_norm(x, self.layer(i, "attn_norm"), c.rms_eps)
            x = x + self.attention(i, h, cache, positions, trace)
            h = rms_norm(x, self.layer(i, "ffn_norm"), c.rms_eps)
            gate = h @ self.layer(i, "ffn_gate").T
            up = h @ self.layer(i, "ffn_up").T
            x = x + (silu(gate) * up) @ self.layer(i, "ffn_down").T
            if trace is not None:
                trace[f"hidden_after_layer_{i}"] = x[-1].copy()
        cache.length += len(ids)
        h = rms_norm(x, self.w["output_norm.weight"], c.rms_eps)
        if trace is not None:
            trace["final_norm"] = h[-1].copy()
        return h @ self.head.T
