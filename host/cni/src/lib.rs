//! The CNI protocol: versions, configs, results, errors, environment and
//! delegate execution.
//!
//! This crate speaks CNI 0.3.0 to 1.1.0 as both a plugin (reading its own
//! invocation, printing results and errors) and a runtime (running delegate
//! plugins the way libcni does). It knows nothing of network namespaces or
//! WebAssembly.

pub mod config;
pub mod env;
pub mod error;
pub mod exec;
pub mod invoke;
mod json;
pub mod result;
#[cfg(test)]
mod testutil;
pub mod version;

pub use config::{ConfigError, NetworkConfigList, parse_valid_attachments, plugin_type};
pub use env::{
    Command, EnvError, Invocation, format_cni_args, parse_cni_args, validate_container_id,
    validate_ifname, validate_network_name,
};
pub use error::{CniError, code};
pub use exec::{
    DelegateError, DelegateErrorKind, MAX_OUTPUT_BYTES, PluginRequest, Runner, exec_plugin,
    find_plugin, validate_plugin_type,
};
pub use invoke::{
    RuntimeConf, add_list, check_list, del_list, gc_list, plugin_config, plugin_versions,
    status_list,
};
pub use json::FieldError;
pub use result::{CniResult, Dns, Interface, IpConfig, ResultError, Route, parse_cidr};
pub use version::{CniVersion, VersionError, version_result};
