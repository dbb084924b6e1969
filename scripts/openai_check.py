#!/usr/bin/env python3
"""Checks talaria-serve with the official `openai` Python client.

Chat and completions, streaming and not, n > 1 with logprobs, and the
error mapping (404 model, 400 parameter). Exits non-zero on any failure.

    pip install openai
    python3 scripts/openai_check.py --base-url http://127.0.0.1:8000/v1
    python3 scripts/openai_check.py --launch target/release/talaria-serve [--server-arg=--mode=local]
"""
import argparse
import os
import signal
import subprocess
import sys
import traceback

try:
    import openai
    from openai import OpenAI
except ImportError:
    sys.exit("openai_check: the `openai` package is missing (pip install openai)")


def launch(binary, extra):
    """Starts talaria-serve on a free port; returns (process, base_url)."""
    cmd = [binary, "--port", "0", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("talaria-serve listening on "):
            return proc, line.split(" on ", 1)[1].strip() + "/v1"
    raise RuntimeError(f"{binary} exited before it was ready (code {proc.wait()})")


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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    ap.add_argument("--model", help="default: the first of /v1/models")
    ap.add_argument("--launch", metavar="TALARIA_SERVE", help="start this server binary on a free port (and stop it after)")
    ap.add_argument("--server-arg", action="append", default=[], help="extra flag for --launch (repeatable)")
    a = ap.parse_args()

    proc = None
    base = a.base_url
    if a.launch:
        proc, base = launch(a.launch, a.server_arg)
    failures = 0
    try:
        c = OpenAI(base_url=base, api_key=os.environ.get("OPENAI_API_KEY", "unused"), max_retries=0, timeout=600)
        model = a.model or c.models.list().data[0].id
        for check in (check_models, check_completions, check_chat, check_chat_n_logprobs, check_errors):
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
    print(f"openai_check: {failures} failure(s) against {base}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
