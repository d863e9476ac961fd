//! CHECK: ask every recorded delegate whether its attachment is still as it made it; for
//! a VM pod's attachment, check what Plexus made of it instead (see [`vm::check`]).

use std::path::Path;

use super::Context;
use crate::error::PlexusError;
use crate::vm;

pub fn check(context: &Context) -> Result<(), PlexusError> {
    let container_id = context.container_id();
    let ifname = context.ifname();
    let _lock = context.store.lock(container_id)?;
    let record = context.store.load(container_id, ifname)?.ok_or_else(|| {
        PlexusError::UnknownAttachment {
            container_id: container_id.to_owned(),
            ifname: ifname.to_owned(),
        }
    })?;
    for attachment in &record.attachments {
        context.notes.network(&attachment.network);
        let Some(result) = &attachment.result else {
            // An ADD that never finished has nothing to check; DEL will clean it.
            return Err(PlexusError::UnknownAttachment {
                container_id: container_id.to_owned(),
                ifname: ifname.to_owned(),
            });
        };
        if let Some(vm) = &attachment.vm {
            let netns = context.invocation.netns.as_deref().unwrap_or_default();
            vm::check(&context.config, vm, Path::new(netns))?;
            continue;
        }
        // CHECK is skipped by the library for delegates older than 0.4.0 or with
        // disableCheck, as the spec asks.
        // The runtime's word on where the pod lives is the current one.
        let mut runtime = attachment.runtime.clone();
        runtime.netns = context.invocation.netns.clone();
        plexus_cni::check_list(&attachment.config, &runtime, context.delegates(), result).map_err(
            |source| PlexusError::Delegate {
                network: attachment.shown_name(),
                source: Box::new(source),
                rollback: Vec::new(),
            },
        )?;
    }
    Ok(())
}
