//! The ADD result: one in-memory model, read from and printed in every
//! supported version.
//!
//! The model is the union of the 0.3.0..1.1.0 result types. Reading is
//! version-agnostic (a field a version lacks is simply absent); printing drops
//! what the target version does not define, so a result can be passed down a
//! chain or handed back to a runtime in whatever version the config asks for.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{CniError, code};
use crate::json::{FieldError, Obj};
use crate::version::{CniVersion, VersionError};

/// A result that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResultError {
    /// A key has the wrong type or value.
    #[error("invalid CNI result: {0}")]
    Invalid(#[from] FieldError),
    /// `cniVersion` names a version without a rich result type, or none we know.
    #[error("invalid CNI result: cniVersion: {0}")]
    Version(#[from] VersionError),
}

impl From<&ResultError> for CniError {
    fn from(e: &ResultError) -> Self {
        let code = match e {
            ResultError::Invalid(_) => code::DECODE,
            ResultError::Version(_) => code::INCOMPATIBLE_VERSION,
        };
        CniError::new(code, e.to_string())
    }
}

/// An ADD result, in the superset of the 0.3.0..1.1.0 shapes.
///
/// Its serde form (camelCase keys, no `cniVersion`) is for storing it; the
/// wire forms are [`CniResult::from_json`] and [`CniResult::to_json`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CniResult {
    /// Interfaces created by the attachment, host-side ones included.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    /// Addresses assigned by the attachment.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    /// Routes created by the attachment.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// DNS configuration the network knows of.
    #[serde(skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
}

/// One entry of `interfaces`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Interface {
    /// Interface name.
    pub name: String,
    /// Hardware address, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// MTU (1.1.0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The isolation domain (netns path) it is in; `None` on the host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// Path of a socket file for the interface (1.1.0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_path: Option<String>,
    /// Platform PCI identifier of the device (1.1.0).
    #[serde(rename = "pciID", skip_serializing_if = "Option::is_none")]
    pub pci_id: Option<String>,
}

/// One entry of `ips`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct IpConfig {
    /// Address with prefix length, e.g. `10.1.0.5/16`.
    pub address: String,
    /// The default gateway for this subnet, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Index into `interfaces` of the interface that has the address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<u32>,
}

/// One entry of `routes`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Route {
    /// Destination with prefix length.
    pub dst: String,
    /// Next hop; when absent, a gateway from `ips` may be used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
    /// Path MTU (1.1.0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Advertised TCP MSS (1.1.0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    /// Route priority, lower is preferred (1.1.0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// Routing table (1.1.0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    /// Route scope: 0 global, 253 link, 254 host (1.1.0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<u32>,
}

/// The `dns` object.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Dns {
    /// Nameserver addresses, in priority order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// Local domain for short names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Search domains, in priority order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// Resolver options.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    /// True when it says nothing, so it is left out of printed results.
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_none()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

/// Splits `address/prefix`, checking both parts (the prefix must fit the
/// address family).
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (addr, prefix) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not in CIDR notation (address/prefix)"))?;
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{addr:?} in {s:?} is not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    match prefix.parse::<u8>() {
        Ok(p) if p <= max && !prefix.starts_with('+') => Ok((addr, p)),
        _ => Err(format!(
            "prefix length {prefix:?} in {s:?} is not a number from 0 to {max}"
        )),
    }
}

/// "4" or "6" as 0.3.x/0.4.0 `ips[].version` spell it. Any string with a
/// colon is IPv6, which holds for every valid address and needs no parse.
fn ip_version(address: &str) -> &'static str {
    if address.contains(':') { "6" } else { "4" }
}

fn cidr(obj: &Obj<'_>, key: &str) -> Result<String, FieldError> {
    let s = obj.req_str(key)?;
    parse_cidr(s).map_err(|reason| FieldError::new(obj.path_of(key), reason))?;
    Ok(s.to_owned())
}

fn opt_ip(obj: &Obj<'_>, key: &str) -> Result<Option<String>, FieldError> {
    match obj.opt_nonempty_str(key)? {
        None => Ok(None),
        Some(s) => match s.parse::<IpAddr>() {
            Ok(_) => Ok(Some(s.to_owned())),
            Err(_) => Err(FieldError::new(
                obj.path_of(key),
                format!("{s:?} is not an IP address"),
            )),
        },
    }
}

fn owned(s: Option<&str>) -> Option<String> {
    s.map(str::to_owned)
}

