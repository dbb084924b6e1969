//! Is the process on the other side of the ring still there?

use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{Result, TransportError};

/// What a waiter knows about its peer.
#[derive(Clone, Copy)]
pub(crate) struct PeerWatch<'a> {
    /// The peer sets this when it drops its endpoint.
    pub closed: &'a AtomicU32,
    /// The peer's pid as recorded in the region (0 = not attached yet).
    pub pid: &'a AtomicU32,
    /// Pid to watch before the peer attaches (the process we spawned).
    pub expected_pid: Option<u32>,
}

impl PeerWatch<'_> {
    /// Cheap check: did the peer close its end?
    pub fn check_closed(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) != 0 {
            return Err(TransportError::PeerGone("the peer closed its end of the shared-memory ring".into()));
        }
        Ok(())
    }

    /// Syscall check: does the peer process still run?
    pub fn check_alive(&self) -> Result<()> {
        let pid = match self.pid.load(Ordering::Acquire) {
            0 => self.expected_pid,
            p => Some(p),
        };
        match pid {
            Some(pid) if !process_alive(pid) => Err(TransportError::PeerGone(format!("peer process {pid} has exited"))),
            _ => Ok(()),
        }
    }
}

/// True if `pid` names a running (not zombie) process. Unknown answers
/// (no permission, no procfs) count as alive: the bounded waits and the
/// closed flag still apply.
pub fn process_alive(pid: u32) -> bool {
    let Ok(pid_t) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid_t <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks existence and permission.
    let rc = unsafe { libc::kill(pid_t, 0) };
    if rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
        return false;
    }
    !is_zombie(pid)
}

/// A child that exited but was not reaped yet still answers `kill(pid, 0)`.
fn is_zombie(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // Format: "pid (comm) S ...": comm may contain spaces and parentheses,
    // so the state is the first field after the last ')'.
    stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next()).is_some_and(|state| state == "Z" || state == "X")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_is_alive_and_bogus_pids_are_not() {
        assert!(process_alive(std::process::id()));
        assert!(!process_alive(0));
        assert!(!process_alive(u32::MAX));
    }
}
