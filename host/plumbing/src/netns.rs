//! Network-namespace handles, and running a piece of work inside one.
//!
//! A thread that has called `setns` stays in that namespace, so whatever reuses it later
//! (a thread pool, the async runtime, the caller's own thread) would silently act in the
//! wrong namespace. Work is therefore done on a short-lived thread of its own that enters
//! the namespace, runs, and exits. What it typically does is open a socket or a file
//! descriptor: those keep the namespace they were created in, so the caller's thread can
//! use them afterwards (the approach netavark takes for its netlink sockets).

use std::{
    fs::File,
    io,
    path::{Path, PathBuf},
    thread,
};

use nix::sched::{CloneFlags, setns};

use crate::error::{PlumbingError, Result};

/// An open network namespace (a bind-mounted nsfs file such as `/var/run/netns/x` or
/// `/proc/PID/ns/net`). Holding it keeps the namespace alive.
#[derive(Debug)]
pub struct Netns {
    path: PathBuf,
    file: File,
}

impl Netns {
    /// Opens the namespace at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|source| PlumbingError::Op {
            netns: path.display().to_string(),
            link: String::new(),
            op: "open network namespace".into(),
            source,
        })?;
        Ok(Self { path, file })
    }

    /// The path this namespace was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path as text, for messages.
    pub(crate) fn name(&self) -> String {
        self.path.display().to_string()
    }

    /// Runs `work` on a new thread that has entered this namespace, and returns its
    /// result. The thread exits afterwards, so no other code ever runs in it. `what`
    /// names the work in errors. A panic in `work` is propagated to the caller.
    pub fn run<T, F>(&self, what: &str, work: F) -> Result<T>
    where
        T: Send,
        F: FnOnce() -> T + Send,
    {
        let fail = |source: io::Error| PlumbingError::Op {
            netns: self.name(),
            link: String::new(),
            op: what.to_owned(),
            source,
        };
        thread::scope(|scope| {
            let worker = thread::Builder::new()
                .name("plexus-netns".into())
                .spawn_scoped(scope, || {
                    setns(&self.file, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
                    Ok(work())
                })
                .map_err(fail)?;
            match worker.join() {
                Ok(result) => result.map_err(fail),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }
}
