//! GC: forget and undo the attachments the runtime no longer knows, then let the
//! delegates collect their own garbage.

use std::collections::{BTreeMap, HashSet};

use tracing::{info, warn};

use super::Context;
use super::delegates;
use crate::error::{PlexusError, TeardownFailure};
use crate::networks;

pub fn gc(context: &Context) -> Result<(), PlexusError> {
    // A missing list is an error, never "nothing is valid": that would undo every pod.
    let valid: HashSet<(String, String)> =
        plexus_cni::parse_valid_attachments(&context.config.document)
            .map_err(|error| {
                PlexusError::Config(crate::config::ConfigError::Key {
                    key: "cni.dev/valid-attachments",
                    reason: error.to_string(),
                })
            })?
            .into_iter()
            .collect();
    let mut failures: Vec<TeardownFailure> = Vec::new();
    // Per network file, the delegate attachments that stay.
    let mut kept: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();

    for container_id in context.store.container_ids()? {
        let _lock = context.store.lock(&container_id)?;
        for record in context.store.records_of(&container_id)? {
            let key = (record.container_id.clone(), record.ifname.clone());
            if valid.contains(&key) {
                for attachment in &record.attachments {
                    kept.entry(attachment.file().to_owned())
                        .or_default()
                        .push((record.container_id.clone(), attachment.ifname().to_owned()));
                }
                continue;
            }
            info!(container = %record.container_id, ifname = %record.ifname, "collecting stale attachment");
            // The sandbox is usually gone by now; if it is not, its interfaces go too.
            let undone = delegates::teardown(
                &record.attachments,
                &context.invocation.path,
                record.netns.as_deref(),
                context.config.parallel,
            );
            if undone.is_empty() {
                context.store.remove(&record.container_id, &record.ifname)?;
            }
            failures.extend(undone);
        }
    }

    // Delegates older than 1.1.0 have no GC; the library skips them.
    for network in networks::scan(&context.config.networks_dir)? {
        let keep = kept
            .get(&network.file)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if let Err(errors) = plexus_cni::gc_list(&network.config, &context.invocation.path, keep) {
            for error in errors {
                warn!(network = %network.config.name, %error, "delegate GC failed");
                failures.push(TeardownFailure {
                    network: network.config.name.clone(),
                    ifname: String::new(),
                    error,
                });
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(PlexusError::Teardown(failures))
    }
}
