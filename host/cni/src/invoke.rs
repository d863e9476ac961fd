//! Running a network configuration's plugins, as libcni does for a runtime.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::{
    LEGACY_ATTACHMENTS_KEY, NetworkConfigList, VALID_ATTACHMENTS_KEY, plugin_type,
};
use crate::env::Command;
use crate::exec::{DelegateError, DelegateErrorKind, PluginRequest, Runner, exec_plugin};
use crate::result::CniResult;
use crate::version::CniVersion;

/// The per-attachment parameters of a delegate call.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RuntimeConf {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`; may be `None` for DEL.
    pub netns: Option<String>,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS`.
    pub args: Vec<(String, String)>,
    /// Capability arguments (e.g. `ips`, `mac`, `portMappings`, pod
    /// annotations); each plugin gets those its `capabilities` declare.
    pub capability_args: Map<String, Value>,
    /// Merged into each plugin's `args.cni` (the Multus `cni-args` convention).
    pub cni_args: Option<Map<String, Value>>,
}

impl RuntimeConf {
    fn request<'a>(&'a self, command: Command, runner: Runner<'a>) -> PluginRequest<'a> {
        PluginRequest {
            command,
            container_id: Some(&self.container_id),
            netns: self.netns.as_deref(),
            ifname: Some(&self.ifname),
            args: &self.args,
            runner,
        }
    }
}

/// A plugin's object with the list's `name` and `cniVersion`, which every
/// request configuration carries.
fn base_config(list: &NetworkConfigList, plugin: &Map<String, Value>) -> Map<String, Value> {
    let mut conf = plugin.clone();
    conf.insert("name".into(), list.name.clone().into());
    conf.insert("cniVersion".into(), list.cni_version.as_str().into());
    conf
}

/// The exact configuration sent to plugin `index` of `list` for ADD, DEL or
/// CHECK, or `None` if there is no such plugin. It is the plugin's object
/// plus:
/// - `name` and `cniVersion` from the list;
/// - `runtimeConfig`: the capability arguments whose key the plugin's
///   `capabilities` sets to `true` (replacing any written one; left out
///   when empty), the libcni rule;
/// - `args.cni`: `rt.cni_args` merged over whatever the plugin's `args.cni`
///   already holds;
/// - `prevResult`: `prev_result` printed in the list's version, when given.
pub fn plugin_config(
    list: &NetworkConfigList,
    index: usize,
    rt: &RuntimeConf,
    prev_result: Option<&CniResult>,
) -> Option<Value> {
    let plugin = list.plugins.get(index)?;
    Some(Value::Object(attachment_config(
        list,
        plugin,
        rt,
        prev_result,
    )))
}

/// [`plugin_config`] for a plugin object of `list`.
fn attachment_config(
    list: &NetworkConfigList,
    plugin: &Map<String, Value>,
    rt: &RuntimeConf,
    prev_result: Option<&CniResult>,
) -> Map<String, Value> {
    let mut conf = base_config(list, plugin);

    let runtime_config: Map<String, Value> = plugin
        .get("capabilities")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(_, enabled)| enabled.as_bool() == Some(true))
        .filter_map(|(cap, _)| Some((cap.clone(), rt.capability_args.get(cap)?.clone())))
        .collect();
    if !runtime_config.is_empty() {
        conf.insert("runtimeConfig".into(), runtime_config.into());
    }

    if let Some(cni_args) = &rt.cni_args {
        let args = object_entry(&mut conf, "args");
        object_entry(args, "cni").extend(cni_args.clone());
    }

    if let Some(prev) = prev_result {
        conf.insert("prevResult".into(), prev.to_json(list.cni_version));
    }
    conf
}

/// `map[key]` as an object, replacing whatever non-object was there.
fn object_entry<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = map
        .entry(key)
        .and_modify(|v| {
            if !v.is_object() {
                *v = Value::Object(Map::new());
            }
        })
        .or_insert_with(|| Value::Object(Map::new()));
    match slot {
        Value::Object(m) => m,
        _ => unreachable!("the slot was just made an object"),
    }
}

/// ADD: runs the plugins in order, each given the previous one's result as
/// `prevResult`, and returns the last one's result.
pub fn add_list(
    list: &NetworkConfigList,
    rt: &RuntimeConf,
    runner: Runner<'_>,
) -> Result<CniResult, DelegateError> {
    let mut last: Option<CniResult> = None;
    for plugin in &list.plugins {
        let out = run_one(list, plugin, rt, runner, Command::Add, last.as_ref())?;
        last = Some(parse_result(plugin_type(plugin), &out, list.cni_version)?);
    }
    tracing::debug!(network = %list.name, ifname = %rt.ifname, "delegate ADD done");
    Ok(last.unwrap_or_default())
}

/// A plugin's ADD output. A missing or empty `cniVersion` is taken to be
/// the config's, as libcni does for plugins that leave it out.
fn parse_result(
    plugin: &str,
    stdout: &[u8],
    version: CniVersion,
) -> Result<CniResult, DelegateError> {
    let bad = |reason: String| DelegateError::new(plugin, DelegateErrorKind::BadOutput { reason });
    let mut value: Value =
        serde_json::from_slice(stdout).map_err(|e| bad(format!("ADD output is not JSON: {e}")))?;
    if let Some(obj) = value.as_object_mut() {
        let has_version = obj
            .get("cniVersion")
            .and_then(Value::as_str)
            .is_some_and(|v| !v.is_empty());
        if !has_version {
            obj.insert("cniVersion".into(), version.as_str().into());
        }
    }
    CniResult::from_json(&value).map_err(|e| bad(e.to_string()))
}

/// DEL: runs the plugins in reverse order, every one of them even when an
/// earlier one fails (a failing `portmap` must not keep the IPAM of the plugin
/// before it from releasing its address); the first failure is returned, the
/// others logged. `prev_result` (the ADD's final result) is passed as
/// `prevResult` only from 0.4.0 on, the version that introduced it for DEL.
pub fn del_list(
    list: &NetworkConfigList,
    rt: &RuntimeConf,
    runner: Runner<'_>,
    prev_result: Option<&CniResult>,
) -> Result<(), DelegateError> {
    let prev = prev_result.filter(|_| list.cni_version >= CniVersion::V0_4_0);
    let mut first_failure = None;
    for plugin in list.plugins.iter().rev() {
        if let Err(error) = run_one(list, plugin, rt, runner, Command::Del, prev) {
            tracing::warn!(network = %list.name, %error, "delegate DEL failed; going on with the rest of the list");
            first_failure.get_or_insert(error);
        }
    }
    first_failure.map_or(Ok(()), Err)
}

/// CHECK: runs the plugins in order with the ADD's final result as
/// `prevResult`. Succeeds without running anything before 0.4.0 (which has
/// no CHECK) or when the list sets `disableCheck`.
pub fn check_list(
    list: &NetworkConfigList,
    rt: &RuntimeConf,
    runner: Runner<'_>,
    prev_result: &CniResult,
) -> Result<(), DelegateError> {
    if list.cni_version < CniVersion::V0_4_0 || list.disable_check {
        return Ok(());
    }
    for plugin in &list.plugins {
        run_one(list, plugin, rt, runner, Command::Check, Some(prev_result))?;
    }
    Ok(())
}

/// Runs `command` on `plugin` of `list` for the attachment `rt`.
fn run_one(
    list: &NetworkConfigList,
    plugin: &Map<String, Value>,
    rt: &RuntimeConf,
    runner: Runner<'_>,
    command: Command,
    prev: Option<&CniResult>,
) -> Result<Vec<u8>, DelegateError> {
    let conf = Value::Object(attachment_config(list, plugin, rt, prev));
    exec_plugin(
        plugin_type(plugin),
        &rt.request(command, runner),
        conf.to_string().as_bytes(),
    )
}

/// GC: runs every plugin with `cni.dev/valid-attachments` (and libcni's
/// legacy `cni.dev/attachments`) listing `(containerID, ifname)` pairs still
/// in use. Unlike the other commands it continues past failures, as the
/// specification asks, and returns all of them. Succeeds without running
/// anything before 1.1.0 or when the list sets `disableGC`.
pub fn gc_list(
    list: &NetworkConfigList,
    runner: Runner<'_>,
    valid_attachments: &[(String, String)],
) -> Result<(), Vec<DelegateError>> {
    if list.cni_version < CniVersion::V1_1_0 || list.disable_gc {
        return Ok(());
    }
    let attachments: Value = valid_attachments
        .iter()
        .map(|(id, ifname)| serde_json::json!({"containerID": id, "ifname": ifname}))
        .collect();
    let errors: Vec<DelegateError> = list
        .plugins
        .iter()
        .filter_map(|plugin| {
            let mut conf = base_config(list, plugin);
            conf.insert(VALID_ATTACHMENTS_KEY.into(), attachments.clone());
            conf.insert(LEGACY_ATTACHMENTS_KEY.into(), attachments.clone());
            run_global(list, plugin, Command::Gc, runner, conf).err()
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// STATUS: asks every plugin whether it can service ADD, stopping at the
/// first that cannot. Succeeds without running anything before 1.1.0.
pub fn status_list(list: &NetworkConfigList, runner: Runner<'_>) -> Result<(), DelegateError> {
    if list.cni_version < CniVersion::V1_1_0 {
        return Ok(());
    }
    for plugin in &list.plugins {
        run_global(
            list,
            plugin,
            Command::Status,
            runner,
            base_config(list, plugin),
        )?;
    }
    Ok(())
}

/// Runs a command that concerns no attachment: only `CNI_COMMAND` and
/// `CNI_PATH` are set.
fn run_global(
    list: &NetworkConfigList,
    plugin: &Map<String, Value>,
    command: Command,
    runner: Runner<'_>,
    conf: Map<String, Value>,
) -> Result<Vec<u8>, DelegateError> {
    tracing::debug!(network = %list.name, %command, "delegate network command");
    let req = PluginRequest::global(command, runner);
    exec_plugin(
        plugin_type(plugin),
        &req,
        Value::Object(conf).to_string().as_bytes(),
    )
}

/// Runs VERSION on plugin `plugin_type` and returns its `supportedVersions`.
pub fn plugin_versions(
    plugin_type: &str,
    runner: Runner<'_>,
) -> Result<Vec<String>, DelegateError> {
    let req = PluginRequest::global(Command::Version, runner);
    let stdin = serde_json::json!({"cniVersion": CniVersion::LATEST.as_str()}).to_string();
    let out = exec_plugin(plugin_type, &req, stdin.as_bytes())?;
    let bad =
        |reason: String| DelegateError::new(plugin_type, DelegateErrorKind::BadOutput { reason });
    let value: Value = serde_json::from_slice(&out)
        .map_err(|e| bad(format!("VERSION output is not JSON: {e}")))?;
    value
        .get("supportedVersions")
        .and_then(Value::as_array)
        .and_then(|list| list.iter().map(|v| v.as_str().map(str::to_owned)).collect())
        .ok_or_else(|| bad("VERSION output has no supportedVersions list of strings".into()))
}

#[cfg(test)]
mod tests;
