//! The meta-plugin's own configuration: the plugin entry a runtime hands Plexus on stdin.

use std::path::{Path, PathBuf};
use std::time::Duration;

use plexus_cni::CniVersion;
use plexus_policy::Limits;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::state::StateLayout;

/// Where the pod's annotations arrive when the runtime declares the capability.
pub const POD_ANNOTATIONS_CAPABILITY: &str = "io.kubernetes.cri.pod-annotations";
/// The annotation that makes a pod a virtual-machine pod under `vm.mode: annotation`
/// (with the value `"true"`).
pub const VM_ANNOTATION: &str = "plexus.io/vm";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("the network configuration on stdin is not valid JSON: {0}")]
    Decode(#[source] serde_json::Error),
    /// A key named in the code.
    #[error("configuration key `{key}`: {reason}")]
    Key { key: &'static str, reason: String },
    /// A key whose name is made at run time: the path to a wrongly typed value, or a
    /// shared key under its prefix (`ipam.stateDir`).
    #[error("configuration key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
    #[error("configuration key `cniVersion`: {0}")]
    Version(#[source] plexus_cni::VersionError),
}

/// The validated meta-plugin configuration.
#[derive(Debug, Clone)]
pub struct PluginConfig {
    /// The version the caller speaks; results and errors are printed in it.
    pub cni_version: CniVersion,
    pub networks_dir: PathBuf,
    pub default_networks: Vec<String>,
    pub select: String,
    pub merge: String,
    /// `selectCanary`: a candidate selection policy deciding for a share of the pods.
    pub select_canary: Option<Canary>,
    /// `selectShadow`: a candidate selection policy run beside `select` on every ADD,
    /// whose differing answers are recorded under `recordDir`, never acted on.
    pub select_shadow: Option<String>,
    /// `policyConfig`, handed to every policy as JSON text.
    pub policy_config: String,
    pub parallel: bool,
    /// `stateDir`, `logFile`, `logLevel` and the policy limits.
    pub common: CommonSettings,
    /// The most attachments one pod may get.
    pub max_attachments: usize,
    /// Where policy calls are recorded for replay; `None` records nothing.
    pub record_dir: Option<PathBuf>,
    /// The bound of one recording file before it is rotated.
    pub record_max_bytes: u64,
    /// `vm`: which pods are VM pods, and what their NICs get.
    pub vm: VmSettings,
    /// `delegateTimeoutSeconds`: the bound of one delegate call.
    pub delegate_timeout: Duration,
    /// `runtimeConfig` as the runtime filled it in (capability arguments).
    pub runtime_config: Map<String, Value>,
    /// The configuration as given, for the keys only one command reads (GC's list of
    /// valid attachments).
    pub document: Value,
}

/// The keys as written; CNI-Genie's names are accepted as aliases and unknown keys ignored,
/// so an existing Genie config keeps working.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConfig {
    cni_version: Option<String>,
    networks_dir: Option<PathBuf>,
    default_networks: Option<NetworkList>,
    #[serde(rename = "default_plugin")]
    genie_default_plugin: Option<NetworkList>,
    select: Option<String>,
    merge: Option<String>,
    /// Checked by hand (`canary_settings`) so that a bad value names
    /// `selectCanary.percent` or `selectCanary.policy`.
    select_canary: Option<Value>,
    select_shadow: Option<String>,
    policy_config: Option<Value>,
    #[serde(default)]
    parallel: bool,
    max_attachments: Option<usize>,
    record_dir: Option<PathBuf>,
    #[serde(rename = "recordMaxMiB")]
    record_max_mib: Option<u64>,
    /// Checked by hand (`vm_settings`) so that a bad value is reported as `vm.mode` or
    /// `vm.leaseSeconds`.
    vm: Option<Value>,
    delegate_timeout_seconds: Option<u64>,
    #[serde(default)]
    runtime_config: Map<String, Value>,
}

/// The keys `plexus` and `plexus-ipam` both read, as written: at the top of plexus's
/// configuration, in the `ipam` object of plexus-ipam's. Unknown keys are ignored, so
/// they are read from the same object as the plugin's own keys, in a pass of their own.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CommonKeys {
    state_dir: Option<PathBuf>,
    log_file: Option<PathBuf>,
    log_level: Option<String>,
    policy_timeout_ms: Option<u64>,
    #[serde(rename = "policyMemoryMiB")]
    policy_memory_mib: Option<usize>,
    policy_verify_key: Option<PathBuf>,
}

