//! Network configuration files: `.conflist`, and single-plugin `.conf`/`.json`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::env::{validate_container_id, validate_ifname, validate_network_name};
use crate::error::{CniError, code};
use crate::exec::validate_plugin_type;
use crate::json::{FieldError, Obj};
use crate::version::CniVersion;

/// Why a network configuration cannot be used. Every variant names the
/// configuration's origin (e.g. its file name).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The bytes are not JSON.
    #[error("{origin}: not valid JSON: {error}")]
    Json {
        /// Where the configuration came from.
        origin: String,
        /// The parser's complaint, with line and column.
        #[source]
        error: serde_json::Error,
    },
    /// A key is missing or has the wrong type or value.
    #[error("{origin}: {error}")]
    Invalid {
        /// Where the configuration came from.
        origin: String,
        /// Which key, and what is wrong with it.
        #[source]
        error: FieldError,
    },
    /// Neither `cniVersion` nor `cniVersions` offers a version we speak.
    #[error(
        "{origin}: {key}: no supported CNI version among {offered:?} (supported: {})",
        CniVersion::ALL.map(CniVersion::as_str).join(", ")
    )]
    Version {
        /// Where the configuration came from.
        origin: String,
        /// `cniVersion`, or `cniVersions` when that was given.
        key: &'static str,
        /// The versions the configuration offered.
        offered: Vec<String>,
    },
}

impl From<&ConfigError> for CniError {
    fn from(e: &ConfigError) -> Self {
        let code = match e {
            ConfigError::Json { .. } => code::DECODE,
            ConfigError::Invalid { .. } => code::INVALID_CONFIG,
            ConfigError::Version { .. } => code::INCOMPATIBLE_VERSION,
        };
        CniError::new(code, e.to_string())
    }
}

/// A delegate's network configuration: a list of plugins run in order.
///
/// Its serde form is itself a valid `.conflist` (with the effective
/// `cniVersion`), so it can be stored and read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkConfigList {
    /// The network name.
    pub name: String,
    /// The effective version: the highest supported of `cniVersion` and
    /// `cniVersions`.
    pub cni_version: CniVersion,
    /// The runtime must not run CHECK.
    #[serde(default)]
    pub disable_check: bool,
    /// The runtime must not run GC.
    #[serde(default, rename = "disableGC")]
    pub disable_gc: bool,
    /// Each plugin's object as written; each has a string `type`.
    pub plugins: Vec<Map<String, Value>>,
}

impl NetworkConfigList {
    /// Parses a `.conflist` (has `plugins`) or a single-plugin `.conf` /
    /// `.json` (has `type`; it becomes a list of one, its own `name` and
    /// `cniVersion` serving as the list's). `origin` (e.g. the file name)
    /// is named in every error, and errors name the key that is wrong.
    ///
    /// Rules: `name` is required and must be a valid network name;
    /// `cniVersion` (required unless `cniVersions` is given) and
    /// `cniVersions` yield the highest version this crate supports, others
    /// being ignored as libcni ignores newer ones; `disableCheck` and
    /// `disableGC` are booleans or "true"/"false"; `plugins` is a non-empty
    /// list of objects, each with a valid `type`. Unknown keys are kept.
    pub fn from_slice(bytes: &[u8], origin: &str) -> Result<Self, ConfigError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|error| ConfigError::Json {
            origin: origin.to_owned(),
            error,
        })?;
        let invalid = |error: FieldError| ConfigError::Invalid {
            origin: origin.to_owned(),
            error,
        };
        let obj = Obj::new(&value, "").map_err(invalid)?;

        let name = obj.req_str("name").map_err(invalid)?;
        validate_network_name(name).map_err(|r| invalid(FieldError::new("name", r)))?;
        let cni_version = effective_version(&obj, origin)?;
        let disable_check = obj.lenient_bool("disableCheck").map_err(invalid)?;
        let disable_gc = obj.lenient_bool("disableGC").map_err(invalid)?;

        let plugins = if obj.get("plugins").is_some() {
            let items = obj.opt_array("plugins").map_err(invalid)?;
            if items.is_empty() {
                return Err(invalid(FieldError::new("plugins", "is empty")));
            }
            items
                .into_iter()
                .map(|(path, v)| read_plugin(&Obj::new(v, path)?))
                .collect::<Result<Vec<_>, _>>()
                .map_err(invalid)?
        } else if obj.get("type").is_some() {
            vec![read_plugin(&obj).map_err(invalid)?]
        } else {
            return Err(invalid(FieldError::new(
                "plugins",
                "missing (a network configuration needs \"plugins\", or \"type\" for a single plugin)",
            )));
        };

        Ok(NetworkConfigList {
            name: name.to_owned(),
            cni_version,
            disable_check,
            disable_gc,
            plugins,
        })
    }

    /// The `type` of the first plugin: the one that creates the interface.
    pub fn first_plugin_type(&self) -> &str {
        self.plugins.first().map_or("", plugin_type)
    }
}

