//! Choosing a pod's networks: the configured policies loaded, and what a selection policy
//! chose checked before anything acts on it. ADD and `plexus explain` share it, so explain
//! shows exactly what ADD would do, refusals included.

use std::collections::HashSet;

use plexus_cni::validate_ifname;
use plexus_policy::types::Attachment;
use plexus_policy::world::World;
use plexus_policy::{Policy, PolicyRuntime, Selector};
use serde_json::{Map, Value};

use crate::config::{CommonSettings, PluginConfig};
use crate::error::PlexusError;
use crate::networks::Network;
use crate::policy_ref;
use crate::state::{DecidedBy, Role, StateStore};

/// Loads the policy configured under `key`, which must be of world `W` (a [`Selector`],
/// `Merger` or `Ipam`), as the active policy, through [`policy_ref::load`] (`oci://`
/// policies from the policy store of `common`'s stateDir; with a `store`, a path policy
/// that stops loading is served from its last good version).
/// Policy keys are checked here, where a policy is used, not when the configuration is
/// read: DEL never loads a policy and must not fail because a policy key became invalid.
pub fn load_policy<W: World>(
    runtime: &PolicyRuntime,
    common: &CommonSettings,
    store: Option<&StateStore>,
    key: &'static str,
    spec: &str,
) -> Result<(Policy<W>, DecidedBy), PlexusError> {
    policy_ref::load(runtime, common, store, key, spec, Role::Active)
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
