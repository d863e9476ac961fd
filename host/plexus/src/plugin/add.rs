//! ADD: select the pod's networks, run their delegates, merge their results, record it all.

use std::collections::HashMap;
use std::thread;
use std::time::SystemTime;

use plexus_cni::RuntimeConf;
use plexus_policy::types::{DelegateResult, MergeRequest, Pod, SelectRequest};
use plexus_policy::world::World;
use plexus_policy::{Merger, Policy, PolicyError, PolicyRuntime, Selector};
use serde::Serialize;
use serde_json::{Map, Value};
use tracing::{info, warn};

use super::Context;
use super::delegates;
use super::shadow;
use crate::config::DEFAULT_SELECT;
use crate::crash_point;
use crate::error::{PlexusError, TeardownFailure};
use crate::network_status;
use crate::networks;
use crate::phase;
use crate::pod;
use crate::policy_io;
use crate::policy_ref;
use crate::recording::{self, Recorder, Recording};
use crate::requested;
use crate::selection::{self, Planned, load_policy};
use crate::state::{AttachmentRecord, DecidedBy, Decisions, Record, Role};
use crate::vm;

pub fn add(context: &Context) -> Result<Value, PlexusError> {
    let container_id = context.container_id();
    let ifname = context.ifname();
    let _lock = context.store.lock(container_id)?;
    if context.store.load(container_id, ifname)?.is_some() {
        return Err(PlexusError::AlreadyAttached {
            container_id: container_id.to_owned(),
            ifname: ifname.to_owned(),
        });
    }

    if context.config.select == DEFAULT_SELECT
        && let Some(reason) = pod::unreached_annotations(&context.config, &context.invocation.args)
    {
        warn!(container = container_id, "no pod annotations: {reason}");
    }
    let (runtime, active, (merger, merged_by)) = phase::run("policies", || {
        let runtime = context.policy_runtime()?;
        let active = context.selector(&runtime)?;
        // The merge policy is loaded before any delegate runs: a broken one must fail
        // the pod before anything is made, not after.
        let merger: (Merger, _) = load_policy(
            &runtime,
            &context.config.common,
            Some(&context.store),
            "merge",
            &context.config.merge,
        )?;
        Ok::<_, PlexusError>((runtime, active, merger))
    })?;
    context.notes.policy(merger.name(), merger.sha256());
    let (request, planned, selected_by) =
        phase::run("select", || decide(context, &runtime, &active))?;
    let selected_by = &selected_by;
    for attachment in &planned {
        context.notes.network(&attachment.network);
    }

    let mut record = Record {
        created: SystemTime::now(),
        container_id: container_id.to_owned(),
        ifname: ifname.to_owned(),
        netns: context.invocation.netns.clone(),
        cni_version: context.config.cni_version,
        attachments: planned,
        network_status: Vec::new(),
        decided_by: Decisions {
            select: Some(selected_by.clone()),
            merge: Some(merged_by.clone()),
        },
    };
    // Recorded before the first delegate runs, so that a DEL after a crash finds it.
    phase::run("record", || context.store.save(&record))?;
    crash_point::reached("add:recorded");

    // The shadow runs while the delegates do, and is waited for before ADD answers.
    let outcomes = thread::scope(|scope| {
        let shadow = context.config.select_shadow.as_deref().map(|spec| {
            let request = &request;
            let runtime = &runtime;
            scope.spawn(move || shadow::run(context, runtime, spec, request))
        });
        let outcomes = delegates::add_all(
            &record.attachments,
            context.delegates(),
            context.config.parallel,
        );
        if let Some(shadow) = shadow {
            match shadow.join() {
                Ok(shadowed) => shadow::record_difference(
                    context,
                    &request,
                    selected_by,
                    shadow::attachments_json(
                        record
                            .attachments
                            .iter()
                            .map(|planned| planned.selected.clone()),
                    ),
                    shadowed,
                ),
                Err(_) => warn!(
                    container = container_id,
                    "the shadow policy's thread panicked"
                ),
            }
        }
        outcomes
    });
    let attempted = outcomes.len();
    let mut failure = None;
    for (attachment, outcome) in record.attachments.iter_mut().zip(outcomes) {
        match outcome {
            Ok(result) => attachment.result = Some(result),
            Err(error) => {
                failure.get_or_insert((attachment.shown_name(), error));
            }
        }
    }
    if let Some((network, source)) = failure {
        let rollback = roll_back(context, &record, attempted);
        return Err(PlexusError::Delegate {
            network,
            source: Box::new(source),
            rollback,
        });
    }

    // The delegates' attachments exist from here on: any failure undoes them.
    let finished = (if request.vm {
        phase::run("vm", || {
            vm::attach_all(&context.store, &context.config, &mut record).map_err(PlexusError::from)
        })
    } else {
        Ok(())
    })
    .and_then(|()| {
        phase::run("merge", || {
            merge(context, &runtime, &merger, &record, &request.pod)
        })
    })
    .and_then(|mut merged| {
        list_taps(&mut merged, &record);
        record.network_status = status_of(&record);
        phase::run("save", || context.store.save(&record))?;
        crash_point::reached("add:saved");
        Ok(merged)
    });
    let merged = match finished {
        Ok(merged) => merged,
        Err(error) => {
            let rollback = roll_back(context, &record, record.attachments.len());
            return Err(error.with_rollback(rollback));
        }
    };
    let (select, merge) = (selected_by, &merged_by);
    info!(
        container = container_id,
        attachments = record.attachments.len(),
        select = %select.reference,
        select_sha256 = %select.sha256,
        select_role = %select.role,
        select_degraded = select.degraded,
        merge = %merge.reference,
        merge_sha256 = %merge.sha256,
        merge_degraded = merge.degraded,
        "pod attached"
    );
    Ok(merged.to_json(context.config.cni_version))
}

