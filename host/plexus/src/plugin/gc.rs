//! GC: forget and undo the attachments the runtime no longer knows, then let the
//! delegates collect their own garbage.

use std::collections::{BTreeMap, HashSet};
use std::time::SystemTime;

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
    // The runtime's list was made before this GC started: what an ADD recorded since is
    // not in it, and is not garbage.
    let started = SystemTime::now();
    let mut failures: Vec<TeardownFailure> = Vec::new();
    // Per network name (what delegates key their own state by), the delegate attachments
    // that stay. Only networks some record used are asked to collect: a network this
    // node's Plexus never attached to belongs to someone else.
    let mut kept: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();

    for container_id in context.store.container_ids()? {
        let _lock = context.store.lock(&container_id)?;
        for record in context.store.records_of(&container_id)? {
            let key = (record.container_id.clone(), record.ifname.clone());
            let stays = valid.contains(&key) || record.created > started;
            for attachment in &record.attachments {
                let network = kept.entry(attachment.network.clone()).or_default();
                if stays {
                    network.push((record.container_id.clone(), attachment.ifname().to_owned()));
                }
            }
            if stays {
                continue;
            }
            info!(container = %record.container_id, ifname = %record.ifname, "collecting stale attachment");
            // The sandbox is usually gone by now; if it is not, its interfaces go too.
            let undone = delegates::teardown(
                &record.attachments,
                context.delegates(),
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
    for network in networks::scan(&context.config.networks_dir)?.usable {
        let Some(keep) = kept.get(&network.config.name) else {
            continue;
        };
        if let Err(errors) = plexus_cni::gc_list(&network.config, context.delegates(), keep) {
            for error in errors {
                warn!(network = %network.config.name, %error, "delegate GC failed");
                failures.push(TeardownFailure {
                    network: network.config.name.clone(),
                    ifname: String::new(),
                    error: Box::new(error),
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
