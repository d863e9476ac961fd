//! Descriptors plexus was started with beyond stdin, stdout and stderr are the caller's
//! (a runtime's pipe, a lock it holds, a FIFO), left open without close-on-exec. They are
//! marked close-on-exec before anything else runs, so that no process plexus starts
//! inherits them: a detached DHCP server lives as long as its pod and would hold them
//! open all that time — a caller reading its pipe to the end would never see the end,
//! and a caller's `flock` would stay held against its own DEL. Delegates get no more
//! than a Go runtime (libcni, Multus) gives its plugins either.

use std::fs;
use std::io;
use std::os::fd::{BorrowedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::libc;

/// The lowest descriptor that is not stdin, stdout or stderr.
const FIRST: RawFd = 3;

/// Marks every descriptor above stderr close-on-exec. Run while the process has one
/// thread, so that no descriptor can be opened while the others are being marked.
// nix has no close_range.
#[allow(unsafe_code)]
pub fn close_inherited_on_exec() -> io::Result<()> {
    // SAFETY: close_range only changes descriptor flags; it touches no memory. Marking
    // plexus's own descriptors is harmless: Rust opens every one close-on-exec already,
    // and what a child is meant to get (its stdio) is dup2'ed, which clears the flag.
    let marked = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            FIRST as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if marked == 0 {
        return Ok(());
    }
    // Linux before 5.11 has no CLOSE_RANGE_CLOEXEC (EINVAL), before 5.9 no close_range
    // (ENOSYS): one descriptor at a time, as /proc lists them.
    mark_listed()
}

/// Marks close-on-exec each descriptor above stderr that `/proc/self/fd` lists.
// A descriptor number from /proc becomes a BorrowedFd only by an unsafe call.
#[allow(unsafe_code)]
fn mark_listed() -> io::Result<()> {
    let fds: Vec<RawFd> = fs::read_dir("/proc/self/fd")?
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd >= FIRST)
        .collect();
    for fd in fds {
        // SAFETY: only the descriptor's flags are changed, as above; one that is not
        // open (the listing's own, closed by now) is EBADF.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        match fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)) {
            Ok(_) | Err(Errno::EBADF) => {}
            Err(errno) => return Err(errno.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsFd, OwnedFd};

    use super::*;

    /// A descriptor without close-on-exec, as a caller hands one down.
    fn inheritable() -> OwnedFd {
        let fd = nix::unistd::dup(io::stderr()).unwrap();
        assert!(!close_on_exec(fd.as_fd()));
        fd
    }

    fn close_on_exec(fd: BorrowedFd) -> bool {
        let flags = fcntl(fd, FcntlArg::F_GETFD).unwrap();
        FdFlag::from_bits_truncate(flags).contains(FdFlag::FD_CLOEXEC)
    }

    #[test]
    fn descriptors_above_stderr_are_marked_and_stdio_is_not() {
        let fd = inheritable();
        close_inherited_on_exec().unwrap();
        assert!(close_on_exec(fd.as_fd()));
        assert!(
            !close_on_exec(io::stderr().as_fd()),
            "stderr stays inheritable"
        );
    }

    #[test]
    fn old_kernels_mark_what_proc_lists() {
        let fd = inheritable();
        mark_listed().unwrap();
        assert!(close_on_exec(fd.as_fd()));
    }
}
