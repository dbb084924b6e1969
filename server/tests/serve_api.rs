//! The OpenAI-compatible API of `talaria-serve` on the real model: both
//! endpoints streaming and not, n > 1, stop strings, seeds, logprobs, the
//! small endpoints, and every bad input with its error (the server keeps
//! serving). One server for the whole file.

mod serve_common;

use std::sync::OnceLock;

use serde_json::{json, Value};
use serve_common::{choice_text, start, stream_texts, Server};

fn server() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(|| start(&["--served-model-name", "smol", "--trust-request-chat-template"]))
}

#[test]
fn completions_streaming_matches_non_streaming() {
    let s = server();
    let req = json!({"model": "smol", "prompt": "The three primary colors are", "max_tokens": 12, "temperature": 0});
    let full = s.ok("/v1/completions", &req);
    assert_eq!(full["object"], "text_completion");
    assert_eq!(full["model"], "smol");
    let usage = &full["usage"];
    assert_eq!(usage["completion_tokens"], 12, "{full}");
    assert_eq!(usage["total_tokens"].as_u64(), Some(usage["prompt_tokens"].as_u64().unwrap() + 12));
    assert_eq!(full["choices"][0]["finish_reason"], "length");

    let mut sreq = req.clone();
    sreq["stream"] = json!(true);
    sreq["stream_options"] = json!({"include_usage": true});
    let events = s.stream("/v1/completions", &sreq);
    let (texts, finish) = stream_texts(&events, 1);
    assert_eq!(texts[0], choice_text(&full, 0));
    assert_eq!(finish[0].as_deref(), Some("length"));
    let last = events.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"], *usage, "usage chunk");
    assert!(events.iter().all(|e| e["object"] == "text_completion" && e["id"] == events[0]["id"]));
}

#[test]
fn chat_streaming_matches_non_streaming() {
    let s = server();
    let req = json!({"messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": [{"type": "text", "text": "Name a fruit."}]}], "max_completion_tokens": 16, "temperature": 0});
    let full = s.ok("/v1/chat/completions", &req);
    assert_eq!(full["object"], "chat.completion");
    assert_eq!(full["choices"][0]["message"]["role"], "assistant");
    let text = choice_text(&full, 0);
    assert!(!text.is_empty());
    let n_out = full["usage"]["completion_tokens"].as_u64().unwrap();
    assert!((1..=16).contains(&n_out));

    let mut sreq = req.clone();
    sreq["stream"] = json!(true);
    let events = s.stream("/v1/chat/completions", &sreq);
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(events.iter().all(|e| e["object"] == "chat.completion.chunk" && e.get("usage").is_none()));
    let (texts, finish) = stream_texts(&events, 1);
    assert_eq!(texts[0], text);
    assert_eq!(finish[0].as_deref(), full["choices"][0]["finish_reason"].as_str());
}

#[test]
fn n_choices_are_independent_samples() {
    let s = server();
    let req = json!({"prompt": "My favourite animal is the", "max_tokens": 10, "temperature": 1.0, "n": 4, "seed": 3, "ignore_eos": true});
    let r = s.ok("/v1/completions", &req);
    let choices = r["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 4);
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
        assert_eq!(c["finish_reason"], "length");
    }
    assert_eq!(r["usage"]["completion_tokens"], 40);
    let texts: std::collections::HashSet<String> = (0..4).map(|i| choice_text(&r, i)).collect();
    assert!(texts.len() > 1, "4 seeded samples should not all agree: {texts:?}");

    // Streaming gives the same choices (same seed), interleaved by index.
    let mut sreq = req.clone();
    sreq["stream"] = json!(true);
    let (streamed, finish) = stream_texts(&s.stream("/v1/completions", &sreq), 4);
    assert_eq!(streamed, (0..4).map(|i| choice_text(&r, i)).collect::<Vec<_>>());
    assert!(finish.iter().all(|f| f.as_deref() == Some("length")));
}

#[test]
fn seeded_sampling_is_reproducible() {
    let s = server();
    let req = |seed: u64| json!({"prompt": "Once upon a time", "max_tokens": 16, "temperature": 1.2, "top_p": 0.95, "top_k": 50, "seed": seed, "ignore_eos": true});
    let a = choice_text(&s.ok("/v1/completions", &req(7)), 0);
    let b = choice_text(&s.ok("/v1/completions", &req(7)), 0);
    assert_eq!(a, b, "same seed, same text");
    let others: Vec<String> = (100..104).map(|seed| choice_text(&s.ok("/v1/completions", &req(seed)), 0)).collect();
    assert!(others.iter().any(|o| *o != a), "different seeds should differ somewhere: {a:?} vs {others:?}");
}

