//! STATUS: can this node add pods.

use plexus_policy::PolicyKind;

use super::Context;
use crate::error::PlexusError;
use crate::networks;
use crate::selection::load_policy;

/// Ready means: both configured policies load and at least one delegate network exists,
/// and every delegate that has a STATUS says it is ready.
pub fn status(context: &Context) -> Result<(), PlexusError> {
    let not_available = |reason: String| PlexusError::NotAvailable(reason);
    let runtime = context.policy_runtime()?;
    let policies = [
        ("select", &context.config.select, PolicyKind::Selector),
        ("merge", &context.config.merge, PolicyKind::Merger),
    ];
    for (key, spec, kind) in policies {
        load_policy(&runtime, key, spec, kind).map_err(|error| match error {
            PlexusError::PolicySpec { .. } => not_available(error.to_string()),
            other => not_available(format!("configuration key `{key}`: {other}")),
        })?;
    }
    let networks = networks::scan(&context.config.networks_dir)
        .map_err(|error| not_available(error.to_string()))?;
    if networks.is_empty() {
        return Err(not_available(format!(
            "no delegate network configuration in networksDir {}",
            context.config.networks_dir.display()
        )));
    }
    for network in &networks {
        plexus_cni::status_list(&network.config, &context.invocation.path)
            .map_err(|error| not_available(format!("network {}: {error}", network.config.name)))?;
    }
    Ok(())
}
