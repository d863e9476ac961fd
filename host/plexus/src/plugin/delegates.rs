//! Running the delegates of a pod's attachments: ADD one after another or side by side,
//! and the reverse-order teardown that both DEL and a failed ADD use.

use std::path::PathBuf;
use std::thread;

use plexus_cni::{CniResult, DelegateError};
use tracing::{info, warn};

use crate::error::TeardownFailure;
use crate::state::AttachmentRecord;

/// Runs every attachment's ADD and returns the outcomes in attachment order, whatever
/// order they finished in. With `parallel`, independent attachments run concurrently;
/// either way every attachment is tried, so the caller knows exactly what to undo.
pub fn add_all(
    attachments: &[AttachmentRecord],
    path: &[PathBuf],
    parallel: bool,
) -> Vec<Result<CniResult, DelegateError>> {
    if !parallel || attachments.len() < 2 {
        let mut outcomes = Vec::with_capacity(attachments.len());
        for attachment in attachments {
            let outcome = add_one(attachment, path);
            let failed = outcome.is_err();
            outcomes.push(outcome);
            // One after another, there is no point starting the next after a failure.
            if failed {
                break;
            }
        }
        return outcomes;
    }
    thread::scope(|scope| {
        let running: Vec<_> = attachments
            .iter()
            .map(|attachment| scope.spawn(move || add_one(attachment, path)))
            .collect();
        running
            .into_iter()
            // A panic here is a bug in Plexus, not a delegate failure: let it surface.
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

fn add_one(attachment: &AttachmentRecord, path: &[PathBuf]) -> Result<CniResult, DelegateError> {
    info!(network = %attachment.network, ifname = attachment.ifname(), "delegate ADD");
    plexus_cni::add_list(&attachment.config, &attachment.runtime, path)
}

/// Runs DEL for `attachments` in reverse order, going on past failures, and returns every
/// failure. `netns` replaces the recorded namespace: on DEL the runtime's word is the
/// current truth (it may be gone).
pub fn teardown(
    attachments: &[AttachmentRecord],
    path: &[PathBuf],
    netns: Option<&str>,
) -> Vec<TeardownFailure> {
    let mut failures = Vec::new();
    for attachment in attachments.iter().rev() {
        info!(network = %attachment.network, ifname = attachment.ifname(), "delegate DEL");
        let mut runtime = attachment.runtime.clone();
        runtime.netns = netns.map(str::to_owned);
        if let Err(error) = plexus_cni::del_list(
            &attachment.config,
            &runtime,
            path,
            attachment.result.as_ref(),
        ) {
            warn!(network = %attachment.network, %error, "delegate DEL failed");
            failures.push(TeardownFailure {
                network: attachment.network.clone(),
                ifname: attachment.ifname().to_owned(),
                error,
            });
        }
    }
    failures
}