#[test]
fn stop_strings_end_the_text_before_the_match() {
    let s = server();
    let base = json!({"prompt": "Count: 1, 2, 3, 4,", "max_tokens": 24, "temperature": 0, "ignore_eos": true});
    let free = choice_text(&s.ok("/v1/completions", &base), 0);
    assert!(free.contains(" 7"), "greedy counting should reach 7: {free:?}");
    let want = &free[..free.find(" 7").unwrap()];
    for stop in [json!(" 7"), json!(["zzz", " 7", "never"])] {
        let mut req = base.clone();
        req["stop"] = stop;
        let r = s.ok("/v1/completions", &req);
        assert_eq!(choice_text(&r, 0), want);
        assert_eq!(r["choices"][0]["finish_reason"], "stop");
        req["stream"] = json!(true);
        let (texts, finish) = stream_texts(&s.stream("/v1/completions", &req), 1);
        assert_eq!(texts[0], want, "streamed text never includes the stop string");
        assert_eq!(finish[0].as_deref(), Some("stop"));
    }
}

#[test]
fn max_tokens_ignore_eos_and_stop_token_ids() {
    let s = server();
    let r = s.ok(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 20, "temperature": 0, "ignore_eos": true}),
    );
    assert_eq!(r["usage"]["completion_tokens"], 20);
    assert_eq!(r["choices"][0]["finish_reason"], "length");
    // Stopping on the first greedy token's id gives exactly one token.
    let first = s.ok("/v1/completions", &json!({"prompt": "Hello", "max_tokens": 1, "temperature": 0, "logprobs": 0}));
    let tok = first["choices"][0]["logprobs"]["tokens"][0].as_str().unwrap().to_string();
    let ids = s.ok("/tokenize", &json!({"prompt": tok}))["tokens"].clone();
    let r = s.ok("/v1/completions", &json!({"prompt": "Hello", "max_tokens": 10, "temperature": 0, "stop_token_ids": ids}));
    assert_eq!(r["usage"]["completion_tokens"], 1);
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
}

#[test]
fn logprobs_have_one_entry_per_token() {
    let s = server();
    let r = s.ok("/v1/completions", &json!({"prompt": "The sky is", "max_tokens": 5, "temperature": 0, "logprobs": 3, "ignore_eos": true}));
    let lp = &r["choices"][0]["logprobs"];
    assert_eq!(lp["tokens"].as_array().unwrap().len(), 5);
    assert_eq!(lp["token_logprobs"].as_array().unwrap().len(), 5);
    let top = lp["top_logprobs"][0].as_object().unwrap();
    assert!(top.len() >= 3);
    // Greedy: the chosen token is the most likely one.
    let best = top.values().map(|v| v.as_f64().unwrap()).fold(f64::MIN, f64::max);
    assert!((lp["token_logprobs"][0].as_f64().unwrap() - best).abs() < 1e-6);
    assert_eq!(lp["tokens"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect::<String>(), choice_text(&r, 0));

    let r = s.ok("/v1/chat/completions", &json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "temperature": 0, "logprobs": true, "top_logprobs": 2, "ignore_eos": true}));
    let content = r["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(content.len(), 4);
    for e in content {
        assert!(e["logprob"].as_f64().unwrap() <= 0.0);
        assert_eq!(e["top_logprobs"].as_array().unwrap().len(), 2);
        assert_eq!(e["bytes"].as_array().unwrap().len(), e["token"].as_str().unwrap().len());
    }
}

