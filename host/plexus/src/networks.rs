//! The delegate networks available on this node: the configurations in `networksDir`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use plexus_cni::NetworkConfigList;
use plexus_policy::types::Attachment;
use serde_json::Value;
use tracing::warn;

/// Plugin types that mean "this file configures a meta-plugin", never a delegate network.
const META_PLUGIN_TYPES: [&str; 2] = ["plexus", "genie"];
const CONFIG_EXTENSIONS: [&str; 3] = ["conf", "conflist", "json"];

#[derive(Debug, thiserror::Error)]
pub enum NetworksError {
    #[error("cannot read networksDir {dir}: {source}")]
    ReadDir {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("network file {} cannot be used: {reason}", dir.join(file).display())]
    Broken {
        file: String,
        dir: PathBuf,
        reason: String,
    },
}

/// One delegate network configuration file.
#[derive(Debug, Clone)]
pub struct Network {
    /// The file name inside `networksDir`: what attachments refer to.
    pub file: String,
    pub config: NetworkConfigList,
}

/// A configuration file in `networksDir` that cannot be read or parsed.
#[derive(Debug, Clone)]
pub struct BrokenNetwork {
    pub file: String,
    /// Its `name`, when the file is a JSON object that has one.
    pub name: Option<String>,
    /// Why it cannot be used: the read or parse error.
    pub reason: String,
}

/// The configuration files of `networksDir`, sorted by file name as libcni orders them.
#[derive(Debug, Clone, Default)]
pub struct Networks {
    pub dir: PathBuf,
    /// The delegate networks pods can get.
    pub usable: Vec<Network>,
    /// The files that do not parse. They do not fail the pods that never ask for them
    /// (an operator editing one network must not take the others down), but a pod that
    /// chooses one is told which file is broken and why, never that its network does not
    /// exist.
    pub broken: Vec<BrokenNetwork>,
}

impl Networks {
    /// Refuses a selection that chose a broken network file, naming the file and its
    /// parse error.
    pub fn check_chosen(&self, chosen: &[Attachment]) -> Result<(), NetworksError> {
        let broken = chosen.iter().find_map(|attachment| {
            self.broken
                .iter()
                .find(|broken| broken.file == attachment.network_file)
        });
        match broken {
            Some(broken) => Err(NetworksError::Broken {
                file: broken.file.clone(),
                dir: self.dir.clone(),
                reason: broken.reason.clone(),
            }),
            None => Ok(()),
        }
    }
}

/// The delegate networks in `dir`, and the files there that do not parse (each logged
/// once, here).
pub fn scan(dir: &Path) -> Result<Networks, NetworksError> {
    let entries = fs::read_dir(dir).map_err(|source| NetworksError::ReadDir {
        dir: dir.to_owned(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| is_config_file(path))
        .collect();
    files.sort();
    let mut networks = Networks {
        dir: dir.to_owned(),
        ..Networks::default()
    };
    for path in &files {
        match load(path) {
            Loaded::Delegate(network) => networks.usable.push(network),
            Loaded::MetaPlugin => {}
            Loaded::Broken(broken) => {
                warn!(file = %broken.file, error = %broken.reason, "network configuration cannot be used; pods that choose it fail");
                networks.broken.push(broken);
            }
        }
    }
    Ok(networks)
}

fn is_config_file(path: &Path) -> bool {
    path.is_file()
        && path
            .extension()
            .and_then(|ext| ext.to_str())
            .is_some_and(|ext| CONFIG_EXTENSIONS.contains(&ext))
}

/// What one file in `networksDir` turned out to be.
enum Loaded {
    Delegate(Network),
    /// Plexus's own configuration, or CNI-Genie's: never a delegate.
    MetaPlugin,
    Broken(BrokenNetwork),
}

fn load(path: &Path) -> Loaded {
    let file = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let broken = |name: Option<String>, reason: String| {
        Loaded::Broken(BrokenNetwork {
            file: file.clone(),
            name,
            reason,
        })
    };
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) => return broken(None, format!("cannot read it: {err}")),
    };
    match NetworkConfigList::from_slice(&bytes, &file) {
        Ok(config) if is_meta_plugin(&config) => Loaded::MetaPlugin,
        Ok(config) => Loaded::Delegate(Network { file, config }),
        Err(err) => {
            let document: Option<Value> = serde_json::from_slice(&bytes).ok();
            if document.as_ref().is_some_and(declares_meta_plugin) {
                return Loaded::MetaPlugin;
            }
            // Pods may ask for the network by the name it still declares.
            let name = document
                .as_ref()
                .and_then(|document| document.get("name")?.as_str())
                .map(str::to_owned);
            broken(name, err.to_string())
        }
    }
}

/// Whether a document that does not validate as a network still says it configures a
/// meta-plugin (a CNI-Genie configuration with keys of its own).
fn declares_meta_plugin(document: &Value) -> bool {
    let is_meta = |plugin: &Value| {
        plugin
            .get("type")
            .and_then(Value::as_str)
            .is_some_and(|kind| META_PLUGIN_TYPES.contains(&kind))
    };
    is_meta(document)
        || document
            .get("plugins")
            .and_then(Value::as_array)
            .is_some_and(|plugins| plugins.iter().any(is_meta))
}

fn is_meta_plugin(config: &NetworkConfigList) -> bool {
    config.plugins.iter().any(|plugin| {
        plugin
            .get("type")
            .and_then(|kind| kind.as_str())
            .is_some_and(|kind| META_PLUGIN_TYPES.contains(&kind))
    })
}
