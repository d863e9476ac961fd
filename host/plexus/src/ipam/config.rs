//! What `plexus-ipam` reads from the network configuration: the network's name, its
//! `ipam` object (the policy, the address store and Plexus's own keys; every other key is
//! the policy's) and the addresses the runtime asks for.

use std::path::PathBuf;
use std::time::Duration;

use plexus_cni::{CniVersion, Invocation};
use plexus_ipam_store::EtcdConfig;
use serde::Deserialize;
use serde_json::Value;

use crate::config::{CommonSettings, ConfigError, cni_version, parse_document, typed};

/// Store I/O happens inside the call (and etcd is a network round trip per operation),
/// so an IPAM policy gets more time than a selector does.
const DEFAULT_POLICY_TIMEOUT_MS: u64 = 2000;

/// The validated configuration of one `plexus-ipam` invocation.
#[derive(Debug, Clone)]
pub struct IpamConfig {
    pub cni_version: CniVersion,
    /// The network's `name`: the scope of its address store.
    pub network: String,
    /// `ipam.policy`: `builtin:NAME` or the path of a `.wasm`.
    pub policy: String,
    pub store: StoreChoice,
    /// `ipam.stateDir`, `ipam.logFile`, `ipam.logLevel` and the policy limits.
    pub common: CommonSettings,
    /// The `ipam` object as given, for the policy.
    pub ipam: Value,
    /// Addresses asked for: runtimeConfig `ips`, `args.cni.ips`, then `CNI_ARGS` `IP`.
    pub requested_ips: Vec<String>,
    /// The configuration as given, for GC's list of valid attachments.
    pub document: Value,
}

/// Where the network's allocations live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// `<stateDir>/ipam/<network>/` on this node (the default).
    File,
    /// An etcd cluster, for networks that span nodes.
    Etcd(EtcdConfig),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawNetwork {
    cni_version: Option<String>,
    name: Option<String>,
    ipam: Option<Value>,
    #[serde(default)]
    runtime_config: RawRuntimeConfig,
    #[serde(default)]
    args: RawArgs,
}

#[derive(Deserialize, Default)]
struct RawRuntimeConfig {
    #[serde(default)]
    ips: Vec<String>,
}

#[derive(Deserialize, Default)]
struct RawArgs {
    #[serde(default)]
    cni: RawCniArgs,
}

#[derive(Deserialize, Default)]
struct RawCniArgs {
    #[serde(default)]
    ips: Vec<String>,
}

/// Plexus's keys of the `ipam` object besides the shared ones (`CommonSettings`); the
/// policy's keys are not looked at here.
#[derive(Deserialize)]
struct RawIpam {
    policy: Option<String>,
    store: Option<RawStore>,
}

#[derive(Deserialize)]
#[serde(
    tag = "type",
    rename_all = "lowercase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
