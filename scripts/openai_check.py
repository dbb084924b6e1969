#!/usr/bin/env python3
"""Checks talaria-serve with the official `openai` Python client.

Chat and completions, streaming and not, n > 1 with logprobs, lists of
prompts (text and token ids), echo with prompt logprobs, logit_bias and
vLLM's repetition_penalty, and the error mapping (404 model, 400
parameter, 401 without the API key). Exits non-zero on any failure.

With --launch the server speaks attested TLS (simulated attestation: this
is a test) and requires an API key; before any request, `talaria verify`
checks its evidence against a policy naming the server binary's simulated
measurement and pins its certificate, which the client then trusts (the
documented client path, docs/attestation.md).

    pip install openai
    python3 scripts/openai_check.py --base-url https://127.0.0.1:8000/v1 --pinned-cert talaria-server.pem --api-key KEY
    python3 scripts/openai_check.py --launch target/release/talaria-serve [--server-arg=--mode=local --server-arg=--insecure]
"""
import argparse
import hashlib
import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import tempfile
import traceback

try:
    import httpx
    import openai
    from openai import OpenAI
except ImportError:
    sys.exit("openai_check: the `openai` package is missing (pip install openai)")


def launch(binary, extra, api_key):
    """Starts talaria-serve on a free port with attested TLS (simulated) and
    an API key; returns (process, base_url)."""
    cmd = [binary, "--port", "0", "--attestation", "simulated", "--api-key", api_key, *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("talaria-serve listening on "):
            return proc, line.split(" on ", 1)[1].strip() + "/v1"
    raise RuntimeError(f"{binary} exited before it was ready (code {proc.wait()})")


def simulated_policy(server_binary, path):
    """A policy accepting simulated evidence from exactly this binary: its
    measurement is the executable's SHA-384."""
    h = hashlib.sha384()
    with open(server_binary, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    with open(path, "w") as f:
        json.dump({"simulated": {"measurements": [h.hexdigest()]}}, f)


def verify_and_pin(talaria, url, policy, out):
    """`talaria verify`: the attestation must pass before any prompt is sent."""
    cmd = [talaria, "verify", url, "--policy", policy, "--allow-simulated", "--out", out]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    sys.stdout.write(r.stdout)
    if r.returncode != 0:
        raise RuntimeError(f"talaria verify failed ({r.returncode}): {r.stderr.strip()}")


def client(base, api_key, pinned):
    """The official client, trusting only the pinned certificate."""
    http = httpx.Client(verify=ssl.create_default_context(cafile=pinned)) if pinned else None
    return OpenAI(base_url=base, api_key=api_key, max_retries=0, timeout=600, http_client=http)


def check_models(c, model):
    ids = [m.id for m in c.models.list().data]
    assert model in ids, ids


def check_completions(c, model):
    kw = dict(model=model, prompt="The capital of France is", max_tokens=8, temperature=0)
    full = c.completions.create(**kw)
    text = full.choices[0].text
    assert text, full
    assert full.usage.completion_tokens >= 1 and full.usage.total_tokens == full.usage.prompt_tokens + full.usage.completion_tokens, full.usage
    parts, finish, usage = [], None, None
    for chunk in c.completions.create(stream=True, stream_options={"include_usage": True}, **kw):
        if chunk.usage is not None:
            usage = chunk.usage
        for ch in chunk.choices:
            parts.append(ch.text)
            finish = ch.finish_reason or finish
    assert "".join(parts) == text, (parts, text)
    assert finish == full.choices[0].finish_reason, finish
    assert usage is not None and usage.completion_tokens == full.usage.completion_tokens, usage


def check_chat(c, model):
    kw = dict(model=model, messages=[{"role": "user", "content": "Say hello in French."}], max_tokens=16, temperature=0)
    full = c.chat.completions.create(**kw)
    msg = full.choices[0].message
    assert msg.role == "assistant" and msg.content, full
    parts, roles, finish = [], [], None
    for chunk in c.chat.completions.create(stream=True, **kw):
        for ch in chunk.choices:
            if ch.delta.role:
                roles.append(ch.delta.role)
            parts.append(ch.delta.content or "")
            finish = ch.finish_reason or finish
    assert roles == ["assistant"], roles
    assert "".join(parts) == msg.content, (parts, msg.content)
    assert finish == full.choices[0].finish_reason


def check_chat_n_logprobs(c, model):
    r = c.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Name a colour."}], max_tokens=6, temperature=1.0,
        n=2, seed=1, logprobs=True, top_logprobs=2, extra_body={"ignore_eos": True},
    )
    assert [ch.index for ch in r.choices] == [0, 1], r
    for ch in r.choices:
        content = ch.logprobs.content
        assert len(content) == 6, content
        assert all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in content)
    assert r.usage.completion_tokens == 12, r.usage


