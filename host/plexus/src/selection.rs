//! Choosing a pod's networks: the configured policies loaded, and what a selection policy
//! chose checked before anything acts on it. ADD and `plexus explain` share it, so explain
//! shows exactly what ADD would do, refusals included.

use std::collections::HashSet;
use std::path::Path;

use plexus_cni::validate_ifname;
use plexus_policy::types::Attachment;
use plexus_policy::{PolicyError, PolicyHandle, PolicyRuntime, PolicySource, Selector};
use serde_json::{Map, Value};

use crate::builtins;
use plexus_oci::OciRef;

use crate::config::{CommonSettings, ConfigError, PluginConfig};
use crate::error::PlexusError;
use crate::networks::Network;
use crate::stored_policy;

/// Loads the policy configured under `key`, which must be a `P` (a [`Selector`],
/// `Merger` or `Ipam`). Policy keys are checked here, where a policy is used, not when
/// the configuration is read: DEL never loads a policy and must not fail because a policy
/// key became invalid.
pub fn load_policy<P: PolicyHandle>(
    runtime: &PolicyRuntime,
    common: &CommonSettings,
    key: &'static str,
    spec: &str,
) -> Result<P, PlexusError> {
    if OciRef::is_oci(spec) {
        return stored_policy::load(runtime, common, key, spec).map(|(policy, _)| policy);
    }
    check_policy_path(key, spec)?;
    let in_key = |source| PlexusError::PolicySpec { key, source };
    let source = PolicySource::parse(spec, &builtins::table()).map_err(in_key)?;
    // A policy of another world is the key's mistake; any other failure is the policy's.
    runtime.load(&source).map_err(|error| match error {
        PolicyError::WrongWorld { .. } => in_key(error),
        error => PlexusError::Policy(error),
    })
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
        .any(|part| matches!(part, std::path::Component::ParentDir))
    {
        format!("policy path {spec} must not contain `..`")
    } else {
        return Ok(());
    };
    Err(ConfigError::Key { key, reason })
}

/// One chosen attachment, checked, with the network it names among those `N` offered.
pub struct Checked<'a, N> {
    pub network: &'a N,
    pub attachment: Attachment,
    /// `cni-args`, parsed: the object passed to the delegate as `args.cni`.
    pub cni_args: Option<Map<String, Value>>,
}

/// An attachment ADD makes: checked against the node's own networks.
pub type Planned<'a> = Checked<'a, Network>;

/// Checks what `policy` chose, on the node: [`check_answer`] against the networks of
/// `networksDir` that can be used and the configured `maxAttachments`.
pub fn check<'a>(
    policy: &Selector,
    config: &PluginConfig,
    networks: &'a [Network],
    chosen: Vec<Attachment>,
) -> Result<Vec<Planned<'a>>, PlexusError> {
    check_answer(
        policy.name(),
        networks,
        |network| &network.file,
        config.max_attachments,
        chosen,
    )
}

/// Checks a selection policy's answer, everything about it that needs no node: at least
/// one and at most `max_attachments` attachments (annotations are written by tenants),
/// every interface name valid and unique, every network file one of `offered` (whose
/// files `file_of` gives), every `cni-args` a JSON object. ADD and `plexus explain` check
/// against the node's networks, `plexus policy run`/`test` against the request's, so an
/// answer the node refuses fails offline with the same message.
pub fn check_answer<'a, N>(
    policy: &str,
    offered: &'a [N],
    file_of: impl Fn(&N) -> &str,
    max_attachments: usize,
    chosen: Vec<Attachment>,
) -> Result<Vec<Checked<'a, N>>, PlexusError> {
    let invalid = |reason: String| PlexusError::InvalidAnswer {
        policy: policy.to_owned(),
        reason,
    };
    if chosen.is_empty() {
        return Err(invalid("it chose no network".into()));
    }
    if chosen.len() > max_attachments {
        return Err(invalid(format!(
            "it chose {} attachments, more than maxAttachments ({max_attachments})",
            chosen.len(),
        )));
    }
    let mut names = HashSet::new();
    chosen
        .into_iter()
        .map(|attachment| {
            validate_ifname(&attachment.ifname).map_err(|reason| {
                invalid(format!("interface name {:?}: {reason}", attachment.ifname))
            })?;
            if !names.insert(attachment.ifname.clone()) {
                return Err(invalid(format!(
                    "interface name {} is chosen twice",
                    attachment.ifname
                )));
            }
            let network = offered
                .iter()
                .find(|network| file_of(network) == attachment.network_file)
                .ok_or_else(|| {
                    invalid(format!(
                        "network file {} is not one of the networks in networksDir",
                        attachment.network_file
                    ))
                })?;
            let cni_args = attachment
                .cni_args
                .as_deref()
                .map(|json| match serde_json::from_str::<Value>(json) {
                    Ok(Value::Object(map)) => Ok(map),
                    _ => Err(invalid(format!(
                        "cni-args of {} is not a JSON object",
                        attachment.ifname
                    ))),
                })
                .transpose()?;
            Ok(Checked {
                network,
                attachment,
                cni_args,
            })
        })
        .collect()
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