impl Interface {
    fn read(obj: &Obj<'_>) -> Result<Self, FieldError> {
        Ok(Interface {
            name: obj.req_str("name")?.to_owned(),
            mac: owned(obj.opt_nonempty_str("mac")?),
            mtu: obj.opt_u32("mtu")?,
            sandbox: owned(obj.opt_nonempty_str("sandbox")?),
            socket_path: owned(obj.opt_nonempty_str("socketPath")?),
            pci_id: owned(obj.opt_nonempty_str("pciID")?),
        })
    }

    fn write(&self, version: CniVersion) -> Value {
        let mut m = Map::new();
        m.insert("name".into(), self.name.clone().into());
        put(&mut m, "mac", &self.mac);
        put(&mut m, "sandbox", &self.sandbox);
        if version >= CniVersion::V1_1_0 {
            put(&mut m, "mtu", &self.mtu);
            put(&mut m, "socketPath", &self.socket_path);
            put(&mut m, "pciID", &self.pci_id);
        }
        Value::Object(m)
    }
}

impl IpConfig {
    fn read(obj: &Obj<'_>) -> Result<Self, FieldError> {
        let address = cidr(obj, "address")?;
        // 1.0.0 dropped "version"; when an older result has it, it must agree
        // with the address, or the result contradicts itself.
        if let Some(v) = obj.opt_str("version")? {
            let expected = ip_version(&address);
            if v != expected {
                return Err(FieldError::new(
                    obj.path_of("version"),
                    format!("{v:?} does not match address {address:?} (expected {expected:?})"),
                ));
            }
        }
        Ok(IpConfig {
            address,
            gateway: opt_ip(obj, "gateway")?,
            interface: obj.opt_u32("interface")?,
        })
    }

    fn write(&self, version: CniVersion) -> Value {
        let mut m = Map::new();
        if version < CniVersion::V1_0_0 {
            m.insert("version".into(), ip_version(&self.address).into());
        }
        m.insert("address".into(), self.address.clone().into());
        put(&mut m, "gateway", &self.gateway);
        put(&mut m, "interface", &self.interface);
        Value::Object(m)
    }
}

impl Route {
    fn read(obj: &Obj<'_>) -> Result<Self, FieldError> {
        Ok(Route {
            dst: cidr(obj, "dst")?,
            gw: opt_ip(obj, "gw")?,
            mtu: obj.opt_u32("mtu")?,
            advmss: obj.opt_u32("advmss")?,
            priority: obj.opt_u32("priority")?,
            table: obj.opt_u32("table")?,
            scope: obj.opt_u32("scope")?,
        })
    }

    fn write(&self, version: CniVersion) -> Value {
        let mut m = Map::new();
        m.insert("dst".into(), self.dst.clone().into());
        put(&mut m, "gw", &self.gw);
        if version >= CniVersion::V1_1_0 {
            put(&mut m, "mtu", &self.mtu);
            put(&mut m, "advmss", &self.advmss);
            put(&mut m, "priority", &self.priority);
            put(&mut m, "table", &self.table);
            put(&mut m, "scope", &self.scope);
        }
        Value::Object(m)
    }
}

impl Dns {
    fn read(obj: &Obj<'_>) -> Result<Self, FieldError> {
        Ok(Dns {
            nameservers: obj.opt_strings("nameservers")?,
            domain: owned(obj.opt_nonempty_str("domain")?),
            search: obj.opt_strings("search")?,
            options: obj.opt_strings("options")?,
        })
    }

    fn write(&self) -> Value {
        let mut m = Map::new();
        put_list(&mut m, "nameservers", &self.nameservers);
        put(&mut m, "domain", &self.domain);
        put_list(&mut m, "search", &self.search);
        put_list(&mut m, "options", &self.options);
        Value::Object(m)
    }
}

fn put<T: Clone + Into<Value>>(m: &mut Map<String, Value>, key: &str, v: &Option<T>) {
    if let Some(v) = v {
        m.insert(key.into(), v.clone().into());
    }
}

fn put_list<T: Clone + Into<Value>>(m: &mut Map<String, Value>, key: &str, items: &[T]) {
    if !items.is_empty() {
        m.insert(key.into(), items.to_vec().into());
    }
}

