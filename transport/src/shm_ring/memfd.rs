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

/// Seals the file against resizing and against adding (or lifting) seals
/// later. Needs a file made by [`create`] (`MFD_ALLOW_SEALING`): without
/// it the kernel answers EPERM.
pub fn seal_size(file: &File) -> std::io::Result<()> {
    const SEALS: libc::c_int = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: a plain fcntl on an open descriptor.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, SEALS) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // Confirm the seals are in place (a kernel that accepted the call but
    // applied less would leave the region open to truncation).
    // SAFETY: as above.
    let got = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
    if got < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if got & SEALS != SEALS {
        return Err(std::io::Error::other(format!("seals {got:#x} applied, {SEALS:#x} asked for")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_a_memfd_forbids_resizing() {
        let file = create("talaria-seal-test").unwrap();
        file.set_len(1 << 16).unwrap();
        seal_size(&file).unwrap();
        let shrink = file.set_len(4096).unwrap_err();
        assert_eq!(shrink.raw_os_error(), Some(libc::EPERM), "{shrink}");
        let grow = file.set_len(1 << 20).unwrap_err();
        assert_eq!(grow.raw_os_error(), Some(libc::EPERM), "{grow}");
        assert_eq!(file.metadata().unwrap().len(), 1 << 16);
    }

    /// A memfd made without `MFD_ALLOW_SEALING` cannot be sealed, and
    /// sealing says so rather than passing silently.
    #[test]
    fn sealing_an_unsealable_file_is_an_error() {
        let name = CString::new("talaria-unsealable").unwrap();
        // SAFETY: a plain syscall with a valid NUL-terminated name.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0, "{}", std::io::Error::last_os_error());
        // SAFETY: `fd` was just returned to us and is owned by nobody else.
        let file = unsafe { File::from_raw_fd(fd) };
        file.set_len(4096).unwrap();
        let err = seal_size(&file).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    }
}
