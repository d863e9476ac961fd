//! The delegate networks available on this node: the configurations in `networksDir`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use plexus_cni::NetworkConfigList;
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
}

/// One delegate network configuration file.
#[derive(Debug, Clone)]
pub struct Network {
    /// The file name inside `networksDir`: what attachments refer to.
    pub file: String,
    pub config: NetworkConfigList,
}

/// The delegate networks in `dir`, sorted by file name as libcni orders them.
///
/// A file that does not parse is skipped with a warning rather than failing every pod on
/// the node: an operator editing one network must not take the others down. Choosing the
/// broken network still fails, because it is not in the list.
pub fn scan(dir: &Path) -> Result<Vec<Network>, NetworksError> {
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
    Ok(files.iter().filter_map(|path| load(path)).collect())
}

fn is_config_file(path: &Path) -> bool {
    path.is_file()
        && path
            .extension()
            .and_then(|ext| ext.to_str())
            .is_some_and(|ext| CONFIG_EXTENSIONS.contains(&ext))
}

fn load(path: &Path) -> Option<Network> {
    let file = path.file_name()?.to_str()?.to_owned();
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) => {
            warn!(file, %err, "skipping unreadable network configuration");
            return None;
        }
    };
    match NetworkConfigList::from_slice(&bytes, &file) {
        Ok(config) if is_meta_plugin(&config) => None,
        Ok(config) => Some(Network { file, config }),
        Err(err) => {
            warn!(file, %err, "skipping invalid network configuration");
            None
        }
    }
}

fn is_meta_plugin(config: &NetworkConfigList) -> bool {
    config.plugins.iter().any(|plugin| {
        plugin
            .get("type")
            .and_then(|kind| kind.as_str())
            .is_some_and(|kind| META_PLUGIN_TYPES.contains(&kind))
    })
}
