"""Token ids of the GPT-2-style pre-tokenizers llama.cpp names `llama-bpe` (Llama 3) and
`qwen2`, as HF transformers builds them from a GGUF, on a real byte-level vocabulary:
SmolLM2's (the default model's), relabelled with each pre-tokenizer. No Llama 3 or Qwen
vocabulary can be fetched here; the split is what differs between them, and this checks
Talaria's split against transformers' on the same vocabulary and merges.

Writes models/testdata/pretokenizer_ids.json (the strings of gemma3_tokenizer_ids.json).
Needs: pip install transformers gguf numpy. CI never runs this.
"""

import json
import os
import tempfile

import gguf
import numpy as np
import transformers as T

from model_path import checked_model_path

HERE = os.path.dirname(__file__)


def relabelled_vocab(src, pre, out_path):
    """A GGUF holding src's tokenizer metadata with `tokenizer.ggml.pre = pre`, no tensors."""
    r = gguf.GGUFReader(src)
    w = gguf.GGUFWriter(out_path, "llama")
    for name, field in r.fields.items():
        if not name.startswith("tokenizer.") or name == "tokenizer.chat_template":
            continue
        value = field.contents()
        if name == "tokenizer.ggml.pre":
            value = pre
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            w.add_key_value(name, value, vtype, sub_type=field.types[-1])
        else:
            w.add_key_value(name, value, vtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    src = checked_model_path()
    with open(os.path.join(HERE, "..", "models", "testdata", "gemma3_tokenizer_ids.json")) as f:
        texts = [c["text"] for c in json.load(f)["cases"]]
    out = {"transformers": T.__version__, "texts": texts}
    with tempfile.TemporaryDirectory() as d:
        for pre in ["llama-bpe", "qwen2"]:
            path = os.path.join(d, f"{pre}.gguf")
            relabelled_vocab(src, pre, path)
            tok = T.AutoTokenizer.from_pretrained(d, gguf_file=f"{pre}.gguf")
            out[pre] = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    with open(os.path.join(HERE, "..", "models", "testdata", "pretokenizer_ids.json"), "w") as f:
        json.dump(out, f, ensure_ascii=False)
    print("ok", {k: len(v) for k, v in out.items() if isinstance(v, list)})


if __name__ == "__main__":
    main()
