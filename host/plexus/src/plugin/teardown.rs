//! DEL: undo what ADD recorded, whatever has changed since.

use tracing::{info, warn};

use super::Context;
use super::{add, delegates};
use crate::error::PlexusError;
use crate::phase;
use plexus_cni::Runner;

use crate::state::{AttachmentRecord, Record, StateStore};

/// Undoes the recorded attachment. Works from the record alone, so a changed or vanished
/// configuration, policy or netns does not matter. If a delegate cannot be undone the
/// record stays for the runtime's retry, and every failure is reported, not just the
/// first. A record that cannot be removed afterwards (a read-only stateDir) is reported
/// too, after everything was torn down.
///
/// With no record — already deleted, or lost with a replaced disk or a changed stateDir —
/// the selection is run again and its delegates are DELed: every plugin's DEL is
/// idempotent, so a repeated DEL costs a few delegate calls, while trusting a lost record
/// would leak the pod's interfaces and addresses.
pub fn del(context: &Context) -> Result<(), PlexusError> {
    let container_id = context.container_id();
    let ifname = context.ifname();
    let _lock = context.store.lock(container_id)?;
    match context.store.load(container_id, ifname)? {
        Some(record) => {
            for attachment in &record.attachments {
                context.notes.network(&attachment.network);
            }
            undo_record(
                &context.store,
                &record,
                context.delegates(),
                context.invocation.netns.as_deref(),
                context.config.parallel,
            )?;
            info!(container = container_id, ifname, "pod detached");
        }
        None => {
            let Some(attachments) = reselect(context) else {
                return Ok(());
            };
            undo(context, &attachments)?;
            // A record moved aside as corrupt leaves its container directory behind.
            context.store.remove(container_id, ifname)?;
        }
    }
    Ok(())
}

/// Undoes a recorded attachment and forgets it once every delegate's DEL succeeded: the
/// work of DEL with a record, and of the agent's GC of a pod whose sandbox is gone. The
/// caller holds the container's lock.
pub(crate) fn undo_record(
    store: &StateStore,
    record: &Record,
    delegates: Runner<'_>,
    netns: Option<&str>,
    parallel: bool,
) -> Result<(), PlexusError> {
    let failures = delegates::teardown(&record.attachments, delegates, netns, parallel);
    if !failures.is_empty() {
        return Err(PlexusError::Teardown(failures));
    }
    phase::run("forget", || {
        store.remove(&record.container_id, &record.ifname)?;
        store.remove_vm_description(&record.container_id)
    })?;
    Ok(())
}

/// Runs the delegates' DEL for `attachments`, reporting every failure.
fn undo(context: &Context, attachments: &[AttachmentRecord]) -> Result<(), PlexusError> {
    for attachment in attachments {
        context.notes.network(&attachment.network);
    }
    let failures = delegates::teardown(
        attachments,
        context.delegates(),
        context.invocation.netns.as_deref(),
        context.config.parallel,
    );
    if failures.is_empty() {
        Ok(())
    } else {
        Err(PlexusError::Teardown(failures))
    }
}

/// What to DEL with nothing recorded: what the current configuration would give this
/// pod. When even that cannot be told (no policy, no network for it), there is nothing
/// to undo that Plexus could name: `None`, and DEL succeeds so the pod can go.
fn reselect(context: &Context) -> Option<Vec<AttachmentRecord>> {
    let (container_id, ifname) = (context.container_id(), context.ifname());
    let chosen = context
        .policy_runtime()
        .and_then(|runtime| {
            let active = context.selector(&runtime)?;
            add::decide(context, &runtime, &active)
        })
        .map(|(_, attachments, _)| attachments);
    match chosen {
        Ok(attachments) => {
            let networks: Vec<&str> = attachments.iter().map(|a| a.network.as_str()).collect();
            warn!(
                container = container_id,
                ifname,
                ?networks,
                "nothing recorded (already deleted, or the records were lost): deleting what the selection chooses now"
            );
            Some(attachments)
        }
        Err(error) => {
            warn!(container = container_id, ifname, %error,
                "nothing recorded, and the selection cannot be run again: nothing to delete");
            None
        }
    }
}
