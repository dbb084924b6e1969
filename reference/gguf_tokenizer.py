"""Build a Hugging Face `tokenizer.json` from the vocabulary stored in a GGUF.

The GGUF (tokenizer.ggml.model = "gpt2", tokenizer.ggml.pre = "smollm") carries the
byte-level BPE vocabulary, merges and token types of SmolLM2. This rebuilds the same
tokenizer.json that HuggingFaceTB/SmolLM2-*-Instruct ships (StarCoder-style):

    normalizer      null
    pre_tokenizer   Sequence[Digits(individual_digits=true),
                             ByteLevel(add_prefix_space=false, trim_offsets=true, use_regex=true)]
    model           BPE(byte-level vocab, merges, no unk, no dropout, no byte fallback)
    post_processor  ByteLevel(add_prefix_space=true, trim_offsets=false, use_regex=true)
                    -- only adjusts offsets: no BOS/EOS is added (GGUF add_bos_token = false)
    decoder         ByteLevel(add_prefix_space=true, trim_offsets=true, use_regex=true)
    added_tokens    every CONTROL / USER_DEFINED token, special=true, normalized=false

llama.cpp's "smollm" pre-tokenizer is the same split: "\\p{N}" (one digit per piece)
followed by the GPT-2 regex.

Run as a script to write the result to TOKENIZER_CACHE_PATH (outside the repo).
"""

import json
import sys

import gguf
from tokenizers import Tokenizer

from model_path import MODEL_PATH, TOKENIZER_CACHE_PATH

# gguf.TokenType values whose tokens are matched verbatim before BPE.
ADDED_TOKEN_TYPES = {int(gguf.TokenType.CONTROL), int(gguf.TokenType.USER_DEFINED)}


def field(reader: gguf.GGUFReader, key: str, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def tokenizer_metadata(reader: gguf.GGUFReader) -> dict:
    """The tokenizer facts a runtime needs besides tokenizer.json."""
    return {
        "model": field(reader, "tokenizer.ggml.model"),
        "pre": field(reader, "tokenizer.ggml.pre"),
        "bos_token_id": field(reader, "tokenizer.ggml.bos_token_id"),
        "eos_token_id": field(reader, "tokenizer.ggml.eos_token_id"),
        "unknown_token_id": field(reader, "tokenizer.ggml.unknown_token_id"),
        "padding_token_id": field(reader, "tokenizer.ggml.padding_token_id"),
        "add_bos_token": field(reader, "tokenizer.ggml.add_bos_token", False),
        "add_eos_token": field(reader, "tokenizer.ggml.add_eos_token", False),
        "chat_template": field(reader, "tokenizer.chat_template"),
    }


def build_tokenizer_json(reader: gguf.GGUFReader) -> dict:
    meta = tokenizer_metadata(reader)
    if meta["model"] != "gpt2" or meta["pre"] != "smollm":
        raise ValueError(f"expected a gpt2/smollm tokenizer, got {meta['model']}/{meta['pre']}")
    if meta["add_bos_token"] or meta["add_eos_token"]:
        raise ValueError("this builder assumes no BOS/EOS is added (SmolLM2)")

    tokens = field(reader, "tokenizer.ggml.tokens")
    types = field(reader, "tokenizer.ggml.token_type")
    merges = field(reader, "tokenizer.ggml.merges")
    if len(tokens) != len(types):
        raise ValueError("token and token_type counts differ")

    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise ValueError("duplicate tokens in the vocabulary")

    # Merges are stored as "left right"; byte-level tokens never contain a raw space.
    merge_pairs = []
    for m in merges:
        parts = m.split(" ")
        if len(parts) != 2:
            raise ValueError(f"malformed merge {m!r}")
        merge_pairs.append(parts)

    added_tokens = [
        {
            "id": i,
            "content": tok,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for i, (tok, ty) in enumerate(zip(tokens, types))
        if int(ty) in ADDED_TOKEN_TYPES
    ]

    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added_tokens,
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Digits", "individual_digits": True},
                {
                    "type": "ByteLevel",
                    "add_prefix_space": False,
                    "trim_offsets": True,
                    "use_regex": True,
                },
            ],
        },
        "post_processor": {
            "type": "ByteLevel",
            "add_prefix_space": True,
            "trim_offsets": False,
            "use_regex": True,
        },
        "decoder": {
            "type": "ByteLevel",
            "add_prefix_space": True,
            "trim_offsets": True,
            "use_regex": True,
        },
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": merge_pairs,
        },
    }


def load_tokenizer(path: str = MODEL_PATH) -> tuple[Tokenizer, dict, dict]:
    """(tokenizer, tokenizer.json dict, metadata) for the GGUF at `path`."""
    reader = gguf.GGUFReader(path)
    tj = build_tokenizer_json(reader)
    return Tokenizer.from_str(json.dumps(tj)), tj, tokenizer_metadata(reader)


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else MODEL_PATH
    tok, tj, meta = load_tokenizer(path)
    with open(TOKENIZER_CACHE_PATH, "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False)
    print(f"wrote {TOKENIZER_CACHE_PATH}: vocab {tok.get_vocab_size()}, "
          f"{len(tj['model']['merges'])} merges, {len(tj['added_tokens'])} added tokens")
    for k, v in meta.items():
        print(f"  {k}: {v!r}")


if __name__ == "__main__":
    main()
