//! `plexus policy sync`: keeps this node's policy store in step with the `oci://`
//! references of a plexus configuration: pulls a reference whose tag moved, verifies,
//! preflights and activates it; on any failure keeps the active version and says why.
//! `--once` runs one round (exit 1 if any reference failed); `--interval` runs until
//! SIGTERM, re-reading the configuration each round.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use plexus_oci::OciRef;
use plexus_oci::registry::Registry;
use serde_json::Value;

use super::activate::{self, Outcome, VerifyKey};
use super::{CliError, CliResult};
use crate::IPAM_NAME;
use crate::config::{CommonSettings, PluginConfig};
use crate::networks;
use crate::state::policies::PolicyStore;

/// One reference to keep in step, with the store and key of the configuration naming it.
struct Wanted {
    reference: OciRef,
    state_dir: PathBuf,
    verify_key: Option<PathBuf>,
}

/// A policy a configuration names (any form: path, builtin, `oci://`), with the store
/// and key of the configuration naming it.
pub(super) struct Configured {
    pub spec: String,
    pub state_dir: PathBuf,
    pub verify_key: Option<PathBuf>,
}

pub fn run(config: &Path, interval: Option<u64>, plain_http: bool) -> CliResult {
    let registry = Registry::new(plain_http)?;
    let Some(seconds) = interval else {
        return Ok(if round(config, &registry)? {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    while !stop.load(Ordering::Relaxed) {
        // A round that cannot even read the configuration is reported and retried.
        if let Err(error) = round(config, &registry) {
            eprintln!("plexus: {error}");
        }
        let deadline = Instant::now() + jittered(Duration::from_secs(seconds.max(1)));
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `interval` ±10 %, so that a fleet started together does not pull together.
fn jittered(interval: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    let factor = 0.9 + f64::from(nanos % 1000) / 5000.0;
    interval.mul_f64(factor)
}

/// One pass over every reference; whether all are in step.
fn round(config: &Path, registry: &Registry) -> Result<bool, CliError> {
    let mut all_good = true;
    let mut wanted = Vec::new();
    for configured in configured(config)? {
        if OciRef::is_oci(&configured.spec) {
            wanted.push(Wanted {
                reference: configured.spec.parse()?,
                state_dir: configured.state_dir,
                verify_key: configured.verify_key,
            });
        }
    }
    for wanted in wanted {
        let store = PolicyStore::new(crate::state::StateLayout::new(&wanted.state_dir));
        match sync_one(&store, &wanted, registry) {
            Ok(line) => println!("{line}"),
            Err(error) => {
                all_good = false;
                println!("FAILED {}: {error}", wanted.reference);
            }
        }
    }
    Ok(all_good)
}

fn sync_one(store: &PolicyStore, wanted: &Wanted, registry: &Registry) -> Result<String, CliError> {
    let verify = wanted
        .verify_key
        .as_deref()
        .map(VerifyKey::read)
        .transpose()?;
    let reference = activate::record_reference(&wanted.reference);
    let current = store.read_ref(&reference.to_string())?;
    let verified_as_asked = |current: &crate::state::policies::RefRecord| {
        verify.as_ref().is_none_or(|key| {
            current
                .verified_by
                .as_ref()
                .is_some_and(|verified| verified.key == key.id)
        })
    };
    // A digest does not move, and a tag that did not move needs no more than a HEAD.
    if let Some(current) = &current
        && verified_as_asked(current)
    {
        let unchanged = Outcome::Unchanged {
            manifest: current.manifest.clone(),
        };
        if reference.digest.is_some() {
            return Ok(unchanged.describe(&wanted.reference));
        }
        let active = &current.manifest;
        match registry.head(&reference) {
            Ok(Some(digest)) if digest == *active => {
                return Ok(unchanged.describe(&wanted.reference));
            }
            Ok(_) => {}
            Err(error) => return Err(format!("{error}; nothing changed (active: {active})").into()),
        }
    }
    let outcome = activate::activate(store, &wanted.reference, registry, verify.as_ref())?;
    Ok(outcome.describe(&wanted.reference))
}

/// The policies of a plexus configuration file (a `.conflist` holding the plexus
/// plugin, or the plugin's own `.conf`) and of the plexus-ipam delegates in its
/// `networksDir`, each once.
pub(super) fn configured(path: &Path) -> Result<Vec<Configured>, CliError> {
    let bytes = fs::read(path).map_err(|error| format!("{}: {error}", path.display()))?;
    let document: Value =
        serde_json::from_slice(&bytes).map_err(|error| format!("{}: {error}", path.display()))?;
    let plugin = plugin_entry(&document, "plexus")
        .ok_or_else(|| format!("{}: no plugin of type plexus in it", path.display()))?;
    let plugin_bytes = serde_json::to_vec(&plugin)?;
    let config = PluginConfig::from_slice(&plugin_bytes)
        .map_err(|error| format!("{}: {error}", path.display()))?;
    let mut found = BTreeMap::new();
    let mut add = |spec: Option<&str>, common: &CommonSettings| {
        if let Some(spec) = spec {
            found.entry(spec.to_owned()).or_insert(Configured {
                spec: spec.to_owned(),
                state_dir: common.state_dir.clone(),
                verify_key: common.policy_verify_key.clone(),
            });
        }
    };
    add(Some(&config.select), &config.common);
    add(Some(&config.merge), &config.common);
    add(
        config
            .select_canary
            .as_ref()
            .map(|canary| canary.policy.as_str()),
        &config.common,
    );
    add(config.select_shadow.as_deref(), &config.common);
    let delegates = networks::scan(&config.networks_dir)?;
    for network in &delegates.usable {
        for delegate in &network.config.plugins {
            let Some(ipam) = delegate
                .get("ipam")
                .filter(|ipam| ipam.get("type").and_then(Value::as_str) == Some(IPAM_NAME))
            else {
                continue;
            };
            // Only the store and the key are used here, not the time limit's default.
            let common = CommonSettings::read(ipam, "ipam", 1)
                .map_err(|error| format!("network {}: {error}", network.config.name))?;
            add(ipam.get("policy").and_then(Value::as_str), &common);
        }
    }
    Ok(found.into_values().collect())
}

/// The plugin entry of `kind` in a configuration list, or the document itself when it is
/// that plugin's configuration. The list's `cniVersion` and `name` are the entry's.
fn plugin_entry(document: &Value, kind: &str) -> Option<Value> {
    if document.get("type").and_then(Value::as_str) == Some(kind) {
        return Some(document.clone());
    }
    let mut entry = document
        .get("plugins")?
        .as_array()?
        .iter()
        .find(|plugin| plugin.get("type").and_then(Value::as_str) == Some(kind))?
        .clone();
    for key in ["cniVersion", "name"] {
        if let (Some(value), Some(object)) = (document.get(key), entry.as_object_mut()) {
            object.entry(key).or_insert_with(|| value.clone());
        }
    }
    Some(entry)
}
