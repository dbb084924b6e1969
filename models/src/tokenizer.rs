//! Tokenizers: an HF `tokenizer.json`, or the vocabulary stored in a GGUF's
//! metadata (turned into the equivalent tokenizer.json so both go through
//! the same `tokenizers` implementation); the model's chat template and the
//! tokens that end a generation.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::chat_template::{self, ChatTemplate};
use crate::error::{ModelError, Result};
use crate::gguf::{vocab, GgufFile};

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> Self {
        Self { role: role.into(), content: content.into() }
    }
}

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    /// Tokens that end a generation: the model's EOS (and those of
    /// `generation_config.json`), end-of-turn tokens of the known templates.
    pub stop_ids: Vec<u32>,
    pub bos_id: Option<u32>,
    pub add_bos: bool,
    /// Run the tokenizer.json post-processor (adds BOS for Llama 2/3 files).
    post_process: bool,
    /// The model's own chat template (none in most base models).
    chat_template: Option<ChatTemplate>,
    special_ids: HashSet<u32>,
}

/// Tokens that end a turn in the common templates, stopped on when present.
const END_OF_TURN: [&str; 6] = ["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "<end_of_turn>", "</s>"];

impl Tokenizer {
    /// An HF folder's `tokenizer.json`, with the folder's chat template
    /// (`chat_template.jinja` or `tokenizer_config.json`) and stop tokens
    /// (`generation_config.json`'s `eos_token_id`).
    pub fn from_file(path: &Path) -> Result<Self> {
        let bad = |what: String| ModelError::Tokenizer { path: path.into(), what };
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| bad(e.to_string()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut stop_ids: Vec<u32> = END_OF_TURN.iter().filter_map(|t| inner.token_to_id(t)).collect();
        if let Ok(text) = std::fs::read_to_string(dir.join("generation_config.json")) {
            let g: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(format!("generation_config.json: {e}")))?;
            let eos = match &g["eos_token_id"] {
                serde_json::Value::Array(a) => a.iter().filter_map(|v| v.as_u64()).collect(),
                v => v.as_u64().into_iter().collect::<Vec<_>>(),
            };
            stop_ids.extend(eos.into_iter().map(|id| id as u32).filter(|id| !stop_ids.contains(id)).collect::<Vec<_>>());
        }
        let bos_id = ["<s>", "<|begin_of_text|>", "<bos>"].iter().find_map(|t| inner.token_to_id(t));
        let chat_template = chat_template::from_hf_folder(dir).map_err(&bad)?;
        let special_ids = inner.get_added_tokens_decoder().iter().filter(|(_, t)| t.special).map(|(id, _)| *id).collect();
        // An HF tokenizer.json's own post-processor decides about BOS.
        Ok(Self { inner, path: path.into(), stop_ids, bos_id, add_bos: false, post_process: true, chat_template, special_ids })
    }

    /// Builds the tokenizer from GGUF metadata (`tokenizer.ggml.*`).
    pub fn from_gguf(g: &GgufFile) -> Result<Self> {
        let path = g.path().to_path_buf();
        let bad = |what: String| ModelError::Tokenizer { path: path.clone(), what };
        let model = g.meta("tokenizer.ggml.model").and_then(|v| v.as_str()).unwrap_or("");
        let strings = |key: &str| -> Result<Vec<&str>> {
            let arr = g.meta(key).and_then(|v| v.as_array()).ok_or_else(|| bad(format!("missing {key}")))?;
            arr.iter().map(|v| v.as_str().ok_or_else(|| bad(format!("{key} holds a non-string")))).collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let types: Vec<i64> = match g.meta("tokenizer.ggml.token_type").and_then(|v| v.as_array()) {
            Some(a) => a.iter().map(|v| v.as_i64().unwrap_or(1)).collect(),
            None => vec![1; tokens.len()],
        };
        let id_of = |key: &str| g.meta(key).and_then(|v| v.as_u64()).map(|v| v as u32);
        let bos_id = id_of("tokenizer.ggml.bos_token_id");
        let eos_id = id_of("tokenizer.ggml.eos_token_id");
        let spec = match model {
            "gpt2" => {
                // A vocabulary of bytes alone has no merges (writers then omit the key).
                let merges = if g.meta("tokenizer.ggml.merges").is_some() { strings("tokenizer.ggml.merges")? } else { Vec::new() };
                let pre = g.meta("tokenizer.ggml.pre").and_then(|v| v.as_str()).unwrap_or("default");
                vocab::byte_level_bpe(&tokens, &merges, &types, pre).map_err(&bad)?
            }
            "llama" => {
                let unk = id_of("tokenizer.ggml.unknown_token_id").and_then(|i| tokens.get(i as usize)).copied().unwrap_or("<unk>");
                vocab::sentencepiece_bpe(&tokens, &types, unk)
            }
            other => {
                return Err(bad(format!(
                    "tokenizer.ggml.model {other:?}: supported are gpt2 (byte-level BPE) and llama (SentencePiece BPE)"
                )))
            }
        };
        // llama.cpp adds BOS to a SentencePiece vocabulary unless told otherwise.
        let add_bos = g.meta("tokenizer.ggml.add_bos_token").and_then(|v| v.as_bool()).unwrap_or(model == "llama");
        let inner: tokenizers::Tokenizer = spec.to_string().parse().map_err(|e: tokenizers::Error| bad(e.to_string()))?;
        let mut stop_ids: Vec<u32> = eos_id.into_iter().chain(id_of("tokenizer.ggml.eot_token_id")).collect();
        for t in END_OF_TURN {
            if let Some(id) = inner.token_to_id(t).filter(|id| !stop_ids.contains(id)) {
                stop_ids.push(id);
            }
        }
        let token_text = |id: Option<u32>| id.and_then(|i| tokens.get(i as usize)).map(|t| t.to_string());
        let chat_template = match g.meta("tokenizer.chat_template").and_then(|v| v.as_str()) {
            Some(source) => Some(ChatTemplate::new(source, token_text(bos_id), token_text(eos_id)).map_err(&bad)?),
            None => None,
        };
        let special_ids = added_ids(&types);
        Ok(Self { inner, path, stop_ids, bos_id, add_bos, post_process: false, chat_template, special_ids })
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn token_to_id(&self, t: &str) -> Option<u32> {
        self.inner.token_to_id(t)
    }

    pub fn is_special(&self, id: u32) -> bool {
        self.special_ids.contains(&id)
    }

    /// Encodes text; special tokens written literally (`<|im_start|>`) are
    /// recognised. A BOS is prepended when the model asks for it.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, self.post_process)
            .map_err(|e| ModelError::Tokenizer { path: self.path.clone(), what: e.to_string() })?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if self.add_bos {
            ids.extend(self.bos_id);
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner.decode(ids, skip_special).map_err(|e| ModelError::Tokenizer { path: self.path.clone(), what: e.to_string() })
    }

    /// Whether the model has a chat template (base models usually do not).
    pub fn has_chat_template(&self) -> bool {
        self.chat_template.is_some()
    }

    /// The prompt for `messages` in the model's own chat template, ending
    /// with the assistant's header. An error for a model without a template
    /// or messages the template refuses (worded for the client: no path).
    pub fn chat_prompt(&self, messages: &[ChatMessage]) -> std::result::Result<String, String> {
        self.chat_prompt_with(messages, None, true)
    }

    /// The same with a client's template instead of the model's (bounded
    /// in size and work) and the generation prompt optional, as vLLM's
    /// `chat_template` and `add_generation_prompt`.
    pub fn chat_prompt_with(
        &self,
        messages: &[ChatMessage],
        template: Option<&str>,
        add_generation_prompt: bool,
    ) -> std::result::Result<String, String> {
        let own = self.chat_template.as_ref();
        let theirs = match (template, own) {
            (None, _) => None,
            (Some(src), Some(own)) => Some(own.for_request(src)?),
            (Some(src), None) => {
                let text = |id: Option<u32>| id.and_then(|i| self.inner.id_to_token(i));
                Some(ChatTemplate::bounded(src, text(self.bos_id), text(self.stop_ids.first().copied()))?)
            }
        };
        let t = theirs
            .as_ref()
            .or(own)
            .ok_or("this model has no chat template (a base model?): send a completion prompt, or a chat_template")?;
        t.render(messages, add_generation_prompt)
    }
}

fn added_ids(types: &[i64]) -> HashSet<u32> {
    types.iter().enumerate().filter(|(_, t)| matches!(t, 3 | 4)).map(|(i, _)| i as u32).collect()
}

/// Turns a growing list of token ids into text pieces, holding back bytes of
/// an unfinished UTF-8 character (byte-level BPE splits characters).
pub struct DecodeStream {
    ids: Vec<u32>,
    prefix: usize,
    read: usize,
    skip_special: bool,
}

impl DecodeStream {
    pub fn new(skip_special: bool) -> Self {
        Self { ids: Vec::new(), prefix: 0, read: 0, skip_special }
    }

    /// Adds one token and returns the newly completed text (maybe empty).
    pub fn step(&mut self, tok: &Tokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        let before = tok.decode(&self.ids[self.prefix..self.read], self.skip_special)?;
        let after = tok.decode(&self.ids[self.prefix..], self.skip_special)?;
        if after.len() > before.len() && !after.ends_with('\u{FFFD}') {
            // A byte-fallback decoder judges a run of `<0xNN>` tokens as a
            // whole: a later byte can turn text already released ("é")
            // into U+FFFDs, so `after` need not start with `before`. What
            // was released stays; the piece starts past as many bytes, at
            // a character boundary.
            let mut start = before.len();
            while !after.is_char_boundary(start) {
                start += 1;
            }
            let piece = after[start..].to_string();
            self.prefix = self.read;
            self.read = self.ids.len();
            Ok(piece)
        } else {
            Ok(String::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SentencePiece vocabulary with byte tokens, as Gemma's and Llama 2's.
    fn byte_fallback_tokenizer() -> Tokenizer {
        let spec = vocab::sentencepiece_bpe(&["<unk>", "a", "<0xC3>", "<0xA9>"], &[2, 1, 6, 6], "<unk>");
        let inner: tokenizers::Tokenizer = spec.to_string().parse().unwrap();
        Tokenizer {
            inner,
            path: PathBuf::from("test"),
            stop_ids: Vec::new(),
            bos_id: None,
            add_bos: false,
            post_process: false,
            chat_template: None,
            special_ids: HashSet::new(),
        }
    }

    /// `é` is released, then a third byte makes the run `C3 A9 A9` invalid
    /// as a whole, and the decoder turns it all into U+FFFDs: the stream
    /// keeps what it released and goes on (it sliced inside a U+FFFD and
    /// panicked, which aborted every request in flight).
    #[test]
    fn a_byte_run_that_turns_invalid_after_release_does_not_panic() {
        let tok = byte_fallback_tokenizer();
        let mut stream = DecodeStream::new(true);
        let pieces: Vec<String> = [1, 2, 3, 3, 1].iter().map(|&id| stream.step(&tok, id).unwrap()).collect();
        assert_eq!(pieces[..3].concat(), "aé");
        let text = pieces.concat();
        assert!(text.starts_with("aé") && text.ends_with('a'), "{text:?}");
    }
}