/// The validated keys both plugins share.
#[derive(Debug, Clone)]
pub struct CommonSettings {
    pub state_dir: PathBuf,
    pub log_file: Option<PathBuf>,
    pub log_level: String,
    /// `policyTimeoutMs` and `policyMemoryMiB`.
    pub policy_limits: Limits,
    /// `policyVerifyKey`: the public key every `oci://` policy must have been verified
    /// with when it was pulled.
    pub policy_verify_key: Option<PathBuf>,
}

impl CommonSettings {
    /// The paths under `stateDir`.
    pub fn state_layout(&self) -> StateLayout {
        StateLayout::new(&self.state_dir)
    }

    /// Reads the shared keys of `object`, which errors name under `prefix` (`""` for the
    /// top level). Only the policy time limit's default differs between the plugins.
    pub fn read(
        object: &Value,
        prefix: &str,
        default_policy_timeout_ms: u64,
    ) -> Result<Self, ConfigError> {
        let raw: CommonKeys = typed(object.clone(), prefix)?;
        let key = |name: &str| match prefix {
            "" => name.to_owned(),
            prefix => format!("{prefix}.{name}"),
        };
        let state_dir = raw.state_dir.unwrap_or_else(|| DEFAULT_STATE_DIR.into());
        check_absolute(&key("stateDir"), &state_dir)?;
        if let Some(log_file) = &raw.log_file {
            check_absolute(&key("logFile"), log_file)?;
        }
        if let Some(verify_key) = &raw.policy_verify_key {
            check_absolute(&key("policyVerifyKey"), verify_key)?;
        }
        let policy_timeout_ms = at_least_one(
            &key("policyTimeoutMs"),
            raw.policy_timeout_ms,
            default_policy_timeout_ms,
        )?;
        let policy_memory_mib = at_least_one(
            &key("policyMemoryMiB"),
            raw.policy_memory_mib,
            DEFAULT_POLICY_MEMORY_MIB,
        )?;
        Ok(Self {
            state_dir,
            log_file: raw.log_file,
            log_level: raw.log_level.unwrap_or_else(|| DEFAULT_LOG_LEVEL.into()),
            policy_limits: Limits {
                timeout: Duration::from_millis(policy_timeout_ms),
                memory_bytes: policy_memory_mib.saturating_mul(1 << 20),
            },
            policy_verify_key: raw.policy_verify_key,
        })
    }
}

/// `vm.mode`: which pods Plexus treats as virtual-machine pods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum VmMode {
    /// None (the default).
    #[default]
    Never,
    /// Those annotated `plexus.io/vm: "true"`.
    Annotation,
    /// Every pod.
    Always,
}

impl VmMode {
    /// Whether a pod with these annotations is a virtual-machine pod.
    pub fn is_vm_pod(self, annotations: &[(String, String)]) -> bool {
        match self {
            VmMode::Never => false,
            VmMode::Annotation => annotations
                .iter()
                .any(|(key, value)| key == VM_ANNOTATION && value == "true"),
            VmMode::Always => true,
        }
    }
}

/// The lease time of a VM NIC when `vm.leaseSeconds` does not say: an hour, so that a
/// VM renews rarely but notices within the hour that its server is gone.
const DEFAULT_VM_LEASE_SECS: u32 = 3600;

/// The most queues one tap can have (the kernel's `MAX_TAP_QUEUES`).
pub const MAX_VM_QUEUES: u16 = 256;

/// What `vm` configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmSettings {
    /// `vm.mode`: which pods are virtual-machine pods.
    pub mode: VmMode,
    /// `vm.leaseSeconds`: the lease time DHCP gives a VM pod's NICs.
    pub lease_secs: u32,
    /// `vm.queues`: the queues per VM NIC the VM runtime opens; above 1 the taps are
    /// made multiqueue.
    pub queues: u16,
    /// `vm.tapOwner`: the user who may open a VM pod's taps without `CAP_NET_ADMIN`.
    pub tap_owner: Option<u32>,
    /// `vm.tapGroup`: the group whose members may, likewise.
    pub tap_group: Option<u32>,
}

