//! Writes a suite's report as markdown, JSON and a plot.

use std::path::Path;

use anyhow::{Context, Result};

use super::report::{markdown, SuiteReport};

pub fn write_outputs(r: &SuiteReport, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let write =
        |name: &str, bytes: Vec<u8>| std::fs::write(dir.join(name), bytes).with_context(|| format!("writing {}", dir.join(name).display()));
    write("privacy.md", markdown(r).into_bytes())?;
    write("privacy.json", serde_json::to_vec_pretty(r)?)?;
    write("privacy.svg", super::plot::privacy_svg(r)?.into_bytes())?;
    Ok(())
}
