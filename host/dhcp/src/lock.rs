//! Which process serves a state file. The server of `X.json` holds a POSIX record lock
//! on `X.lock` for as long as it runs, and the kernel tells anyone who asks which process
//! holds it. The lock, not a pid written somewhere, is the truth: a server that is killed
//! loses it with its process, so a dead server never looks alive, a pid reused by another
//! program is never mistaken for the server, and two servers never serve one NIC.

use std::{
    fs::{self, File},
    io,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use nix::{
    errno::Errno,
    fcntl::{FcntlArg, fcntl},
};

use crate::error::DhcpError;

/// The lock file of the server of `state`: the same name with the extension `lock`.
pub fn lock_file(state: &Path) -> PathBuf {
    state.with_extension("lock")
}

/// The lock of a running server, held until dropped (or until the process ends, however
/// it ends). Record locks are not inherited, so the server's children never hold it.
#[derive(Debug)]
pub struct ServerLock {
    _file: File,
}

/// What [`ServerLock::acquire`] found.
#[derive(Debug)]
pub enum Claim {
    /// This process serves the state file now.
    Acquired(ServerLock),
    /// Another process does: this one.
    HeldBy(u32),
}

impl ServerLock {
    /// Takes the lock of `state`'s server for this process, unless another process holds
    /// it. Never waits.
    pub fn acquire(state: &Path) -> Result<Claim, DhcpError> {
        let path = lock_file(state);
        let fail = |source: io::Error| DhcpError::Lock {
            path: path.clone(),
            source,
        };
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(fail)?;
        loop {
            match fcntl(&file, FcntlArg::F_SETLK(&whole_file(libc::F_WRLCK))) {
                Ok(_) => return Ok(Claim::Acquired(ServerLock { _file: file })),
                Err(Errno::EAGAIN | Errno::EACCES) => {}
                Err(errno) => return Err(fail(errno.into())),
            }
            // The holder may let go between the two calls; then the lock is tried again.
            if let Some(pid) = holder(&file).map_err(fail)? {
                return Ok(Claim::HeldBy(pid));
            }
        }
    }
}

/// The process that serves `state` now, if any.
pub fn server_pid(state: &Path) -> Result<Option<u32>, DhcpError> {
    let path = lock_file(state);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(DhcpError::Lock { path, source }),
    };
    holder(&file).map_err(|source| DhcpError::Lock { path, source })
}

/// Removes the lock file of `state`'s server; one already gone is fine. Only for when
/// the state file is gone too, so that no server will be started for it again.
pub fn remove_lock_file(state: &Path) -> Result<(), DhcpError> {
    let path = lock_file(state);
    match fs::remove_file(&path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(DhcpError::Lock {
            path,
            source: error,
        }),
        _ => Ok(()),
    }
}

/// The pid of the process holding a lock on `file`, asked of the kernel (F_GETLK).
fn holder(file: &File) -> io::Result<Option<u32>> {
    let mut probe = whole_file(libc::F_WRLCK);
    fcntl(file, FcntlArg::F_GETLK(&mut probe))?;
    if i32::from(probe.l_type) == libc::F_UNLCK {
        return Ok(None);
    }
    Ok(u32::try_from(probe.l_pid).ok())
}

/// A lock (or a probe) of `kind` over the whole file.
fn whole_file(kind: libc::c_int) -> libc::flock {
    libc::flock {
        l_type: kind as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        // From the start, length 0 meaning "to the end of the file".
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Command, Stdio};

    use super::*;

    const STATE_VAR: &str = "PLEXUS_LOCK_TEST_STATE";

    /// Not a test: the child process the test below starts (a process never conflicts
    /// with its own record locks, so the holder must be another one). It takes the lock,
    /// says so, and keeps it until its stdin closes.
    #[test]
    #[ignore = "entry point of the lock-holding child process of the test below"]
    fn lock_holder_child() {
        let state = PathBuf::from(std::env::var(STATE_VAR).expect("started by the test"));
        let _lock = match ServerLock::acquire(&state).unwrap() {
            Claim::Acquired(lock) => lock,
            Claim::HeldBy(pid) => panic!("held by {pid}"),
        };
        // libtest has already printed "test NAME ... " on this line.
        // libtest has printed "test NAME ... " on this line already.
        println!("locked");
        let _ = io::stdin().read_to_end(&mut Vec::new());
    }

    #[test]
    fn a_lock_is_seen_by_other_processes_and_goes_with_its_holder() {
        let directory = tempfile::tempdir().unwrap();
        let state = directory.path().join("ctr-eth0.json");
        assert_eq!(lock_file(&state), directory.path().join("ctr-eth0.lock"));
        assert_eq!(server_pid(&state).unwrap(), None, "no lock file: no server");

        let lock = match ServerLock::acquire(&state).unwrap() {
            Claim::Acquired(lock) => lock,
            Claim::HeldBy(pid) => panic!("held by {pid} before anyone took it"),
        };
        // The kernel reports no conflicting holder to the holder itself.
        assert_eq!(server_pid(&state).unwrap(), None);
        drop(lock);

        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "lock::tests::lock_holder_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(STATE_VAR, &state)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        assert!(
            stdout
                .lines()
                .map_while(Result::ok)
                .any(|line| line.ends_with("locked")),
            "the child did not take the lock"
        );
        assert_eq!(server_pid(&state).unwrap(), Some(child.id()));
        assert!(matches!(
            ServerLock::acquire(&state).unwrap(),
            Claim::HeldBy(pid) if pid == child.id()
        ));

        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(
            server_pid(&state).unwrap(),
            None,
            "the lock died with its holder"
        );
        assert!(matches!(
            ServerLock::acquire(&state).unwrap(),
            Claim::Acquired(_)
        ));

        remove_lock_file(&state).unwrap();
        remove_lock_file(&state).unwrap();
        assert!(!lock_file(&state).exists());
    }
}