def tokenize(c, text):
    """Token ids from the server's /tokenize (beside /v1, not an OpenAI route)."""
    url = str(c.base_url).rstrip("/")[: -len("/v1")] + "/tokenize"
    return c.post(url, cast_to=object, body={"prompt": text})["tokens"]


def greedy(c, model, prompt, extra_body=None, **kw):
    """Three greedy tokens (never fewer) of a completion."""
    body = {"ignore_eos": True, **(extra_body or {})}
    return c.completions.create(model=model, prompt=prompt, max_tokens=3, temperature=0, extra_body=body, **kw)


def check_prompt_lists(c, model):
    prompts = ["The capital of France is", "def add(a, b):"]
    alone = [greedy(c, model, p) for p in prompts]
    want = [alone[0].choices[0].text] * 2 + [alone[1].choices[0].text] * 2
    r = greedy(c, model, prompts, n=2)
    assert [ch.index for ch in r.choices] == [0, 1, 2, 3], r
    assert [ch.text for ch in r.choices] == want, (r, want)
    assert r.usage.prompt_tokens == sum(a.usage.prompt_tokens for a in alone) and r.usage.completion_tokens == 12, r.usage
    ids = [tokenize(c, p) for p in prompts]
    r = greedy(c, model, ids, n=2)
    assert [ch.text for ch in r.choices] == want, (r, want)
    texts, usage, indexes = [""] * 4, [], set()
    for chunk in greedy(c, model, prompts, n=2, stream=True, stream_options={"include_usage": True}):
        if chunk.usage is not None:
            usage.append(chunk.usage)
        for ch in chunk.choices:
            indexes.add(ch.index)
            texts[ch.index] += ch.text
    assert indexes == {0, 1, 2, 3} and texts == want, (indexes, texts, want)
    assert len(usage) == 1 and usage[0].prompt_tokens == r.usage.prompt_tokens and usage[0].completion_tokens == 12, usage


def check_echo(c, model):
    prompt = "The capital of France is"
    plain = greedy(c, model, prompt).choices[0].text
    r = greedy(c, model, prompt, echo=True, logprobs=1)
    ch = r.choices[0]
    assert ch.text == prompt + plain, (ch.text, plain)
    lp = ch.logprobs
    assert len(lp.tokens) == r.usage.prompt_tokens + 3 and "".join(lp.tokens) == ch.text, lp
    assert lp.token_logprobs[0] is None and all(x is not None and x <= 0 for x in lp.token_logprobs[1:]), lp.token_logprobs
    assert lp.text_offset[0] == 0 and lp.text_offset[r.usage.prompt_tokens] == len(prompt), lp.text_offset
    streamed = "".join(ch.text for chunk in greedy(c, model, prompt, echo=True, stream=True) for ch in chunk.choices)
    assert streamed == prompt + plain, streamed


def check_logit_bias(c, model):
    first = greedy(c, model, "Hello", logprobs=0).choices[0]
    first_id = tokenize(c, first.logprobs.tokens[0])[0]
    banned = greedy(c, model, "Hello", logprobs=0, logit_bias={str(first_id): -100}).choices[0]
    assert banned.logprobs.tokens[0] != first.logprobs.tokens[0], (banned, first)
    forced_id = tokenize(c, " banana")[0]
    forced = greedy(c, model, "Hello", logprobs=0, logit_bias={str(forced_id): 100}).choices[0]
    assert tokenize(c, forced.logprobs.tokens[0]) == [forced_id], forced
    chat = c.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=2, temperature=0,
                                     logit_bias={str(forced_id): 100})
    assert chat.choices[0].message.content.startswith(" banana"), chat
    for bad in ({"not-a-token": 1}, {str(forced_id): 101}, {"999999999": 1}):
        try:
            greedy(c, model, "Hello", logit_bias=bad)
            raise AssertionError(f"logit_bias {bad} accepted")
        except openai.BadRequestError as e:
            assert e.status_code == 400 and e.body.get("param") == "logit_bias", e.body