/// Chooses this pod's networks: by the canary when the pod is in its share and the
/// canary gives an answer the node accepts, else by the active policy (`active`, with
/// which policy it is). A canary's failure, whatever it is, costs a warning, never the
/// pod. Returns the request, the planned attachments and which policy decided.
pub(super) fn decide(
    context: &Context,
    runtime: &PolicyRuntime,
    active: &(Selector, DecidedBy),
) -> Result<(SelectRequest, Vec<AttachmentRecord>, DecidedBy), PlexusError> {
    if let Some(canary) = context.canary() {
        let tried = policy_ref::load(
            runtime,
            &context.config.common,
            None,
            "selectCanary.policy",
            &canary.policy,
            Role::Canary,
        )
        .and_then(|(selector, decided_by): (Selector, _)| {
            let (request, planned) = choose(context, runtime, &selector)?;
            context.notes.policy(selector.name(), selector.sha256());
            Ok((request, planned, decided_by))
        });
        match tried {
            Ok(decided) => return Ok(decided),
            Err(error) => warn!(
                container = context.container_id(),
                canary = %canary.policy,
                %error,
                "the canary policy failed for a pod in its share: the active policy decides"
            ),
        }
    }
    let (selector, decided_by) = active;
    context.notes.policy(selector.name(), selector.sha256());
    let (request, planned) = choose(context, runtime, selector)?;
    Ok((request, planned, decided_by.clone()))
}

/// Runs the selection policy for this invocation and plans the attachments it chose,
/// checked: what ADD makes, and what DEL undoes when nothing was recorded.
pub(super) fn choose(
    context: &Context,
    runtime: &PolicyRuntime,
    selector: &Selector,
) -> Result<(SelectRequest, Vec<AttachmentRecord>), PlexusError> {
    let networks = networks::scan(&context.config.networks_dir)?;
    let request = policy_io::select_request(&context.invocation, &context.config, &networks)?;
    let chosen = selector.select(runtime, &request);
    record_call(context, selector, &request.pod, &request, &chosen);
    let chosen = chosen?;
    networks.check_chosen(&chosen)?;
    let checked = selection::check(selector, &context.config, &networks.usable, chosen)?;
    let names = requested::names_by_file(&request);
    Ok((request, plan(context, checked, &names)))
}

/// Undoes a half-made ADD: DEL, in reverse, for the first `attempted` attachments (the
/// ones whose delegates ran), then the record goes. A delegate whose ADD failed gets a
/// DEL too, in case it left something, but its refusal does not count: it often refuses
/// for the very reason its ADD did, and it must not keep the pod from being deleted. If
/// an attachment that was made cannot be undone, the record stays so the runtime's DEL
/// can try again.
fn roll_back(context: &Context, record: &Record, attempted: usize) -> Vec<TeardownFailure> {
    let attempted = &record.attachments[..attempted];
    let mut failures = delegates::teardown(
        attempted,
        context.delegates(),
        record.netns.as_deref(),
        context.config.parallel,
    );
    failures.retain(|failure| {
        attempted
            .iter()
            .any(|attachment| attachment.ifname() == failure.ifname && attachment.result.is_some())
    });
    // What is kept lists only what ran, with the delegates' results: DEL hands them back
    // as prevResult.
    let settled = if failures.is_empty() {
        context
            .store
            .remove(&record.container_id, &record.ifname)
            .and_then(|()| context.store.remove_vm_description(&record.container_id))
    } else {
        context.store.save(&Record {
            attachments: attempted.to_vec(),
            ..record.clone()
        })
    };
    if let Err(error) = settled {
        tracing::warn!(%error, "cannot settle the record of a rolled-back ADD");
    }
    failures
}

/// Turns the checked selection into attachment records, each with the name the pod used
/// for its network (`names`, by file).
fn plan(
    context: &Context,
    planned: Vec<Planned<'_>>,
    names: &HashMap<String, String>,
) -> Vec<AttachmentRecord> {
    planned
        .into_iter()
        .enumerate()
        .map(|(index, planned)| AttachmentRecord {
            network: planned.network.config.name.clone(),
            requested_as: names.get(&planned.network.file).cloned(),
            runtime: runtime_conf(context, index, &planned),
            config: planned.network.config.clone(),
            selected: planned.attachment,
            result: None,
            vm: None,
        })
        .collect()
}