fn read_list<T>(
    obj: &Obj<'_>,
    key: &str,
    read: fn(&Obj<'_>) -> Result<T, FieldError>,
) -> Result<Vec<T>, FieldError> {
    obj.opt_array(key)?
        .into_iter()
        .map(|(path, v)| read(&Obj::new(v, path)?))
        .collect()
}

impl CniResult {
    /// Parses a result of any supported version, as named by its
    /// `cniVersion` (required). Every field but `interfaces[].name`,
    /// `ips[].address` and `routes[].dst` may be missing or `null`; optional
    /// strings that are empty read as absent. Addresses are checked to be
    /// IP addresses (with a valid prefix where CIDR is expected); a 0.3.x /
    /// 0.4.0 `ips[].version` must agree with its address.
    pub fn from_json(value: &Value) -> Result<Self, ResultError> {
        let obj = Obj::new(value, "")?;
        let version = obj.req_str("cniVersion")?;
        version.parse::<CniVersion>()?;
        Ok(CniResult {
            interfaces: read_list(&obj, "interfaces", Interface::read)?,
            ips: read_list(&obj, "ips", IpConfig::read)?,
            routes: read_list(&obj, "routes", Route::read)?,
            dns: match obj.get("dns") {
                None => Dns::default(),
                Some(v) => Dns::read(&Obj::new(v, "dns")?)?,
            },
        })
    }

    /// Prints the result in `version`, `cniVersion` included. Before 1.0.0
    /// every ip gets `"version": "4"|"6"` from its address; interface
    /// `mtu`/`socketPath`/`pciID` and route `mtu`/`advmss`/`priority`/
    /// `table`/`scope` are printed only for 1.1.0; empty lists and an empty
    /// `dns` are left out, as the specification's examples do.
    pub fn to_json(&self, version: CniVersion) -> Value {
        let mut m = Map::new();
        m.insert("cniVersion".into(), version.as_str().into());
        let lists = [
            (
                "interfaces",
                self.interfaces
                    .iter()
                    .map(|i| i.write(version))
                    .collect::<Vec<_>>(),
            ),
            ("ips", self.ips.iter().map(|i| i.write(version)).collect()),
            (
                "routes",
                self.routes.iter().map(|r| r.write(version)).collect(),
            ),
        ];
        for (key, items) in lists {
            put_list(&mut m, key, &items);
        }
        if !self.dns.is_empty() {
            m.insert("dns".into(), self.dns.write());
        }
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn full() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: "cni0".into(),
                    mac: Some("00:11:22:33:44:55".into()),
                    ..Default::default()
                },
                Interface {
                    name: "eth0".into(),
                    mac: Some("99:88:77:66:55:44".into()),
                    mtu: Some(1450),
                    sandbox: Some("/var/run/netns/blue".into()),
                    socket_path: Some("/run/vhost.sock".into()),
                    pci_id: Some("0000:00:1f.6".into()),
                },
            ],
            ips: vec![
                IpConfig {
                    address: "10.1.0.5/16".into(),
                    gateway: Some("10.1.0.1".into()),
                    interface: Some(1),
                },
                IpConfig {
                    address: "fd00::5/64".into(),
                    gateway: None,
                    interface: Some(1),
                },
            ],
            routes: vec![Route {
                dst: "0.0.0.0/0".into(),
                gw: Some("10.1.0.1".into()),
                mtu: Some(1400),
                advmss: Some(1360),
                priority: Some(100),
                table: Some(254),
                scope: Some(0),
            }],
            dns: Dns {
                nameservers: vec!["10.1.0.1".into()],
                domain: Some("cluster.local".into()),
                search: vec!["svc.cluster.local".into()],
                options: vec!["ndots:5".into()],
            },
        }
    }

    #[test]
    fn prints_1_1_with_every_field() {
        assert_eq!(
            full().to_json(CniVersion::V1_1_0),
            json!({
                "cniVersion": "1.1.0",
                "interfaces": [
                    {"name": "cni0", "mac": "00:11:22:33:44:55"},
                    {"name": "eth0", "mac": "99:88:77:66:55:44", "mtu": 1450,
                     "sandbox": "/var/run/netns/blue", "socketPath": "/run/vhost.sock",
                     "pciID": "0000:00:1f.6"},
                ],
                "ips": [
                    {"address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 1},
                    {"address": "fd00::5/64", "interface": 1},
                ],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1", "mtu": 1400, "advmss": 1360,
                            "priority": 100, "table": 254, "scope": 0}],
                "dns": {"nameservers": ["10.1.0.1"], "domain": "cluster.local",
                        "search": ["svc.cluster.local"], "options": ["ndots:5"]},
            })
        );
    }

    #[test]
    fn prints_1_0_without_1_1_fields() {
        let v = full().to_json(CniVersion::V1_0_0);
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(
            v["interfaces"][1],
            json!({"name": "eth0", "mac": "99:88:77:66:55:44", "sandbox": "/var/run/netns/blue"})
        );
        assert_eq!(
            v["routes"][0],
            json!({"dst": "0.0.0.0/0", "gw": "10.1.0.1"})
        );
        assert_eq!(
            v["ips"][0],
            json!({"address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 1})
        );
    }

    #[test]
    fn prints_ip_versions_before_1_0() {
        for version in [CniVersion::V0_3_0, CniVersion::V0_3_1, CniVersion::V0_4_0] {
            let v = full().to_json(version);
            assert_eq!(v["cniVersion"], version.as_str());
            assert_eq!(
                v["ips"],
                json!([
                    {"version": "4", "address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 1},
                    {"version": "6", "address": "fd00::5/64", "interface": 1},
                ])
            );
            assert_eq!(
                v["routes"][0],
                json!({"dst": "0.0.0.0/0", "gw": "10.1.0.1"})
            );
            assert!(v["interfaces"][1].get("mtu").is_none());
        }
    }

    #[test]
    fn omits_empty_parts() {
        for version in CniVersion::ALL {
            assert_eq!(
                CniResult::default().to_json(version),
                json!({"cniVersion": version.as_str()})
            );
        }
        let only_domain = CniResult {
            dns: Dns {
                domain: Some("example".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            only_domain.to_json(CniVersion::V1_0_0),
            json!({"cniVersion": "1.0.0", "dns": {"domain": "example"}})
        );
    }

    #[test]
    fn round_trips_every_version() {
        for version in CniVersion::ALL {
            let printed = full().to_json(version);
            let back = CniResult::from_json(&printed).unwrap();
            let reprinted = back.to_json(version);
            assert_eq!(printed, reprinted, "{version}");
        }
        assert_eq!(
            CniResult::from_json(&full().to_json(CniVersion::V1_1_0)).unwrap(),
            full()
        );
    }

    #[test]
    fn converts_between_versions() {
        // A 0.4.0 result carried up to 1.1.0 loses "version" and gains nothing.
        let old = json!({
            "cniVersion": "0.4.0",
            "interfaces": [{"name": "eth0", "sandbox": "/run/netns/x"}],
            "ips": [{"version": "4", "address": "10.0.0.2/24", "gateway": "10.0.0.1", "interface": 0}],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {}
        });
        let r = CniResult::from_json(&old).unwrap();
        assert_eq!(
            r.to_json(CniVersion::V1_1_0),
            json!({
                "cniVersion": "1.1.0",
                "interfaces": [{"name": "eth0", "sandbox": "/run/netns/x"}],
                "ips": [{"address": "10.0.0.2/24", "gateway": "10.0.0.1", "interface": 0}],
                "routes": [{"dst": "0.0.0.0/0"}],
            })
        );
        // And back down again it regains "version".
        let mut down = old.clone();
        down.as_object_mut().unwrap().remove("dns");
        assert_eq!(r.to_json(CniVersion::V0_4_0), down);
    }

    #[test]
    fn reads_the_spec_ipam_example() {
        // IPAM results have no interfaces and no ips[].interface.
        let r = CniResult::from_json(&json!({
            "cniVersion": "1.1.0",
            "ips": [{"address": "10.1.0.5/16", "gateway": "10.1.0.1"}],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {"nameservers": ["10.1.0.1"]}
        }))
        .unwrap();
        assert!(r.interfaces.is_empty());
        assert_eq!(r.ips[0].interface, None);
        assert_eq!(r.ips[0].gateway.as_deref(), Some("10.1.0.1"));
        assert_eq!(r.routes[0].gw, None);
        assert_eq!(r.dns.nameservers, vec!["10.1.0.1"]);
    }

    #[test]
    fn null_and_empty_strings_are_absent() {
        let r = CniResult::from_json(&json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "mac": "", "sandbox": null, "mtu": null}],
            "ips": [{"address": "10.0.0.2/24", "gateway": ""}],
            "routes": null,
            "dns": null
        }))
        .unwrap();
        assert_eq!(
            r.interfaces[0],
            Interface {
                name: "eth0".into(),
                ..Default::default()
            }
        );
        assert_eq!(r.ips[0].gateway, None);
        assert!(r.routes.is_empty());
        assert!(r.dns.is_empty());
    }

    #[test]
    fn requires_a_supported_cni_version() {
        let err = CniResult::from_json(&json!({"ips": []})).unwrap_err();
        assert_eq!(err.to_string(), "invalid CNI result: cniVersion: missing");
        let err = CniResult::from_json(&json!({"cniVersion": "0.2.0", "ip4": {}})).unwrap_err();
        assert!(matches!(err, ResultError::Version(_)), "{err}");
        assert!(err.to_string().contains("\"0.2.0\""));
        assert_eq!(CniError::from(&err).code, code::INCOMPATIBLE_VERSION);
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (json!([]), "expected an object, found an array"),
            (json!({"cniVersion": 1}), "cniVersion: expected a string"),
            (
                json!({"cniVersion": "1.0.0", "interfaces": {}}),
                "interfaces: expected an array",
            ),
            (
                json!({"cniVersion": "1.0.0", "interfaces": [{}]}),
                "interfaces[0].name: missing",
            ),
            (
                json!({"cniVersion": "1.0.0", "interfaces": ["eth0"]}),
                "interfaces[0]: expected an object",
            ),
            (
                json!({"cniVersion": "1.1.0", "interfaces": [{"name": "a", "mtu": -1}]}),
                "interfaces[0].mtu: expected an unsigned",
            ),
            (
                json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.1"}]}),
                "ips[0].address: \"10.0.0.1\" is not in CIDR",
            ),
            (
                json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.1/33"}]}),
                "ips[0].address: prefix length \"33\"",
            ),
            (
                json!({"cniVersion": "1.0.0", "ips": [{"address": "x/24"}]}),
                "ips[0].address: \"x\" in \"x/24\" is not an IP",
            ),
            (
                json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.1/24", "gateway": "gw"}]}),
                "ips[0].gateway: \"gw\" is not an IP address",
            ),
            (
                json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.1/24", "interface": "0"}]}),
                "ips[0].interface: expected an unsigned",
            ),
            (
                json!({"cniVersion": "0.4.0", "ips": [{"version": "6", "address": "10.0.0.1/24"}]}),
                "ips[0].version: \"6\" does not match",
            ),
            (
                json!({"cniVersion": "0.3.1", "ips": [{"version": 4, "address": "10.0.0.1/24"}]}),
                "ips[0].version: expected a string",
            ),
            (
                json!({"cniVersion": "1.0.0", "routes": [{"gw": "10.0.0.1"}]}),
                "routes[0].dst: missing",
            ),
            (
                json!({"cniVersion": "1.0.0", "routes": [{"dst": "0.0.0.0/0", "gw": "::x"}]}),
                "routes[0].gw:",
            ),
            (
                json!({"cniVersion": "1.1.0", "routes": [{"dst": "0.0.0.0/0", "table": 1.5}]}),
                "routes[0].table:",
            ),
            (
                json!({"cniVersion": "1.0.0", "dns": []}),
                "dns: expected an object",
            ),
            (
                json!({"cniVersion": "1.0.0", "dns": {"nameservers": "8.8.8.8"}}),
                "dns.nameservers: expected an array",
            ),
            (
                json!({"cniVersion": "1.0.0", "dns": {"search": [1]}}),
                "dns.search[0]: expected a string",
            ),
        ];
        for (input, expected) in cases {
            let err = CniResult::from_json(&input).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with(&format!("invalid CNI result: {expected}")),
                "{input}: got {err}"
            );
            assert!(matches!(err, ResultError::Invalid(_)));
            assert_eq!(CniError::from(&err).code, code::DECODE);
        }
    }

    #[test]
    fn ignores_unknown_keys() {
        let r = CniResult::from_json(&json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "vendor": "x"}],
            "extra": true
        }))
        .unwrap();
        assert_eq!(r.interfaces.len(), 1);
    }

    #[test]
    fn parses_cidrs() {
        assert_eq!(
            parse_cidr("10.0.0.1/8").unwrap(),
            ("10.0.0.1".parse().unwrap(), 8)
        );
        assert_eq!(parse_cidr("::/0").unwrap(), ("::".parse().unwrap(), 0));
        assert_eq!(
            parse_cidr("fd00::1/128").unwrap(),
            ("fd00::1".parse().unwrap(), 128)
        );
        for bad in [
            "10.0.0.1",
            "10.0.0.1/",
            "10.0.0.1/+8",
            "fd00::/129",
            "a/1",
            "/8",
        ] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ip_version_follows_the_family() {
        assert_eq!(ip_version("192.0.2.1/24"), "4");
        assert_eq!(ip_version("2001:db8::1/64"), "6");
        assert_eq!(ip_version("::ffff:192.0.2.1/96"), "6");
    }

    #[test]
    fn serde_storage_form() {
        let v = serde_json::to_value(full()).unwrap();
        assert_eq!(v["interfaces"][1]["pciID"], "0000:00:1f.6");
        assert_eq!(v["interfaces"][1]["socketPath"], "/run/vhost.sock");
        assert!(v.get("cniVersion").is_none());
        let back: CniResult = serde_json::from_value(v).unwrap();
        assert_eq!(back, full());
        assert_eq!(
            serde_json::to_value(CniResult::default()).unwrap(),
            json!({})
        );
        let empty: CniResult = serde_json::from_value(json!({})).unwrap();
        assert_eq!(empty, CniResult::default());
    }
}
