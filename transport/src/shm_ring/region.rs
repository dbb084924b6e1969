//! Creating, checking and mapping the shared region file.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::{MmapOptions, MmapRaw};

use super::layout::{round_capacity, Layout, RegionHeader, RingControl, LAYOUT_VERSION, MIN_CAPACITY, PAGE, REGION_MAGIC};
use super::ring::RingPtrs;
use crate::error::{Result, TransportError};

/// The mapped region. The mapping lives as long as this value.
pub(crate) struct Region {
    /// Raw mapping: it never hands out references, which matters because
    /// the peer process writes the same memory.
    map: MmapRaw,
    layout: Layout,
}

impl Region {
    pub fn header(&self) -> &RegionHeader {
        // SAFETY: the mapping is at least 3 pages (checked on open, sized on
        // create) and page aligned; RegionHeader is all atomics, valid for
        // any bit pattern.
        unsafe { &*(self.map.as_ptr() as *const RegionHeader) }
    }

    pub fn capacity(&self) -> u64 {
        self.layout.capacity
    }

    /// Raw pointers to ring `ring` (0: creator -> opener, 1: the reverse).
    pub fn ring(&self, ring: usize) -> RingPtrs {
        let base = self.map.as_mut_ptr();
        // SAFETY: offsets are inside the mapping: region_len was checked
        // against the mapping length when it was created or opened.
        unsafe {
            RingPtrs {
                ctrl: base.add(self.layout.control_offset(ring) as usize) as *const RingControl,
                data: base.add(self.layout.data_offset(ring) as usize),
                cap: self.layout.capacity,
            }
        }
    }

    /// Creates a fresh region file next to `path_hint` and maps it.
    pub fn create(path_hint: &str, capacity: usize) -> Result<(Region, PathBuf)> {
        let capacity = round_capacity(capacity).ok_or_else(|| TransportError::BadRegion {
            path: PathBuf::from(path_hint),
            reason: format!("ring capacity {capacity} is too large"),
        })?;
        let layout = Layout { capacity };
        let (file, path) = create_unique_file(path_hint)?;
        let region = Self::init(&file, &path, layout);
        if region.is_err() {
            let _ = std::fs::remove_file(&path);
        }
        Ok((region?, path))
    }

    fn init(file: &File, path: &Path, layout: Layout) -> Result<Region> {
        let len = layout.region_len();
        file.set_len(len).map_err(|e| TransportError::io(format!("sizing {} to {len} bytes", path.display()), e))?;
        reserve(file, len)
            .map_err(|e| TransportError::io(format!("reserving {len} bytes for {} (is the tmpfs full?)", path.display()), e))?;
        // The file was just created by us with mode 0600; the only other
        // writer is the peer, and all shared state is accessed through
        // atomics or bounds-checked, protocol-guarded byte ranges.
        let map = map_populated(file).map_err(|e| TransportError::io(format!("mapping {}", path.display()), e))?;
        let region = Region { map, layout };
        let h = region.header();
        // The file is new and zero-filled: every index and flag starts at 0.
        h.layout_version.store(LAYOUT_VERSION, Ordering::Relaxed);
        h.capacity.store(layout.capacity, Ordering::Relaxed);
        h.region_len.store(len, Ordering::Relaxed);
        h.creator_pid.store(std::process::id(), Ordering::Relaxed);
        h.magic.store(REGION_MAGIC, Ordering::Release);
        Ok(region)
    }

    /// Creates a fresh region in an anonymous memory file (`memfd`): no
    /// name in any filesystem, shared only by inheriting the returned file.
    pub fn create_memfd(name: &str, capacity: usize) -> Result<(Region, File)> {
        let label = PathBuf::from(format!("memfd:{name}"));
        let capacity = round_capacity(capacity)
            .ok_or_else(|| TransportError::BadRegion { path: label.clone(), reason: format!("ring capacity {capacity} is too large") })?;
        let layout = Layout { capacity };
        let file = super::memfd::create(name).map_err(|e| TransportError::io(format!("creating {}", label.display()), e))?;
        let region = Self::init(&file, &label, layout)?;
        // The size is final: forbid shrinking, which would turn our own
        // accesses into SIGBUS the moment the peer truncated the file. A
        // region that cannot be sealed is refused rather than shared.
        super::memfd::seal_size(&file).map_err(|e| {
            TransportError::io(format!("sealing the size of {} (F_ADD_SEALS; the kernel must support memfd seals)", label.display()), e)
        })?;
        Ok((region, file))
    }

