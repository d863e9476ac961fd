//! `builtin:annotations`, the default selection policy, run natively on a pod's
//! annotations: the Genie and Multus forms as a policy turns them into attachments.
//!
//! The policy's crate is a library of the guest workspace besides a component, so it
//! runs here natively. The input is, separated by NUL bytes: the
//! `cni` annotation, the Multus annotation, `CNI_IFNAME`, `defaultNetworks` (comma
//! separated), and extra networks, one `name type file` a line, beside four fixed ones.
//!
//! Properties: the policy errors, or chooses one attachment per network asked for, each
//! on a configuration of the node, with interface names that are valid by the SDK's
//! rule and by the host's (`plexus_cni::validate_ifname`) alike and unique, `ips`,
//! `mac`, `default-route` and `cni-args` carried from the Multus JSON form, and
//! `cni-args` a JSON object, as the host requires. The host's checks of a selector's
//! answer never have to refuse what this policy returns.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use plexus_fuzz::fields;
use plexus_policy_sdk::annotations::{self, GENIE, MULTUS};
use plexus_policy_sdk::ifnames;
use plexus_policy_sdk::types::{Network, Pod, SelectRequest};
use serde_json::{Map, Value};

fn network(name: &str, plugin_type: &str, file: &str) -> Network {
    Network {
        name: name.into(),
        plugin_type: plugin_type.into(),
        cni_version: "1.0.0".into(),
        file: file.into(),
    }
}

fuzz_target!(|data: &[u8]| {
    let [genie, multus, ifname, defaults, extra] = fields::<5>(data);
    let mut networks = vec![
        network("k8s-pod-network", "calico", "10-calico.conflist"),
        network("flannel", "flannel", "20-flannel.conflist"),
        network("macvlan", "macvlan", "30-macvlan.conf"),
        network("sriov-net", "sriov", "40-sriov.json"),
    ];
    for line in extra.lines() {
        let mut words = line.split(' ');
        let (name, plugin_type, file) = (words.next(), words.next(), words.next());
        networks.push(network(
            name.unwrap_or_default(),
            plugin_type.unwrap_or_default(),
            file.unwrap_or_default(),
        ));
    }
    let mut pod_annotations = Vec::new();
    if !genie.is_empty() {
        pod_annotations.push((GENIE.to_owned(), genie));
    }
    if !multus.is_empty() {
        pod_annotations.push((MULTUS.to_owned(), multus));
    }
    let request = SelectRequest {
        pod: Pod {
            namespace: "default".into(),
            name: "web-0".into(),
            uid: "u-1".into(),
            container_id: "c1".into(),
            ifname,
        },
        annotations: pod_annotations,
        default_networks: defaults
            .split(',')
            .filter(|d| !d.is_empty())
            .map(str::to_owned)
            .collect(),
        networks,
        ..SelectRequest::default()
    };

    let Ok(chosen) = builtin_annotations::select(&request) else {
        return;
    };
    assert!(!chosen.is_empty());

    // What was asked for, as the policy's documentation says.
    let defaults = request.default_networks.len();
    let (expected, multus_requests) =
        if let Some(value) = annotations::get(&request.annotations, GENIE) {
            (annotations::parse_genie(value).unwrap().len(), Vec::new())
        } else if let Some(value) = annotations::get(&request.annotations, MULTUS) {
            let requests = annotations::parse_multus(value).unwrap();
            (defaults + requests.len(), requests)
        } else {
            (defaults, Vec::new())
        };
    assert_eq!(chosen.len(), expected);

    let mut names = HashSet::new();
    for attachment in &chosen {
        ifnames::validate(&attachment.ifname).unwrap();
        if let Err(e) = plexus_cni::validate_ifname(&attachment.ifname) {
            panic!(
                "the host refuses interface name {:?}: {e}",
                attachment.ifname
            );
        }
        assert!(
            names.insert(&attachment.ifname),
            "{} twice",
            attachment.ifname
        );
        assert!(
            request
                .networks
                .iter()
                .any(|n| n.file == attachment.network_file),
            "{} is no network file",
            attachment.network_file
        );
        if let Some(args) = &attachment.cni_args {
            assert!(
                serde_json::from_str::<Map<String, Value>>(args).is_ok(),
                "{args}"
            );
        }
    }
    for (attachment, asked) in chosen[chosen.len() - multus_requests.len()..]
        .iter()
        .zip(&multus_requests)
    {
        assert_eq!(attachment.ips, asked.ips);
        assert_eq!(attachment.mac, asked.mac);
        assert_eq!(attachment.default_route, asked.default_route);
        assert_eq!(attachment.cni_args, asked.cni_args);
        if let Some(interface) = &asked.interface {
            assert_eq!(&attachment.ifname, interface);
        }
    }
});
