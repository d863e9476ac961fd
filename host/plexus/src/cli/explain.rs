//! `plexus explain`: what the configured selection would give a described pod — the
//! networks, interface names and delegate configuration files — touching nothing: no
//! namespace, no delegate, no state, no cache; no root needed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use plexus_cni::{CniVersion, Command, Invocation};
use plexus_policy::{PolicyRuntime, Selector};
use serde_json::{Map, Value, json};

use super::{CliError, CliResult};
use crate::config::PluginConfig;
use crate::networks;
use crate::pod;
use crate::policy_io;
use crate::selection::{self, load_policy};

#[derive(Args)]
pub struct ExplainArgs {
    /// The plexus configuration: a conflist holding a `plexus` (or `genie`) plugin, or
    /// that plugin's entry alone.
    #[arg(long)]
    config: PathBuf,
    /// The pod's namespace.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// The pod's name.
    #[arg(long, default_value = "pod")]
    name: String,
    /// An annotation of the pod, `KEY=VALUE`; repeat for more.
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    annotations: Vec<String>,
    /// `CNI_IFNAME` as the runtime would pass it.
    #[arg(long, default_value = "eth0")]
    ifname: String,
    /// Print the attachments as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &ExplainArgs) -> CliResult {
    let config = plugin_config(&args.config)?;
    if !config.declares_pod_annotations() {
        eprintln!("warning: {}", pod::missing_capability());
    }
    let networks = networks::scan(&config.networks_dir)?;
    let invocation = described_pod(args)?;
    let request = policy_io::select_request(&invocation, &config, &networks)?;
    let runtime = PolicyRuntime::new(None, config.common.policy_limits)?;
    let (selector, _): (Selector, _) =
        load_policy(&runtime, &config.common, None, "select", &config.select)?;
    let chosen = selector.select(&runtime, &request)?;

    networks.check_chosen(&chosen)?;
    let planned = selection::check(&selector, &config, &networks.usable, chosen)?;
    let attachments: Vec<Value> = planned
        .iter()
        .map(|planned| {
            let (network, attachment) = (planned.network, &planned.attachment);
            let plugins: Vec<&str> = network
                .config
                .plugins
                .iter()
                .map(plexus_cni::plugin_type)
                .collect();
            json!({
                "ifname": attachment.ifname,
                "network": network.config.name,
                "file": config.networks_dir.join(&network.file),
                "plugins": plugins,
                "ips": attachment.ips,
                "mac": attachment.mac,
                "cniArgs": planned.cni_args,
                "defaultRoute": attachment.default_route,
            })
        })
        .collect();
    if args.json {
        let text = serde_json::to_string_pretty(&attachments)?;
        println!("{text}");
    } else {
        println!(
            "pod {}/{} with {} ({}):",
            args.namespace,
            args.name,
            config.select,
            selector.sha256()
        );
        for attachment in &attachments {
            println!(
                "  {:<15} {:<20} {} [{}]",
                attachment["ifname"].as_str().unwrap_or_default(),
                attachment["network"].as_str().unwrap_or_default(),
                attachment["file"].as_str().unwrap_or_default(),
                attachment["plugins"]
                    .as_array()
                    .map(|plugins| {
                        plugins
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(" → ")
                    })
                    .unwrap_or_default(),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The plexus plugin's configuration as the runtime would hand it over: from a conflist,
/// the plugin entry with the list's `cniVersion` and `name`, as libcni injects them.
fn plugin_config(path: &Path) -> Result<PluginConfig, CliError> {
    let text = std::fs::read(path).map_err(|err| format!("{}: {err}", path.display()))?;
    let mut document: Value =
        serde_json::from_slice(&text).map_err(|err| format!("{}: {err}", path.display()))?;
    if let Some(plugins) = document.get("plugins").and_then(Value::as_array) {
        let entry = plugins
            .iter()
            .find(|plugin| matches!(plugin["type"].as_str(), Some("plexus" | "genie")))
            .ok_or_else(|| format!("{} has no plexus plugin", path.display()))?;
        let mut entry = entry.clone();
        for key in ["cniVersion", "name"] {
            if let Some(value) = document.get(key) {
                entry[key] = value.clone();
            }
        }
        document = entry;
    }
    if document.get("cniVersion").is_none() {
        document["cniVersion"] = json!(CniVersion::LATEST.as_str());
    }
    Ok(PluginConfig::from_slice(document.to_string().as_bytes())
        .map_err(|err| format!("{}: {err}", path.display()))?)
}

/// The invocation a runtime would make for the described pod, annotations in `K8S_ANNOT`.
fn described_pod(args: &ExplainArgs) -> Result<Invocation, CliError> {
    let mut annotations = Map::new();
    for pair in &args.annotations {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("--annotation {pair:?} is not KEY=VALUE"))?;
        annotations.insert(key.to_owned(), Value::from(value));
    }
    let pod_args = vec![
        ("K8S_POD_NAMESPACE".to_owned(), args.namespace.clone()),
        ("K8S_POD_NAME".to_owned(), args.name.clone()),
        (
            "K8S_ANNOT".to_owned(),
            Value::Object(annotations).to_string(),
        ),
    ];
    Ok(Invocation {
        command: Command::Add,
        container_id: Some("explain".to_owned()),
        netns: None,
        ifname: Some(args.ifname.clone()),
        raw_args: plexus_cni::format_cni_args(&pod_args),
        args: pod_args,
        path: Vec::new(),
    })
}
