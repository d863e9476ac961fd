//! Pod annotations that choose networks: CNI-Genie's `cni` and Multus's
//! `k8s.v1.cni.cncf.io/networks`.
//!
//! Both parse into [`NetworkRequest`]s, so a policy treats them alike after parsing.
//! Errors name the annotation and the entry at fault, ready to be returned as the CNI error.

use std::net::IpAddr;

use serde::Deserialize;

/// CNI-Genie's annotation: `cni: "calico,flannel@eth1"`.
pub const GENIE: &str = "cni";

/// Multus's annotation: a short list (`"ns/name@ifname, other"`) or a JSON list of objects.
pub const MULTUS: &str = "k8s.v1.cni.cncf.io/networks";

/// One network a pod asks for, with what it asks of the attachment.
///
/// CNI-Genie's annotation fills only `name` and `interface`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkRequest {
    /// The network's name, looked up with [`crate::networks::lookup`].
    pub name: String,
    /// Multus's namespace of the network (`ns/name`). Plexus finds networks in one
    /// directory, so this is informational.
    pub namespace: Option<String>,
    /// The interface name the pod asked for (`name@ifname`, or Multus's `interface`).
    pub interface: Option<String>,
    /// Addresses asked for (CIDR), for the delegate's runtimeConfig `ips`.
    pub ips: Vec<String>,
    /// A MAC address asked for, for the delegate's runtimeConfig `mac`.
    pub mac: Option<String>,
    /// Gateways whose default route this attachment should carry.
    pub default_route: Vec<String>,
    /// Multus's `cni-args` object, serialised as JSON, for the delegate's `args.cni`.
    pub cni_args: Option<String>,
}

/// The value of annotation `key`, or `None` when the pod does not carry it or its value is
/// blank: Kubernetes treats an empty annotation value like an absent one, and so do
/// CNI-Genie and Multus.
///
/// ```
/// use plexus_policy_sdk::annotations;
/// let pod_annotations = vec![("cni".to_owned(), "calico".to_owned())];
/// assert_eq!(annotations::get(&pod_annotations, annotations::GENIE), Some("calico"));
/// ```
pub fn get<'a>(annotations: &'a [(String, String)], key: &str) -> Option<&'a str> {
    annotations
        .iter()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.as_str())
        .filter(|value| !value.trim().is_empty())
}

/// Parses CNI-Genie's `cni` annotation: networks separated by `,`, each `name` or
/// `name@ifname`; whitespace around names is ignored; an empty entry is an error.
///
/// ```
/// use plexus_policy_sdk::annotations::parse_genie;
/// let requests = parse_genie("calico, flannel@eth5").unwrap();
/// assert_eq!(requests[0].name, "calico");
/// assert_eq!(requests[1].interface.as_deref(), Some("eth5"));
/// ```
pub fn parse_genie(value: &str) -> Result<Vec<NetworkRequest>, String> {
    split_entries(GENIE, value)?
        .into_iter()
        .map(|entry| {
            let (name, interface) = split_interface(GENIE, entry)?;
            Ok(NetworkRequest {
                name: name.to_owned(),
                interface: interface.map(str::to_owned),
                ..NetworkRequest::default()
            })
        })
        .collect()
}

/// Parses Multus's `k8s.v1.cni.cncf.io/networks` annotation in either form:
///
/// - short: `"name, ns/name@ifname"` — namespace and interface optional;
/// - JSON (when the value starts with `[` or `{`): a list of objects with `name` (required),
///   `namespace`, `interface`, `ips` (CIDR strings), `mac`, `default-route` (gateway IPs)
///   and `cni-args` (an object). Other keys Multus knows are ignored, as Multus ignores
///   keys it does not know.
///
/// ```
/// use plexus_policy_sdk::annotations::parse_multus;
/// let short = parse_multus("kube-system/macvlan@data").unwrap();
/// assert_eq!(short[0].namespace.as_deref(), Some("kube-system"));
/// let json = parse_multus(r#"[{"name": "macvlan", "ips": ["10.1.1.5/24"]}]"#).unwrap();
/// assert_eq!(json[0].ips, ["10.1.1.5/24"]);
/// ```
pub fn parse_multus(value: &str) -> Result<Vec<NetworkRequest>, String> {
    let trimmed = value.trim_start();
    if trimmed.starts_with('[') || trimmed.starts_with('{') {
        parse_multus_json(trimmed)
    } else {
        parse_multus_short(value)
    }
}

