//! Bindings of `plexus:policy@0.1.0` (`wit/v0.1.0`), frozen: a policy built against it is
//! called through these, with the request converted down from the current
//! [`types`](crate::types) and the answer converted up.
//!
//! 0.2.0 only added to 0.1.0: `select-request` gained `vm` (dropped going down), and the
//! worlds gained `metadata` (which a 0.1.0 policy does not export). Every other record is
//! the same, field for field.

use wasmtime::Store;

use crate::sandbox::Sandbox;
use crate::types as new;
use selector::plexus::policy::types as old;

mod selector {
    wasmtime::component::bindgen!({ path: "../../wit/v0.1.0", world: "selector" });
}

mod merger {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.1.0",
        world: "merger",
        with: { "plexus:policy/types": super::selector::plexus::policy::types },
    });
}

pub(crate) use merger::MergerPre;
pub(crate) use selector::SelectorPre;

/// Calls `select` of a 0.1.0 policy in `store`.
pub(crate) fn select(
    pre: &SelectorPre<Sandbox>,
    store: &mut Store<Sandbox>,
    request: &new::SelectRequest,
) -> wasmtime::Result<Result<Vec<new::Attachment>, String>> {
    let request = old::SelectRequest::from(request.clone());
    let answer = pre
        .instantiate(&mut *store)?
        .call_select(&mut *store, &request)?;
    Ok(answer.map(|attachments| attachments.into_iter().map(Into::into).collect()))
}

/// Calls `merge` of a 0.1.0 policy in `store`.
pub(crate) fn merge(
    pre: &MergerPre<Sandbox>,
    store: &mut Store<Sandbox>,
    request: &new::MergeRequest,
) -> wasmtime::Result<Result<new::CniResult, String>> {
    let request = old::MergeRequest::from(request.clone());
    let answer = pre
        .instantiate(&mut *store)?
        .call_merge(&mut *store, &request)?;
    Ok(answer.map(Into::into))
}

impl From<new::SelectRequest> for old::SelectRequest {
    fn from(request: new::SelectRequest) -> Self {
        let new::SelectRequest {
            pod,
            annotations,
            cni_args,
            runtime_config,
            networks,
            default_networks,
            policy_config,
            // Added in 0.2.0: a policy built before it cannot be told.
            vm: _,
        } = request;
        Self {
            pod: pod.into(),
            annotations,
            cni_args,
            runtime_config,
            networks: networks.into_iter().map(Into::into).collect(),
            default_networks,
            policy_config,
        }
    }
}

/// `From` between a record of one version and the same record of the other, field by
/// field: a field moves as it is, or converts as a `record` or a `list` of records.
/// `<=>` writes both directions. Both sides are spelled out whole (a destructuring pattern
/// and a struct literal), so a field added to either version's record fails to compile
/// here instead of being dropped.
macro_rules! same_record {
    ($a:ident <=> $b:ident, $($record:tt)*) => {
        same_record!($a => $b, $($record)*);
        same_record!($b => $a, $($record)*);
    };
    ($from:ident => $to:ident, $record:ident { $($field:ident $(: $how:ident)?),* $(,)? }) => {
        impl From<$from::$record> for $to::$record {
            fn from(record: $from::$record) -> Self {
                let $from::$record { $($field),* } = record;
                Self { $($field: same_record!(@field $field $($how)?)),* }
            }
        }
    };
    (@field $value:ident) => { $value };
    (@field $value:ident record) => { $value.into() };
    (@field $value:ident list) => { $value.into_iter().map(Into::into).collect() };
}

// Only requests carry these, and requests only go down.
same_record!(new => old, Pod { namespace, name, uid, container_id, ifname });
same_record!(new => old, Network { name, plugin_type, cni_version, file });
same_record!(new => old, DelegateResult { attachment: record, network: record, result: record });
same_record!(new => old, MergeRequest { pod: record, results: list, policy_config });
// Answers come up; a merge request carries delegates' results (and attachments) down.
same_record!(new <=> old, Attachment { network_file, ifname, ips, mac, cni_args, default_route });
same_record!(new <=> old, Interface { name, mac, mtu, sandbox, socket_path, pci_id });
same_record!(new <=> old, IpConfig { address, gateway, interface });
same_record!(new <=> old, Route { dst, gw, mtu, advmss, priority, table, scope });
same_record!(new <=> old, Dns { nameservers, domain, search, options });
same_record!(new <=> old, CniResult { interfaces: list, ips: list, routes: list, dns: record });

