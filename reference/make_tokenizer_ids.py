"""Write models/testdata/tokenizer_ids.json: strings and their SmolLM2 token ids.

The ids come from the Python `tokenizers` package running the tokenizer.json that
gguf_tokenizer.py builds from the GGUF (see reference/README.md for its structure;
the Rust side must build the identical tokenizer.json). Every ids list is decoded back
(special tokens kept) and must reproduce its text exactly.
"""

import json
import os

from gguf_tokenizer import load_tokenizer

OUT_PATH = os.path.join(os.path.dirname(__file__), "..", "models", "testdata", "tokenizer_ids.json")

SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

TEXTS = [
    "",
    "Hello",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "12345 and 3.14159",
    "In 2024, 1,000,000 people paid $99.99 each (about 7%).",
    "phone: +1-555-0100, id=A7b9",
    "It's a dog's life; they'll say we've done it, I'd think.",
    "UPPER lower MiXeD CamelCase snake_case kebab-case",
    "café naïve résumé façade Ångström",
    "日本語のテキストと中文文本",
    "Привет, мир! Γειά σου κόσμε",
    "emoji: 🙂🚀👩‍💻 and flags 🇫🇷",
    "tabs\tand\t\ttabs",
    "two  spaces,   three, and trailing   ",
    "   leading spaces",
    "line one\nline two\n\nline four\r\nwindows",
    "\n\n\n",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "fn main() { let x: Vec<u32> = (0..10).map(|i| i * i).collect(); println!(\"{x:?}\"); }",
    "<div class=\"a\">&amp; <b>bold</b></div>",
    "SELECT * FROM users WHERE id >= 42 AND name LIKE '%bob%';",
    "x = a**2 + b**2 // 3 != 0 && y <= 1e-5",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\nTell me a joke.<|im_end|>\n"
    "<|im_start|>assistant\n",
    "<|endoftext|>after end",
    "<|im_start|><|im_end|><|im_start|>",
    "<repo_name>talaria<file_sep>src/main.rs",
    "not special: <|im_start and im_end|> and <|unknown|>",
    "~!@#$%^&*()_+`-=[]{}|\\;:'\",./<>?",
    "a" * 40,
    "Supercalifragilisticexpialidocious antidisestablishmentarianism",
]


# The shared corpus of the other tokenizer checks (code, numbers, whitespace runs,
# many scripts, emoji), so every pre-tokenizer is checked on 200+ strings.
with open(os.path.join(os.path.dirname(__file__), "..", "models", "testdata", "gemma3_tokenizer_ids.json")) as _f:
    CORPUS = [c["text"] for c in json.load(_f)["cases"]]


def main() -> None:
    tok, _, meta = load_tokenizer()
    records = []
    for text in TEXTS + [t for t in CORPUS if t not in TEXTS]:
        ids = tok.encode(text, add_special_tokens=True).ids
        back = tok.decode(ids, skip_special_tokens=False)
        if back != text:
            raise SystemExit(f"round-trip failed: {text!r} -> {ids} -> {back!r}")
        records.append({"text": text, "ids": ids})
    if tok.encode("Hi").ids[:1] == [meta["bos_token_id"]]:
        raise SystemExit("unexpected BOS added by the post-processor")

    with open(OUT_PATH, "w", encoding="utf-8") as f:
        json.dump(records, f, ensure_ascii=False, indent=None)
        f.write("\n")
    print(f"wrote {os.path.normpath(OUT_PATH)}: {len(records)} strings, "
          f"{sum(len(r['ids']) for r in records)} ids, all round-trip")


if __name__ == "__main__":
    main()
