//! How the pod asked for each of its networks: the names its network-status and the
//! errors about it use, rather than the configuration's own `name` (`k8s-pod-network`,
//! `cbr0`), which the pod's author never wrote.
//!
//! The pod's CNI-Genie or Multus annotation is read with the SDK's own parsers and name
//! lookup — the rules `builtin:annotations` selects by — so a name here is always one the
//! pod used. Multus entries are named `namespace/name`, as Multus writes network-status
//! (the pod's namespace when the entry gives none); default networks as `defaultNetworks`
//! lists them. Naming is best effort: a network no annotation entry or default names
//! keeps its configuration's name.

use std::collections::HashMap;

use plexus_policy::types as host;
use plexus_policy_sdk::annotations::{self, NetworkRequest};
use plexus_policy_sdk::networks::lookup;
use plexus_policy_sdk::types as sdk;

/// The name the pod used for each network file of `request` it asked for.
pub fn names_by_file(request: &host::SelectRequest) -> HashMap<String, String> {
    let networks: Vec<sdk::Network> = request
        .networks
        .iter()
        .map(|network| sdk::Network {
            name: network.name.clone(),
            plugin_type: network.plugin_type.clone(),
            cni_version: network.cni_version.clone(),
            file: network.file.clone(),
        })
        .collect();
    let mut names = HashMap::new();
    let mut name = |wanted: &str, shown: String| {
        if let Ok(network) = lookup(&networks, wanted) {
            names.entry(network.file.clone()).or_insert(shown);
        }
    };
    // `cni` wins over the Multus annotation, as in builtin:annotations.
    if let Some(genie) = annotations::get(&request.annotations, annotations::GENIE) {
        for asked in annotations::parse_genie(genie).unwrap_or_default() {
            name(&asked.name, asked.name.clone());
        }
    } else if let Some(multus) = annotations::get(&request.annotations, annotations::MULTUS) {
        for asked in annotations::parse_multus(multus).unwrap_or_default() {
            name(&asked.name, multus_name(&asked, &request.pod.namespace));
        }
    }
    for default in &request.default_networks {
        name(default, default.clone());
    }
    names
}

/// `namespace/name`, as Multus names a network in network-status.
fn multus_name(asked: &NetworkRequest, pod_namespace: &str) -> String {
    match asked.namespace.as_deref().unwrap_or(pod_namespace) {
        "" => asked.name.clone(),
        namespace => format!("{namespace}/{}", asked.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(annotations: &[(&str, &str)], defaults: &[&str]) -> host::SelectRequest {
        let network = |name: &str, plugin_type: &str, file: &str| host::Network {
            name: name.into(),
            plugin_type: plugin_type.into(),
            cni_version: "1.0.0".into(),
            file: file.into(),
        };
        host::SelectRequest {
            pod: host::Pod {
                namespace: "shop".into(),
                name: "web-0".into(),
                ..Default::default()
            },
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            networks: vec![
                network("k8s-pod-network", "calico", "10-calico.conflist"),
                network("cbr0", "flannel", "20-flannel.conflist"),
                network("macvlan-conf", "macvlan", "30-macvlan.conf"),
            ],
            default_networks: defaults.iter().map(|d| d.to_string()).collect(),
            ..Default::default()
        }
    }

    fn names(request: &host::SelectRequest) -> Vec<(String, String)> {
        let mut names: Vec<_> = names_by_file(request).into_iter().collect();
        names.sort();
        names
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(file, name)| (file.to_string(), name.to_string()))
            .collect()
    }

    #[test]
    fn genie_networks_are_named_as_the_pod_wrote_them() {
        let request = request(&[("cni", "calico, flannel@eth5")], &[]);
        assert_eq!(
            names(&request),
            pairs(&[
                ("10-calico.conflist", "calico"),
                ("20-flannel.conflist", "flannel")
            ])
        );
    }

    #[test]
    fn multus_networks_are_namespace_slash_name_and_defaults_as_listed() {
        let annotation = r#"[{"name": "macvlan-conf", "namespace": "infra"}, {"name": "cbr0"}]"#;
        let request = request(&[("k8s.v1.cni.cncf.io/networks", annotation)], &["calico"]);
        assert_eq!(
            names(&request),
            pairs(&[
                ("10-calico.conflist", "calico"),
                ("20-flannel.conflist", "shop/cbr0"),
                ("30-macvlan.conf", "infra/macvlan-conf"),
            ])
        );
    }

    #[test]
    fn networks_nobody_named_and_unparsable_annotations_name_nothing() {
        assert!(names_by_file(&request(&[("cni", ",,")], &[])).is_empty());
        assert!(names_by_file(&request(&[], &["nowhere"])).is_empty());
    }
}