/// `vm` is `{"mode": "never" | "annotation" | "always", "leaseSeconds": N, "queues": N,
/// "tapOwner": UID, "tapGroup": GID}`; absent (or without a key) it is `never`, an hour,
/// one queue and taps only root opens. Other keys in it are ignored, like unknown keys
/// anywhere.
/// `selectCanary`: `{"policy": REF, "percent": 0..=100}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canary {
    pub policy: String,
    /// The share of pods, by UID, whose networks the canary chooses.
    pub percent: u8,
}

fn canary_settings(canary: Option<&Value>) -> Result<Option<Canary>, ConfigError> {
    let canary = match canary {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(canary)) => canary,
        Some(other) => {
            return Err(ConfigError::Key {
                key: "selectCanary",
                reason: format!(
                    "must be an object such as {{\"policy\": \"/etc/cni/policies/next.wasm\", \"percent\": 10}}, not {other}"
                ),
            });
        }
    };
    let policy = match canary.get("policy") {
        Some(Value::String(policy)) => policy.clone(),
        other => {
            return Err(ConfigError::Key {
                key: "selectCanary.policy",
                reason: format!(
                    "must be the candidate policy (a path, builtin:NAME), not {}",
                    other.unwrap_or(&Value::Null)
                ),
            });
        }
    };
    let percent = canary.get("percent");
    let percent = percent
        .and_then(Value::as_u64)
        .and_then(|percent| u8::try_from(percent).ok())
        .filter(|percent| *percent <= 100)
        .ok_or_else(|| ConfigError::Key {
            key: "selectCanary.percent",
            reason: format!(
                "{} is not between 0 and 100",
                percent.unwrap_or(&Value::Null)
            ),
        })?;
    Ok(Some(Canary { policy, percent }))
}

fn vm_settings(vm: Option<&Value>) -> Result<VmSettings, ConfigError> {
    let vm = match vm {
        None | Some(Value::Null) => None,
        Some(Value::Object(vm)) => Some(vm),
        Some(other) => {
            return Err(ConfigError::Key {
                key: "vm",
                reason: format!(
                    "must be an object such as {{\"mode\": \"annotation\"}}, not {other}"
                ),
            });
        }
    };
    let mode = match vm.and_then(|vm| vm.get("mode")) {
        None => VmMode::Never,
        Some(mode) => match mode.as_str() {
            Some("never") => VmMode::Never,
            Some("annotation") => VmMode::Annotation,
            Some("always") => VmMode::Always,
            _ => {
                return Err(ConfigError::Key {
                    key: "vm.mode",
                    reason: format!("must be \"never\", \"annotation\" or \"always\", not {mode}"),
                });
            }
        },
    };
    let lease_secs = match vm.and_then(|vm| vm.get("leaseSeconds")) {
        None => DEFAULT_VM_LEASE_SECS,
        // DHCP's lease time is 32 bits, 0xffffffff meaning infinite; 0 is no lease.
        Some(secs) => secs
            .as_u64()
            .and_then(|secs| u32::try_from(secs).ok())
            .filter(|secs| *secs > 0)
            .ok_or_else(|| ConfigError::Key {
                key: "vm.leaseSeconds",
                reason: format!(
                    "must be a whole number of seconds from 1 to {} (infinite), not {secs}",
                    u32::MAX
                ),
            })?,
    };
    let queues = match vm.and_then(|vm| vm.get("queues")) {
        None => 1,
        Some(queues) => queues
            .as_u64()
            .and_then(|queues| u16::try_from(queues).ok())
            .filter(|queues| (1..=MAX_VM_QUEUES).contains(queues))
            .ok_or_else(|| ConfigError::Key {
                key: "vm.queues",
                reason: format!(
                    "must be a whole number of queues per NIC from 1 to {MAX_VM_QUEUES}, not {queues}"
                ),
            })?,
    };
    Ok(VmSettings {
        mode,
        lease_secs,
        queues,
        tap_owner: numeric_id(vm, "vm.tapOwner", "tapOwner", "user")?,
        tap_group: numeric_id(vm, "vm.tapGroup", "tapGroup", "group")?,
    })
}