#[test]
fn models_health_tokenize_and_metrics() {
    let s = server();
    let (status, body) = s.get("/v1/models");
    assert_eq!(status, 200);
    let models: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(models["data"][0]["id"], "smol");
    assert_eq!(models["data"][0]["max_model_len"], 8192);
    s.wait_ready(std::time::Duration::from_secs(30));

    let t = s.ok("/tokenize", &json!({"prompt": "Hello world"}));
    let ids = t["tokens"].as_array().unwrap().clone();
    assert_eq!(t["count"].as_u64(), Some(ids.len() as u64));
    assert_eq!(s.ok("/detokenize", &json!({"tokens": ids}))["prompt"], "Hello world");
    let chat = s.ok("/tokenize", &json!({"messages": [{"role": "user", "content": "Hello world"}]}));
    assert!(chat["count"].as_u64().unwrap() > ids.len() as u64, "the chat template adds tokens");

    s.ok("/v1/completions", &json!({"prompt": "Hi", "max_tokens": 2, "ignore_eos": true}));
    let (status, text) = s.get("/metrics");
    assert_eq!(status, 200);
    for name in [
        "talaria_num_requests_running",
        "talaria_num_requests_waiting",
        "talaria_kv_cache_usage_perc",
        "talaria_prompt_tokens_total",
        "talaria_generation_tokens_total",
        "talaria_time_to_first_token_seconds_bucket",
        "talaria_time_per_output_token_seconds_count",
        "talaria_e2e_request_latency_seconds_sum",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    assert!(s.metric("talaria_generation_tokens_total") >= 2.0);
    assert!(s.metric("talaria_e2e_request_latency_seconds_count") >= 1.0);
}

#[test]
fn bad_inputs_get_openai_errors_and_the_server_keeps_serving() {
    let s = server();
    let long_prompt = "hello ".repeat(9000);
    let cases: Vec<(&str, Vec<u8>, u16, Option<&str>)> = vec![
        ("/v1/completions", b"{\"prompt\": ".to_vec(), 400, None),
        ("/v1/completions", b"[1, 2]".to_vec(), 400, None),
        ("/v1/completions", b"{\"prompt\": \"caf\xe9\"}".to_vec(), 400, None),
        ("/v1/completions", json!({"prompt": "hi", "bogus_field": 1}).to_string().into_bytes(), 400, Some("bogus_field")),
        ("/v1/completions", json!({"prompt": "hi", "max_tokens": "ten"}).to_string().into_bytes(), 400, Some("max_tokens")),
        ("/v1/completions", json!({"max_tokens": 3}).to_string().into_bytes(), 400, Some("prompt")),
        ("/v1/completions", json!({"prompt": ""}).to_string().into_bytes(), 400, Some("prompt")),
        ("/v1/completions", json!({"prompt": long_prompt}).to_string().into_bytes(), 400, Some("prompt")),
        ("/v1/completions", json!({"prompt": "hi", "max_tokens": 9000}).to_string().into_bytes(), 400, Some("max_tokens")),
        ("/v1/completions", json!({"prompt": "hi", "max_tokens": 0}).to_string().into_bytes(), 400, Some("max_tokens")),
        ("/v1/completions", json!({"prompt": "hi", "n": 1000}).to_string().into_bytes(), 400, Some("n")),
        ("/v1/completions", json!({"prompt": "hi", "n": 0}).to_string().into_bytes(), 400, Some("n")),
        ("/v1/completions", json!({"prompt": "hi", "temperature": -1}).to_string().into_bytes(), 400, Some("temperature")),
        ("/v1/completions", json!({"prompt": "hi", "top_p": 1.5}).to_string().into_bytes(), 400, Some("top_p")),
        ("/v1/completions", json!({"prompt": "hi", "logprobs": 50}).to_string().into_bytes(), 400, Some("logprobs")),
        ("/v1/completions", json!({"prompt": [1, 999999]}).to_string().into_bytes(), 400, Some("prompt")),
        ("/v1/completions", json!({"prompt": "hi", "suffix": "!"}).to_string().into_bytes(), 400, Some("suffix")),
        ("/v1/completions", json!({"prompt": ["hi", ""]}).to_string().into_bytes(), 400, Some("prompt")),
        ("/v1/completions", json!({"prompt": "hi", "logit_bias": {"99999999": 1}}).to_string().into_bytes(), 400, Some("logit_bias")),
        ("/v1/completions", json!({"prompt": "hi", "repetition_penalty": 0}).to_string().into_bytes(), 400, Some("repetition_penalty")),
        (
            "/v1/completions",
            json!({"prompt": "hi", "stream_options": {"include_usage": true}}).to_string().into_bytes(),
            400,
            Some("stream_options"),
        ),
        ("/v1/completions", json!({"prompt": "hi", "model": "gpt-4"}).to_string().into_bytes(), 404, Some("model")),
        ("/v1/chat/completions", json!({"messages": []}).to_string().into_bytes(), 400, Some("messages")),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "wizard", "content": "hi"}]}).to_string().into_bytes(),
            400,
            Some("messages"),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 9000}).to_string().into_bytes(),
            400,
            Some("max_completion_tokens"),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 2}).to_string().into_bytes(),
            400,
            Some("top_logprobs"),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]}).to_string().into_bytes(),
            400,
            Some("tools"),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "hi"}], "model": "nope"}).to_string().into_bytes(),
            404,
            Some("model"),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "hi"}], "chat_template": "{% if %}"}).to_string().into_bytes(),
            400,
            Some("chat_template"),
        ),
        (
            // A client's template runs in the CVM: bounded work, so this loop is refused, not run.
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "hi"}], "chat_template": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"}).to_string().into_bytes(),
            400,
            Some("chat_template"),
        ),
        ("/v1/nothing", b"{}".to_vec(), 404, None),
    ];
    for (path, body, status, param) in cases {
        let r = s.post_raw(path, &body);
        let shown = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
        assert_eq!(r.status, status, "{path} {shown}: {}", r.body);
        let e = &r.body["error"];
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{path} {shown}: {}", r.body);
        assert!(e["type"].is_string() && e.get("param").is_some() && e.get("code").is_some(), "{}", r.body);
        if let Some(p) = param {
            assert_eq!(e["param"], p, "{path} {shown}: {}", r.body);
        }
    }
    // Still serving, and nothing leaked.
    let r = s.ok("/v1/completions", &json!({"prompt": "Still there?", "max_tokens": 3, "ignore_eos": true}));
    assert_eq!(r["usage"]["completion_tokens"], 3);
}