#[cfg(test)]
mod tests {
    use super::*;

    fn result() -> new::CniResult {
        new::CniResult {
            interfaces: vec![new::Interface {
                name: "eth0".into(),
                mac: Some("02:00:00:00:00:01".into()),
                mtu: Some(1500),
                sandbox: Some("/var/run/netns/pod".into()),
                socket_path: Some("/run/sock".into()),
                pci_id: Some("0000:00:01.0".into()),
            }],
            ips: vec![new::IpConfig {
                address: "10.1.0.5/24".into(),
                gateway: Some("10.1.0.1".into()),
                interface: Some(0),
            }],
            routes: vec![new::Route {
                dst: "0.0.0.0/0".into(),
                gw: Some("10.1.0.1".into()),
                mtu: Some(1400),
                advmss: Some(1360),
                priority: Some(10),
                table: Some(100),
                scope: Some(0),
            }],
            dns: new::Dns {
                nameservers: vec!["10.1.0.2".into()],
                domain: Some("cluster.local".into()),
                search: vec!["svc.cluster.local".into()],
                options: vec!["ndots:5".into()],
            },
        }
    }

    fn attachment() -> new::Attachment {
        new::Attachment {
            network_file: "10-calico.conf".into(),
            ifname: "eth0".into(),
            ips: vec!["10.1.0.5/24".into()],
            mac: Some("02:00:00:00:00:01".into()),
            cni_args: Some(r#"{"a":"b"}"#.into()),
            default_route: vec!["10.1.0.1".into()],
        }
    }

    #[test]
    fn answers_survive_the_round_trip() {
        let down = old::CniResult::from(result());
        assert_eq!(new::CniResult::from(down), result());
        let down = old::Attachment::from(attachment());
        assert_eq!(new::Attachment::from(down), attachment());
    }

    #[test]
    fn a_select_request_loses_only_vm() {
        let request = new::SelectRequest {
            pod: new::Pod {
                namespace: "default".into(),
                name: "vm-0".into(),
                uid: "u1".into(),
                container_id: "c0ffee".into(),
                ifname: "eth0".into(),
            },
            annotations: vec![("plexus.io/vm".into(), "true".into())],
            cni_args: vec![("K8S_POD_NAME".into(), "vm-0".into())],
            runtime_config: "{}".into(),
            networks: vec![new::Network {
                name: "calico".into(),
                plugin_type: "bridge".into(),
                cni_version: "1.1.0".into(),
                file: "10-calico.conf".into(),
            }],
            default_networks: vec!["calico".into()],
            policy_config: r#"{"k":1}"#.into(),
            vm: true,
        };
        let down = old::SelectRequest::from(request.clone());
        assert_eq!(
            (&down.pod.namespace, &down.pod.name, &down.pod.uid),
            (&request.pod.namespace, &request.pod.name, &request.pod.uid)
        );
        assert_eq!(
            (&down.pod.container_id, &down.pod.ifname),
            (&request.pod.container_id, &request.pod.ifname)
        );
        assert_eq!(down.annotations, request.annotations);
        assert_eq!(down.cni_args, request.cni_args);
        assert_eq!(down.runtime_config, request.runtime_config);
        assert_eq!(down.networks[0].file, "10-calico.conf");
        assert_eq!(down.networks[0].plugin_type, "bridge");
        assert_eq!(down.default_networks, request.default_networks);
        assert_eq!(down.policy_config, request.policy_config);
    }

    #[test]
    fn a_merge_request_goes_down_whole() {
        let request = new::MergeRequest {
            pod: new::Pod {
                container_id: "c0ffee".into(),
                ..new::Pod::default()
            },
            results: vec![new::DelegateResult {
                attachment: attachment(),
                network: new::Network {
                    file: "10-calico.conf".into(),
                    ..new::Network::default()
                },
                result: result(),
            }],
            policy_config: "{}".into(),
        };
        let down = old::MergeRequest::from(request.clone());
        assert_eq!(down.pod.container_id, "c0ffee");
        assert_eq!(down.policy_config, "{}");
        let delegate = down.results.into_iter().next().unwrap();
        assert_eq!(delegate.network.file, "10-calico.conf");
        assert_eq!(new::Attachment::from(delegate.attachment), attachment());
        assert_eq!(new::CniResult::from(delegate.result), result());
    }
}
