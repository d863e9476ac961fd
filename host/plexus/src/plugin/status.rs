//! STATUS: can this node add pods.

use plexus_cni::Invocation;
use plexus_policy::world::{self, World};
use plexus_policy::{Policy, PolicyRuntime, Selector};

use super::{Context, add};
use crate::config::PluginConfig;
use crate::error::PlexusError;
use crate::networks;
use crate::selection::load_policy;
use crate::state::DecidedBy;

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
    // A policy served from its last good version can serve ADD: ready, with the warning
    // its load logged (a failing STATUS would make the node NotReady and evict its pods).
    let (selector, _): (Selector, _) = loads(context, &runtime, "select", &context.config.select)?;
    loads::<world::Merger>(context, &runtime, "merge", &context.config.merge)?;
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
fn loads<W: World>(
    context: &Context,
    runtime: &PolicyRuntime,
    key: &'static str,
    spec: &str,
) -> Result<(Policy<W>, DecidedBy), PlexusError> {
    load_policy(
        runtime,
        &context.config.common,
        Some(&context.store),
        key,
        spec,
    )
    .map_err(|error| {
        PlexusError::NotAvailable(match error {
            PlexusError::PolicySpec { .. } => error.to_string(),
            other => format!("configuration key `{key}`: {other}"),
        })
    })
}
