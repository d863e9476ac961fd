//! `selectShadow`: a candidate selection policy run beside the deciding one on every ADD,
//! never acted on. Where it would have chosen otherwise (or failed), a line goes to
//! `recordDir/shadow.jsonl`; whatever it does, the pod does not notice.

use std::time::SystemTime;

use plexus_policy::types::{Attachment, SelectRequest};
use plexus_policy::{PolicyRuntime, Selector};
use serde_json::Value;
use tracing::warn;

use super::Context;
use crate::networks;
use crate::policy_ref;
use crate::recording::{self, Decided, Outcome, Recorder, ShadowDifference, Shadowed};
use crate::selection;
use crate::state::{DecidedBy, Role, rfc3339};

/// What the shadow answered for `request`, checked as the deciding policy's answer was:
/// the attachments the node would accept, or why there are none.
pub(super) fn run(
    context: &Context,
    runtime: &PolicyRuntime,
    spec: &str,
    request: &SelectRequest,
) -> Shadowed {
    let loaded = policy_ref::load(
        runtime,
        &context.config.common,
        None,
        "selectShadow",
        spec,
        Role::Active,
    );
    let (selector, decided_by): (Selector, DecidedBy) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => {
            return Shadowed {
                policy: spec.to_owned(),
                sha256: None,
                outcome: Outcome::Error(error.to_string().replace(spec, "<policy>")),
            };
        }
    };
    let checked = selector
        .select(runtime, request)
        .map_err(crate::error::PlexusError::from)
        .and_then(|chosen| {
            let networks = networks::scan(&context.config.networks_dir)?;
            networks.check_chosen(&chosen)?;
            let checked = selection::check(&selector, &context.config, &networks.usable, chosen)?;
            Ok(attachments_json(
                checked.into_iter().map(|planned| planned.attachment),
            ))
        });
    Shadowed {
        policy: spec.to_owned(),
        sha256: Some(decided_by.sha256),
        outcome: recording::outcome(selector.name(), &checked),
    }
}

/// The attachments as the policy chose them, as recorded.
pub(super) fn attachments_json(attachments: impl IntoIterator<Item = Attachment>) -> Value {
    Value::from_iter(
        attachments
            .into_iter()
            .map(|attachment| serde_json::to_value(attachment).unwrap_or_default()),
    )
}

/// Appends the shadow's answer to `recordDir/shadow.jsonl` when it differs from what
/// `decided_by` chose (`decided`). One that cannot be written costs a warning.
pub(super) fn record_difference(
    context: &Context,
    request: &SelectRequest,
    decided_by: &DecidedBy,
    decided: Value,
    shadow: Shadowed,
) {
    if shadow.outcome == Outcome::Output(decided.clone()) {
        return;
    }
    let Some(dir) = &context.config.record_dir else {
        return;
    };
    let pod = &request.pod;
    let difference = ShadowDifference {
        time: rfc3339(SystemTime::now()),
        pod: if pod.name.is_empty() {
            pod.container_id.clone()
        } else {
            format!("{}/{}", pod.namespace, pod.name)
        },
        pod_uid: pod.uid.clone(),
        container_id: pod.container_id.clone(),
        decided: Decided {
            policy: decided_by.reference.clone(),
            sha256: decided_by.sha256.clone(),
            role: decided_by.role,
            output: decided,
        },
        shadow,
    };
    let recorder = Recorder::new(dir, context.config.record_max_bytes);
    if let Err(error) = recorder.append_shadow(&difference) {
        warn!(dir = %dir.display(), %error, "cannot record a shadow policy's difference");
    }
}