fn parse_multus_short(value: &str) -> Result<Vec<NetworkRequest>, String> {
    split_entries(MULTUS, value)?
        .into_iter()
        .map(|entry| {
            let (qualified_name, interface) = split_interface(MULTUS, entry)?;
            let (namespace, name) = match qualified_name.split_once('/') {
                None => (None, qualified_name),
                Some((namespace, name)) => {
                    let namespace = namespace.trim();
                    let name = name.trim();
                    if namespace.is_empty() || name.is_empty() || name.contains('/') {
                        return Err(format!(
                            "annotation {MULTUS}: entry {entry:?} is not of the form \
                             [namespace/]name[@interface]"
                        ));
                    }
                    (Some(namespace.to_owned()), name)
                }
            };
            Ok(NetworkRequest {
                name: name.to_owned(),
                namespace,
                interface: interface.map(str::to_owned),
                ..NetworkRequest::default()
            })
        })
        .collect()
}

/// One object of Multus's JSON form, as written in the annotation.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct MultusSelection {
    name: String,
    namespace: Option<String>,
    interface: Option<String>,
    #[serde(default)]
    ips: Vec<String>,
    mac: Option<String>,
    #[serde(default)]
    default_route: Vec<String>,
    cni_args: Option<serde_json::Value>,
}

fn parse_multus_json(value: &str) -> Result<Vec<NetworkRequest>, String> {
    let selections: Vec<MultusSelection> = serde_json::from_str(value)
        .map_err(|err| format!("annotation {MULTUS}: not a JSON list of network objects: {err}"))?;
    if selections.is_empty() {
        return Err(format!(
            "annotation {MULTUS}: the JSON list names no network"
        ));
    }
    selections
        .into_iter()
        .enumerate()
        .map(|(index, selection)| multus_request(index, selection))
        .collect()
}

/// Checks one JSON selection and turns it into a request; `index` locates it in errors.
fn multus_request(index: usize, selection: MultusSelection) -> Result<NetworkRequest, String> {
    let at = |what: String| {
        format!(
            "annotation {MULTUS}: network #{} ({:?}): {what}",
            index + 1,
            selection.name
        )
    };
    let name = selection.name.trim();
    if name.is_empty() {
        return Err(format!(
            "annotation {MULTUS}: network #{}: `name` is empty",
            index + 1
        ));
    }
    for cidr in &selection.ips {
        check_cidr(cidr).map_err(|err| at(format!("`ips`: {err}")))?;
    }
    if let Some(mac) = &selection.mac {
        check_mac(mac).map_err(|err| at(format!("`mac`: {err}")))?;
    }
    for gateway in &selection.default_route {
        gateway
            .parse::<IpAddr>()
            .map_err(|_| at(format!("`default-route`: {gateway:?} is not an IP address")))?;
    }
    let cni_args = match selection.cni_args {
        None => None,
        Some(args @ serde_json::Value::Object(_)) => Some(args.to_string()),
        Some(other) => return Err(at(format!("`cni-args` must be a JSON object, not {other}"))),
    };
    Ok(NetworkRequest {
        name: name.to_owned(),
        namespace: selection
            .namespace
            .filter(|namespace| !namespace.trim().is_empty()),
        interface: selection.interface,
        ips: selection.ips,
        mac: selection.mac,
        default_route: selection.default_route,
        cni_args,
    })
}

/// The comma-separated entries of a list annotation, trimmed; an empty entry is an error
/// because it is almost always a typo (`"calico,,flannel"`) that would otherwise be hidden.
fn split_entries<'a>(annotation: &str, value: &'a str) -> Result<Vec<&'a str>, String> {
    value
        .split(',')
        .map(str::trim)
        .enumerate()
        .map(|(index, entry)| {
            if entry.is_empty() {
                Err(format!(
                    "annotation {annotation}: entry #{} of {value:?} is empty",
                    index + 1
                ))
            } else {
                Ok(entry)
            }
        })
        .collect()
}

