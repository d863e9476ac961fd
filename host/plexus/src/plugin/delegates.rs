//! Running the delegates of a pod's attachments: ADD in attachment order, and the
//! reverse-order teardown that DEL, GC and a failed ADD use; either one after another or,
//! with `parallel`, side by side.

use std::path::Path;
use std::thread;

use plexus_cni::{CniResult, DelegateError, Runner};
use tracing::{info, warn};

use crate::crash_point;
use crate::error::TeardownFailure;
use crate::phase;
use crate::state::AttachmentRecord;
use crate::vm;

/// Runs the attachments' ADDs and returns the outcomes in attachment order, whatever
/// order they finished in. One after another, the first failure stops the rest (there is
/// no point making what will be rolled back); side by side, every one runs. Either way
/// the outcomes cover exactly the attachments whose delegates ran.
pub fn add_all(
    attachments: &[AttachmentRecord],
    delegates: Runner<'_>,
    parallel: bool,
) -> Vec<Result<CniResult, DelegateError>> {
    if parallel {
        return side_by_side(attachments, |attachment| add_one(attachment, delegates));
    }
    let mut outcomes = Vec::with_capacity(attachments.len());
    for (index, attachment) in attachments.iter().enumerate() {
        let outcome = add_one(attachment, delegates);
        crash_point::reached_at("add:delegate-done", index);
        let failed = outcome.is_err();
        outcomes.push(outcome);
        if failed {
            break;
        }
    }
    outcomes
}

fn add_one(
    attachment: &AttachmentRecord,
    delegates: Runner<'_>,
) -> Result<CniResult, DelegateError> {
    info!(network = %attachment.network, ifname = attachment.ifname(), "delegate ADD");
    phase::run("delegate", || {
        plexus_cni::add_list(&attachment.config, &attachment.runtime, delegates)
    })
}

/// Runs DEL for every attachment, going on past failures, and returns every failure.
/// One after another it runs in reverse attachment order, undoing ADD's order. `netns`
/// replaces the recorded namespace: on DEL the runtime's word is the current truth (the
/// namespace may be gone).
pub fn teardown(
    attachments: &[AttachmentRecord],
    delegates: Runner<'_>,
    netns: Option<&str>,
    parallel: bool,
) -> Vec<TeardownFailure> {
    let del = |attachment: &AttachmentRecord| del_one(attachment, delegates, netns);
    let outcomes = if parallel {
        side_by_side(attachments, del)
    } else {
        let indexed = attachments.iter().enumerate().rev();
        indexed
            .map(|(index, attachment)| {
                let failures = del(attachment);
                crash_point::reached_at("del:delegate-done", index);
                failures
            })
            .collect()
    };
    outcomes.into_iter().flatten().collect()
}

/// Undoes one attachment: its VM plumbing first (the veth back as the delegate made it),
/// then the delegate's DEL — which runs even when the first part failed, since leaving
/// the address leased would be worse than a stray bridge in a namespace about to go.
fn del_one(
    attachment: &AttachmentRecord,
    delegates: Runner<'_>,
    netns: Option<&str>,
) -> Vec<TeardownFailure> {
    let failure = |error: Box<dyn std::error::Error + Send + Sync>| {
        warn!(network = %attachment.shown_name(), %error, "teardown failed");
        TeardownFailure {
            network: attachment.shown_name(),
            ifname: attachment.ifname().to_owned(),
            error,
        }
    };
    let mut failures = Vec::new();
    if let Some(vm) = &attachment.vm {
        let pod = netns
            .or(attachment.runtime.netns.as_deref())
            .unwrap_or_default();
        if let Err(error) = phase::run("vm", || vm::detach(vm, Path::new(pod))) {
            failures.push(failure(Box::new(error)));
        }
        crash_point::reached("del:vm-detached");
    }
    info!(network = %attachment.network, ifname = attachment.ifname(), "delegate DEL");
    let mut runtime = attachment.runtime.clone();
    runtime.netns = netns.map(str::to_owned);
    let deleted = phase::run("delegate", || {
        plexus_cni::del_list(
            &attachment.config,
            &runtime,
            delegates,
            attachment.result.as_ref(),
        )
    });
    if let Err(error) = deleted {
        failures.push(failure(Box::new(error)));
    }
    failures
}

/// Runs `work` for every attachment on a thread of its own; the outcomes come back in
/// attachment order.
fn side_by_side<T: Send>(
    attachments: &[AttachmentRecord],
    work: impl Fn(&AttachmentRecord) -> T + Sync,
) -> Vec<T> {
    let work = &work;
    thread::scope(|scope| {
        let running: Vec<_> = attachments
            .iter()
            .map(|attachment| scope.spawn(move || work(attachment)))
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
