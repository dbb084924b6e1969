//! Hardware evidence through the Linux configfs-tsm report interface
//! (Documentation/ABI/testing/configfs-tsm): one code path for SEV-SNP
//! (provider `sev_guest`) and TDX (provider `tdx_guest`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::snp_cert_table::{find_certificate, VCEK_GUID};
use super::Attester;
use crate::{AttestError, Evidence, ReportData, TeeKind};

pub const TSM_REPORT_DIR: &str = "/sys/kernel/config/tsm/report";

/// Another writer changing the entry between our write and read is retried this often.
const ATTEMPTS: usize = 5;

/// Attests through configfs-tsm; the TEE kind is the kernel's provider.
pub struct ConfigfsTsmAttester {
    root: PathBuf,
    kind: TeeKind,
}

impl ConfigfsTsmAttester {
    /// Probes the provider under `root`; with `expected`, refuses another.
    pub fn new(root: &Path, expected: Option<TeeKind>) -> Result<Self, AttestError> {
        if !root.is_dir() {
            return Err(AttestError::Unavailable(format!(
                "{} is absent: not a confidential VM with configfs-tsm (Linux 6.7 or later, configfs mounted)",
                root.display()
            )));
        }
        let entry = ReportEntry::create(root)?;
        let provider = entry.read_text("provider")?;
        let kind = kind_of_provider(&provider)?;
        if let Some(want) = expected {
            if want != kind {
                return Err(AttestError::Unavailable(format!(
                    "--attestation asks for {want:?} but the configfs-tsm provider is {provider:?} ({kind:?})"
                )));
            }
        }
        Ok(ConfigfsTsmAttester { root: root.to_path_buf(), kind })
    }

    fn attest_once(&self, data: &ReportData) -> Result<Option<Evidence>, AttestError> {
        let entry = ReportEntry::create(&self.root)?;
        let before = entry.generation()?;
        entry.write("inblob", &data.0)?;
        let written = entry.generation()?;
        let provider = entry.read_text("provider")?;
        let report = entry.read("outblob")?;
        // Only SNP has an auxblob, and only when the host supplies certificates.
        let aux = if self.kind == TeeKind::SevSnp { entry.read_optional("auxblob")? } else { Vec::new() };
        let after = entry.generation()?;
        if written != before + 1 || after != written {
            return Ok(None); // a concurrent writer touched our entry: retry
        }
        let kind = kind_of_provider(&provider)?;
        if kind != self.kind {
            return Err(AttestError::Other(format!("configfs-tsm provider changed to {provider:?}")));
        }
        let endorsements = match kind {
            TeeKind::SevSnp if !aux.is_empty() => find_certificate(&aux, &VCEK_GUID)?.unwrap_or_default(),
            _ => Vec::new(),
        };
        Ok(Some(Evidence { kind, report, endorsements }))
    }
}

impl Attester for ConfigfsTsmAttester {
    fn kind(&self) -> TeeKind {
        self.kind
    }

    fn attest(&self, data: &ReportData) -> Result<Evidence, AttestError> {
        for _ in 0..ATTEMPTS {
            if let Some(ev) = self.attest_once(data)? {
                return Ok(ev);
            }
        }
        Err(AttestError::Other(format!("configfs-tsm: another writer kept changing the report entry ({ATTEMPTS} attempts)")))
    }
}

fn kind_of_provider(provider: &str) -> Result<TeeKind, AttestError> {
    match provider {
        "sev_guest" => Ok(TeeKind::SevSnp),
        "tdx_guest" => Ok(TeeKind::Tdx),
        o => Err(AttestError::Unavailable(format!("unsupported configfs-tsm provider {o:?} (sev_guest, tdx_guest)"))),
    }
}

/// One report entry directory, removed again on drop.
struct ReportEntry {
    dir: PathBuf,
}

impl ReportEntry {
    fn create(root: &Path) -> Result<Self, AttestError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let name = format!("talaria-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        let dir = root.join(name);
        std::fs::create_dir(&dir)
            .map_err(|e| AttestError::Io { context: format!("creating the configfs-tsm entry {}", dir.display()), source: e })?;
        Ok(ReportEntry { dir })
    }

    fn read(&self, attr: &str) -> Result<Vec<u8>, AttestError> {
        let p = self.dir.join(attr);
        std::fs::read(&p).map_err(|e| AttestError::Io { context: format!("reading {}", p.display()), source: e })
    }

    /// Reads an attribute that may be absent: a missing file is empty (for
    /// `auxblob`: no certificate table); any other I/O error is returned.
    fn read_optional(&self, attr: &str) -> Result<Vec<u8>, AttestError> {
        let p = self.dir.join(attr);
        match std::fs::read(&p) {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(AttestError::Io { context: format!("reading {}", p.display()), source: e }),
        }
    }

    fn read_text(&self, attr: &str) -> Result<String, AttestError> {
        Ok(String::from_utf8_lossy(&self.read(attr)?).trim().to_string())
    }

    fn write(&self, attr: &str, bytes: &[u8]) -> Result<(), AttestError> {
        let p = self.dir.join(attr);
        std::fs::write(&p, bytes).map_err(|e| AttestError::Io { context: format!("writing {}", p.display()), source: e })
    }

    fn generation(&self) -> Result<u64, AttestError> {
        let text = self.read_text("generation")?;
        text.parse().map_err(|_| AttestError::Other(format!("configfs-tsm generation {text:?} is not a number")))
    }
}

impl Drop for ReportEntry {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain directory standing in for configfs: the kernel's files are
    /// written by hand, so the provider check and entry cleanup are exercised.
    #[test]
    fn probing_a_fake_tree_names_the_provider_problem() {
        let root = std::env::temp_dir().join(format!("talaria-tsm-test-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        let e = ConfigfsTsmAttester::new(&root, None).err().expect("no provider file");
        assert!(e.to_string().contains("provider"), "{e}");
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0, "the entry is removed on drop");
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn an_optional_attribute_is_empty_only_when_missing() {
        let root = std::env::temp_dir().join(format!("talaria-tsm-aux-test-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        let entry = ReportEntry::create(&root).unwrap();
        assert_eq!(entry.read_optional("auxblob").unwrap(), Vec::<u8>::new(), "missing: no certificate table");
        std::fs::write(entry.dir.join("auxblob"), b"").unwrap();
        assert!(entry.read_optional("auxblob").unwrap().is_empty(), "empty: no certificate table");
        std::fs::write(entry.dir.join("auxblob"), b"table").unwrap();
        assert_eq!(entry.read_optional("auxblob").unwrap(), b"table");
        std::fs::remove_file(entry.dir.join("auxblob")).unwrap();
        // A directory in its place: reading fails with something other than NotFound.
        std::fs::create_dir(entry.dir.join("auxblob")).unwrap();
        let e = entry.read_optional("auxblob").unwrap_err();
        assert!(matches!(&e, AttestError::Io { context, .. } if context.contains("auxblob")), "{e}");
        std::fs::remove_dir(entry.dir.join("auxblob")).unwrap();
        drop(entry);
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn an_absent_tree_is_unavailable() {
        let e = ConfigfsTsmAttester::new(Path::new("/nonexistent/tsm/report"), Some(TeeKind::SevSnp)).err().unwrap();
        assert!(matches!(e, AttestError::Unavailable(_)), "{e}");
    }
}
