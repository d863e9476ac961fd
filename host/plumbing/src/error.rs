//! Typed errors: every failure names the network namespace, the link and the operation.

use std::io;

/// A plumbing failure.
#[derive(Debug, thiserror::Error)]
pub enum PlumbingError {
    /// An operation on a link (or on the namespace itself, with `link` empty) failed.
    #[error("netns {netns}: {op}{}: {source}", link_suffix(link))]
    Op {
        /// The namespace's path.
        netns: String,
        /// The link the operation was about, or empty.
        link: String,
        /// What was being done, e.g. "delete address 10.0.0.5/24".
        op: String,
        /// The kernel's (or the netlink library's) reason.
        #[source]
        source: io::Error,
    },
    /// A link that must exist does not.
    #[error("netns {netns}: link {link} not found")]
    LinkNotFound {
        /// The namespace's path.
        netns: String,
        /// The missing link.
        link: String,
    },
    /// Several independent steps failed (teardown goes on past errors and reports them all).
    #[error("{} failures: {}", .0.len(), join(.0))]
    Multiple(Vec<PlumbingError>),
}

fn link_suffix(link: &str) -> String {
    if link.is_empty() {
        String::new()
    } else {
        format!(" on {link}")
    }
}

fn join(errors: &[PlumbingError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl PlumbingError {
    /// The OS error number behind this error, if it is a single kernel refusal.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Op { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// Folds a list of errors into one: `Ok` for none, the error itself for one.
    pub(crate) fn from_list(mut errors: Vec<PlumbingError>) -> Result<(), PlumbingError> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(Self::Multiple(errors)),
        }
    }
}

/// Shorthand for this crate's results.
pub type Result<T, E = PlumbingError> = std::result::Result<T, E>;
