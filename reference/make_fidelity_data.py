"""Write engine/testdata/reference_logits.json and engine/testdata/reference_hidden.json.

For each prompt: tokenize (tokenizer built from the GGUF, no BOS), prefill with the
float32 reference, then greedy-decode exactly MAX_NEW_TOKENS tokens (never stopping at
EOS, so every prompt has the same shape). steps[0] is the next-token distribution after
the prompt, steps[k] the one after the k-th generated token (33 entries for 32 tokens);
each holds the top-10 (id, logit) and the top-1/top-2 margin. A prompt with any margin
below MIN_MARGIN is dropped and the next candidate of its kind is used, because a
near-tie may legitimately flip between two correct float32 implementations.
"""

import json
import os
import time

import numpy as np

from gguf_tokenizer import load_tokenizer
from llama_reference import KvCache, LlamaReference, unpermute_heads
from model_path import MODEL_SHA256, checked_model_path

HERE = os.path.dirname(__file__)
LOGITS_OUT = os.path.join(HERE, "..", "engine", "testdata", "reference_logits.json")
HIDDEN_OUT = os.path.join(HERE, "..", "engine", "testdata", "reference_hidden.json")

MAX_NEW_TOKENS = 32
TOP_K = 10
MIN_MARGIN = 2e-3
PROMPTS_PER_KIND = 5

# Must equal the default system prompt inside the GGUF's tokenizer.chat_template
# (checked at run time).
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

# Candidates in order of preference; the first PROMPTS_PER_KIND of each kind that clear
# MIN_MARGIN are kept.
PLAIN_CANDIDATES = [
    ("capital_france", "The capital of France is"),
    ("fibonacci_def", "def fibonacci(n):"),
    ("counting", "1, 2, 3, 4, 5, 6,"),
    ("once_upon", "Once upon a time, there was a little"),
    ("primary_colors", "The three primary colors are"),
    ("photosynthesis", "Photosynthesis is the process by which"),
    ("rust_hello", "fn main() {\n    println!("),
    ("water_boils", "Water boils at"),
]
CHAT_CANDIDATES = [
    ("chat_sky_blue", "Explain why the sky is blue."),
    ("chat_reverse_string", "Write a Python function that reverses a string."),
    ("chat_health_tips", "Give me three tips for staying healthy."),
    ("chat_ocean_poem", "Write a short poem about the ocean."),
    ("chat_gravity", "What is gravity? Explain it to a child."),
    ("chat_recipe", "How do I make a cup of tea?"),
    ("chat_planets", "List the planets of the solar system."),
    ("chat_email", "Write a polite email asking for a meeting next week."),
]