enum RawStore {
    File {},
    Etcd {
        endpoints: Vec<String>,
        prefix: Option<String>,
        timeout_ms: Option<u64>,
        tls: Option<RawTls>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca: PathBuf,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

impl IpamConfig {
    pub fn from_slice(bytes: &[u8], invocation: &Invocation) -> Result<Self, ConfigError> {
        let document = parse_document(bytes)?;
        let raw: RawNetwork = typed(document.clone(), "")?;
        let cni_version = cni_version(raw.cni_version.as_deref())?;
        let network = raw
            .name
            .filter(|name| !name.is_empty())
            .ok_or(ConfigError::Key {
                key: "name",
                reason: "missing: the network's name scopes its addresses".into(),
            })?;
        let ipam = match raw.ipam {
            Some(ipam @ Value::Object(_)) => ipam,
            Some(other) => {
                return Err(ConfigError::Key {
                    key: "ipam",
                    reason: format!("must be an object, not {other}"),
                });
            }
            None => {
                return Err(ConfigError::Key {
                    key: "ipam",
                    reason: "missing".into(),
                });
            }
        };
        let own: RawIpam = typed(ipam.clone(), "ipam")?;
        let common = CommonSettings::read(&ipam, "ipam", DEFAULT_POLICY_TIMEOUT_MS)?;
        let policy = own.policy.ok_or(ConfigError::Key {
            key: "ipam.policy",
            reason: "missing: say which policy assigns addresses, e.g. \"builtin:range\"".into(),
        })?;
        let store = match own.store {
            None | Some(RawStore::File {}) => StoreChoice::File,
            Some(RawStore::Etcd {
                endpoints,
                prefix,
                timeout_ms,
                tls,
            }) => StoreChoice::Etcd(etcd(endpoints, prefix, timeout_ms, tls)?),
        };
        let mut requested_ips = raw.runtime_config.ips;
        requested_ips.extend(raw.args.cni.ips);
        requested_ips.extend(
            invocation
                .args
                .iter()
                .filter(|(key, _)| key == "IP")
                .flat_map(|(_, value)| value.split(','))
                .map(str::trim)
                .filter(|address| !address.is_empty())
                .map(str::to_owned),
        );
        Ok(Self {
            cni_version,
            network,
            policy,
            store,
            common,
            ipam,
            requested_ips,
            document,
        })
    }
}

fn etcd(
    endpoints: Vec<String>,
    prefix: Option<String>,
    timeout_ms: Option<u64>,
    tls: Option<RawTls>,
) -> Result<EtcdConfig, ConfigError> {
    if endpoints.is_empty() {
        return Err(ConfigError::Key {
            key: "ipam.store.endpoints",
            reason: "empty: name at least one etcd client URL".into(),
        });
    }
    let mut config = EtcdConfig::new(endpoints);
    if let Some(prefix) = prefix {
        config.prefix = prefix;
    }
    if let Some(timeout_ms) = timeout_ms {
        if timeout_ms == 0 {
            return Err(ConfigError::Key {
                key: "ipam.store.timeoutMs",
                reason: "must be at least 1".into(),
            });
        }
        config.timeout = Duration::from_millis(timeout_ms);
    }
    config.tls = match tls {
        None => None,
        Some(RawTls {
            ca,
            cert: Some(cert_file),
            key: Some(key_file),
        }) => Some(plexus_ipam_store::EtcdTls {
            ca_file: ca,
            client: Some(plexus_ipam_store::EtcdClientIdentity {
                cert_file,
                key_file,
            }),
        }),
        Some(RawTls {
            ca,
            cert: None,
            key: None,
        }) => Some(plexus_ipam_store::EtcdTls {
            ca_file: ca,
            client: None,
        }),
        Some(_) => {
            return Err(ConfigError::Key {
                key: "ipam.store.tls",
                reason: "`cert` and `key` go together".into(),
            });
        }
    };
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invocation(args: &[(&str, &str)]) -> Invocation {
        Invocation::from_lookup(|name| match name {
            "CNI_COMMAND" => Some("ADD".into()),
            "CNI_CONTAINERID" => Some("c1".into()),
            "CNI_NETNS" => Some("/run/netns/x".into()),
            "CNI_IFNAME" => Some("eth0".into()),
            "CNI_PATH" => Some("/usr/lib/cni".into()),
            "CNI_ARGS" => Some(
                args.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(";"),
            ),
            _ => None,
        })
        .unwrap()
    }

    fn parse(json: &str) -> Result<IpamConfig, ConfigError> {
        IpamConfig::from_slice(json.as_bytes(), &invocation(&[("IP", "10.1.0.9")]))
    }

    #[test]
    fn defaults_and_requested_addresses_in_order() {
        let config = parse(
            r#"{"cniVersion": "1.0.0", "name": "net", "ipam": {"type": "plexus-ipam", "policy": "builtin:range", "ranges": []},
               "runtimeConfig": {"ips": ["10.1.0.7/24"]}, "args": {"cni": {"ips": ["10.1.0.8"]}}}"#,
        )
        .unwrap();
        assert_eq!(config.store, StoreChoice::File);
        assert_eq!(
            config.common.state_dir,
            std::path::Path::new(crate::config::DEFAULT_STATE_DIR)
        );
        assert_eq!(
            config.common.policy_limits.timeout,
            Duration::from_millis(DEFAULT_POLICY_TIMEOUT_MS)
        );
        assert_eq!(
            config.requested_ips,
            ["10.1.0.7/24", "10.1.0.8", "10.1.0.9"]
        );
        assert_eq!(config.ipam["ranges"], serde_json::json!([]));
    }

    #[test]
    fn etcd_with_tls() {
        let config = parse(
            r#"{"cniVersion": "1.0.0", "name": "net", "ipam": {"policy": "builtin:range",
               "store": {"type": "etcd", "endpoints": ["https://10.0.0.1:2379"], "prefix": "/x/", "timeoutMs": 300,
                         "tls": {"ca": "/ca.pem", "cert": "/c.pem", "key": "/k.pem"}}}}"#,
        )
        .unwrap();
        let StoreChoice::Etcd(etcd) = config.store else {
            panic!("not etcd")
        };
        assert_eq!(etcd.prefix, "/x/");
        assert_eq!(etcd.timeout, Duration::from_millis(300));
        assert!(etcd.tls.unwrap().client.is_some());
    }

    #[test]
    fn errors_name_the_key() {
        for (json, key) in [
            (r#"{"cniVersion": "1.0.0", "name": "net"}"#, "`ipam`"),
            (
                r#"{"cniVersion": "1.0.0", "name": "net", "ipam": {}}"#,
                "`ipam.policy`",
            ),
            (
                r#"{"cniVersion": "1.0.0", "ipam": {"policy": "builtin:range"}}"#,
                "`name`",
            ),
            (
                r#"{"cniVersion": "1.0.0", "name": "net", "ipam": {"policy": 7}}"#,
                "`ipam.policy`",
            ),
            (
                r#"{"cniVersion": "1.0.0", "name": "net", "ipam": {"policy": "p", "store": {"type": "redis"}}}"#,
                "`ipam.store",
            ),
            (
                r#"{"cniVersion": "1.0.0", "name": "net", "ipam": {"policy": "p", "store": {"type": "etcd", "endpoints": []}}}"#,
                "`ipam.store.endpoints`",
            ),
            (
                r#"{"cniVersion": "1.0.0", "name": "net", "ipam": {"policy": "p", "store": {"type": "etcd", "endpoints": ["http://e"], "tls": {"ca": "/a", "cert": "/c"}}}}"#,
                "`ipam.store.tls`",
            ),
            (
                r#"{"cniVersion": "1.0.0", "name": "net", "ipam": {"policy": "p"}, "runtimeConfig": {"ips": "10.1.0.1"}}"#,
                "`runtimeConfig.ips`",
            ),
        ] {
            let error = parse(json).unwrap_err().to_string();
            assert!(error.contains(key), "{json}: {error}");
        }
    }
}
