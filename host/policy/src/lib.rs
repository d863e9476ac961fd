//! Runs Plexus policies: WebAssembly components in a sandbox, with a compile cache.
//!
//! A policy is a component of the WIT package `plexus:policy` (`wit/v<VERSION>/`) that
//! implements one world: `selector` (which networks a pod gets) or `merger` (how the
//! delegates' results become the pod's result). This crate knows nothing of CNI or
//! netlink: it loads policies, calls them with the [`types`] records, and reports every
//! failure as a [`PolicyError`] that names the policy and the cause.
//!
//! # Versions
//! The host serves every version in [`WIT_VERSIONS`]. A policy's version is read from
//! its component (the `plexus:policy/types@VERSION` it imports) and it is called through
//! that version's bindings: a policy built against 0.1.0 keeps working, it is just not
//! told what 0.1.0 lacks (`vm`). From 0.2.0 on a policy exports `metadata` (its name, its
//! version, and the oldest Plexus that can run it), read once per load; a policy that
//! needs a newer Plexus than [`HOST_VERSION`] is refused with
//! [`PolicyError::NeedsNewerHost`].
//!
//! ```no_run
//! # fn main() -> Result<(), plexus_policy::PolicyError> {
//! use plexus_policy::{Limits, PolicyRuntime, PolicySource, Selector, types};
//!
//! let runtime = PolicyRuntime::new(Some("/var/lib/plexus/cache".into()), Limits::default())?;
//! let source = PolicySource::parse("/etc/plexus/select.wasm", &[])?;
//! // A merger or an IPAM policy there is refused here, with `PolicyError::WrongWorld`.
//! let selector = runtime.load::<Selector>(&source)?;
//! let attachments = selector.select(&runtime, &types::SelectRequest::default())?;
//! # Ok(()) }
//! ```
//!
//! # The sandbox
//! Each call runs in a fresh store: WASI preview 2 with no preopened directories, no
//! environment, no arguments, no network, an empty stdin, and stdout and stderr captured
//! in memory (the last 64 KiB of each, logged at debug level; a panic message is taken
//! from stderr). A call is stopped once the process has spent [`Limits::timeout`] of CPU
//! time on it (time spent waiting for a core does not count, so a busy node does not fail
//! policies), a sleep in it never outlasts `timeout` of wall-clock time, and it may grow
//! its linear memory to [`Limits::memory_bytes`] in total; its wasm stack is bounded too.
//!
//! # The compile cache
//! Compiling a component takes far longer than running it, so a runtime given a cache
//! directory keeps each policy's machine code there, keyed by the sha256 of the `.wasm`
//! and by the engine (wasmtime version and settings), and maps it into memory when the
//! policy is loaded. A policy file that has not changed since it was last hashed (same
//! device, inode, size, modification and change time) is not read again. See
//! [`PolicyRuntime::new`] for the conditions a directory must meet.

mod cache;
mod error;
mod output;
mod policy;
mod prune;
mod runtime;
mod sandbox;
mod source;
mod stamp;
mod store_access;
mod toolchain;
pub mod types;
mod wit;

use std::fmt;
use std::time::Duration;

pub use error::PolicyError;
pub use policy::{AnyPolicy, Ipam, Merger, Policy, PolicyHandle, Selector, world};
pub use runtime::{PolicyInfo, PolicyRuntime};
pub use source::PolicySource;
pub use toolchain::Toolchain;
pub use wit::WIT_VERSIONS;

/// This host's version: the Plexus version, which a policy's `min-host-version` is
/// compared with.
pub const HOST_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What one policy call may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// CPU time for one call, instantiation included (default 500 ms); also the longest
    /// a call may sleep. Counted for the whole process: make calls one at a time.
    pub timeout: Duration,
    /// Linear memory of one call, all memories together (default 64 MiB).
    pub memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(500),
            memory_bytes: 64 << 20,
        }
    }
}

/// The world a policy implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// `plexus:policy/selector`: exports `select` (`select-networks` from 0.4.0 on).
    Selector,
    /// `plexus:policy/merger`: exports `merge`.
    Merger,
    /// `plexus:policy/ipam`: exports `allocate` (and `release`, `check`, `gc`).
    Ipam,
}

impl PolicyKind {
    /// Every world.
    pub const ALL: [Self; 3] = [Self::Selector, Self::Merger, Self::Ipam];

    /// The function that tells the world apart among a component's exports.
    pub fn export(self) -> &'static str {
        match self {
            Self::Selector => "select",
            Self::Merger => "merge",
            Self::Ipam => "allocate",
        }
    }

    /// Whether a component that exports `name` implements this world: a selector exports
    /// `select` up to 0.3.0 and `select-networks` from 0.4.0 on.
    pub fn is_told_by(self, name: &str) -> bool {
        name == self.export() || (self == Self::Selector && name == "select-networks")
    }
}

/// The world's name: `selector` or `merger`.
impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Selector => "selector",
            Self::Merger => "merger",
            Self::Ipam => "ipam",
        })
    }
}

/// As its world's name, like [`Display`](fmt::Display).
impl serde::Serialize for PolicyKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}