/// vLLM's `chat_template` (the client's instead of the model's) and
/// `add_generation_prompt`: the prompt the engine gets is that rendering.
#[test]
fn chat_template_and_add_generation_prompt_as_vllm() {
    let s = server();
    let messages = json!([{"role": "user", "content": "Hello world"}]);
    let prompt_tokens = |extra: Value| {
        let mut req = json!({"messages": messages, "max_completion_tokens": 1});
        req.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        s.ok("/v1/chat/completions", &req)["usage"]["prompt_tokens"].as_u64().unwrap()
    };
    let plain_text = s.ok("/tokenize", &json!({"prompt": "Hello world"}))["count"].as_u64().unwrap();
    assert_eq!(prompt_tokens(json!({"chat_template": "{{ messages[0]['content'] }}"})), plain_text);
    let own = prompt_tokens(json!({}));
    let no_header = prompt_tokens(json!({"add_generation_prompt": false}));
    // SmolLM2's template ends with the assistant's header when asked.
    let header = s.ok("/tokenize", &json!({"prompt": "<|im_start|>assistant\n"}))["count"].as_u64().unwrap();
    assert_eq!(own - no_header, header, "{own} vs {no_header}");
}

#[test]
fn a_list_of_prompts_gets_n_choices_each_streaming_or_not() {
    let s = server();
    let one = |p: &str| s.ok("/v1/completions", &json!({"prompt": p, "max_tokens": 4, "temperature": 0, "ignore_eos": true}));
    let (a, b) = (one("The sky is"), one("def add(a, b):"));
    let req = json!({"prompt": ["The sky is", "def add(a, b):"], "n": 2, "max_tokens": 4, "temperature": 0, "ignore_eos": true});
    let r = s.ok("/v1/completions", &req);
    let want = [choice_text(&a, 0), choice_text(&a, 0), choice_text(&b, 0), choice_text(&b, 0)];
    assert_eq!((0..4).map(|i| choice_text(&r, i)).collect::<Vec<_>>(), want, "{r}");
    assert!(r["choices"].as_array().unwrap().iter().enumerate().all(|(i, c)| c["index"] == i));
    let prompts = a["usage"]["prompt_tokens"].as_u64().unwrap() + b["usage"]["prompt_tokens"].as_u64().unwrap();
    assert_eq!((r["usage"]["prompt_tokens"].as_u64(), r["usage"]["completion_tokens"].as_u64()), (Some(prompts), Some(16)));

    // Token-id lists, streamed: the same choices at the same indexes, usage once at the end.
    let ids = |p: &str| s.ok("/tokenize", &json!({"prompt": p}))["tokens"].clone();
    let mut sreq = req.clone();
    sreq["prompt"] = json!([ids("The sky is"), ids("def add(a, b):")]);
    sreq["stream"] = json!(true);
    sreq["stream_options"] = json!({"include_usage": true});
    let events = s.stream("/v1/completions", &sreq);
    let (texts, finish) = stream_texts(&events, 4);
    assert_eq!(texts, want);
    assert!(finish.iter().all(|f| f.as_deref() == Some("length")));
    let usage: Vec<&Value> = events.iter().filter(|e| !e["usage"].is_null()).map(|e| &e["usage"]).collect();
    assert_eq!(usage, vec![&r["usage"]], "one usage chunk, the same sums");
}

