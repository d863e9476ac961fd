//! The cluster-wide store: etcd, so two nodes never hand out the same address.
//!
//! A network's entries are the etcd keys `<prefix><network>/<key>`; network names
//! cannot contain `/`, so one network's scope never overlaps another's. A revision
//! is etcd's `mod_revision`, which etcd never reuses, and every write is one etcd
//! transaction comparing it (or `create_revision == 0` for "must not exist").
//!
//! The [`Store`] API is synchronous (it backs host functions that a WebAssembly
//! policy calls), so the async client runs on a current-thread Tokio runtime owned
//! by the store.

use std::fs;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, KvClient,
    TlsOptions, Txn, TxnOp, TxnOpResponse,
};
use tokio::runtime::Runtime;

use crate::{Entry, Revision, Store, StoreError, validate_key, validate_network, validate_value};

/// How to reach etcd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Client URLs, e.g. `https://10.0.0.1:2379` (`https://` when `tls` is set).
    pub endpoints: Vec<String>,
    /// Prefix of every key Plexus writes; a network's entries live under
    /// `<prefix><network>/`.
    pub prefix: String,
    /// TLS material, when etcd requires it.
    pub tls: Option<EtcdTls>,
    /// Bound on connecting and on each operation; past it the operation fails with
    /// [`StoreError::Unreachable`].
    pub timeout: Duration,
}

impl EtcdConfig {
    /// The key prefix used unless the operator sets one.
    pub const DEFAULT_PREFIX: &str = "/plexus/ipam/";
    /// The operation timeout used unless the operator sets one: a CNI ADD has to
    /// fail while the runtime is still waiting for it.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    /// A configuration for `endpoints` with the default prefix and timeout, no TLS.
    pub fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            prefix: Self::DEFAULT_PREFIX.to_owned(),
            tls: None,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }
}

/// TLS towards etcd: the CA that signed etcd's certificate, and the client's own
/// certificate when etcd checks clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdTls {
    /// PEM file of the CA that signed the servers' certificates.
    pub ca_file: PathBuf,
    /// The client certificate and key, for etcd's `--client-cert-auth`.
    pub client: Option<EtcdClientIdentity>,
}

/// A client certificate and its private key, both PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdClientIdentity {
    /// PEM certificate.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
}

/// A [`Store`] in etcd, for addresses that are unique across the cluster.
pub struct EtcdStore {
    network: String,
    /// The endpoints, as errors name the store.
    store: String,
    /// `<prefix><network>/`: every key of this network starts with it.
    scope: Vec<u8>,
    timeout: Duration,
    // Declared before `runtime`, so it is dropped while the runtime still exists.
    client: Client,
    runtime: Runtime,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("network", &self.network)
            .field("endpoints", &self.store)
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Prepares the store of `network` in the etcd of `config`.
    ///
    /// The connection itself is made on the first operation, so an etcd that is
    /// down shows up there, as [`StoreError::Unreachable`]; this fails only on a
    /// configuration that can never work.
    pub fn connect(config: &EtcdConfig, network: &str) -> Result<Self, StoreError> {
        validate_network(network)?;
        let store = config.endpoints.join(",");
        let config_error = |reason: String| StoreError::Config {
            network: network.to_owned(),
            store: store.clone(),
            reason,
        };
        if config.endpoints.is_empty() {
            return Err(config_error("no etcd endpoints".to_owned()));
        }
        let mut options = ConnectOptions::new()
            .with_connect_timeout(config.timeout)
            .with_timeout(config.timeout)
            // Notices a silently dead connection instead of waiting on it.
            .with_keep_alive(config.timeout, config.timeout);
        if let Some(tls) = &config.tls {
            options = options.with_tls(tls_options(tls).map_err(config_error)?);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| config_error(format!("cannot start the etcd client runtime: {e}")))?;
        // The client spawns its connection tasks, so it is built inside the runtime.
        let client = runtime
            .block_on(Client::connect(&config.endpoints, Some(options)))
            .map_err(|e| config_error(e.to_string()))?;
        tracing::debug!(network, endpoints = %store, "opened etcd address store");
        Ok(Self {
            network: network.to_owned(),
            store,
            scope: format!("{}{network}/", config.prefix).into_bytes(),
            timeout: config.timeout,
            client,
            runtime,
        })
    }

    fn full_key(&self, key: &str) -> Vec<u8> {
        let mut full = self.scope.clone();
        full.extend_from_slice(key.as_bytes());
        full
    }

    /// Runs one request to completion, within the timeout, mapping failures to
    /// errors that name the network and the endpoints.
    fn run<T, F>(&self, request: impl FnOnce(KvClient) -> F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, etcd_client::Error>>,
    {
        let kv = self.client.kv_client();
        // The client's own timeout covers a request on a connection; this one also
        // covers waiting for a connection that never comes.
        let outcome = self
            .runtime
            .block_on(async { tokio::time::timeout(self.timeout, request(kv)).await });
        match outcome {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(error)) => Err(self.client_error(error)),
            Err(_elapsed) => Err(self.unreachable(format!("no answer within {:?}", self.timeout))),
        }
    }