/// A plugin object's `type`; empty when it has none (which
/// [`NetworkConfigList::from_slice`] never lets through).
pub fn plugin_type(plugin: &Map<String, Value>) -> &str {
    plugin
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn read_plugin(obj: &Obj<'_>) -> Result<Map<String, Value>, FieldError> {
    let ty = obj.req_str("type")?;
    validate_plugin_type(ty).map_err(|r| FieldError::new(obj.path_of("type"), r))?;
    Ok(obj.map.clone())
}

fn effective_version(obj: &Obj<'_>, origin: &str) -> Result<CniVersion, ConfigError> {
    let invalid = |error: FieldError| ConfigError::Invalid {
        origin: origin.to_owned(),
        error,
    };
    // "" is how Go writes an unset cniVersion; treat it as absent.
    let declared = obj.opt_nonempty_str("cniVersion").map_err(invalid)?;
    let (key, offered) = if obj.get("cniVersions").is_some() {
        let mut listed = obj.opt_strings("cniVersions").map_err(invalid)?;
        listed.extend(declared.map(str::to_owned));
        ("cniVersions", listed)
    } else {
        let declared = declared.ok_or_else(|| invalid(FieldError::new("cniVersion", "missing")))?;
        ("cniVersion", vec![declared.to_owned()])
    };
    offered
        .iter()
        .filter_map(|v| v.parse::<CniVersion>().ok())
        .max()
        .ok_or_else(|| ConfigError::Version {
            origin: origin.to_owned(),
            key,
            offered,
        })
}

/// The key of a GC request listing the attachments still in use.
pub const VALID_ATTACHMENTS_KEY: &str = "cni.dev/valid-attachments";
/// The name an earlier draft of the specification used for
/// [`VALID_ATTACHMENTS_KEY`]; libcni still sends both (its issue #1101).
pub const LEGACY_ATTACHMENTS_KEY: &str = "cni.dev/attachments";

/// Reads the `(containerID, ifname)` pairs of a GC request's
/// `cni.dev/valid-attachments` (or the legacy `cni.dev/attachments`).
/// A missing list is an error, not "nothing is valid": reading it as empty
/// would have GC release every attachment.
pub fn parse_valid_attachments(config: &Value) -> Result<Vec<(String, String)>, ConfigError> {
    let invalid = |error: FieldError| ConfigError::Invalid {
        origin: "GC request".to_owned(),
        error,
    };
    let obj = Obj::new(config, "").map_err(invalid)?;
    let key = [VALID_ATTACHMENTS_KEY, LEGACY_ATTACHMENTS_KEY]
        .into_iter()
        .find(|k| obj.get(k).is_some())
        .ok_or_else(|| invalid(FieldError::new(VALID_ATTACHMENTS_KEY, "missing")))?;
    obj.opt_array(key)
        .and_then(|items| {
            items
                .into_iter()
                .map(|(path, v)| {
                    let a = Obj::new(v, path)?;
                    let id = a.req_str("containerID")?;
                    validate_container_id(id)
                        .map_err(|r| FieldError::new(a.path_of("containerID"), r))?;
                    let ifname = a.req_str("ifname")?;
                    validate_ifname(ifname).map_err(|r| FieldError::new(a.path_of("ifname"), r))?;
                    Ok((id.to_owned(), ifname.to_owned()))
                })
                .collect()
        })
        .map_err(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<NetworkConfigList, ConfigError> {
        NetworkConfigList::from_slice(v.to_string().as_bytes(), "10-test.conflist")
    }

    fn err(v: Value) -> String {
        parse(v).unwrap_err().to_string()
    }

    #[test]
    fn reads_the_spec_example() {
        let list = parse(json!({
            "cniVersion": "1.1.0",
            "cniVersions": ["0.3.1", "0.4.0", "1.0.0", "1.1.0"],
            "name": "dbnet",
            "plugins": [
                {"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local", "subnet": "10.1.0.0/16"}},
                {"type": "tuning", "capabilities": {"mac": true}},
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        }))
        .unwrap();
        assert_eq!(list.name, "dbnet");
        assert_eq!(list.cni_version, CniVersion::V1_1_0);
        assert!(!list.disable_check && !list.disable_gc);
        assert_eq!(list.plugins.len(), 3);
        assert_eq!(list.first_plugin_type(), "bridge");
        assert_eq!(plugin_type(&list.plugins[2]), "portmap");
        assert_eq!(list.plugins[0]["bridge"], "cni0");
    }

    #[test]
    fn promotes_a_single_plugin_conf() {
        let conf = json!({"cniVersion": "0.3.1", "name": "calico", "type": "calico", "ipam": {"type": "calico-ipam"}});
        let list = parse(conf.clone()).unwrap();
        assert_eq!(list.name, "calico");
        assert_eq!(list.cni_version, CniVersion::V0_3_1);
        assert_eq!(list.plugins, vec![conf.as_object().unwrap().clone()]);
        assert_eq!(list.first_plugin_type(), "calico");
    }

    #[test]
    fn picks_the_highest_supported_version() {
        let base = |extra: Value| {
            let mut v = json!({"name": "n", "plugins": [{"type": "bridge"}]});
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            v
        };
        let version = |extra| parse(base(extra)).unwrap().cni_version;
        assert_eq!(version(json!({"cniVersion": "1.0.0"})), CniVersion::V1_0_0);
        assert_eq!(
            version(json!({"cniVersions": ["0.4.0", "1.0.0"]})),
            CniVersion::V1_0_0
        );
        // Newer versions than ours are skipped, as libcni does.
        assert_eq!(
            version(json!({"cniVersion": "1.2.0", "cniVersions": ["1.0.0", "1.2.0", "2.0.0"]})),
            CniVersion::V1_0_0
        );
        assert_eq!(
            version(json!({"cniVersion": "1.1.0", "cniVersions": ["0.4.0"]})),
            CniVersion::V1_1_0
        );
        assert_eq!(
            version(json!({"cniVersion": "", "cniVersions": ["0.3.0"]})),
            CniVersion::V0_3_0
        );

        let e = err(base(json!({})));
        assert_eq!(e, "10-test.conflist: cniVersion: missing");
        let e = err(base(json!({"cniVersion": "0.2.0"})));
        assert!(
            e.starts_with(
                "10-test.conflist: cniVersion: no supported CNI version among [\"0.2.0\"]"
            ),
            "{e}"
        );
        let e = parse(base(
            json!({"cniVersions": ["0.1.0"], "cniVersion": "2.0.0"}),
        ))
        .unwrap_err();
        assert!(
            matches!(&e, ConfigError::Version { key: "cniVersions", offered, .. } if offered == &["0.1.0", "2.0.0"])
        );
        assert_eq!(CniError::from(&e).code, code::INCOMPATIBLE_VERSION);
        assert_eq!(
            err(base(json!({"cniVersion": 1}))),
            "10-test.conflist: cniVersion: expected a string, found a number"
        );
        assert_eq!(
            err(base(json!({"cniVersions": "1.0.0"}))),
            "10-test.conflist: cniVersions: expected an array, found a string"
        );
        assert_eq!(
            err(base(json!({"cniVersions": ["1.0.0", 1]}))),
            "10-test.conflist: cniVersions[1]: expected a string, found a number"
        );
    }

    #[test]
    fn reads_disable_flags() {
        let list = parse(json!({
            "cniVersion": "1.1.0", "name": "n", "disableCheck": true, "disableGC": "True",
            "plugins": [{"type": "bridge"}]
        }))
        .unwrap();
        assert!(list.disable_check && list.disable_gc);
        let e = err(json!({
            "cniVersion": "1.1.0", "name": "n", "disableGC": "maybe", "plugins": [{"type": "bridge"}]
        }));
        assert_eq!(
            e,
            "10-test.conflist: disableGC: expected true or false, found \"maybe\""
        );
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (
                json!([]),
                "10-test.conflist: expected an object, found an array",
            ),
            (
                json!({"cniVersion": "1.0.0", "plugins": [{"type": "a"}]}),
                "10-test.conflist: name: missing",
            ),
            (
                json!({"cniVersion": "1.0.0", "name": 5, "plugins": []}),
                "10-test.conflist: name: expected a string",
            ),
            (
                json!({"cniVersion": "1.0.0", "name": "a b", "plugins": [{"type": "a"}]}),
                "10-test.conflist: name: network name \"a b\" contains ' '",
            ),
            (
                json!({"cniVersion": "1.0.0", "name": "n"}),
                "10-test.conflist: plugins: missing",
            ),
            (
                json!({"cniVersion": "1.0.0", "name": "n", "plugins": []}),
                "10-test.conflist: plugins: is empty",
            ),
            (
                json!({"cniVersion": "1.0.0", "name": "n", "plugins": {}}),
                "10-test.conflist: plugins: expected an array",
            ),
            (
                json!({"cniVersion": "1.0.0", "name": "n", "plugins": ["bridge"]}),
                "10-test.conflist: plugins[0]: expected an object",
            ),
            (
                json!({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "a"}, {"bridge": "x"}]}),
                "10-test.conflist: plugins[1].type: missing",
            ),
            (
                json!({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": 1}]}),
                "10-test.conflist: plugins[0].type: expected a string",
            ),
            (
                json!({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "../sbin/x"}]}),
                "10-test.conflist: plugins[0].type: plugin type \"../sbin/x\" contains '/'",
            ),
            (
                json!({"cniVersion": "1.0.0", "name": "n", "type": ".."}),
                "10-test.conflist: type: plugin type \"..\"",
            ),
            (
                json!({"cniVersion": "1.0.0", "name": "n", "type": ""}),
                "10-test.conflist: type: plugin type is empty",
            ),
        ];
        for (input, expected) in cases {
            let e = parse(input.clone()).unwrap_err();
            assert!(e.to_string().starts_with(expected), "{input}: got {e}");
            assert_eq!(CniError::from(&e).code, code::INVALID_CONFIG);
        }
    }

    #[test]
    fn bad_json_names_the_origin() {
        let e = NetworkConfigList::from_slice(b"{\"name\": ", "99-broken.conf").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("99-broken.conf: not valid JSON: "),
            "{e}"
        );
        assert_eq!(CniError::from(&e).code, code::DECODE);
    }

    #[test]
    fn serde_form_is_a_conflist() {
        let list = parse(json!({
            "cniVersions": ["1.0.0"], "name": "n", "disableGC": true, "plugins": [{"type": "bridge", "x": 1}]
        }))
        .unwrap();
        let v = serde_json::to_value(&list).unwrap();
        assert_eq!(
            v,
            json!({"name": "n", "cniVersion": "1.0.0", "disableCheck": false, "disableGC": true,
                   "plugins": [{"type": "bridge", "x": 1}]})
        );
        assert_eq!(parse(v.clone()).unwrap(), list);
        assert_eq!(
            serde_json::from_value::<NetworkConfigList>(v).unwrap(),
            list
        );
    }

    #[test]
    fn empty_list_has_no_first_type() {
        let list = NetworkConfigList {
            name: "n".into(),
            cni_version: CniVersion::V1_0_0,
            disable_check: false,
            disable_gc: false,
            plugins: vec![],
        };
        assert_eq!(list.first_plugin_type(), "");
    }

    #[test]
    fn valid_attachments() {
        let v = json!({"cni.dev/valid-attachments": [
            {"containerID": "c1", "ifname": "eth0"}, {"containerID": "c2", "ifname": "net1"}
        ]});
        assert_eq!(
            parse_valid_attachments(&v).unwrap(),
            vec![("c1".into(), "eth0".into()), ("c2".into(), "net1".into())]
        );
        let legacy = json!({"cni.dev/attachments": [{"containerID": "c1", "ifname": "eth0"}]});
        assert_eq!(parse_valid_attachments(&legacy).unwrap().len(), 1);
        assert!(
            parse_valid_attachments(&json!({"cni.dev/valid-attachments": []}))
                .unwrap()
                .is_empty()
        );

        let cases = [
            (json!({}), "GC request: cni.dev/valid-attachments: missing"),
            (
                json!({"cni.dev/valid-attachments": null}),
                "GC request: cni.dev/valid-attachments: missing",
            ),
            (
                json!({"cni.dev/valid-attachments": {}}),
                "GC request: cni.dev/valid-attachments: expected an array",
            ),
            (
                json!({"cni.dev/valid-attachments": [{"ifname": "eth0"}]}),
                "GC request: cni.dev/valid-attachments[0].containerID: missing",
            ),
            (
                json!({"cni.dev/valid-attachments": [{"containerID": "c"}]}),
                "GC request: cni.dev/valid-attachments[0].ifname: missing",
            ),
            (
                json!({"cni.dev/valid-attachments": [{"containerID": "-c", "ifname": "eth0"}]}),
                "GC request: cni.dev/valid-attachments[0].containerID: container id",
            ),
            (
                json!({"cni.dev/valid-attachments": [{"containerID": "c", "ifname": "a:b"}]}),
                "GC request: cni.dev/valid-attachments[0].ifname: interface name",
            ),
        ];
        for (input, expected) in cases {
            let e = parse_valid_attachments(&input).unwrap_err().to_string();
            assert!(e.starts_with(expected), "{input}: got {e}");
        }
    }
}
