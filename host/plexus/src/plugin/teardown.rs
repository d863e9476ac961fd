//! DEL: undo what ADD recorded, whatever has changed since.

use tracing::info;

use super::Context;
use super::delegates;
use crate::error::PlexusError;

/// Undoes the recorded attachment. Works from the record alone, so a changed or vanished
/// configuration, policy or netns does not matter; with no record there is nothing left
/// to undo, which makes a repeated DEL succeed. If a delegate cannot be undone the record
/// stays for the runtime's retry, and every failure is reported, not just the first.
pub fn del(context: &Context) -> Result<(), PlexusError> {
    let container_id = context.container_id();
    let ifname = context.ifname();
    let _lock = context.store.lock(container_id)?;
    let Some(record) = context.store.load(container_id, ifname)? else {
        info!(
            container = container_id,
            ifname, "nothing recorded: nothing to delete"
        );
        context.store.remove(container_id, ifname)?;
        return Ok(());
    };
    let failures = delegates::teardown(
        &record.attachments,
        &context.invocation.path,
        context.invocation.netns.as_deref(),
        context.config.parallel,
    );
    if !failures.is_empty() {
        return Err(PlexusError::Teardown(failures));
    }
    context.store.remove(container_id, ifname)?;
    context.store.remove_vm_description(container_id)?;
    info!(container = container_id, ifname, "pod detached");
    Ok(())
}