/// Splits `name@ifname` into the name and the optional interface name, both trimmed.
fn split_interface<'a>(
    annotation: &str,
    entry: &'a str,
) -> Result<(&'a str, Option<&'a str>), String> {
    let Some((name, interface)) = entry.split_once('@') else {
        return Ok((entry, None));
    };
    let (name, interface) = (name.trim(), interface.trim());
    if name.is_empty() || interface.is_empty() || interface.contains('@') {
        return Err(format!(
            "annotation {annotation}: entry {entry:?} is not of the form name@interface"
        ));
    }
    Ok((name, Some(interface)))
}

/// Checks that `cidr` is `address/prefix` with a prefix the address family allows.
fn check_cidr(cidr: &str) -> Result<(), String> {
    let not_cidr = || format!("{cidr:?} is not an address in CIDR notation (like 10.1.0.5/24)");
    let (address, prefix) = cidr.split_once('/').ok_or_else(not_cidr)?;
    let address: IpAddr = address.parse().map_err(|_| not_cidr())?;
    // Digits only: Rust's integer parser also takes a sign (`+8`), which the host's CIDR
    // parser and the delegates' (Go's `net.ParseCIDR`) refuse.
    if !prefix.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(not_cidr());
    }
    let prefix: u8 = prefix.parse().map_err(|_| not_cidr())?;
    let max_prefix = if address.is_ipv4() { 32 } else { 128 };
    if prefix > max_prefix {
        return Err(not_cidr());
    }
    Ok(())
}

