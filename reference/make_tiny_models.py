"""Tiny random-weight models of every supported family, made by HF transformers,
with transformers' own f32 greedy logits as the reference the Rust engine must match.

For each family this writes models/testdata/tiny/<family>/:
  hf/            config.json, model.safetensors (f32), tokenizer.json, tokenizer_config.json
                 (with a chat template in the family's style, reference/chat_templates/)
  model.gguf     the same weights as llama.cpp's converter lays them out (F32 tensors;
                 Q/K rows permuted for the llama architecture, Gemma norms stored as 1 + γ)
                 -- not for Mistral, whose GGUFs say "llama" and carry no sliding window
  reference.json prompts, greedy ids and every step's full logits; teacher-forced sequences
                 with the logits of every position (transformers, f32, eager attention);
                 conversations as transformers' apply_chat_template renders them

Needs: pip install torch transformers safetensors gguf tokenizers numpy
(tested with torch 2.15, transformers 5.25, gguf 0.19). CI never runs this.
"""

import json
import os
import sys

import gguf
import numpy as np
import torch
import transformers as T
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

OUT = os.path.join(os.path.dirname(__file__), "..", "models", "testdata", "tiny")
VOCAB = 260  # 256 byte tokens + 4 specials
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
PROMPTS = [[7, 200, 33, 91, 150, 4, 77, 12, 250, 3, 66, 129], [5, 5, 180, 2, 44], list(range(100, 116))]
NEW_TOKENS = 8
# Teacher-forced sequences of 64 tokens, longer than every sliding window: logits at every position.
FORCED = [[(i * 37 + 11 * j) % 256 for i in range(64)] for j in range(2)]

COMMON = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=128, rms_norm_eps=1e-6, bos_token_id=256, eos_token_id=256, pad_token_id=259)

FAMILIES = {
    # Llama 3.x RoPE scaling with a short original context so all three bands occur.
    "llama": (T.LlamaConfig, dict(num_hidden_layers=2, tie_word_embeddings=False,
                                  rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                                   "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                   "original_max_position_embeddings": 16})),
    "qwen2": (T.Qwen2Config, dict(num_hidden_layers=2, tie_word_embeddings=True)),
    "qwen3": (T.Qwen3Config, dict(num_hidden_layers=2, head_dim=32, tie_word_embeddings=False)),
    "mistral": (T.MistralConfig, dict(num_hidden_layers=3, sliding_window=5, tie_word_embeddings=False)),
    "gemma3": (T.Gemma3TextConfig, dict(num_hidden_layers=3, head_dim=32, query_pre_attn_scalar=32, sliding_window=4,
                                        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                                        rope_parameters={"full_attention": {"rope_type": "linear", "factor": 2.0,
                                                                            "rope_theta": 1000000.0},
                                                         "sliding_attention": {"rope_type": "default",
                                                                               "rope_theta": 10000.0}},
                                        tie_word_embeddings=True)),
}


def byte_tokens():
    """GPT-2's byte-to-unicode map: the 256 byte tokens of a byte-level BPE."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, (chr(c) for c in cs)))
    return [table[b] for b in range(256)]


TEMPLATES = os.path.join(os.path.dirname(__file__), "chat_templates")
CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"},
     {"role": "assistant", "content": "4"}, {"role": "user", "content": "  And 3+3?  "}],
    [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "<think>hmm</think>\n\nHello"},
     {"role": "user", "content": "bye"}],
    [{"role": "assistant", "content": "I speak first"}],
]


def chat_template(family):
    """A template in the style of the family's own (reference/chat_templates/)."""
    with open(os.path.join(TEMPLATES, f"{family}.jinja")) as f:
        return f.read()


def chat_reference(hf_folder):
    """transformers' rendering of each conversation (or that it refused it)."""
    tok = T.PreTrainedTokenizerFast.from_pretrained(hf_folder)
    out = []
    for msgs in CONVERSATIONS:
        try:
            text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            out.append({"messages": msgs, "text": text})
        except Exception as e:  # the template's raise_exception
            out.append({"messages": msgs, "error": str(e)})
    return out


def write_tokenizer(folder, family):
    vocab = {t: i for i, t in enumerate(byte_tokens())}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIALS)
    tok.save(os.path.join(folder, "tokenizer.json"))
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<|im_start|>", "eos_token": "<|endoftext|>", "pad_token": "<pad>",
                   "add_bos_token": False, "tokenizer_class": "PreTrainedTokenizerFast",
                   "chat_template": chat_template(family)}, f, indent=1)


def randomize(model, family):
    """Weights big enough that every part of the pass moves the logits."""
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                base = 0.0 if family == "gemma3" else 1.0
                p.copy_(base + 0.3 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / np.sqrt(p.shape[-1]) * (2.0 if "embed" in name else 1.0))


def greedy_reference(model):
    out = []
    for ids in PROMPTS:
        seq = list(ids)
        steps = []
        with torch.no_grad():
            for _ in range(NEW_TOKENS):
                logits = model(torch.tensor([seq])).logits[0, -1].float()
                steps.append([round(float(v), 7) for v in logits])
                seq.append(int(torch.argmax(logits)))
        out.append({"prompt_ids": ids, "greedy_ids": seq[len(ids):], "logits": steps})
    return out