    fn unreachable(&self, reason: String) -> StoreError {
        StoreError::Unreachable {
            network: self.network.clone(),
            store: self.store.clone(),
            reason,
        }
    }

    /// Splits connectivity failures (retry later) from refusals by etcd itself.
    fn client_error(&self, error: etcd_client::Error) -> StoreError {
        use tonic::Code::{Cancelled, DeadlineExceeded, Unavailable, Unknown};
        let unreachable = match &error {
            etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
            etcd_client::Error::GRpcStatus(status) => matches!(
                status.code(),
                Unavailable | DeadlineExceeded | Cancelled | Unknown
            ),
            _ => false,
        };
        if unreachable {
            self.unreachable(error.to_string())
        } else {
            StoreError::Etcd {
                network: self.network.clone(),
                store: self.store.clone(),
                source: error,
            }
        }
    }

    fn decode(&self, full_key: &[u8]) -> Result<String, StoreError> {
        full_key
            .strip_prefix(self.scope.as_slice())
            .and_then(|key| std::str::from_utf8(key).ok())
            .map(str::to_owned)
            .ok_or_else(|| StoreError::Corrupt {
                network: self.network.clone(),
                store: self.store.clone(),
                key: String::from_utf8_lossy(full_key).into_owned(),
                reason: "etcd returned a key outside the network's scope or not UTF-8".to_owned(),
            })
    }
}

fn tls_options(tls: &EtcdTls) -> Result<TlsOptions, String> {
    let read =
        |path: &PathBuf| fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()));
    let mut options = TlsOptions::new().ca_certificate(Certificate::from_pem(read(&tls.ca_file)?));
    if let Some(client) = &tls.client {
        options = options.identity(Identity::from_pem(
            read(&client.cert_file)?,
            read(&client.key_file)?,
        ));
    }
    Ok(options)
}

/// etcd revisions are positive `i64`s; a revision that does not fit can never match.
fn etcd_revision(revision: Revision) -> Option<i64> {
    i64::try_from(u64::from(revision)).ok()
}

fn store_revision(mod_revision: i64) -> Revision {
    // etcd never reports a negative revision; 0 would never match a real entry.
    Revision::from(u64::try_from(mod_revision).unwrap_or(0))
}

impl Store for EtcdStore {
    fn network(&self) -> &str {
        &self.network
    }

    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Revision)>, StoreError> {
        validate_key(&self.network, key)?;
        let full = self.full_key(key);
        let mut answer = self.run(|mut kv| async move { kv.get(full, None).await })?;
        Ok(answer.take_kvs().into_iter().next().map(|kv| {
            let revision = store_revision(kv.mod_revision());
            (kv.into_key_value().1, revision)
        }))
    }

    fn list(&self, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        if !prefix.is_empty() {
            validate_key(&self.network, prefix)?;
        }
        let full = self.full_key(prefix);
        // etcd answers a prefix range sorted by key, as `list` promises.
        let mut answer =
            self.run(
                |mut kv| async move { kv.get(full, Some(GetOptions::new().with_prefix())).await },
            )?;
        answer
            .take_kvs()
            .into_iter()
            .map(|kv| {
                let revision = store_revision(kv.mod_revision());
                let (full_key, value) = kv.into_key_value();
                Ok(Entry {
                    key: self.decode(&full_key)?,
                    value,
                    revision,
                })
            })
            .collect()
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<Revision>,
        value: &[u8],
    ) -> Result<bool, StoreError> {
        validate_key(&self.network, key)?;
        validate_value(&self.network, key, value)?;
        let full = self.full_key(key);
        let condition = match expected {
            None => Compare::create_revision(full.clone(), CompareOp::Equal, 0),
            Some(revision) => match etcd_revision(revision) {
                Some(revision) => Compare::mod_revision(full.clone(), CompareOp::Equal, revision),
                None => return Ok(false),
            },
        };
        let txn = Txn::new()
            .when([condition])
            .and_then([TxnOp::put(full, value.to_vec(), None)]);
        let answer = self.run(|mut kv| async move { kv.txn(txn).await })?;
        let swapped = answer.succeeded();
        tracing::debug!(network = %self.network, key, ?expected, swapped, "etcd compare-and-swap");
        Ok(swapped)
    }

    fn delete(&self, key: &str, expected: Revision) -> Result<bool, StoreError> {
        validate_key(&self.network, key)?;
        let Some(revision) = etcd_revision(expected) else {
            return Ok(false);
        };
        let full = self.full_key(key);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                full.clone(),
                CompareOp::Equal,
                revision,
            )])
            .and_then([TxnOp::delete(full, None)]);
        let answer = self.run(|mut kv| async move { kv.txn(txn).await })?;
        // A missing key compares as revision 0, so the transaction can succeed
        // without deleting anything: only a deleted key counts.
        let deleted = answer.succeeded()
            && answer
                .op_responses()
                .iter()
                .any(|op| matches!(op, TxnOpResponse::Delete(delete) if delete.deleted() > 0));
        tracing::debug!(network = %self.network, key, %expected, deleted, "etcd delete");
        Ok(deleted)
    }
}
