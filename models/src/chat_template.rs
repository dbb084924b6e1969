//! The model's own chat template: the Jinja source from a GGUF
//! (`tokenizer.chat_template`) or an HF folder (`chat_template.jinja`, or
//! `chat_template` in `tokenizer_config.json`), rendered with `minijinja`
//! the way HF transformers renders it (`trim_blocks`, `lstrip_blocks`,
//! Python string methods through `minijinja-contrib`'s pycompat,
//! `raise_exception`, `bos_token`/`eos_token`, `add_generation_prompt`).

use std::path::Path;

use minijinja::{Environment, ErrorKind, Value};
use serde::Serialize;

use crate::tokenizer::ChatMessage;

const NAME: &str = "chat";

pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

/// A template a client sends with its request runs in the CVM: bounded in
/// size and in work (minijinja's fuel), so a loop cannot hold the server.
/// Fuel counts instructions, not bytes: one instruction can build a string
/// of 100 MB (or double one), so the server also runs client templates
/// only when told to trust them (`--trust-request-chat-template`).
pub const MAX_REQUEST_TEMPLATE_BYTES: usize = 64 << 10;
const REQUEST_TEMPLATE_FUEL: u64 = 2_000_000;
/// Most bytes any rendering may write: a prompt is far shorter (the server
/// caps it at 1 Mi characters by default), and a template that loops its
/// output fails here instead of filling memory.
pub const MAX_RENDERED_BYTES: usize = 16 << 20;

/// The rendering's sink: fails the write that would pass `MAX_RENDERED_BYTES`.
struct CappedOutput(Vec<u8>);

impl std::io::Write for CappedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_RENDERED_BYTES {
            return Err(std::io::Error::other(format!("the rendered prompt is over {MAX_RENDERED_BYTES} bytes")));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Serialize)]
struct Context<'a> {
    messages: &'a [ChatMessage],
    add_generation_prompt: bool,
    bos_token: &'a str,
    eos_token: &'a str,
}

impl ChatTemplate {
    /// Compiles `source`; an error names what Jinja could not parse.
    pub fn new(source: &str, bos_token: Option<String>, eos_token: Option<String>) -> Result<Self, String> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<Value, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_template_owned(NAME, source.to_string()).map_err(|e| format!("cannot parse the chat template: {e:#}"))?;
        Ok(Self { env, bos_token: bos_token.unwrap_or_default(), eos_token: eos_token.unwrap_or_default() })
    }

    /// Another template (a client's) with this one's special tokens,
    /// bounded in size and work.
    pub fn for_request(&self, source: &str) -> Result<Self, String> {
        Self::bounded(source, Some(self.bos_token.clone()), Some(self.eos_token.clone()))
    }

    /// A client's template for a model that has none of its own.
    pub fn bounded(source: &str, bos_token: Option<String>, eos_token: Option<String>) -> Result<Self, String> {
        if source.len() > MAX_REQUEST_TEMPLATE_BYTES {
            return Err(format!("the chat template is {} bytes, over the {MAX_REQUEST_TEMPLATE_BYTES}-byte limit", source.len()));
        }
        let mut t = Self::new(source, bos_token, eos_token)?;
        t.env.set_fuel(Some(REQUEST_TEMPLATE_FUEL));
        Ok(t)
    }

    /// The prompt for `messages`, ending with the assistant's header when
    /// `add_generation_prompt`.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String, String> {
        let ctx = Context { messages, add_generation_prompt, bos_token: &self.bos_token, eos_token: &self.eos_token };
        let t = self.env.get_template(NAME).expect("added at construction");
        let mut out = CappedOutput(Vec::new());
        t.render_captured_to(ctx, &mut out).map_err(|e| match e.kind() {
            ErrorKind::InvalidOperation => format!("the chat template refused the messages: {}", e.detail().unwrap_or("no reason given")),
            ErrorKind::WriteFailure => format!("rendering the chat template: the output is over {MAX_RENDERED_BYTES} bytes"),
            _ => format!("rendering the chat template: {e:#}"),
        })?;
        // minijinja writes whole `str`s.
        String::from_utf8(out.0).map_err(|e| format!("rendering the chat template: {e}"))
    }
}

