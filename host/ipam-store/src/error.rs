//! The errors of every store. Each names the network and, once a store is chosen,
//! the store itself (its directory or its endpoints), because an operator reading a
//! failed CNI ADD has to know which network and which store to look at.

use std::io;

/// Why a store operation failed. Nothing was written when an operation fails.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The network name cannot name a store scope.
    #[error("invalid network name {name:?}: {reason}")]
    InvalidNetwork {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The key breaks the rules every store shares (see [`crate::Store`]).
    #[error("network {network:?}: invalid address store key {key:?}: {reason}")]
    InvalidKey {
        /// The network the operation was for.
        network: String,
        /// The key as given.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The value is larger than [`crate::MAX_VALUE_LEN`].
    #[error(
        "network {network:?}: value for address store key {key:?} is {len} bytes, more than the {max} allowed",
        max = crate::MAX_VALUE_LEN
    )]
    ValueTooLarge {
        /// The network the operation was for.
        network: String,
        /// The key being written.
        key: String,
        /// The value's length in bytes.
        len: usize,
    },

    /// The store's configuration cannot work (no endpoints, unreadable TLS files...).
    #[error("network {network:?}: address store {store}: invalid configuration: {reason}")]
    Config {
        /// The network the store was opened for.
        network: String,
        /// The store: its directory or its endpoints.
        store: String,
        /// What is wrong.
        reason: String,
    },

    /// A file-system operation of the file store failed.
    #[error("network {network:?}: address store {store}: cannot {action}: {source}")]
    Io {
        /// The network the operation was for.
        network: String,
        /// The store's directory.
        store: String,
        /// What the store was doing, with the path involved.
        action: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// An entry exists but cannot be read back as one (written by something else).
    #[error("network {network:?}: address store {store}: entry {key:?} is corrupt: {reason}")]
    Corrupt {
        /// The network the entry belongs to.
        network: String,
        /// The store holding it.
        store: String,
        /// The entry's key (or file name when it cannot be decoded).
        key: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The store cannot be reached (etcd down, refused, or too slow to answer);
    /// the operation may be retried later.
    #[error("network {network:?}: address store {store} is unreachable: {reason}")]
    Unreachable {
        /// The network the operation was for.
        network: String,
        /// The store: its endpoints.
        store: String,
        /// What the client saw.
        reason: String,
    },

    /// etcd answered, but refused the operation (permissions, limits...).
    #[cfg(feature = "etcd")]
    #[error(
        "network {network:?}: address store {store} refused the operation: {code:?}: {message}",
        code = source.code(),
        message = source.message()
    )]
    Etcd {
        /// The network the operation was for.
        network: String,
        /// The store: its endpoints.
        store: String,
        /// etcd's answer: a gRPC status.
        #[source]
        source: tonic::Status,
    },
}
