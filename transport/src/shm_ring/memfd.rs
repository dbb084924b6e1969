//! Anonymous shared memory files (`memfd_create`): the region a CVM hands
//! its own child worker by inheritance, so no other process can open it by
//! name (there is none).

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};

/// A new, empty memfd, close-on-exec (the spawner makes the one inherited
/// copy explicitly), sealable.
pub fn create(name: &str) -> std::io::Result<File> {
    let cname = CString::new(name).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: a plain syscall with a valid NUL-terminated name.
    let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned to us and is owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Seals the file against shrinking and against adding seals later.
pub fn seal_size(file: &File) -> std::io::Result<()> {
    // SAFETY: a plain fcntl on an open descriptor.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
