//! `builtin:annotations`, Plexus's default selection policy: the pod's annotations choose
//! its networks, the way CNI-Genie and Multus read them.
//!
//! 1. CNI-Genie's `cni: "calico,flannel"`: exactly these networks, in order. The first
//!    is named `CNI_IFNAME`, the others `eth<position>` (`eth1`, `eth2`, ...);
//!    `name@ifname` picks a name.
//! 2. Else Multus's `k8s.v1.cni.cncf.io/networks` (short list or JSON list): the
//!    `defaultNetworks` first (the first named `CNI_IFNAME`, the others `eth1`, ...), then
//!    these, named `net<position in the annotation>` (`net1`, `net2`, ...) unless
//!    `interface` (or `@ifname`) says; their
//!    `ips`, `mac`, `default-route` and `cni-args` go into the attachment.
//! 3. Else the `defaultNetworks` (the first named `CNI_IFNAME`, the others `eth1`, ...).
//!
//! If a pod carries both annotations, `cni` wins and the Multus annotation is ignored, as
//! CNI-Genie does. A blank annotation counts as absent.
//!
//! Generated names follow the position, as CNI-Genie and Multus name them, so a pod that
//! moves from either keeps its interface names; a name the pod asks for that clashes
//! with one is an error naming both networks. Every name is checked (1–15 bytes, no `/`,
//! `:` or whitespace) and must be unique, before any delegate runs. `policyConfig` takes no keys
//! yet: it must be a JSON object (or empty), and unknown keys are ignored.

use plexus_policy_sdk::annotations::{self, NetworkRequest};
use plexus_policy_sdk::ifnames::IfnameAllocator;
use plexus_policy_sdk::networks;
use plexus_policy_sdk::types::{Attachment, SelectRequest};
use plexus_policy_sdk::{Selector, config};
use serde::Deserialize;

/// The selection policy exported by this component.
pub struct AnnotationsPolicy;

impl Selector for AnnotationsPolicy {
    fn select(request: SelectRequest) -> Result<Vec<Attachment>, String> {
        select(&request)
    }
}

plexus_policy_sdk::export_selector!(AnnotationsPolicy);

/// `policyConfig` of this policy: nothing to configure yet; parsing it still reports a
/// malformed `policyConfig` instead of ignoring it.
#[derive(Deserialize)]
struct AnnotationsConfig {}

/// Prefix of the names CNI-Genie gives attachments after the first, and of defaults.
const GENIE_PREFIX: &str = "eth";
/// Prefix of the names Multus gives the networks its annotation adds.
const MULTUS_PREFIX: &str = "net";

/// Chooses the pod's attachments from its annotations, as the crate documentation says.
pub fn select(request: &SelectRequest) -> Result<Vec<Attachment>, String> {
    config::parse::<AnnotationsConfig>(&request.policy_config)?;
    let pod_ifname = &request.pod.ifname;
    let planned: Vec<(NetworkRequest, String)> =
        if let Some(value) = annotations::get(&request.annotations, annotations::GENIE) {
            named(
                annotations::parse_genie(value)?,
                Some(pod_ifname),
                GENIE_PREFIX,
            )
        } else if let Some(value) = annotations::get(&request.annotations, annotations::MULTUS) {
            let mut planned = named(default_requests(request), Some(pod_ifname), GENIE_PREFIX);
            planned.extend(named(
                annotations::parse_multus(value)?,
                None,
                MULTUS_PREFIX,
            ));
            planned
        } else if !request.default_networks.is_empty() {
            named(default_requests(request), Some(pod_ifname), GENIE_PREFIX)
        } else {
            return Err(no_choice_error(request));
        };
    attachments(request, planned)
}

fn default_requests(request: &SelectRequest) -> Vec<NetworkRequest> {
    request
        .default_networks
        .iter()
        .map(|name| NetworkRequest {
            name: name.clone(),
            ..NetworkRequest::default()
        })
        .collect()
}

