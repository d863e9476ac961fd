//! Typed errors of the DHCP server.

use std::{io, path::PathBuf};

use plexus_plumbing::PlumbingError;

use crate::lease::LeaseError;

/// Why a server could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    /// The state file could not be read or written.
    #[error("DHCP state file {}: {source}", path.display())]
    StateFile {
        /// The file.
        path: PathBuf,
        /// The reason.
        #[source]
        source: io::Error,
    },
    /// The state file is not a server configuration.
    #[error("DHCP state file {}: {source}", path.display())]
    StateFormat {
        /// The file.
        path: PathBuf,
        /// The reason.
        #[source]
        source: serde_json::Error,
    },
    /// The lock file that tells which process serves a state file failed.
    #[error("DHCP server lock {}: {source}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The reason.
        #[source]
        source: io::Error,
    },
    /// The configuration has neither an IPv4 nor an IPv6 lease.
    #[error(
        "DHCP server in netns {netns} on {interface}: no lease to serve, neither IPv4 nor IPv6"
    )]
    NoLease {
        /// The namespace's path.
        netns: String,
        /// The interface to serve.
        interface: String,
    },
    /// The lease cannot be expressed in DHCP.
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// The namespace could not be entered.
    #[error(transparent)]
    Netns(#[from] PlumbingError),
    /// The server's socket failed.
    #[error("DHCP server in netns {netns} on {interface}: {op}: {source}")]
    Socket {
        /// The namespace's path.
        netns: String,
        /// The interface served.
        interface: String,
        /// What failed.
        op: &'static str,
        /// The kernel's reason.
        #[source]
        source: io::Error,
    },
}