/// An HF folder's template: `chat_template.jinja` if present, else
/// `tokenizer_config.json`'s `chat_template` (a string, or named templates
/// of which "default" is taken), with that file's `bos_token`/`eos_token`.
pub(crate) fn from_hf_folder(dir: &Path) -> Result<Option<ChatTemplate>, String> {
    let config: serde_json::Value = match std::fs::read_to_string(dir.join("tokenizer_config.json")) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| format!("tokenizer_config.json: {e}"))?,
        Err(_) => serde_json::Value::Null,
    };
    let token = |key: &str| match &config[key] {
        serde_json::Value::String(s) => Some(s.clone()),
        v => v["content"].as_str().map(str::to_string),
    };
    let source = match std::fs::read_to_string(dir.join("chat_template.jinja")) {
        Ok(s) => Some(s),
        Err(_) => match &config["chat_template"] {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Array(named) => {
                named.iter().find(|t| t["name"] == "default").and_then(|t| t["template"].as_str()).map(str::to_string)
            }
            _ => None,
        },
    };
    source.map(|s| ChatTemplate::new(&s, token("bos_token"), token("eos_token"))).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(pairs: &[(&str, &str)]) -> Vec<ChatMessage> {
        pairs.iter().map(|(r, c)| ChatMessage::new(r, c)).collect()
    }

    #[test]
    fn renders_like_transformers_with_python_methods_and_trimmed_blocks() {
        let src = "{{ bos_token }}{% for m in messages %}\n{% if m['role'] == 'system' %}{{ raise_exception('no system') }}{% endif %}\n<{{ m['role'] }}>{{ m['content'] | trim }}{{ eos_token }}\n{% endfor %}\n{% if add_generation_prompt %}<assistant>{% endif %}";
        let t = ChatTemplate::new(src, Some("<s>".into()), Some("</s>".into())).unwrap();
        let out = t.render(&msgs(&[("user", "  hi  ")]), true).unwrap();
        assert_eq!(out, "<s><user>hi</s>\n<assistant>");
        let err = t.render(&msgs(&[("system", "x")]), true).unwrap_err();
        assert!(err.contains("no system"), "{err}");
        let py = ChatTemplate::new("{{ messages[0]['content'].strip().upper() }}{{ 'x'.startswith('x') }}", None, None).unwrap();
        assert_eq!(py.render(&msgs(&[("user", " a ")]), false).unwrap(), "ATrue", "Python's spelling of a boolean");
        assert!(ChatTemplate::new("{% if %}", None, None).is_err());
    }

    #[test]
    fn request_templates_are_bounded_in_size_and_work() {
        let model = ChatTemplate::new("x", Some("<s>".into()), None).unwrap();
        let mine = model.for_request("{{ bos_token }}{{ messages | length }}").unwrap();
        assert_eq!(mine.render(&msgs(&[("user", "a")]), true).unwrap(), "<s>1");
        let spin = model.for_request("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}").unwrap();
        let err = spin.render(&msgs(&[("user", "a")]), true).unwrap_err();
        assert!(err.contains("fuel") || err.contains("out of"), "{err}");
        assert!(model.for_request(&"x".repeat(MAX_REQUEST_TEMPLATE_BYTES + 1)).is_err());
    }

    /// Fuel counts instructions: 40 of them would write 4 GB. The output
    /// is capped instead, for a client's template and the model's own.
    #[test]
    fn a_template_that_loops_its_output_fails_at_the_cap() {
        let model = ChatTemplate::new("x", None, None).unwrap();
        let flood = "{% for i in range(40) %}{{ 'x' * 100000000 }}{% endfor %}";
        for t in [model.for_request(flood).unwrap(), ChatTemplate::new(flood, None, None).unwrap()] {
            let err = t.render(&msgs(&[("user", "a")]), false).unwrap_err();
            assert!(err.contains(&format!("over {MAX_RENDERED_BYTES} bytes")), "{err}");
        }
        let just_under = format!("{{{{ 'x' * {} }}}}", MAX_RENDERED_BYTES);
        assert_eq!(model.for_request(&just_under).unwrap().render(&msgs(&[]), false).unwrap().len(), MAX_RENDERED_BYTES);
    }
}