#[test]
fn echo_returns_the_prompt_and_its_logprobs() {
    let s = server();
    let prompt = "The capital of France is";
    let plain = s.ok("/v1/completions", &json!({"prompt": prompt, "max_tokens": 3, "temperature": 0, "ignore_eos": true}));
    let req = json!({"prompt": prompt, "max_tokens": 3, "temperature": 0, "ignore_eos": true, "echo": true, "logprobs": 2});
    let r = s.ok("/v1/completions", &req);
    assert_eq!(choice_text(&r, 0), format!("{prompt}{}", choice_text(&plain, 0)));
    let lp = &r["choices"][0]["logprobs"];
    let prompt_tokens = r["usage"]["prompt_tokens"].as_u64().unwrap() as usize;
    let tokens: Vec<&str> = lp["tokens"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(tokens.len(), prompt_tokens + 3);
    assert_eq!(tokens.concat(), choice_text(&r, 0), "the tokens cover prompt and completion");
    assert!(lp["token_logprobs"][0].is_null() && lp["top_logprobs"][0].is_null(), "nothing predicts the first token");
    let scores = lp["token_logprobs"].as_array().unwrap();
    assert!(scores[1..].iter().all(|v| v.as_f64().is_some_and(|x| x <= 0.0)), "{lp}");
    let offsets: Vec<u64> = lp["text_offset"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(offsets[0], 0);
    assert_eq!(offsets[prompt_tokens] as usize, prompt.len(), "the completion starts after the prompt");
    // Streamed: the prompt comes first in the choice's text.
    let mut sreq = req.clone();
    sreq["stream"] = json!(true);
    let (texts, _) = stream_texts(&s.stream("/v1/completions", &sreq), 1);
    assert_eq!(texts[0], choice_text(&r, 0));
}

#[test]
fn logit_bias_and_repetition_penalty_steer_greedy_sampling() {
    let s = server();
    let base = json!({"prompt": "Hello", "max_tokens": 1, "temperature": 0, "logprobs": 0});
    let first = s.ok("/v1/completions", &base);
    let tok = first["choices"][0]["logprobs"]["tokens"][0].as_str().unwrap().to_string();
    let id = s.ok("/tokenize", &json!({"prompt": tok}))["tokens"][0].as_u64().unwrap();
    let mut banned = base.clone();
    banned["logit_bias"] = json!({id.to_string(): -100});
    assert_ne!(choice_text(&s.ok("/v1/completions", &banned), 0), choice_text(&first, 0));
    let forced_id = s.ok("/tokenize", &json!({"prompt": " banana"}))["tokens"][0].as_u64().unwrap();
    let mut forced = base.clone();
    forced["logit_bias"] = json!({forced_id.to_string(): 100});
    let r = s.ok("/v1/completions", &forced);
    let got = s.ok("/tokenize", &json!({"prompt": choice_text(&r, 0)}))["tokens"][0].as_u64().unwrap();
    assert_eq!(got, forced_id);
    let chat = json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "repetition_penalty": 1.3, "logit_bias": {"5": 1}});
    s.ok("/v1/chat/completions", &chat);
}

/// A second chat turn with the first turn's `cache_salt` reuses its cached
/// blocks (the prefix-cache counters say so) and answers as a request of
/// another client does, which reuses nothing.
#[test]
fn a_second_chat_turn_reuses_the_first_turns_prefix_for_its_salt() {
    let s = server();
    let hits = || s.metric("talaria_prefix_cache_hits_total");
    let history = "Tell me about the history of the printing press in Europe, in one paragraph.";
    let first = json!({"messages": [{"role": "user", "content": history}], "max_tokens": 24, "temperature": 0, "cache_salt": "alice"});
    let answer = choice_text(&s.ok("/v1/chat/completions", &first), 0);
    let turn = |salt: &str| {
        json!({"messages": [
            {"role": "user", "content": history},
            {"role": "assistant", "content": answer},
            {"role": "user", "content": "And in Asia?"}
        ], "max_tokens": 8, "temperature": 0, "cache_salt": salt})
    };
    let before = hits();
    let reused = s.ok("/v1/chat/completions", &turn("alice"));
    let after = hits();
    assert!(after - before >= 32.0, "the first turn's blocks are reused: {before} -> {after}");
    let fresh = s.ok("/v1/chat/completions", &turn("bob"));
    assert_eq!(hits(), after, "another salt reuses nothing");
    assert_eq!(choice_text(&reused, 0), choice_text(&fresh, 0));
    assert_eq!(reused["usage"]["prompt_tokens"], fresh["usage"]["prompt_tokens"], "usage counts the whole prompt");
    let e = s.post("/v1/chat/completions", &json!({"messages": [{"role": "user", "content": "hi"}], "cache_salt": ""}));
    assert_eq!(e.status, 400);
}