    /// Maps an existing region and checks that it is one.
    pub fn open(path: &Path) -> Result<Region> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| TransportError::io(format!("opening {}", path.display()), e))?;
        Self::open_file(&file, path)
    }

    /// Maps a region from an open file (an inherited memfd); `path` names
    /// it in errors.
    pub fn open_file(file: &File, path: &Path) -> Result<Region> {
        let bad = |reason: String| TransportError::BadRegion { path: path.to_path_buf(), reason };
        let file_len = file.metadata().map_err(|e| TransportError::io(format!("stat {}", path.display()), e))?.len();
        if file_len < 3 * PAGE + 2 * MIN_CAPACITY {
            return Err(bad(format!("file is only {file_len} bytes")));
        }
        // The region is validated below before use.
        let map = map_populated(file).map_err(|e| TransportError::io(format!("mapping {}", path.display()), e))?;
        let region = Region { map, layout: Layout { capacity: 0 } };
        let h = region.header();
        if h.magic.load(Ordering::Acquire) != REGION_MAGIC {
            return Err(bad("not a Talaria ring (bad magic)".into()));
        }
        let version = h.layout_version.load(Ordering::Relaxed);
        if version != LAYOUT_VERSION {
            return Err(bad(format!("ring layout version {version}, this build speaks {LAYOUT_VERSION}")));
        }
        let layout = Layout { capacity: h.capacity.load(Ordering::Relaxed) };
        let declared_len = h.region_len.load(Ordering::Relaxed);
        if layout.capacity < MIN_CAPACITY
            || !layout.capacity.is_multiple_of(PAGE)
            || layout.region_len() != file_len
            || declared_len != file_len
            || region.map.len() as u64 != file_len
        {
            return Err(bad(format!(
                "capacity {} / region length {declared_len} inconsistent with file length {file_len}",
                layout.capacity
            )));
        }
        Ok(Region { layout, ..region })
    }
}

/// Maps the whole file with its page tables filled in up front
/// (MAP_POPULATE): otherwise each new 4 KiB page costs a page fault in both
/// processes the first time the ring passes over it, which dominated
/// small-frame latency in measurements.
fn map_populated(file: &File) -> std::io::Result<MmapRaw> {
    MmapOptions::new().populate().map_raw(file)
}

/// Directory for name-only hints: /dev/shm (RAM) when usable, else the
/// temp dir.
fn default_dirs() -> Vec<PathBuf> {
    let shm = PathBuf::from("/dev/shm");
    let mut dirs = Vec::new();
    if shm.is_dir() {
        dirs.push(shm);
    }
    dirs.push(std::env::temp_dir());
    dirs
}

/// Creates `<hint>-<pid>-<n>-<nanos>.ring` with O_EXCL and mode 0600. A
/// fresh name every time, so a region can be re-created after a peer dies
/// while the old file may still exist.
fn create_unique_file(path_hint: &str) -> Result<(File, PathBuf)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let hint = Path::new(if path_hint.is_empty() { "talaria" } else { path_hint });
    let (dirs, stem) = match (hint.parent(), hint.file_name()) {
        (Some(dir), Some(name)) if !dir.as_os_str().is_empty() => (vec![dir.to_path_buf()], name.to_os_string()),
        (_, Some(name)) => (default_dirs(), name.to_os_string()),
        _ => (default_dirs(), "talaria".into()),
    };
    let mut last_err = None;
    for dir in dirs {
        for _ in 0..8 {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
            let mut name = stem.clone();
            name.push(format!("-{}-{}-{nanos:08x}.ring", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
            let path = dir.join(name);
            match OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&path) {
                Ok(file) => return Ok((file, path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    last_err = Some(TransportError::io(format!("creating {}", path.display()), e));
                    break;
                }
            }
        }
    }
    Err(last_err.unwrap_or_else(|| {
        TransportError::io(format!("creating a ring file for hint {path_hint:?}"), std::io::Error::from(std::io::ErrorKind::AlreadyExists))
    }))
}

/// Allocates the file's pages now, so a full tmpfs fails here with an error
/// instead of killing us with SIGBUS on first touch of a ring page.
fn reserve(file: &File, len: u64) -> std::io::Result<()> {
    let Ok(len) = libc::off_t::try_from(len) else {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    };
    // SAFETY: plain syscall on an open descriptor.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    match rc {
        0 => Ok(()),
        // Filesystems without fallocate: fall back to lazy allocation.
        libc::EOPNOTSUPP | libc::EINVAL => Ok(()),
        errno => Err(std::io::Error::from_raw_os_error(errno)),
    }
}
