//! Prints a GGUF file's metadata (arrays abbreviated) and tensor table.
use talaria_models::gguf::{code_name, GgufFile, GgufValue};

fn main() -> anyhow::Result<()> {
    let path = std::env::args().nth(1).ok_or_else(|| anyhow::anyhow!("usage: gguf_inspect FILE.gguf"))?;
    let g = GgufFile::open(&path)?;
    println!("GGUF v{}: {} metadata entries, {} tensors", g.version, g.metadata.len(), g.tensors.len());
    for (k, v) in &g.metadata {
        match v {
            GgufValue::Array(a) => println!("{k} = [{} items, first: {:?}]", a.len(), a.iter().take(5).collect::<Vec<_>>()),
            GgufValue::String(s) if s.len() > 200 => println!("{k} = {:?}…", &s[..200]),
            v => println!("{k} = {v:?}"),
        }
    }
    for t in &g.tensors {
        println!("{:<32} {:?} {}", t.name, t.shape(), code_name(t.type_code));
    }
    Ok(())
}
