//! Exclusive locks on files that their holders may remove or rotate.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

/// Opens `path` for appending (creating it, root-only) and waits for an exclusive lock on
/// it. A holder may remove or rename the file before letting go; a waiter that then
/// finds its lock is on a file the path no longer names tries again, so two processes
/// never both believe they hold the lock on `path`.
pub fn lock_current(path: &Path) -> io::Result<Flock<File>> {
    loop {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        let locked = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| io::Error::from(errno))?;
        let held = locked.metadata()?;
        match fs::metadata(path) {
            Ok(current) if current.ino() == held.ino() && current.dev() == held.dev() => {
                return Ok(locked);
            }
            Ok(_) => continue,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err),
        }
    }
}
