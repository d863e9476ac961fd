//! Running the delegates of a pod's attachments: ADD in attachment order, and the
//! teardown that DEL, GC and a failed ADD use (VM NICs handed back first, then the
//! delegates' DEL in reverse order); either one after another or, with `parallel`, side
//! by side.

use std::path::Path;
use std::thread;

use plexus_cni::{CniResult, DelegateError, Runner};
use tracing::{info, warn};

use crate::crash_point;
use crate::error::TeardownFailure;
use crate::phase;
use crate::state::{AttachmentRecord, VmAttachment};
use crate::trace;
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
        return trace::delegate_time(|| {
            side_by_side(attachments, |attachment| add_one(attachment, delegates))
        });
    }
    let mut outcomes = Vec::with_capacity(attachments.len());
    for (index, attachment) in attachments.iter().enumerate() {
        let outcome = trace::delegate_time(|| add_one(attachment, delegates));
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

/// Runs DEL for every attachment, going on past failures, and returns every failure:
/// first every VM NIC's veth goes back to its delegate ([`vm::hand_back_all`]), then the
/// delegates' DEL, one after another in reverse attachment order, undoing ADD's order,
/// or side by side — while the VM NICs' taps and bridges are deleted beside them (the
/// kernel's part of deleting links is mostly waiting). `netns` replaces the recorded
/// namespace: on DEL the runtime's word is the current truth (the namespace may be
/// gone).
pub fn teardown(
    attachments: &[AttachmentRecord],
    delegates: Runner<'_>,
    netns: Option<&str>,
    parallel: bool,
) -> Vec<TeardownFailure> {
    let with_vm: Vec<(&AttachmentRecord, &VmAttachment)> = attachments
        .iter()
        .filter_map(|attachment| Some((attachment, attachment.vm.as_ref()?)))
        .collect();
    let vms: Vec<&VmAttachment> = with_vm.iter().map(|(_, vm)| *vm).collect();
    // One pod, one namespace: the runtime's word, else the recorded one.
    let pod = with_vm
        .first()
        .and_then(|(attachment, _)| netns.or(attachment.runtime.netns.as_deref()))
        .map(Path::new);
    let mut failures = Vec::new();
    if let Some(pod) = pod {
        let outcomes = phase::run("vm", || vm::hand_back_all(&vms, pod));
        crash_point::reached("del:vm-detached");
        for ((attachment, _), outcome) in with_vm.iter().zip(outcomes) {
            if let Err(error) = outcome {
                failures.push(teardown_failure(attachment, Box::new(error)));
            }
        }
    }
    let del = |attachment: &AttachmentRecord| del_one(attachment, delegates, netns);
    thread::scope(|scope| {
        let deleting_links = pod.map(|pod| scope.spawn(|| vm::delete_links(&vms, pod)));
        if parallel {
            let undone = trace::delegate_time(|| side_by_side(attachments, del));
            failures.extend(undone.into_iter().flatten());
        } else {
            for (index, attachment) in attachments.iter().enumerate().rev() {
                failures.extend(trace::delegate_time(|| del(attachment)));
                crash_point::reached_at("del:delegate-done", index);
            }
        }
        let deleted = deleting_links.map(|deleting| {
            // A panic is a bug in Plexus: let it surface.
            deleting
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        });
        // The links of all VM NICs went together; their failure is the first one's.
        if let (Some(Err(error)), Some((attachment, _))) = (deleted, with_vm.first()) {
            failures.push(teardown_failure(attachment, Box::new(error)));
        }
    });
    failures
}

/// One attachment's delegate DEL, which runs even when its VM plumbing could not be
/// undone, since leaving the address leased would be worse than a stray bridge in a
/// namespace about to go.
fn del_one(
    attachment: &AttachmentRecord,
    delegates: Runner<'_>,
    netns: Option<&str>,
) -> Option<TeardownFailure> {
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
    deleted
        .err()
        .map(|error| teardown_failure(attachment, Box::new(error)))
}

fn teardown_failure(
    attachment: &AttachmentRecord,
    error: Box<dyn std::error::Error + Send + Sync>,
) -> TeardownFailure {
    warn!(network = %attachment.shown_name(), %error, "teardown failed");
    TeardownFailure {
        network: attachment.shown_name(),
        ifname: attachment.ifname().to_owned(),
        error,
    }
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
