//! The cluster-wide store: etcd, so two nodes never hand out the same address.
//!
//! A network's entries are the etcd keys `<prefix><network>/<key>`; network names
//! cannot contain `/`, so one network's scope never overlaps another's. A revision
//! is etcd's `mod_revision`, which etcd never reuses, and every write is one etcd
//! transaction comparing it (or `create_revision == 0` for "must not exist").
//!
//! A failure to reach etcd (refused, broken or silent connection, no leader) is
//! retried within a budget; see [`EtcdStore`].
//!
//! The [`Store`] API is synchronous (it backs host functions that a WebAssembly
//! policy calls), so the async client runs on a current-thread Tokio runtime owned
//! by the store.

mod client;
mod wire;

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::BuildHasher;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use tonic::Status;

use crate::{Entry, Revision, Store, StoreError, validate_key, validate_network};
use client::Kv;
use wire::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, KeyValue, PutRequest, RangeRequest,
    Request, RequestOp, Response, TargetUnion, TxnRequest, TxnResponse,
};

/// An operation is tried again, after a failure to reach etcd, until this many
/// times [`EtcdConfig::timeout`] have passed since it started.
const BUDGET_TIMEOUTS: u32 = 3;
/// The pause before the first retry; it doubles before each further one, up to
/// [`MAX_BACKOFF`], with jitter so that many clients do not retry in step.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

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
    /// Bound on connecting and on each attempt of an operation. An operation is
    /// retried until `3 × timeout` has passed (see [`EtcdStore`]); past that it
    /// fails with [`StoreError::Unreachable`].
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
///
/// # Retries
///
/// An attempt that cannot reach etcd (refused or broken connection, no connection
/// within [`EtcdConfig::timeout`], TLS failure, etcd without a leader), or, with
/// several endpoints, gets no answer within the timeout, is tried again, on the next
/// endpoint, after a pause of 100 ms that
/// doubles up to 1 s (with jitter), until the operation has taken `3 × timeout`;
/// then it fails with [`StoreError::Unreachable`]. An etcd that answers with a
/// refusal (permissions, limits...) fails the operation at once
/// ([`StoreError::Etcd`]).
///
/// A write whose attempt failed may still have been applied by etcd (the answer
/// was lost). Every write is one transaction that, when its comparison fails,
/// reads the key back; so a retry after a failed attempt knows the outcome:
/// - a compare-and-swap whose key now holds exactly the value being written, at a
///   revision other than the expected one, was applied by the earlier attempt, and
///   succeeds (values name their owner, so another writer's value does not match);
/// - a delete whose key is now gone succeeded: the entry at the expected revision
///   no longer exists, which is what the caller asked for.
pub struct EtcdStore {
    network: String,
    /// The endpoints, as errors name the store.
    store: String,
    /// `<prefix><network>/`: every key of this network starts with it.
    scope: Vec<u8>,
    timeout: Duration,
    // Declared before `runtime`, so its channels are dropped while the runtime that
    // runs their tasks still exists.
    kv: Kv,
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
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| config_error(format!("cannot start the etcd client runtime: {e}")))?;
        let kv = {
            let _inside = runtime.enter();
            Kv::new(config).map_err(config_error)?
        };
        tracing::debug!(network, endpoints = %store, "opened etcd address store");
        Ok(Self {
            network: network.to_owned(),
            store,
            scope: format!("{}{network}/", config.prefix).into_bytes(),
            timeout: config.timeout,
            kv,
            runtime,
        })
    }

    fn full_key(&self, key: &str) -> Vec<u8> {
        let mut full = self.scope.clone();
        full.extend_from_slice(key.as_bytes());
        full
    }

    /// Runs `attempt` until it gets an answer, etcd refuses it, or the retry budget
    /// is spent (see [`EtcdStore`]), mapping failures to errors that name the
    /// network and the endpoints.
    ///
    /// `attempt` is given the endpoint to use and whether an earlier attempt failed,
    /// so that it may have been applied.
    fn run<T, F, A>(&self, operation: &str, mut attempt: A) -> Result<T, StoreError>
    where
        A: FnMut(usize, bool) -> F,
        F: Future<Output = Result<T, Status>>,
    {
        let started = Instant::now();
        let budget = self.timeout * BUDGET_TIMEOUTS;
        let mut backoff = FIRST_BACKOFF;
        let mut failures = 0u32;
        loop {
            let endpoint = self.kv.current();
            // Cutting a request short only helps to try another endpoint: on the only
            // one, an answer that is merely slow (a loaded node, a busy etcd) is waited
            // for until the budget ends, since sending it again would only add load. A
            // dead connection is still noticed by keep-alive, and connecting is bounded
            // by the timeout.
            let remaining = budget.saturating_sub(started.elapsed());
            let bound = if self.kv.endpoints() > 1 {
                self.timeout.min(remaining)
            } else {
                remaining
            };
            let request = attempt(endpoint, failures > 0);
            // The timer is made inside the runtime, whose clock it needs.
            let outcome = self
                .runtime
                .block_on(async { tokio::time::timeout(bound, request).await });
            let reason = match outcome {
                Ok(Ok(answer)) => {
                    if failures > 0 {
                        tracing::info!(network = %self.network, operation, failures, elapsed = ?started.elapsed(), "etcd answered after retries");
                    }
                    return Ok(answer);
                }
                Ok(Err(status)) if !client::unreachable(&status) => {
                    return Err(StoreError::Etcd {
                        network: self.network.clone(),
                        store: self.store.clone(),
                        source: status,
                    });
                }
                Ok(Err(status)) => client::describe(&status),
                Err(_elapsed) => format!("no answer within {bound:?}"),
            };
            failures += 1;
            self.kv.fail_over(endpoint);
            let pause = jittered(backoff);
            if started.elapsed() + pause >= budget {
                return Err(StoreError::Unreachable {
                    network: self.network.clone(),
                    store: self.store.clone(),
                    reason: format!(
                        "{reason} (gave up after {failures} attempts in {:.1?})",
                        started.elapsed()
                    ),
                });
            }
            tracing::debug!(network = %self.network, operation, failures, %reason, ?pause, "etcd unreachable; retrying");
            self.runtime
                .block_on(async { tokio::time::sleep(pause).await });
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Runs a transaction on `key`: `success` when `condition` holds, otherwise a
    /// read of the key, so a retry can tell what an earlier attempt did.
    fn txn(
        &self,
        operation: &str,
        key: Vec<u8>,
        condition: Compare,
        success: Request,
    ) -> Result<(TxnResponse, bool), StoreError> {
        let request = TxnRequest {
            compare: vec![condition],
            success: vec![RequestOp {
                request: Some(success),
            }],
            failure: vec![RequestOp {
                request: Some(Request::Range(RangeRequest {
                    key,
                    range_end: Vec::new(),
                })),
            }],
        };
        self.run(operation, |endpoint, retried| {
            let request = request.clone();
            async move { Ok((self.kv.txn(endpoint, request).await?, retried)) }
        })
    }

    fn range(&self, operation: &str, request: RangeRequest) -> Result<Vec<KeyValue>, StoreError> {
        self.run(operation, |endpoint, _| {
            let request = request.clone();
            async move { Ok(self.kv.range(endpoint, request).await?.kvs) }
        })
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

/// Between half and all of `backoff`, at random.
fn jittered(backoff: Duration) -> Duration {
    // A fresh `RandomState` is randomly keyed: random enough to spread retries.
    let random = RandomState::new().hash_one(0u8);
    let half = backoff / 2;
    let extra = u64::try_from(half.as_nanos()).map_or(0, |nanos| random % nanos.max(1));
    half + Duration::from_nanos(extra)
}

/// The end of the range of every key starting with `prefix`: the prefix with its
/// last byte below 0xff incremented (etcd's convention for prefix ranges).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Only 0xff bytes: every key from `prefix` on (etcd's "\0" range end).
    vec![0]
}

/// etcd revisions are positive `i64`s; a revision that does not fit can never match.
fn etcd_revision(revision: Revision) -> Option<i64> {
    i64::try_from(u64::from(revision)).ok()
}

fn store_revision(mod_revision: i64) -> Revision {
    // etcd never reports a negative revision; 0 would never match a real entry.
    Revision::from(u64::try_from(mod_revision).unwrap_or(0))
}

/// The key as the failure branch of a transaction read it (`None`: it does not exist).
fn read_back(answer: &TxnResponse) -> Option<&KeyValue> {
    answer.responses.iter().find_map(|op| match &op.response {
        Some(Response::Range(range)) => range.kvs.first(),
        _ => None,
    })
}

/// Whether a compare-and-swap of `value` at `expected` took place, from etcd's answer
/// to its transaction; `retried`: an earlier attempt failed, so it may have applied.
fn swapped(answer: &TxnResponse, expected: Option<i64>, value: &[u8], retried: bool) -> bool {
    answer.succeeded
        || (retried
            && read_back(answer)
                .is_some_and(|kv| kv.value == value && Some(kv.mod_revision) != expected))
}

/// Whether a delete took place, from etcd's answer to its transaction; `retried`: an
/// earlier attempt failed, so it may have applied.
fn deleted(answer: &TxnResponse, retried: bool) -> bool {
    if answer.succeeded {
        // A missing key compares as revision 0, so the transaction can succeed
        // without deleting anything: only a deleted key counts.
        answer.responses.iter().any(
            |op| matches!(&op.response, Some(Response::DeleteRange(delete)) if delete.deleted > 0),
        )
    } else {
        retried && read_back(answer).is_none()
    }
}

fn compare(key: Vec<u8>, target: CompareTarget, revision: TargetUnion) -> Compare {
    Compare {
        result: CompareResult::Equal.into(),
        target: target.into(),
        key,
        target_union: Some(revision),
    }
}

impl Store for EtcdStore {
    fn network(&self) -> &str {
        &self.network
    }

    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Revision)>, StoreError> {
        validate_key(&self.network, key)?;
        let request = RangeRequest {
            key: self.full_key(key),
            range_end: Vec::new(),
        };
        Ok(self
            .range("get", request)?
            .into_iter()
            .next()
            .map(|kv| (kv.value, store_revision(kv.mod_revision))))
    }

    fn list(&self, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        if !prefix.is_empty() {
            validate_key(&self.network, prefix)?;
        }
        let full = self.full_key(prefix);
        let request = RangeRequest {
            range_end: prefix_end(&full),
            key: full,
        };
        // etcd answers a range sorted by key, as `list` promises.
        self.range("list", request)?
            .into_iter()
            .map(|kv| {
                Ok(Entry {
                    key: self.decode(&kv.key)?,
                    revision: store_revision(kv.mod_revision),
                    value: kv.value,
                })
            })
            .collect()
    }

    fn compare_and_swap_checked(
        &self,
        key: &str,
        expected: Option<Revision>,
        value: &[u8],
    ) -> Result<bool, StoreError> {
        let full = self.full_key(key);
        let (condition, expected_revision) = match expected {
            None => (
                compare(
                    full.clone(),
                    CompareTarget::Create,
                    TargetUnion::CreateRevision(0),
                ),
                None,
            ),
            Some(revision) => match etcd_revision(revision) {
                Some(revision) => (
                    compare(
                        full.clone(),
                        CompareTarget::Mod,
                        TargetUnion::ModRevision(revision),
                    ),
                    Some(revision),
                ),
                None => return Ok(false),
            },
        };
        let put = Request::Put(PutRequest {
            key: full.clone(),
            value: value.to_vec(),
        });
        let (answer, retried) = self.txn("compare-and-swap", full, condition, put)?;
        let swapped = swapped(&answer, expected_revision, value, retried);
        tracing::debug!(network = %self.network, key, ?expected, swapped, retried, "etcd compare-and-swap");
        Ok(swapped)
    }

    fn delete_checked(&self, key: &str, expected: Revision) -> Result<bool, StoreError> {
        let Some(revision) = etcd_revision(expected) else {
            return Ok(false);
        };
        let full = self.full_key(key);
        let condition = compare(
            full.clone(),
            CompareTarget::Mod,
            TargetUnion::ModRevision(revision),
        );
        let delete = Request::DeleteRange(DeleteRangeRequest { key: full.clone() });
        let (answer, retried) = self.txn("delete", full, condition, delete)?;
        let deleted = deleted(&answer, retried);
        tracing::debug!(network = %self.network, key, %expected, deleted, retried, "etcd delete");
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// etcd's answer to a transaction whose comparison failed, with the key as read
    /// by the failure branch.
    fn compare_failed(current: Option<(&[u8], i64)>) -> TxnResponse {
        TxnResponse {
            succeeded: false,
            responses: vec![wire::ResponseOp {
                response: Some(Response::Range(wire::RangeResponse {
                    kvs: current
                        .map(|(value, mod_revision)| KeyValue {
                            key: b"k".to_vec(),
                            mod_revision,
                            value: value.to_vec(),
                        })
                        .into_iter()
                        .collect(),
                })),
            }],
        }
    }

    #[test]
    fn a_failed_comparison_is_a_swap_only_when_a_failed_attempt_wrote_our_value() {
        let ours = compare_failed(Some((b"pod-a", 7)));
        // First attempt: the key was there before us, whatever it holds.
        assert!(!swapped(&ours, None, b"pod-a", false));
        // After a failed attempt: the create applied, its answer was lost.
        assert!(swapped(&ours, None, b"pod-a", true));
        // An update from revision 5 that applied (now at 7) ...
        assert!(swapped(&ours, Some(5), b"pod-a", true));
        // ... but not when the key is still at the expected revision.
        assert!(!swapped(&ours, Some(7), b"pod-a", true));
        // Another writer's value, or no key at all: not ours.
        assert!(!swapped(
            &compare_failed(Some((b"pod-b", 7))),
            None,
            b"pod-a",
            true
        ));
        assert!(!swapped(&compare_failed(None), Some(5), b"pod-a", true));
        let success = TxnResponse {
            succeeded: true,
            responses: Vec::new(),
        };
        assert!(swapped(&success, None, b"pod-a", false));
    }

    #[test]
    fn a_failed_comparison_is_a_delete_only_when_a_failed_attempt_left_the_key_gone() {
        assert!(!deleted(&compare_failed(None), false));
        assert!(deleted(&compare_failed(None), true));
        assert!(!deleted(&compare_failed(Some((b"pod-a", 9))), true));
        let delete = |count| TxnResponse {
            succeeded: true,
            responses: vec![wire::ResponseOp {
                response: Some(Response::DeleteRange(wire::DeleteRangeResponse {
                    deleted: count,
                })),
            }],
        };
        assert!(deleted(&delete(1), false));
        assert!(!deleted(&delete(0), true));
    }

    #[test]
    fn a_prefix_range_ends_after_its_last_key() {
        assert_eq!(prefix_end(b"/p/net/"), b"/p/net0");
        assert_eq!(prefix_end(b"a\xff\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }

    #[test]
    fn retry_pauses_are_jittered_within_half_to_all_of_the_backoff() {
        for _ in 0..100 {
            let pause = jittered(FIRST_BACKOFF);
            assert!(
                pause >= FIRST_BACKOFF / 2 && pause <= FIRST_BACKOFF,
                "{pause:?}"
            );
        }
    }
}
