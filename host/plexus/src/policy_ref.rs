//! Loading a configured policy, and saying which policy that was: the reference, the
//! sha256 of the component that ran (and for an `oci://` policy, resolved from the
//! node's policy store, the manifest digest and the key its pull verified), and in what
//! role. A path policy whose file stops
//! loading (half copied, not a component, another world, too new for this host) is
//! served from the last version that loaded on this node, and marked degraded until the
//! file loads again.

use std::fs;
use std::path::{Component, Path};

use plexus_oci::OciRef;
use plexus_policy::world::World;
use plexus_policy::{Policy, PolicyError, PolicyRuntime, PolicySource};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::builtins;
use crate::config::{CommonSettings, ConfigError};
use crate::error::PlexusError;
use crate::state::{DecidedBy, Role, StateStore};
use crate::stored_policy;

/// Loads the policy configured under `key` as `spec`, which must be of world `W`. An
/// `oci://` reference is resolved from the policy store of `common`'s stateDir (checked
/// against its `policyVerifyKey`), never from a registry.
///
/// With a `store`, a path policy that loads is remembered as the last good version (once
/// per new version), and one that fails to load for a reason a new file can cause is
/// replaced by its last good version, with a warning and a degraded mark. Without one
/// (the CLI; a canary or shadow candidate, which must never stand in for itself), a
/// failure is the answer.
pub fn load<W: World>(
    runtime: &PolicyRuntime,
    common: &CommonSettings,
    store: Option<&StateStore>,
    key: &'static str,
    spec: &str,
    role: Role,
) -> Result<(Policy<W>, DecidedBy), PlexusError> {
    if OciRef::is_oci(spec) {
        let (policy, stored) = stored_policy::load::<Policy<W>>(runtime, common, key, spec)?;
        let decided = DecidedBy {
            reference: spec.to_owned(),
            sha256: stored.wasm_sha256,
            manifest: Some(stored.manifest),
            verified_by: stored.verified_by,
            role,
            degraded: false,
        };
        return Ok((policy, decided));
    }
    check_policy_path(key, spec)?;
    let in_key = |source| PlexusError::PolicySpec { key, source };
    let source = PolicySource::parse(spec, &builtins::table()).map_err(in_key)?;
    let decided = |policy: &Policy<W>, degraded| DecidedBy {
        reference: spec.to_owned(),
        sha256: policy.sha256().to_owned(),
        manifest: None,
        verified_by: None,
        role,
        degraded,
    };
    match (runtime.load::<Policy<W>>(&source), &source, store) {
        (Ok(policy), PolicySource::File(path), Some(store)) => {
            remember_good(store, path, policy.sha256());
            let decided = decided(&policy, false);
            Ok((policy, decided))
        }
        (Ok(policy), _, _) => {
            let decided = decided(&policy, false);
            Ok((policy, decided))
        }
        (Err(error), PolicySource::File(path), Some(store)) if a_new_file_can_cause(&error) => {
            match last_good::<W>(runtime, store, path, &error) {
                Some(policy) => {
                    let decided = decided(&policy, true);
                    Ok((policy, decided))
                }
                None => Err(policy_error(key, error)),
            }
        }
        (Err(error), _, _) => Err(policy_error(key, error)),
    }
}

/// A policy is a built-in or an absolute path: a relative one would depend on the
/// runtime's working directory, and `..` has no business in a node's policy path.
fn check_policy_path(key: &'static str, spec: &str) -> Result<(), ConfigError> {
    if spec.starts_with("builtin:") {
        return Ok(());
    }
    let path = Path::new(spec);
    let reason = if !path.is_absolute() {
        format!("policy path {spec} is not absolute")
    } else if path
        .components()
        .any(|part| matches!(part, Component::ParentDir))
    {
        format!("policy path {spec} must not contain `..`")
    } else {
        return Ok(());
    };
    Err(ConfigError::Key { key, reason })
}

