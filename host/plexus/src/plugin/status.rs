//! STATUS: can this node add pods.

use plexus_cni::Invocation;
use plexus_policy::{Merger, PolicyHandle, PolicyRuntime};

use super::{Context, add};
use crate::config::{CommonSettings, PluginConfig};
use crate::error::PlexusError;
use crate::networks;
use crate::selection::load_policy;

/// Ready means: the stateDir can be written (ADD records before it acts), both configured
/// policies load, at least one delegate network exists, a pod that chooses nothing gets
/// its `defaultNetworks` (each one found and its file valid), and every delegate that has
/// a STATUS says it is ready.
pub fn status(context: &Context) -> Result<(), PlexusError> {
    let not_available = |reason: String| PlexusError::NotAvailable(reason);
    context.store.check_writable().map_err(|error| {
        not_available(format!(
            "stateDir cannot be written, so no pod can be added: {error}"
        ))
    })?;
    let runtime = context.policy_runtime()?;
    let common = &context.config.common;
    let selector = loads(&runtime, common, "select", &context.config.select)?;
    loads::<Merger>(&runtime, common, "merge", &context.config.merge)?;
    let networks = networks::scan(&context.config.networks_dir)
        .map_err(|error| not_available(error.to_string()))?;
    if networks.usable.is_empty() {
        return Err(not_available(format!(
            "no delegate network configuration in networksDir {}",
            context.config.networks_dir.display()
        )));
    }
    if !context.config.default_networks.is_empty() {
        // STATUS carries no pod: the selection sees one without annotations, which is
        // what gets the default networks, on the interface a runtime usually asks for.
        let probe = Context {
            invocation: Invocation {
                container_id: Some("plexus-status".into()),
                ifname: Some("eth0".into()),
                ..context.invocation.clone()
            },
            // A probe is no pod's decision: it stays out of the replay recordings.
            config: PluginConfig {
                record_dir: None,
                ..context.config.clone()
            },
            store: context.store.clone(),
            notes: Default::default(),
        };
        add::choose(&probe, &runtime, &selector).map_err(|error| {
            not_available(format!(
                "the default networks {} cannot be given to a pod: {error}",
                context.config.default_networks.join(", ")
            ))
        })?;
    }
    for network in &networks.usable {
        plexus_cni::status_list(&network.config, context.delegates())
            .map_err(|error| not_available(format!("network {}: {error}", network.config.name)))?;
    }
    Ok(())
}

/// The policy configured under `key`; one that does not load means not ready, with the
/// key named.
fn loads<P: PolicyHandle>(
    runtime: &PolicyRuntime,
    common: &CommonSettings,
    key: &'static str,
    spec: &str,
) -> Result<P, PlexusError> {
    load_policy(runtime, common, key, spec).map_err(|error| {
        PlexusError::NotAvailable(match error {
            PlexusError::PolicySpec { .. } => error.to_string(),
            other => format!("configuration key `{key}`: {other}"),
        })
    })
}