/// Checks that `mac` is six two-digit hexadecimal octets separated by `:`.
fn check_mac(mac: &str) -> Result<(), String> {
    let octets: Vec<&str> = mac.split(':').collect();
    let well_formed = octets.len() == 6
        && octets
            .iter()
            .all(|octet| octet.len() == 2 && octet.bytes().all(|byte| byte.is_ascii_hexdigit()));
    if well_formed {
        Ok(())
    } else {
        Err(format!(
            "{mac:?} is not a MAC address (like 02:42:ac:11:00:02)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(name: &str, interface: Option<&str>) -> NetworkRequest {
        NetworkRequest {
            name: name.to_owned(),
            interface: interface.map(str::to_owned),
            ..NetworkRequest::default()
        }
    }

    #[test]
    fn get_finds_the_annotation_and_treats_blank_as_absent() {
        let pod_annotations = vec![
            ("cni".to_owned(), "  ".to_owned()),
            (MULTUS.to_owned(), "macvlan".to_owned()),
        ];
        assert_eq!(get(&pod_annotations, GENIE), None);
        assert_eq!(get(&pod_annotations, MULTUS), Some("macvlan"));
        assert_eq!(get(&pod_annotations, "other"), None);
    }

    #[test]
    fn genie_list_keeps_order() {
        assert_eq!(
            parse_genie("calico,flannel"),
            Ok(vec![request("calico", None), request("flannel", None)])
        );
    }

    #[test]
    fn genie_tolerates_whitespace_and_takes_ifnames() {
        assert_eq!(
            parse_genie(" calico @ eth7 ,\tflannel "),
            Ok(vec![
                request("calico", Some("eth7")),
                request("flannel", None)
            ])
        );
    }

    #[test]
    fn genie_empty_entries_are_errors() {
        for value in ["calico,,flannel", "calico,", ",calico"] {
            let err = parse_genie(value).unwrap_err();
            assert!(
                err.contains("annotation cni") && err.contains("empty"),
                "{err}"
            );
        }
    }

    #[test]
    fn genie_rejects_malformed_ifname() {
        for value in ["calico@", "@eth1", "calico@eth1@eth2"] {
            let err = parse_genie(value).unwrap_err();
            assert!(err.contains("name@interface"), "{value}: {err}");
        }
    }

    #[test]
    fn multus_short_form_with_namespace_and_interface() {
        let requests = parse_multus("kube-system/macvlan@data0, sriov ,ns2/ipvlan").unwrap();
        assert_eq!(
            requests,
            vec![
                NetworkRequest {
                    namespace: Some("kube-system".to_owned()),
                    ..request("macvlan", Some("data0"))
                },
                request("sriov", None),
                NetworkRequest {
                    namespace: Some("ns2".to_owned()),
                    ..request("ipvlan", None)
                },
            ]
        );
    }

    #[test]
    fn multus_short_form_errors_name_the_annotation() {
        for value in ["a,,b", "/macvlan", "ns/", "a/b/c", "macvlan@"] {
            let err = parse_multus(value).unwrap_err();
            assert!(
                err.starts_with("annotation k8s.v1.cni.cncf.io/networks:"),
                "{value}: {err}"
            );
        }
    }

    #[test]
    fn multus_json_form_carries_every_field() {
        let value = r#"[
            {"name": "macvlan", "namespace": "kube-system", "interface": "data0",
             "ips": ["10.1.1.5/24", "fd00::5/64"], "mac": "02:42:ac:11:00:02",
             "default-route": ["10.1.1.1"], "cni-args": {"vlan": 7},
             "infiniband-guid": "ignored"},
            {"name": "sriov"}
        ]"#;
        let requests = parse_multus(value).unwrap();
        assert_eq!(
            requests,
            vec![
                NetworkRequest {
                    name: "macvlan".to_owned(),
                    namespace: Some("kube-system".to_owned()),
                    interface: Some("data0".to_owned()),
                    ips: vec!["10.1.1.5/24".to_owned(), "fd00::5/64".to_owned()],
                    mac: Some("02:42:ac:11:00:02".to_owned()),
                    default_route: vec!["10.1.1.1".to_owned()],
                    cni_args: Some(r#"{"vlan":7}"#.to_owned()),
                },
                request("sriov", None),
            ]
        );
    }

    #[test]
    fn multus_json_errors_say_what_is_wrong() {
        let cases = [
            (r#"{"name": "a"}"#, "not a JSON list"),
            (r#"[{"interface": "x"}]"#, "missing field `name`"),
            ("[]", "names no network"),
            (r#"[{"name": " "}]"#, "`name` is empty"),
            (r#"[{"name": "a", "ips": ["10.1.1.5"]}]"#, "CIDR"),
            (r#"[{"name": "a", "ips": ["10.1.1.5/33"]}]"#, "CIDR"),
            (r#"[{"name": "a", "mac": "02:42:ac:11:00"}]"#, "not a MAC"),
            (r#"[{"name": "a", "default-route": ["gw"]}]"#, "not an IP"),
            (
                r#"[{"name": "a", "cni-args": "x=1"}]"#,
                "must be a JSON object",
            ),
            (r#"[{"name": "a"}"#, "not a JSON list"),
        ];
        for (value, expected) in cases {
            let err = parse_multus(value).unwrap_err();
            assert!(
                err.starts_with("annotation k8s.v1.cni.cncf.io/networks:"),
                "{err}"
            );
            assert!(err.contains(expected), "{value}: {err}");
        }
    }

    /// Caught by fuzzing (`fuzz/fuzz_targets/multus_annotation.rs`): a signed prefix passed
    /// this check but not the host's CIDR parser, nor the delegates'.
    #[test]
    fn multus_json_ips_prefix_is_digits_only() {
        for cidr in [
            "10.0.0.1/+8",
            "fd00::1/+64",
            "10.0.0.1/-0",
            "10.0.0.1/ 8",
            "10.0.0.1/",
        ] {
            let value = format!(r#"[{{"name": "a", "ips": ["{cidr}"]}}]"#);
            let err = parse_multus(&value).unwrap_err();
            assert!(err.contains("CIDR"), "{cidr}: {err}");
        }
        let ok = parse_multus(r#"[{"name": "a", "ips": ["10.0.0.1/08", "fd00::1/128"]}]"#);
        assert_eq!(ok.unwrap()[0].ips, ["10.0.0.1/08", "fd00::1/128"]);
    }

    #[test]
    fn multus_json_error_names_the_network() {
        let err =
            parse_multus(r#"[{"name": "ok"}, {"name": "macvlan", "mac": "zz"}]"#).unwrap_err();
        assert!(err.contains("network #2 (\"macvlan\")"), "{err}");
    }
}
