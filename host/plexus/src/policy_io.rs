//! What crosses the policy boundary: requests built from an invocation, and CNI results
//! translated between the protocol's model and the WIT types.

use plexus_cni::{Invocation, NetworkConfigList};
use plexus_policy::types as wit;
use serde_json::Value;

use crate::config::PluginConfig;
use crate::error::PlexusError;
use crate::networks::Networks;
use crate::pod::{self, PodIdentity};

/// The selection request for an invocation under `config`.
pub(crate) fn select_request(
    invocation: &Invocation,
    config: &PluginConfig,
    networks: &Networks,
) -> Result<wit::SelectRequest, PlexusError> {
    let annotations = pod::annotations(config, &invocation.args)?;
    let vm = config.vm.mode.is_vm_pod(&annotations);
    Ok(wit::SelectRequest {
        pod: pod_of(invocation),
        annotations,
        cni_args: invocation.args.clone(),
        runtime_config: Value::Object(config.runtime_config.clone()).to_string(),
        networks: offered(networks),
        default_networks: config.default_networks.clone(),
        policy_config: config.policy_config.clone(),
        vm,
    })
}

/// The networks a selection policy is offered: every usable one, and the broken files
/// too — with only their file name and any `name` they declare — so that a pod asking for
/// a broken network is told what is wrong with its file rather than that the network does
/// not exist (the host refuses a selection that chooses one).
fn offered(networks: &Networks) -> Vec<wit::Network> {
    let usable = networks
        .usable
        .iter()
        .map(|network| network_of(&network.file, &network.config));
    let broken = networks.broken.iter().map(|broken| wit::Network {
        name: broken.name.clone().unwrap_or_default(),
        plugin_type: String::new(),
        cni_version: String::new(),
        file: broken.file.clone(),
    });
    usable.chain(broken).collect()
}

/// Who the pod of an invocation is, as policies see it.
pub(crate) fn pod_of(invocation: &Invocation) -> wit::Pod {
    let identity = PodIdentity::from_args(&invocation.args);
    wit::Pod {
        namespace: identity.namespace,
        name: identity.name,
        uid: identity.uid,
        container_id: invocation.container_id.clone().unwrap_or_default(),
        ifname: invocation.ifname.clone().unwrap_or_default(),
    }
}

/// Checks an IPAM policy's allocation before it reaches the delegate: no interfaces (the
/// delegate makes them), and a result [`check_result`] accepts.
pub(crate) fn check_allocation(result: &plexus_cni::CniResult) -> Result<(), String> {
    if !result.interfaces.is_empty() {
        return Err("an IPAM result has no interfaces; the delegate makes them".into());
    }
    check_result(result)
}

/// Checks a merged result before it reaches the runtime: it must be a valid CNI result
/// (addresses in CIDR form, ...) whose addresses point at its own interfaces.
pub(crate) fn check_result(result: &plexus_cni::CniResult) -> Result<(), String> {
    let interfaces = result.interfaces.len();
    if let Some(ip) = result.ips.iter().find(|ip| {
        ip.interface
            .is_some_and(|index| index as usize >= interfaces)
    }) {
        return Err(format!(
            "address {} points at interface {:?} of {interfaces}",
            ip.address, ip.interface
        ));
    }
    plexus_cni::CniResult::from_json(&result.to_json(plexus_cni::CniVersion::LATEST))
        .map(|_| ())
        .map_err(|error| error.to_string())
}

pub(crate) fn network_of(file: &str, config: &NetworkConfigList) -> wit::Network {
    wit::Network {
        name: config.name.clone(),
        plugin_type: config.first_plugin_type().to_owned(),
        cni_version: config.cni_version.as_str().to_owned(),
        file: file.to_owned(),
    }
}

pub(crate) fn to_policy_result(result: &plexus_cni::CniResult) -> wit::CniResult {
    wit::CniResult {
        interfaces: result
            .interfaces
            .iter()
            .map(|iface| wit::Interface {
                name: iface.name.clone(),
                mac: iface.mac.clone(),
                mtu: iface.mtu,
                sandbox: iface.sandbox.clone(),
                socket_path: iface.socket_path.clone(),
                pci_id: iface.pci_id.clone(),
            })
            .collect(),
        ips: result
            .ips
            .iter()
            .map(|ip| wit::IpConfig {
                address: ip.address.clone(),
                gateway: ip.gateway.clone(),
                interface: ip.interface,
            })
            .collect(),
        routes: result
            .routes
            .iter()
            .map(|route| wit::Route {
                dst: route.dst.clone(),
                gw: route.gw.clone(),
                mtu: route.mtu,
                advmss: route.advmss,
                priority: route.priority,
                table: route.table,
                scope: route.scope,
            })
            .collect(),
        dns: wit::Dns {
            nameservers: result.dns.nameservers.clone(),
            domain: result.dns.domain.clone(),
            search: result.dns.search.clone(),
            options: result.dns.options.clone(),
        },
    }
}

pub(crate) fn from_policy_result(result: wit::CniResult) -> plexus_cni::CniResult {
    plexus_cni::CniResult {
        interfaces: result
            .interfaces
            .into_iter()
            .map(|iface| plexus_cni::Interface {
                name: iface.name,
                mac: iface.mac,
                mtu: iface.mtu,
                sandbox: iface.sandbox,
                socket_path: iface.socket_path,
                pci_id: iface.pci_id,
            })
            .collect(),
        ips: result
            .ips
            .into_iter()
            .map(|ip| plexus_cni::IpConfig {
                address: ip.address,
                gateway: ip.gateway,
                interface: ip.interface,
            })
            .collect(),
        routes: result
            .routes
            .into_iter()
            .map(|route| plexus_cni::Route {
                dst: route.dst,
                gw: route.gw,
                mtu: route.mtu,
                advmss: route.advmss,
                priority: route.priority,
                table: route.table,
                scope: route.scope,
            })
            .collect(),
        dns: plexus_cni::Dns {
            nameservers: result.dns.nameservers,
            domain: result.dns.domain,
            search: result.dns.search,
            options: result.dns.options,
        },
    }
}

#[cfg(test)]
mod tests {
    use plexus_cni::Command;

    use super::*;

    fn invocation(args: &[(&str, &str)]) -> Invocation {
        Invocation {
            command: Command::Add,
            container_id: Some("c0ffee".to_owned()),
            netns: None,
            ifname: Some("eth0".to_owned()),
            args: args
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
            raw_args: String::new(),
            path: Vec::new(),
        }
    }

    #[test]
    fn vm_follows_the_mode_and_the_annotation() {
        let annotated = invocation(&[("K8S_ANNOT", r#"{"plexus.io/vm":"true"}"#)]);
        let plain = invocation(&[]);
        for (mode, invocation, vm) in [
            ("never", &annotated, false),
            ("annotation", &annotated, true),
            ("annotation", &plain, false),
            ("always", &plain, true),
        ] {
            let config = format!(r#"{{"cniVersion":"1.1.0","vm":{{"mode":"{mode}"}}}}"#);
            let config = PluginConfig::from_slice(config.as_bytes()).unwrap();
            let request = select_request(invocation, &config, &Networks::default()).unwrap();
            assert_eq!(
                request.vm, vm,
                "mode {mode}, annotations {:?}",
                request.annotations
            );
        }
    }
}