/// A numeric user or group id under `vm`. Names are not taken: the plugin may run where
/// `/etc/passwd` is not the VM runtime's (a runtime in a container of its own), and the
/// kernel keeps numbers. `u32::MAX` is the kernel's "no id".
fn numeric_id(
    vm: Option<&Map<String, Value>>,
    key: &'static str,
    name: &str,
    kind: &str,
) -> Result<Option<u32>, ConfigError> {
    let Some(value) = vm.and_then(|vm| vm.get(name)) else {
        return Ok(None);
    };
    value
        .as_u64()
        .and_then(|id| u32::try_from(id).ok())
        .filter(|id| *id != u32::MAX)
        .map(Some)
        .ok_or_else(|| ConfigError::Key {
            key,
            reason: format!(
                "must be a numeric {kind} id from 0 to {} (names are not accepted), not {value}",
                u32::MAX - 1
            ),
        })
}

/// A list of network names: a JSON list, or Genie's comma-separated string.
#[derive(Deserialize)]
#[serde(untagged)]
enum NetworkList {
    List(Vec<String>),
    Csv(String),
}

impl NetworkList {
    fn into_names(self) -> Vec<String> {
        match self {
            NetworkList::List(names) => names,
            NetworkList::Csv(csv) => csv
                .split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }
}

pub const DEFAULT_NETWORKS_DIR: &str = "/etc/cni/net.d";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/plexus";
pub const DEFAULT_SELECT: &str = "builtin:annotations";
pub const DEFAULT_MERGE: &str = "builtin:merge-all";
const DEFAULT_POLICY_TIMEOUT_MS: u64 = 500;
const DEFAULT_POLICY_MEMORY_MIB: usize = 64;
const DEFAULT_LOG_LEVEL: &str = "info";
const DEFAULT_RECORD_MAX_MIB: u64 = 16;
/// Long enough for a delegate waiting on a busy API server or IPAM store, short enough
/// that a hung one fails the pod well before the runtime gives up on it (kubelet's CNI
/// calls run under a 4-minute deadline).
const DEFAULT_DELEGATE_TIMEOUT_SECS: u64 = 60;
/// No runtime waits longer for a pod's network than this.
const MAX_DELEGATE_TIMEOUT_SECS: u64 = 3600;
/// Annotations are written by tenants: one pod must not be able to ask for hundreds of
/// delegate runs and addresses. `plexus policy run`/`test`, which have no configuration,
/// hold a selection to this default.
pub const DEFAULT_MAX_ATTACHMENTS: usize = 16;

impl PluginConfig {
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ConfigError> {
        let document = parse_document(bytes)?;
        let raw: RawConfig = typed(document.clone(), "")?;
        Self::from_raw(raw, document)
    }

    fn from_raw(raw: RawConfig, document: Value) -> Result<Self, ConfigError> {
        let cni_version = cni_version(raw.cni_version.as_deref())?;
        let common = CommonSettings::read(&document, "", DEFAULT_POLICY_TIMEOUT_MS)?;
        let default_networks = raw
            .default_networks
            .or(raw.genie_default_plugin)
            .map(NetworkList::into_names)
            .unwrap_or_default();
        let select = raw.select.unwrap_or_else(|| DEFAULT_SELECT.into());
        let merge = raw.merge.unwrap_or_else(|| DEFAULT_MERGE.into());
        let networks_dir = raw
            .networks_dir
            .unwrap_or_else(|| DEFAULT_NETWORKS_DIR.into());
        check_absolute("networksDir", &networks_dir)?;
        if let Some(record_dir) = &raw.record_dir {
            check_absolute("recordDir", record_dir)?;
        }
        let vm = vm_settings(raw.vm.as_ref())?;
        let select_canary = canary_settings(raw.select_canary.as_ref())?;
        if raw.select_shadow.is_some() && raw.record_dir.is_none() {
            return Err(ConfigError::Key {
                key: "selectShadow",
                reason: "needs recordDir: the shadow's differing answers are recorded there".into(),
            });
        }
        let max_attachments = at_least_one(
            "maxAttachments",
            raw.max_attachments,
            DEFAULT_MAX_ATTACHMENTS,
        )?;
        let delegate_timeout_secs = at_least_one(
            "delegateTimeoutSeconds",
            raw.delegate_timeout_seconds,
            DEFAULT_DELEGATE_TIMEOUT_SECS,
        )?;
        if delegate_timeout_secs > MAX_DELEGATE_TIMEOUT_SECS {
            return Err(ConfigError::Key {
                key: "delegateTimeoutSeconds",
                reason: format!(
                    "must be at most {MAX_DELEGATE_TIMEOUT_SECS} (an hour), not {delegate_timeout_secs}"
                ),
            });
        }
        Ok(PluginConfig {
            cni_version,
            networks_dir,
            default_networks,
            select,
            merge,
            select_canary,
            select_shadow: raw.select_shadow,
            policy_config: raw
                .policy_config
                .unwrap_or_else(|| Value::Object(Map::new()))
                .to_string(),
            parallel: raw.parallel,
            common,
            max_attachments,
            record_dir: raw.record_dir,
            record_max_bytes: raw
                .record_max_mib
                .unwrap_or(DEFAULT_RECORD_MAX_MIB)
                .saturating_mul(1 << 20),
            vm,
            delegate_timeout: Duration::from_secs(delegate_timeout_secs),
            runtime_config: raw.runtime_config,
            document,
        })
    }