/// A policy of another world is the key's mistake; any other failure is the policy's.
fn policy_error(key: &'static str, error: PolicyError) -> PlexusError {
    match error {
        PolicyError::WrongWorld { .. } => PlexusError::PolicySpec { key, source: error },
        error => PlexusError::Policy(error),
    }
}

/// The failures a replaced file causes, which its last good version does not have. A
/// setup failure or a missing built-in would fail the last good version too.
fn a_new_file_can_cause(error: &PolicyError) -> bool {
    matches!(
        error,
        PolicyError::Read { .. }
            | PolicyError::Invalid { .. }
            | PolicyError::WrongWorld { .. }
            | PolicyError::NeedsNewerHost { .. }
    )
}

/// Records `path`, which just loaded as `sha256`, as its last good version (its bytes
/// kept by content), and clears a degraded mark. Only a new version costs a read of the
/// file; what cannot be written costs a warning, never the pod.
fn remember_good(store: &StateStore, path: &Path, sha256: &str) {
    let key = path.to_string_lossy();
    if store
        .last_good(path)
        .is_none_or(|kept| kept.sha256 != sha256)
    {
        // The file may have been replaced since it loaded: keep only the bytes that did.
        match fs::read(path) {
            Ok(bytes) if hex::encode(Sha256::digest(&bytes)) == sha256 => {
                if let Err(error) = store.keep_last_good(path, &bytes) {
                    warn!(policy = %key, %error, "cannot keep the last good version of a policy");
                }
            }
            Ok(_) | Err(_) => {}
        }
    }
    if store.policy_state(&key).is_some() {
        match store.clear_degraded(&key) {
            Ok(()) => info!(policy = %key, sha256, "policy loads again: no longer degraded"),
            Err(error) => warn!(policy = %key, %error, "cannot clear a policy's degraded mark"),
        }
    }
}

/// The last good version of the path policy `path`, which failed with `error`, loaded from
/// the store; the failure is logged and marked. `None` when there is none or it does
/// not load either.
fn last_good<W: World>(
    runtime: &PolicyRuntime,
    store: &StateStore,
    path: &Path,
    error: &PolicyError,
) -> Option<Policy<W>> {
    let key = path.to_string_lossy();
    let kept = store.last_good(path)?;
    let stored = PolicySource::Stored {
        name: key.clone().into_owned(),
        path: store.layout().policy_blob(&kept.sha256),
        sha256: kept.sha256.clone(),
    };
    let policy = match runtime.load::<Policy<W>>(&stored) {
        Ok(policy) => policy,
        Err(stored_error) => {
            warn!(policy = %key, last_good = %kept.sha256, error = %stored_error,
                "the policy does not load, and neither does its last good version");
            return None;
        }
    };
    let failing = fs::read(path)
        .ok()
        .map(|bytes| hex::encode(Sha256::digest(&bytes)));
    warn!(
        policy = %key,
        failing = failing.as_deref().unwrap_or("unreadable"),
        last_good = %kept.sha256,
        %error,
        "policy does not load: using its last good version (degraded); replace policy files by rename"
    );
    if let Err(mark_error) =
        store.mark_degraded(&key, failing.as_deref(), &kept.sha256, &error.to_string())
    {
        warn!(policy = %key, error = %mark_error, "cannot mark a policy degraded");
    }
    Some(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_or_parent_policy_paths_name_the_key() {
        let err = check_policy_path("select", "policies/a.wasm").unwrap_err();
        assert!(err.to_string().contains("`select`"), "{err}");
        let err = check_policy_path("merge", "/etc/../tmp/a.wasm").unwrap_err();
        assert!(err.to_string().contains("`merge`"), "{err}");
        assert!(check_policy_path("select", "builtin:annotations").is_ok());
        assert!(check_policy_path("select", "/etc/cni/policies/a.wasm").is_ok());
    }
}