/// Names each request: its own `interface` if it asked for one, else `first_ifname` for
/// the first request if given, else `<prefix><position>`, counting the first as 0 when it
/// takes `first_ifname` (Genie's `eth1` is the second network) and as 1 otherwise
/// (Multus's `net1` is the first network of its annotation).
fn named(
    requests: Vec<NetworkRequest>,
    first_ifname: Option<&str>,
    prefix: &str,
) -> Vec<(NetworkRequest, String)> {
    let first_number = usize::from(first_ifname.is_none());
    requests
        .into_iter()
        .enumerate()
        .map(|(index, request)| {
            let ifname = match (&request.interface, first_ifname) {
                (Some(interface), _) => interface.clone(),
                (None, Some(first_ifname)) if index == 0 => first_ifname.to_owned(),
                (None, _) => format!("{prefix}{}", first_number + index),
            };
            (request, ifname)
        })
        .collect()
}

/// Looks up every network; every name must be valid and unused, or the error names the
/// networks involved.
fn attachments(
    request: &SelectRequest,
    planned: Vec<(NetworkRequest, String)>,
) -> Result<Vec<Attachment>, String> {
    let mut allocator = IfnameAllocator::new();
    planned
        .into_iter()
        .map(|(network, ifname)| {
            allocator.claim(&ifname, &network.name)?;
            let file = networks::lookup(&request.networks, &network.name)?
                .file
                .clone();
            Ok(Attachment {
                network_file: file,
                ifname,
                ips: network.ips,
                mac: network.mac,
                cni_args: network.cni_args,
                default_route: network.default_route,
            })
        })
        .collect()
}