def check_repetition_penalty(c, model):
    prompt = "1, 2, 3, 1, 2, 3, 1, 2,"
    plain = greedy(c, model, prompt).choices[0].text
    assert plain.startswith(" 3"), plain
    # Tokens of the prompt count as seen: the penalty moves greedy off " 3".
    r = greedy(c, model, prompt, extra_body={"repetition_penalty": 1.3})
    assert r.usage.completion_tokens == 3 and not r.choices[0].text.startswith(" 3"), r
    c.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=2,
                              extra_body={"repetition_penalty": 1.3})
    for bad in (0, -1.0):
        try:
            greedy(c, model, "Hello", extra_body={"repetition_penalty": bad})
            raise AssertionError(f"repetition_penalty {bad} accepted")
        except openai.BadRequestError as e:
            assert e.status_code == 400 and e.body.get("param") == "repetition_penalty", e.body


def check_errors(c, model):
    try:
        c.completions.create(model="no-such-model", prompt="hi", max_tokens=2)
        raise AssertionError("unknown model accepted")
    except openai.NotFoundError as e:
        assert e.status_code == 404
    try:
        c.completions.create(model=model, prompt="hi", max_tokens=2, temperature=-1)
        raise AssertionError("negative temperature accepted")
    except openai.BadRequestError as e:
        assert e.status_code == 400 and e.body.get("param") == "temperature", e.body


def check_api_key(c, model):
    """Set by main: a client with a wrong key."""
    try:
        check_api_key.wrong.models.list()
        raise AssertionError("a wrong API key was accepted")
    except openai.AuthenticationError as e:
        assert e.status_code == 401, e


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    ap.add_argument("--model", help="default: the first of /v1/models")
    ap.add_argument("--launch", metavar="TALARIA_SERVE", help="start this server binary on a free port (and stop it after)")
    ap.add_argument("--server-arg", action="append", default=[], help="extra flag for --launch (repeatable)")
    ap.add_argument("--talaria", help="the `talaria` CLI for `talaria verify` (default: next to --launch)")
    ap.add_argument("--pinned-cert", help="without --launch: the server certificate pinned by `talaria verify`")
    ap.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY"), help="without --launch: the server's --api-key")
    a = ap.parse_args()

    proc = None
    base, api_key, pinned = a.base_url, a.api_key or "unused", a.pinned_cert
    tmp = tempfile.TemporaryDirectory(prefix="openai-check-")
    checks = [
        check_models, check_completions, check_chat, check_chat_n_logprobs, check_prompt_lists, check_echo, check_logit_bias,
        check_repetition_penalty, check_errors,
    ]
    failures = 0
    try:
        if a.launch:
            api_key = secrets.token_hex(16)
            proc, base = launch(a.launch, a.server_arg, api_key)
            if base.startswith("https://"):
                talaria = a.talaria or os.path.join(os.path.dirname(a.launch), "talaria")
                policy, pinned = os.path.join(tmp.name, "policy.json"), os.path.join(tmp.name, "pinned.pem")
                simulated_policy(a.launch, policy)
                verify_and_pin(talaria, base[: -len("/v1")], policy, pinned)
            check_api_key.wrong = client(base, "wrong-key", pinned)
            checks.append(check_api_key)
        c = client(base, api_key, pinned)
        model = a.model or c.models.list().data[0].id
        for check in checks:
            try:
                check(c, model)
                print(f"ok   {check.__name__}")
            except Exception:  # noqa: BLE001 - report every failing check
                failures += 1
                print(f"FAIL {check.__name__}")
                traceback.print_exc()
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=120)
            if code != 0:
                print(f"FAIL server exit code {code} after SIGTERM")
                failures += 1
        tmp.cleanup()
    print(f"openai_check: {failures} failure(s) against {base}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