    /// Whether the configuration declares the capability that makes containerd and CRI-O
    /// pass pod annotations (`capabilities: {"io.kubernetes.cri.pod-annotations": true}`).
    pub fn declares_pod_annotations(&self) -> bool {
        self.document
            .get("capabilities")
            .and_then(|capabilities| capabilities.get(POD_ANNOTATIONS_CAPABILITY))
            .and_then(Value::as_bool)
            == Some(true)
    }

    /// The pod's annotations when the runtime passed them through the capability.
    pub fn runtime_annotations(&self) -> Option<&Map<String, Value>> {
        self.runtime_config
            .get(POD_ANNOTATIONS_CAPABILITY)
            .and_then(Value::as_object)
    }
}

/// Deserializes `value` into `T`: valid JSON of the wrong shape is a configuration error
/// that names its key (under `prefix`).
pub fn typed<T: for<'de> Deserialize<'de>>(value: Value, prefix: &str) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        ConfigError::Invalid {
            key: match (prefix, path.as_str()) {
                ("", ".") => WHOLE_CONFIGURATION.to_owned(),
                (prefix, ".") => prefix.to_owned(),
                ("", path) => path.to_owned(),
                (prefix, path) => format!("{prefix}.{path}"),
            },
            reason: error.into_inner().to_string(),
        }
    })
}

/// How an error about the configuration as a whole names its "key".
const WHOLE_CONFIGURATION: &str = "(the whole configuration)";

/// The `cniVersion` a configuration declares, which must be there and supported.
pub fn cni_version(declared: Option<&str>) -> Result<CniVersion, ConfigError> {
    declared
        .ok_or(ConfigError::Key {
            key: "cniVersion",
            reason: "missing".into(),
        })?
        .parse()
        .map_err(ConfigError::Version)
}

/// `value` (or `default` when absent), which must not be zero.
fn at_least_one<T: Copy + Default + PartialEq>(
    key: &str,
    value: Option<T>,
    default: T,
) -> Result<T, ConfigError> {
    let value = value.unwrap_or(default);
    if value == T::default() {
        return Err(ConfigError::Invalid {
            key: key.to_owned(),
            reason: "must be at least 1".into(),
        });
    }
    Ok(value)
}

/// The configuration on stdin as JSON, which must be an object.
pub fn parse_document(bytes: &[u8]) -> Result<Value, ConfigError> {
    let document: Value = serde_json::from_slice(bytes).map_err(ConfigError::Decode)?;
    if !document.is_object() {
        let kind = match document {
            Value::Array(_) => "an array",
            Value::String(_) => "a string",
            Value::Number(_) => "a number",
            Value::Bool(_) => "a boolean",
            _ => "null",
        };
        return Err(ConfigError::Invalid {
            key: WHOLE_CONFIGURATION.into(),
            reason: format!("must be a JSON object, not {kind}"),
        });
    }
    Ok(document)
}