def chat_prompt(msg: str) -> str:
    return (
        f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n"
        f"<|im_start|>user\n{msg}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def top_k(logits: np.ndarray) -> tuple[list, float]:
    """Top-K (id, logit) pairs, highest first (ties by lower id), and the top-1/top-2 margin."""
    order = np.lexsort((np.arange(len(logits)), -logits.astype(np.float64)))[:TOP_K]
    top = [[int(i), round(float(logits[i]), 5)] for i in order]
    margin = float(logits[order[0]]) - float(logits[order[1]])
    return top, margin


def run_prompt(model: LlamaReference, ids: list, trace=None) -> dict:
    cache = KvCache()
    logits = model.forward(ids, cache, trace)[-1]
    steps, greedy = [], []
    for step in range(MAX_NEW_TOKENS + 1):
        top, margin = top_k(logits)
        steps.append({"top": top, "margin": round(margin, 6)})
        if step == MAX_NEW_TOKENS:
            break
        nxt = top[0][0]
        greedy.append(nxt)
        logits = model.forward([nxt], cache)[-1]
    return {"greedy_ids": greedy, "steps": steps}


def vec_summary(v: np.ndarray) -> dict:
    return {
        "l2": float(np.linalg.norm(v.astype(np.float64))),
        "first8": [float(x) for x in v[:8]],
    }


def hidden_diagnostics(model: LlamaReference, name: str, ids: list, trace: dict) -> dict:
    c = model.cfg
    last = c.n_layer - 1
    return {
        "prompt": name,
        "prompt_ids": ids,
        "position": len(ids) - 1,
        "note": (
            "All values at the last prompt position. hidden_after_layer_N is the residual "
            "stream after block N (attention + MLP), before the final norm. q/k are in HF "
            "(un-permuted) order: hf = gguf.reshape(n_head, head_dim/2, 2).swapaxes(1, 2)"
            ".reshape(-1), the inverse of llama.cpp's convert permutation "
            "w.reshape(n_head, 2, head_dim/2, ...).swapaxes(1, 2). *_pre_rope are the "
            "projections of the layer-0 attn-normed input; *_post_rope after HF rotate-half "
            "RoPE (equal to un-permuting the interleaved-RoPE result)."
        ),
        "embedding": vec_summary(trace["embedding"]),
        "hidden_after_layer_0": vec_summary(trace["hidden_after_layer_0"]),
        "hidden_after_layer_1": vec_summary(trace["hidden_after_layer_1"]),
        f"hidden_after_layer_{last}": vec_summary(trace[f"hidden_after_layer_{last}"]),
        "final_norm": vec_summary(trace["final_norm"]),
        "hidden_l2_by_layer": [
            float(np.linalg.norm(trace[f"hidden_after_layer_{i}"].astype(np.float64)))
            for i in range(c.n_layer)
        ],
        "layer0_q_pre_rope": vec_summary(unpermute_heads(trace["layer0_q"], c.n_head)),
        "layer0_k_pre_rope": vec_summary(unpermute_heads(trace["layer0_k"], c.n_head_kv)),
        "layer0_v": vec_summary(trace["layer0_v"]),
        "layer0_q_post_rope": vec_summary(unpermute_heads(trace["layer0_q_roped"], c.n_head)),
        "layer0_k_post_rope": vec_summary(unpermute_heads(trace["layer0_k_roped"], c.n_head_kv)),
    }


def select(model, tok, candidates, chat: bool, trace_first: dict | None) -> list:
    kept = []
    for name, msg in candidates:
        if len(kept) == PROMPTS_PER_KIND:
            break
        text = chat_prompt(msg) if chat else msg
        ids = tok.encode(text).ids
        t0 = time.time()
        trace = trace_first if (trace_first is not None and not kept) else None
        res = run_prompt(model, ids, trace)
        min_margin = min(s["margin"] for s in res["steps"])
        decoded = tok.decode(res["greedy_ids"], skip_special_tokens=False)
        status = "kept" if min_margin >= MIN_MARGIN else "DROPPED (near tie)"
        print(f"[{name}] {len(ids)} prompt ids, {time.time() - t0:.2f}s, "
              f"min margin {min_margin:.4f} -> {status}\n    {decoded!r}")
        if min_margin < MIN_MARGIN:
            if trace is not None:
                trace.clear()
            continue
        kept.append({"name": name, "text": text, "chat": chat, "prompt_ids": ids,
                     **res, "min_margin": min_margin})
    if len(kept) < PROMPTS_PER_KIND:
        raise SystemExit(f"only {len(kept)} {'chat' if chat else 'plain'} prompts cleared the margin")
    return kept


def main() -> None:
    t_start = time.time()
    path = checked_model_path()
    tok, _, meta = load_tokenizer(path)
    if DEFAULT_SYSTEM not in (meta["chat_template"] or ""):
        raise SystemExit("default system prompt differs from the GGUF chat template")
    if meta["add_bos_token"]:
        raise SystemExit("GGUF asks for a BOS token; this script assumes none")

    t0 = time.time()
    model = LlamaReference(path)
    print(f"loaded and dequantized in {time.time() - t0:.1f}s: {model.cfg}")

    trace: dict = {}
    plain = select(model, tok, PLAIN_CANDIDATES, chat=False, trace_first=trace)
    chat = select(model, tok, CHAT_CANDIDATES, chat=True, trace_first=None)
    prompts = plain + chat

    eos_ids = sorted({meta["eos_token_id"], tok.token_to_id("<|im_end|>"),
                      tok.token_to_id("<|endoftext|>")})
    logits_doc = {
        "model_sha256": MODEL_SHA256,
        "dtype": "f32",
        "max_new_tokens": MAX_NEW_TOKENS,
        "top_k": TOP_K,
        "min_margin_threshold": MIN_MARGIN,
        "bos_id": meta["bos_token_id"],
        "add_bos": bool(meta["add_bos_token"]),
        "eos_ids": eos_ids,
        "prompts": prompts,
    }
    with open(LOGITS_OUT, "w", encoding="utf-8") as f:
        json.dump(logits_doc, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")

    first = prompts[0]
    hidden_doc = {"model_sha256": MODEL_SHA256, "dtype": "f32",
                  **hidden_diagnostics(model, first["name"], first["prompt_ids"], trace)}
    with open(HIDDEN_OUT, "w", encoding="utf-8") as f:
        json.dump(hidden_doc, f, ensure_ascii=False, indent=1)
        f.write("\n")

    print(f"wrote {os.path.normpath(LOGITS_OUT)} and {os.path.normpath(HIDDEN_OUT)}; "
          f"overall min margin {min(p['min_margin'] for p in prompts):.4f}; "
          f"total {time.time() - t_start:.1f}s")


if __name__ == "__main__":
    main()
