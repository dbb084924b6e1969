//! Benchmark prompts: a JSONL file (`{"prompt": ...}` or `{"messages":
//! [...]}`, optional `"max_tokens"`), or deterministic synthetic prompts
//! of varied length. Cycled to `--num-prompts`.

use std::path::Path;

use anyhow::{bail, Context};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use super::Args;

#[derive(Clone, Debug)]
pub struct Prompt {
    /// Text for /v1/completions or messages for /v1/chat/completions.
    pub input: Value,
    pub max_tokens: usize,
}

pub fn load(a: &Args) -> anyhow::Result<Vec<Prompt>> {
    let chat = match a.endpoint.as_str() {
        "chat" => true,
        "completions" => false,
        other => bail!("unknown endpoint {other:?} (completions, chat)"),
    };
    let base = match &a.dataset {
        Some(p) => from_jsonl(p, chat, a.max_tokens)?,
        None => synthetic(a.num_prompts, a.seed, a.synthetic_sentences)
            .into_iter()
            .map(|t| Prompt { input: as_input(t, chat), max_tokens: a.max_tokens })
            .collect(),
    };
    if base.is_empty() {
        bail!("no prompts");
    }
    Ok((0..a.num_prompts).map(|i| base[i % base.len()].clone()).collect())
}

fn as_input(text: String, chat: bool) -> Value {
    if chat {
        json!([{"role": "user", "content": text}])
    } else {
        Value::String(text)
    }
}

fn from_jsonl(path: &Path, chat: bool, default_max: usize) -> anyhow::Result<Vec<Prompt>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).with_context(|| format!("{}:{}: not JSON", path.display(), i + 1))?;
        let max_tokens = v.get("max_tokens").and_then(Value::as_u64).map_or(default_max, |m| m as usize);
        let input = match (v.get("prompt").and_then(Value::as_str), v.get("messages")) {
            (Some(p), _) => as_input(p.to_string(), chat),
            (None, Some(m)) if chat => m.clone(),
            (None, Some(_)) => bail!("{}:{}: chat messages need --endpoint chat", path.display(), i + 1),
            (None, None) => bail!("{}:{}: needs \"prompt\" or \"messages\"", path.display(), i + 1),
        };
        out.push(Prompt { input, max_tokens });
    }
    Ok(out)
}

const SUBJECTS: &[&str] = &[
    "the history of the printing press",
    "how bees communicate",
    "the water cycle",
    "a trip to the mountains",
    "the rules of chess",
    "why the sky is blue",
    "a recipe for bread",
    "the life of a lighthouse keeper",
    "how computers store numbers",
    "the migration of birds",
    "a city at night",
    "the first day of school",
];
const SENTENCES: &[&str] = &[
    "Please be clear and precise.",
    "Use simple words that a student would understand.",
    "Give at least one concrete example.",
    "Mention something surprising.",
    "Keep a friendly tone throughout.",
    "Avoid repeating yourself.",
    "Think about what a curious reader would ask next.",
    "Organise the answer in short paragraphs.",
];

/// Prompts of ~8 tokens plus up to `max_sentences` sentences (~10 tokens
/// each), the same for the same seed.
pub fn synthetic(n: usize, seed: u64, max_sentences: usize) -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let subject = SUBJECTS[i % SUBJECTS.len()];
            let mut s = format!("Write about {subject}.");
            let extra = rng.random_range(0..=max_sentences);
            for _ in 0..extra {
                s.push(' ');
                s.push_str(SENTENCES[rng.random_range(0..SENTENCES.len())]);
            }
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_prompts_are_deterministic_and_varied() {
        let a = synthetic(20, 1, 30);
        assert_eq!(a, synthetic(20, 1, 30));
        assert_ne!(a, synthetic(20, 2, 30));
        assert!(synthetic(5, 1, 0).iter().all(|p| p.starts_with("Write about") && p.ends_with('.') && p.matches('.').count() == 1));
        let lens: std::collections::HashSet<usize> = a.iter().map(String::len).collect();
        assert!(lens.len() > 5);
    }

    #[test]
    fn jsonl_prompts_and_messages() {
        let dir = std::env::temp_dir().join(format!("talaria-bench-ds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("d.jsonl");
        std::fs::write(&p, "{\"prompt\": \"hi\", \"max_tokens\": 5}\n\n{\"messages\": [{\"role\": \"user\", \"content\": \"yo\"}]}\n")
            .unwrap();
        assert!(from_jsonl(&p, false, 9).is_err(), "messages need the chat endpoint");
        let v = from_jsonl(&p, true, 9).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].max_tokens, 5);
        assert_eq!(v[0].input[0]["content"], "hi");
        assert_eq!(v[1].max_tokens, 9);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