fn check_absolute(key: &str, path: &Path) -> Result<(), ConfigError> {
    if path.is_absolute() {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            key: key.to_owned(),
            reason: format!("{} is not an absolute path", path.display()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<PluginConfig, ConfigError> {
        PluginConfig::from_slice(json.as_bytes())
    }

    #[test]
    fn defaults_fill_unset_keys() {
        let config = parse(r#"{"cniVersion":"1.1.0","name":"pods","type":"plexus"}"#).unwrap();
        assert_eq!(config.networks_dir, Path::new(DEFAULT_NETWORKS_DIR));
        assert_eq!(config.select, DEFAULT_SELECT);
        assert_eq!(config.merge, DEFAULT_MERGE);
        assert_eq!(config.policy_config, "{}");
        assert!(!config.parallel);
    }

    #[test]
    fn genie_default_plugin_is_an_alias_and_unknown_keys_are_ignored() {
        let config = parse(
            r#"{"cniVersion":"0.3.1","name":"k8s-pod-network","type":"genie",
                "default_plugin":"calico, flannel","log_level":"info",
                "policy":{"type":"k8s"},"kubernetes":{"kubeconfig":"/x"}}"#,
        )
        .unwrap();
        assert_eq!(config.default_networks, ["calico", "flannel"]);
    }

    #[test]
    fn a_wrongly_typed_key_is_named() {
        let err = parse(r#"{"cniVersion":"1.0.0","parallel":"yes"}"#).unwrap_err();
        assert!(err.to_string().contains("`parallel`"), "{err}");
        assert!(
            matches!(err, ConfigError::Invalid { .. }),
            "code 7, not a decode error"
        );
        assert!(matches!(parse("{not json"), Err(ConfigError::Decode(_))));
    }

    #[test]
    fn max_attachments_has_a_floor() {
        assert_eq!(
            parse(r#"{"cniVersion":"1.0.0"}"#).unwrap().max_attachments,
            16
        );
        let err = parse(r#"{"cniVersion":"1.0.0","maxAttachments":0}"#).unwrap_err();
        assert!(err.to_string().contains("maxAttachments"), "{err}");
    }

    #[test]
    fn vm_mode_defaults_to_never_and_reads_each_mode() {
        let mode = |vm: &str| {
            parse(&format!(r#"{{"cniVersion":"1.1.0"{vm}}}"#))
                .unwrap()
                .vm
                .mode
        };
        assert_eq!(mode(""), VmMode::Never);
        assert_eq!(mode(r#","vm":{}"#), VmMode::Never);
        assert_eq!(mode(r#","vm":{"mode":"never"}"#), VmMode::Never);
        assert_eq!(mode(r#","vm":{"mode":"annotation"}"#), VmMode::Annotation);
        assert_eq!(
            mode(r#","vm":{"mode":"always","bridge":"x"}"#),
            VmMode::Always
        );
    }

    #[test]
    fn canary_and_shadow_are_checked_and_name_their_key() {
        let config = parse(
            r#"{"cniVersion":"1.1.0","selectCanary":{"policy":"builtin:annotations","percent":25}}"#,
        )
        .unwrap();
        assert_eq!(
            config.select_canary,
            Some(Canary {
                policy: "builtin:annotations".into(),
                percent: 25
            })
        );
        for (canary, key, says) in [
            (
                r#"{"policy":"/a.wasm","percent":150}"#,
                "`selectCanary.percent`",
                "150 is not between 0 and 100",
            ),
            (
                r#"{"policy":"/a.wasm","percent":-1}"#,
                "`selectCanary.percent`",
                "-1 is not",
            ),
            (
                r#"{"policy":"/a.wasm","percent":2.5}"#,
                "`selectCanary.percent`",
                "2.5 is not",
            ),
            (
                r#"{"policy":"/a.wasm"}"#,
                "`selectCanary.percent`",
                "null is not",
            ),
            (r#"{"percent":5}"#, "`selectCanary.policy`", "not null"),
            (r#""/a.wasm""#, "`selectCanary`", "must be an object"),
        ] {
            let err = parse(&format!(
                r#"{{"cniVersion":"1.1.0","selectCanary":{canary}}}"#
            ))
            .unwrap_err();
            assert!(matches!(err, ConfigError::Key { .. }), "code 7: {err:?}");
            assert!(
                err.to_string().contains(key) && err.to_string().contains(says),
                "{err}"
            );
        }
        let err =
            parse(r#"{"cniVersion":"1.1.0","selectShadow":"builtin:annotations"}"#).unwrap_err();
        assert!(
            err.to_string().contains("`selectShadow`: needs recordDir"),
            "{err}"
        );
        let config = parse(
            r#"{"cniVersion":"1.1.0","selectShadow":"builtin:annotations","recordDir":"/tmp/r"}"#,
        )
        .unwrap();
        assert_eq!(config.select_shadow.as_deref(), Some("builtin:annotations"));
    }

    #[test]
    fn a_bad_vm_mode_names_the_key() {
        for (vm, key) in [
            (r#"{"mode":"sometimes"}"#, "`vm.mode`"),
            (r#"{"mode":true}"#, "`vm.mode`"),
            (r#""always""#, "`vm`"),
        ] {
            let err = parse(&format!(r#"{{"cniVersion":"1.1.0","vm":{vm}}}"#)).unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
        }
        let err = parse(r#"{"cniVersion":"1.1.0","vm":{"mode":"sometimes"}}"#).unwrap_err();
        assert!(err.to_string().contains(r#"not "sometimes""#), "{err}");
    }

    #[test]
    fn the_vm_lease_defaults_to_an_hour_and_is_checked() {
        let lease = |vm: &str| {
            parse(&format!(r#"{{"cniVersion":"1.1.0","vm":{vm}}}"#))
                .map(|config| config.vm.lease_secs)
        };
        assert_eq!(
            parse(r#"{"cniVersion":"1.1.0"}"#).unwrap().vm.lease_secs,
            3600
        );
        assert_eq!(lease(r#"{"mode":"always"}"#).unwrap(), 3600);
        assert_eq!(lease(r#"{"leaseSeconds":30}"#).unwrap(), 30);
        assert_eq!(lease(r#"{"leaseSeconds":4294967295}"#).unwrap(), u32::MAX);
        for bad in ["0", "-5", "1.5", r#""30""#, "4294967296", "null"] {
            let err = lease(&format!(r#"{{"leaseSeconds":{bad}}}"#)).unwrap_err();
            assert!(
                err.to_string().contains("`vm.leaseSeconds`")
                    && err.to_string().contains(&format!("not {bad}")),
                "{err}"
            );
        }
    }

    #[test]
    fn vm_taps_default_to_one_queue_and_root_only() {
        let config = parse(r#"{"cniVersion":"1.1.0","vm":{"mode":"always"}}"#).unwrap();
        assert_eq!(
            (config.vm.queues, config.vm.tap_owner, config.vm.tap_group),
            (1, None, None)
        );
        let config = parse(
            r#"{"cniVersion":"1.1.0","vm":{"queues":256,"tapOwner":0,"tapGroup":4294967294}}"#,
        )
        .unwrap();
        assert_eq!(
            (config.vm.queues, config.vm.tap_owner, config.vm.tap_group),
            (256, Some(0), Some(u32::MAX - 1))
        );
    }

    #[test]
    fn bad_vm_tap_settings_name_their_key() {
        let cases = [
            ("queues", "0"),
            ("queues", "257"),
            ("queues", "2.5"),
            ("queues", r#""2""#),
            ("queues", "-1"),
            ("queues", "null"),
            ("tapOwner", r#""qemu""#),
            ("tapOwner", "-1"),
            ("tapOwner", "4294967295"),
            ("tapOwner", "1.5"),
            ("tapGroup", r#""kvm""#),
            ("tapGroup", "4294967296"),
            ("tapGroup", "null"),
        ];
        for (key, bad) in cases {
            let err = parse(&format!(
                r#"{{"cniVersion":"1.1.0","vm":{{"{key}":{bad}}}}}"#
            ))
            .unwrap_err();
            let message = err.to_string();
            assert!(
                message.contains(&format!("`vm.{key}`")) && message.contains(&format!("not {bad}")),
                "{message}"
            );
            assert!(matches!(err, ConfigError::Key { .. }), "code 7: {err:?}");
        }
    }

    #[test]
    fn a_vm_pod_is_decided_by_mode_and_annotation() {
        let annotated = [(VM_ANNOTATION.to_owned(), "true".to_owned())];
        let other = [(VM_ANNOTATION.to_owned(), "false".to_owned())];
        assert!(!VmMode::Never.is_vm_pod(&annotated));
        assert!(VmMode::Annotation.is_vm_pod(&annotated));
        assert!(!VmMode::Annotation.is_vm_pod(&other));
        assert!(!VmMode::Annotation.is_vm_pod(&[]));
        assert!(VmMode::Always.is_vm_pod(&[]));
    }

    #[test]
    fn unknown_version_is_rejected() {
        let err = parse(r#"{"cniVersion":"9.9.9"}"#).unwrap_err();
        assert!(err.to_string().contains("cniVersion"), "{err}");
    }
}