def forced_reference(model):
    out = []
    with torch.no_grad():
        for ids in FORCED:
            logits = model(torch.tensor([ids])).logits[0].float()
            out.append({"ids": ids, "logits": [[round(float(v), 7) for v in row] for row in logits]})
    return out


def gguf_name(hf, arch):
    fixed = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    if hf in fixed:
        return fixed[hf]
    _, _, layer, rest = hf.split(".", 3)
    names = {
        "input_layernorm.weight": "attn_norm.weight",
        "post_attention_layernorm.weight": "post_attention_norm.weight" if arch == "gemma3" else "ffn_norm.weight",
        "pre_feedforward_layernorm.weight": "ffn_norm.weight",
        "post_feedforward_layernorm.weight": "post_ffw_norm.weight",
        "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
        "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
        "self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias",
        "self_attn.v_proj.bias": "attn_v.bias",
        "self_attn.q_norm.weight": "attn_q_norm.weight", "self_attn.k_norm.weight": "attn_k_norm.weight",
        "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
        "mlp.down_proj.weight": "ffn_down.weight",
    }
    return f"blk.{layer}.{names[rest]}"


def llama_permute(w, n_head):
    """llama.cpp's LlamaModel.permute: HF rotate-half rows -> interleaved pairs."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_factors(rp, head_dim):
    """llama.cpp's rope_freqs for Llama 3 scaling (one divisor per frequency)."""
    base, factor = rp["rope_theta"], rp["factor"]
    low, high, old = rp["low_freq_factor"], rp["high_freq_factor"], rp["original_max_position_embeddings"]
    freqs = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    out = []
    for f in freqs:
        wavelen = 2 * np.pi / f
        if wavelen < old / high:
            out.append(1.0)
        elif wavelen > old / low:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def write_gguf(path, family, cfg, state):
    arch = family
    w = gguf.GGUFWriter(path, arch)
    w.add_name(f"tiny-{family}")
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(VOCAB)
    rp = cfg.rope_parameters
    if family == "gemma3":
        w.add_rope_freq_base(rp["full_attention"]["rope_theta"])
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
        w.add_sliding_window(cfg.sliding_window)
        w.add_sliding_window_pattern([t == "sliding_attention" for t in cfg.layer_types])
        w.add_float32("gemma3.rope.freq_base_swa", rp["sliding_attention"]["rope_theta"])
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(rp["full_attention"]["factor"])
    else:
        w.add_rope_freq_base(rp["rope_theta"])
        w.add_rope_dimension_count(head_dim)
        if family == "qwen3":
            w.add_key_length(head_dim)
            w.add_value_length(head_dim)
    # Tokenizer: GPT-2 byte-level BPE with no merges (the HF folder's tokenizer).
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(byte_tokens() + SPECIALS)
    w.add_token_types([gguf.TokenType.NORMAL] * 256 + [gguf.TokenType.CONTROL] * len(SPECIALS))
    w.add_token_merges([])
    w.add_bos_token_id(257)
    w.add_add_bos_token(False)
    w.add_eos_token_id(256)
    w.add_pad_token_id(259)
    w.add_chat_template(chat_template(family))
    for hf, t in state.items():
        a = t.float().numpy()
        if family == "llama" and hf.endswith("q_proj.weight"):
            a = llama_permute(a, cfg.num_attention_heads)
        if family == "llama" and hf.endswith("k_proj.weight"):
            a = llama_permute(a, cfg.num_key_value_heads)
        if family == "gemma3" and hf.endswith("norm.weight"):
            a = a + np.float32(1.0)
        w.add_tensor(gguf_name(hf, arch), np.ascontiguousarray(a, dtype=np.float32))
    if family == "llama":
        w.add_tensor("rope_freqs.weight", llama3_factors(rp, head_dim))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    torch.manual_seed(0)
    only = sys.argv[1:]
    for family, (cls, extra) in FAMILIES.items():
        if only and family not in only:
            continue
        cfg = cls(**COMMON, **extra)
        cfg._attn_implementation = "eager"
        model = T.AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.float32, attn_implementation="eager").eval()
        randomize(model, family)
        folder = os.path.join(OUT, family)
        hf = os.path.join(folder, "hf")
        os.makedirs(hf, exist_ok=True)
        model.save_pretrained(hf, safe_serialization=True)
        write_tokenizer(hf, family)
        for extra_file in ["generation_config.json"]:
            p = os.path.join(hf, extra_file)
            if os.path.exists(p):
                os.remove(p)
        state = {k: v for k, v in model.state_dict().items() if not (cfg.tie_word_embeddings and k == "lm_head.weight")}
        if family != "mistral":
            write_gguf(os.path.join(folder, "model.gguf"), family, cfg, state)
        ref = {"family": family, "transformers": T.__version__, "torch": torch.__version__,
               "prompts": greedy_reference(model), "forced": forced_reference(model), "chat": chat_reference(hf)}
        with open(os.path.join(folder, "reference.json"), "w") as f:
            json.dump(ref, f, separators=(",", ":"))
        print(family, "ok", [p["greedy_ids"] for p in ref["prompts"]])


if __name__ == "__main__":
    main()