/// The delegate's view of the invocation. The runtime's capability arguments (port
/// mappings, bandwidth, ...) belong to the pod's primary network, as Multus passes them;
/// addresses and MACs the selection asked for go to their own attachment.
fn runtime_conf(context: &Context, index: usize, planned: &Planned<'_>) -> RuntimeConf {
    let attachment = &planned.attachment;
    let mut capability_args = if index == 0 {
        context.config.runtime_config.clone()
    } else {
        Map::new()
    };
    if !attachment.ips.is_empty() {
        capability_args.insert("ips".into(), Value::from(attachment.ips.clone()));
    }
    if let Some(mac) = &attachment.mac {
        capability_args.insert("mac".into(), Value::from(mac.clone()));
    }
    RuntimeConf {
        container_id: context.container_id().to_owned(),
        netns: context.invocation.netns.clone(),
        ifname: attachment.ifname.clone(),
        args: context.invocation.args.clone(),
        capability_args,
        cni_args: planned.cni_args.clone(),
    }
}

fn merge(
    context: &Context,
    runtime: &PolicyRuntime,
    merger: &Merger,
    record: &Record,
    pod: &plexus_policy::types::Pod,
) -> Result<plexus_cni::CniResult, PlexusError> {
    let results = record
        .attachments
        .iter()
        .map(|attachment| DelegateResult {
            attachment: attachment.selected.clone(),
            network: policy_io::network_of(attachment.file(), &attachment.config),
            result: policy_io::to_policy_result(
                attachment
                    .result
                    .as_ref()
                    .expect("merge runs only after every delegate returned its result"),
            ),
        })
        .collect();
    let request = MergeRequest {
        pod: pod.clone(),
        results,
        policy_config: context.config.policy_config.clone(),
    };
    let merged = merger.merge(runtime, &request);
    record_call(context, merger, pod, &request, &merged);
    let merged = policy_io::from_policy_result(merged?);
    policy_io::check_result(&merged).map_err(|reason| PlexusError::InvalidAnswer {
        policy: merger.name().to_owned(),
        reason,
    })?;
    Ok(merged)
}

/// A VM pod's result also lists its taps, in attachment order, in the pod's sandbox: what
/// the VM runtime opens, wearing the MAC the VM must use. The result then says what is
/// true after the handover: the pod's own interfaces wear the MACs they were given, and
/// each address is the VM's, on its tap.
fn list_taps(merged: &mut plexus_cni::CniResult, record: &Record) {
    for attachment in &record.attachments {
        let Some(vm) = &attachment.vm else {
            continue;
        };
        let tap_index = merged.interfaces.len();
        let veth_index = merged.interfaces.iter().position(|interface| {
            interface.name == vm.nic.veth && interface.sandbox == record.netns
        });
        if let Some(veth_index) = veth_index {
            merged.interfaces[veth_index].mac = Some(vm.nic.veth_attached_mac.to_string());
            if let (Ok(veth_index), Ok(tap_index)) =
                (u32::try_from(veth_index), u32::try_from(tap_index))
            {
                for ip in &mut merged.ips {
                    if ip.interface == Some(veth_index) {
                        ip.interface = Some(tap_index);
                    }
                }
            }
        }
        merged.interfaces.push(plexus_cni::Interface {
            name: vm.nic.tap.clone(),
            mac: Some(vm.nic.mac.to_string()),
            mtu: Some(vm.nic.mtu),
            sandbox: record.netns.clone(),
            ..Default::default()
        });
    }
}

fn status_of(record: &Record) -> Vec<network_status::NetworkStatus> {
    record
        .attachments
        .iter()
        .enumerate()
        .filter_map(|(index, attachment)| {
            let result = attachment.result.as_ref()?;
            Some(network_status::entry(
                attachment
                    .requested_as
                    .as_ref()
                    .unwrap_or(&attachment.network),
                attachment.ifname(),
                result,
                index == 0,
            ))
        })
        .collect()
}

/// Appends one policy call to `recordDir`, if set. A recording that cannot be written
/// costs a warning, never the pod.
fn record_call<W: World, I: Serialize, O: Serialize>(
    context: &Context,
    policy: &Policy<W>,
    pod: &Pod,
    input: &I,
    outcome: &Result<O, PolicyError>,
) {
    let Some(dir) = &context.config.record_dir else {
        return;
    };
    let recording = Recording {
        policy: policy.name().to_owned(),
        sha256: policy.sha256().to_owned(),
        pod: if pod.name.is_empty() {
            pod.container_id.clone()
        } else {
            format!("{}/{}", pod.namespace, pod.name)
        },
        container_id: pod.container_id.clone(),
        input: serde_json::to_value(input).unwrap_or_default(),
        outcome: recording::outcome(policy.name(), outcome),
    };
    let recorder = Recorder::new(dir, context.config.record_max_bytes);
    if let Err(error) = recorder.append(policy.kind(), &recording) {
        tracing::warn!(dir = %dir.display(), %error, "cannot record a policy call");
    }
}