fn no_choice_error(request: &SelectRequest) -> String {
    let pod = &request.pod;
    let who = if pod.name.is_empty() {
        format!("container {}", pod.container_id)
    } else {
        format!("pod {}/{}", pod.namespace, pod.name)
    };
    format!(
        "{who} chooses no network: annotate the pod with `{}: \"<network>[,<network>...]\"` \
         (CNI-Genie) or `{}: \"<network>[,<network>...]\"` (Multus), or set `defaultNetworks` \
         in the Plexus configuration",
        annotations::GENIE,
        annotations::MULTUS
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_policy_sdk::types::{Network, Pod};

    fn network(name: &str, plugin_type: &str, file: &str) -> Network {
        Network {
            name: name.to_owned(),
            plugin_type: plugin_type.to_owned(),
            cni_version: "1.0.0".to_owned(),
            file: file.to_owned(),
        }
    }

    fn request(annotations: &[(&str, &str)], default_networks: &[&str]) -> SelectRequest {
        SelectRequest {
            pod: Pod {
                namespace: "default".to_owned(),
                name: "web".to_owned(),
                ifname: "eth0".to_owned(),
                ..Pod::default()
            },
            annotations: annotations
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
            networks: vec![
                network("k8s-pod-network", "calico", "10-calico.conf"),
                network("cbr0", "flannel", "10-flannel.conflist"),
                network("storage", "macvlan", "30-storage.json"),
                network("backup", "macvlan", "31-backup.json"),
            ],
            default_networks: default_networks
                .iter()
                .map(|name| (*name).to_owned())
                .collect(),
            policy_config: "{}".to_owned(),
            ..SelectRequest::default()
        }
    }

    fn attachment(file: &str, ifname: &str) -> Attachment {
        Attachment {
            network_file: file.to_owned(),
            ifname: ifname.to_owned(),
            ..Attachment::default()
        }
    }

    /// `(file, ifname)` of each attachment, for tests that only check those.
    fn files_and_names(attachments: &[Attachment]) -> Vec<(&str, &str)> {
        attachments
            .iter()
            .map(|attachment| (attachment.network_file.as_str(), attachment.ifname.as_str()))
            .collect()
    }

    #[test]
    fn genie_list_in_order() {
        let chosen = select(&request(&[("cni", "calico,flannel,storage")], &["backup"])).unwrap();
        assert_eq!(
            chosen,
            vec![
                attachment("10-calico.conf", "eth0"),
                attachment("10-flannel.conflist", "eth1"),
                attachment("30-storage.json", "eth2"),
            ]
        );
    }

    #[test]
    fn genie_names_follow_the_position_and_clashes_are_errors() {
        let chosen = select(&request(&[("cni", "calico, flannel@data, storage")], &[])).unwrap();
        assert_eq!(
            files_and_names(&chosen),
            [
                ("10-calico.conf", "eth0"),
                ("10-flannel.conflist", "data"),
                ("30-storage.json", "eth2")
            ]
        );
        let err = select(&request(&[("cni", "calico, flannel, storage@eth1")], &[])).unwrap_err();
        assert!(err.contains("\"eth1\" is used twice"), "{err}");
    }

    #[test]
    fn genie_first_with_explicit_ifname_frees_cni_ifname() {
        let chosen = select(&request(&[("cni", "calico@data, flannel")], &[])).unwrap();
        assert_eq!(
            files_and_names(&chosen),
            [("10-calico.conf", "data"), ("10-flannel.conflist", "eth1")]
        );
    }

    #[test]
    fn genie_wins_over_multus() {
        let chosen = select(&request(
            &[
                ("k8s.v1.cni.cncf.io/networks", "storage"),
                ("cni", "flannel"),
            ],
            &["calico"],
        ))
        .unwrap();
        assert_eq!(files_and_names(&chosen), [("10-flannel.conflist", "eth0")]);
    }

    #[test]
    fn multus_short_form_after_defaults() {
        let chosen = select(&request(
            &[(
                "k8s.v1.cni.cncf.io/networks",
                "storage, kube-system/backup@data, storage",
            )],
            &["calico", "flannel"],
        ))
        .unwrap();
        assert_eq!(
            files_and_names(&chosen),
            [
                ("10-calico.conf", "eth0"),
                ("10-flannel.conflist", "eth1"),
                ("30-storage.json", "net1"),
                ("31-backup.json", "data"),
                ("30-storage.json", "net3"),
            ]
        );
    }

    #[test]
    fn multus_json_form_carries_its_fields() {
        let value = r#"[
            {"name": "storage", "interface": "net1", "ips": ["10.5.0.7/24"], "mac": "02:00:00:00:00:07",
             "default-route": ["10.5.0.1"], "cni-args": {"vlan": 7}},
            {"name": "backup"}
        ]"#;
        let chosen = select(&request(
            &[("k8s.v1.cni.cncf.io/networks", value)],
            &["calico"],
        ))
        .unwrap();
        assert_eq!(
            chosen,
            vec![
                attachment("10-calico.conf", "eth0"),
                Attachment {
                    ips: vec!["10.5.0.7/24".to_owned()],
                    mac: Some("02:00:00:00:00:07".to_owned()),
                    cni_args: Some(r#"{"vlan":7}"#.to_owned()),
                    default_route: vec!["10.5.0.1".to_owned()],
                    ..attachment("30-storage.json", "net1")
                },
                attachment("31-backup.json", "net2"),
            ]
        );
    }

    #[test]
    fn multus_without_defaults_names_from_net1() {
        let chosen = select(&request(
            &[("k8s.v1.cni.cncf.io/networks", "storage,backup")],
            &[],
        ))
        .unwrap();
        assert_eq!(
            files_and_names(&chosen),
            [("30-storage.json", "net1"), ("31-backup.json", "net2")]
        );
    }

    #[test]
    fn defaults_without_annotations() {
        let chosen = select(&request(
            &[("unrelated", "x"), ("cni", " ")],
            &["flannel", "calico"],
        ))
        .unwrap();
        assert_eq!(
            files_and_names(&chosen),
            [("10-flannel.conflist", "eth0"), ("10-calico.conf", "eth1")]
        );
    }

    #[test]
    fn networks_are_found_by_name_file_rule_and_type() {
        // `macvlan` is the type of two configurations: ambiguous.
        let err = select(&request(&[("cni", "cbr0,calico,macvlan@m0")], &[])).unwrap_err();
        assert!(err.contains("30-storage.json, 31-backup.json"), "{err}");

        let mut by_type = request(&[("cni", "cbr0,calico,bridge")], &[]);
        by_type
            .networks
            .push(network("pods", "bridge", "40-pods.conf"));
        let chosen = select(&by_type).unwrap();
        assert_eq!(
            files_and_names(&chosen),
            [
                ("10-flannel.conflist", "eth0"),
                ("10-calico.conf", "eth1"),
                ("40-pods.conf", "eth2")
            ]
        );
    }

    #[test]
    fn missing_network_is_an_error() {
        let err = select(&request(&[("cni", "calico,weave")], &[])).unwrap_err();
        assert!(err.contains("\"weave\" not found"), "{err}");
        let err = select(&request(&[], &["weave"])).unwrap_err();
        assert!(err.contains("\"weave\" not found"), "{err}");
    }

    #[test]
    fn no_choice_says_how_to_choose() {
        let err = select(&request(&[], &[])).unwrap_err();
        assert!(
            err.starts_with("pod default/web chooses no network"),
            "{err}"
        );
        assert!(
            err.contains("`cni:") && err.contains("`k8s.v1.cni.cncf.io/networks:"),
            "{err}"
        );
        assert!(err.contains("defaultNetworks"), "{err}");
    }

    #[test]
    fn bad_interface_names_are_rejected() {
        for (annotation, value) in [
            ("cni", "calico@eth:0"),
            ("cni", "calico@a-name-longer-than-15"),
            (
                "k8s.v1.cni.cncf.io/networks",
                r#"[{"name": "storage", "interface": "net 1"}]"#,
            ),
        ] {
            let err = select(&request(&[(annotation, value)], &["calico"])).unwrap_err();
            assert!(err.contains("invalid interface name"), "{value}: {err}");
        }
        let mut bad_cni_ifname = request(&[], &["calico"]);
        bad_cni_ifname.pod.ifname = "bad/name".to_owned();
        let err = select(&bad_cni_ifname).unwrap_err();
        assert!(
            err.starts_with("calico: invalid interface name \"bad/name\""),
            "{err}"
        );
    }

    #[test]
    fn duplicate_interface_names_are_rejected() {
        let err = select(&request(&[("cni", "calico, flannel@eth0")], &[])).unwrap_err();
        assert_eq!(
            err,
            "interface name \"eth0\" is used twice: by calico and by flannel"
        );
        let err = select(&request(
            &[("k8s.v1.cni.cncf.io/networks", "storage@eth0")],
            &["calico"],
        ))
        .unwrap_err();
        assert!(err.contains("\"eth0\" is used twice"), "{err}");
    }

    #[test]
    fn annotation_errors_reach_the_caller() {
        let err = select(&request(&[("cni", "calico,,flannel")], &[])).unwrap_err();
        assert!(err.starts_with("annotation cni:"), "{err}");
        let err = select(&request(&[("k8s.v1.cni.cncf.io/networks", "[{")], &[])).unwrap_err();
        assert!(
            err.starts_with("annotation k8s.v1.cni.cncf.io/networks:"),
            "{err}"
        );
    }

    #[test]
    fn policy_config_accepts_objects_and_ignores_unknown_keys() {
        let mut configured = request(&[], &["calico"]);
        for config in ["", "{}", r#"{"future": 1}"#] {
            configured.policy_config = config.to_owned();
            assert!(select(&configured).is_ok(), "{config}");
        }
        configured.policy_config = "[]".to_owned();
        assert!(
            select(&configured)
                .unwrap_err()
                .starts_with("policyConfig:")
        );
    }

    #[test]
    fn selector_trait_calls_the_same_logic() {
        let chosen = AnnotationsPolicy::select(request(&[("cni", "calico")], &[])).unwrap();
        assert_eq!(chosen, vec![attachment("10-calico.conf", "eth0")]);
    }
}
