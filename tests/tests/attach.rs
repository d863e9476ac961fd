//! ADD and DEL through real delegates: which networks a pod gets, under which names, with
//! which addresses, in every CNI version a caller may speak.

use plexus_tests::{Bench, pod_args, result_addresses};
use serde_json::{Value, json};

const POD: &str = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0";

fn annotated(annotations: Value) -> String {
    pod_args("default", "web-0", &annotations)
}

/// The pod-side addresses of `ifname` in the result, with the prefix.
fn addresses_on(result: &Value, ifname: &str) -> Vec<String> {
    let interfaces = result["interfaces"].as_array().cloned().unwrap_or_default();
    result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|ip| {
            ip["interface"]
                .as_u64()
                .and_then(|index| interfaces.get(index as usize))
                .is_some_and(|iface| iface["name"] == ifname && iface.get("sandbox").is_some())
        })
        .filter_map(|ip| ip["address"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn genie_annotation_gives_eth0_and_eth1_from_two_networks() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let config = bench.config("1.1.0", json!({}));
    let args = annotated(json!({"cni": "calico,flannel"}));

    let result = bench.invoke("ADD", "c1", "eth0", &args, &config).ok();

    assert_eq!(result["cniVersion"], "1.1.0");
    let eth0 = addresses_on(&result, "eth0");
    let eth1 = addresses_on(&result, "eth1");
    assert_eq!(eth0.len(), 1, "{result}");
    assert!(eth0[0].starts_with("10.11.0."), "{eth0:?}");
    assert!(eth1[0].starts_with("10.12.0."), "{eth1:?}");
    assert_eq!(bench.pod.addresses("eth0"), eth0);
    assert_eq!(bench.pod.addresses("eth1"), eth1);
    assert_eq!(bench.leases().len(), 2);

    bench.invoke("DEL", "c1", "eth0", &args, &config).ok();
    bench.assert_clean();
}

#[test]
fn genie_ifname_suffix_names_the_interface() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let config = bench.config("1.0.0", json!({}));
    let args = annotated(json!({"cni": "flannel@fl0, calico@cal0"}));
    let result = bench.invoke("ADD", "c1", "eth0", &args, &config).ok();
    assert!(addresses_on(&result, "fl0")[0].starts_with("10.12.0."));
    assert!(addresses_on(&result, "cal0")[0].starts_with("10.11.0."));
    let mut links = bench.pod.links();
    links.sort();
    assert_eq!(links, ["cal0", "fl0", "lo"]);
    bench.invoke("DEL", "c1", "eth0", &args, &config).ok();
    bench.assert_clean();
}

#[test]
fn multus_short_form_adds_defaults_then_net1() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let config = bench.config("1.0.0", json!({"defaultNetworks": ["calico"]}));
    let args = annotated(json!({"k8s.v1.cni.cncf.io/networks": "default/flannel"}));
    let result = bench.invoke("ADD", "c1", "eth0", &args, &config).ok();
    assert!(addresses_on(&result, "eth0")[0].starts_with("10.11.0."));
    assert!(addresses_on(&result, "net1")[0].starts_with("10.12.0."));
    bench.invoke("DEL", "c1", "eth0", &args, &config).ok();
    bench.assert_clean();
}

#[test]
fn multus_json_form_with_interface_and_requested_addresses() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    // Static IPAM takes the address from runtimeConfig `ips`, host-local honours it too.
    bench.write_network(
        "30-fixed.conf",
        &json!({
            "cniVersion": "1.0.0", "name": "fixed", "type": "bridge", "bridge": "br-fixed",
            "capabilities": {"ips": true},
            "ipam": {"type": "static"},
        }),
    );
    let mut chosen = bench.ptp_list("chosen", "10.14.0.0/24", "1.0.0");
    chosen["plugins"][0]["capabilities"] = json!({"ips": true});
    bench.write_network("40-chosen.conflist", &chosen);
    let config = bench.config("1.0.0", json!({"defaultNetworks": ["calico"]}));
    let networks = json!([
        {"name": "fixed", "interface": "fixed0", "ips": ["10.13.0.7/24"]},
        {"name": "chosen", "namespace": "default", "ips": ["10.14.0.42/24"]},
    ]);
    let args = annotated(json!({"k8s.v1.cni.cncf.io/networks": networks.to_string()}));

    let result = bench.invoke("ADD", "c1", "eth0", &args, &config).ok();

    assert_eq!(addresses_on(&result, "fixed0"), ["10.13.0.7/24"]);
    assert_eq!(bench.pod.addresses("fixed0"), ["10.13.0.7/24"]);
    assert_eq!(addresses_on(&result, "net2"), ["10.14.0.42/24"]);
    assert_eq!(bench.pod.addresses("net2"), ["10.14.0.42/24"]);
    bench.invoke("DEL", "c1", "eth0", &args, &config).ok();
    bench.assert_clean();
}

#[test]
fn default_networks_apply_without_annotations() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    // CNI-Genie's key, as an existing Genie configuration has it.
    let config = bench.config("1.0.0", json!({"default_plugin": "flannel,calico"}));
    let result = bench.invoke("ADD", "c1", "eth0", POD, &config).ok();
    assert!(addresses_on(&result, "eth0")[0].starts_with("10.12.0."));
    assert!(addresses_on(&result, "eth1")[0].starts_with("10.11.0."));
    bench.invoke("DEL", "c1", "eth0", POD, &config).ok();
    bench.assert_clean();
}

#[test]
fn genie_file_names_find_networks_whose_name_differs() {
    let bench = Bench::new();
    bench.write_network(
        "10-calico.conf",
        &bench.bridge("k8s-pod-network", "br-a", "10.11.0.0/24", "0.3.1"),
    );
    bench.write_network(
        "10-flannel.conflist",
        &bench.ptp_list("cbr0", "10.12.0.0/24", "0.3.1"),
    );
    let config = bench.config("0.3.1", json!({}));
    let args = annotated(json!({"cni": "calico,flannel"}));
    let result = bench.invoke("ADD", "c1", "eth0", &args, &config).ok();
    assert!(addresses_on(&result, "eth0")[0].starts_with("10.11.0."));
    assert!(addresses_on(&result, "eth1")[0].starts_with("10.12.0."));
    bench.invoke("DEL", "c1", "eth0", &args, &config).ok();
    bench.assert_clean();
}

#[test]
fn a_missing_network_is_named_and_nothing_is_made() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let config = bench.config("1.0.0", json!({}));
    let args = annotated(json!({"cni": "calico,weave"}));
    let error = bench.invoke("ADD", "c1", "eth0", &args, &config).err();
    assert_eq!(error["code"], 102, "{error}");
    assert!(error["msg"].as_str().unwrap().contains("weave"), "{error}");
    bench.assert_clean();
}

#[test]
fn an_ambiguous_network_names_the_candidates() {
    let bench = Bench::new();
    bench.write_network(
        "10-a.conf",
        &bench.bridge("dup", "br-a", "10.11.0.0/24", "1.0.0"),
    );
    bench.write_network(
        "20-b.conf",
        &bench.bridge("dup", "br-b", "10.12.0.0/24", "1.0.0"),
    );
    let config = bench.config("1.0.0", json!({}));
    let args = annotated(json!({"cni": "dup"}));
    let error = bench.invoke("ADD", "c1", "eth0", &args, &config).err();
    let message = error["msg"].as_str().unwrap();
    assert!(
        message.contains("10-a.conf") && message.contains("20-b.conf"),
        "{error}"
    );
    bench.assert_clean();
}

#[test]
fn no_way_to_choose_is_a_clear_error() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let config = bench.config("1.0.0", json!({}));
    let error = bench.invoke("ADD", "c1", "eth0", POD, &config).err();
    let message = error["msg"].as_str().unwrap();
    assert!(
        message.contains("defaultNetworks") && message.contains("cni"),
        "{error}"
    );
}

#[test]
fn invalid_interface_names_are_refused_before_any_delegate_runs() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let config = bench.config("1.0.0", json!({}));
    for annotation in [
        "calico@eth0,flannel@eth0",
        "calico@a-name-far-too-long",
        "calico@a:b",
    ] {
        let args = annotated(json!({ "cni": annotation }));
        let error = bench.invoke("ADD", "c1", "eth0", &args, &config).err();
        assert!(
            error["code"].as_u64().unwrap() >= 100,
            "{annotation}: {error}"
        );
        bench.assert_clean();
    }
}

/// Every version a caller may speak, over delegates that speak only older ones.
#[test]
fn every_caller_version_gets_its_own_result_format() {
    let bench = Bench::new();
    let delegate_versions = ["0.3.0", "0.3.1", "0.4.0", "1.0.0"];
    for caller in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        for delegate in delegate_versions {
            for file in ["10-calico.conf", "20-flannel.conflist"] {
                let _ = std::fs::remove_file(bench.networks_dir().join(file));
            }
            bench.write_two_networks(delegate);
            let config = bench.config(caller, json!({}));
            let args = annotated(json!({"cni": "calico,flannel"}));
            let result = bench.invoke("ADD", "c1", "eth0", &args, &config).ok();
            assert_eq!(
                result["cniVersion"], caller,
                "caller {caller}, delegate {delegate}"
            );
            let addresses = result_addresses(&result);
            assert_eq!(addresses.len(), 2, "{result}");
            for ip in result["ips"].as_array().unwrap() {
                let has_version = ip.get("version").is_some();
                let wants_version = caller < "1.0.0";
                assert_eq!(has_version, wants_version, "caller {caller}: {ip}");
            }
            if caller >= "0.4.0" {
                bench.invoke("CHECK", "c1", "eth0", &args, &config).ok();
            }
            bench.invoke("DEL", "c1", "eth0", &args, &config).ok();
            bench.assert_clean();
        }
    }
}

#[test]
fn parallel_attachments_keep_attachment_order() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let args = annotated(json!({"cni": "flannel,calico"}));
    for parallel in [false, true] {
        let config = bench.config("1.1.0", json!({ "parallel": parallel }));
        let result = bench.invoke("ADD", "c1", "eth0", &args, &config).ok();
        assert!(
            addresses_on(&result, "eth0")[0].starts_with("10.12.0."),
            "parallel {parallel}"
        );
        assert!(
            addresses_on(&result, "eth1")[0].starts_with("10.11.0."),
            "parallel {parallel}"
        );
        bench.invoke("DEL", "c1", "eth0", &args, &config).ok();
        bench.assert_clean();
    }
}

#[test]
fn primary_only_merge_returns_the_first_attachment() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let config = bench.config("1.0.0", json!({"merge": "builtin:primary-only"}));
    let args = annotated(json!({"cni": "calico,flannel"}));
    let result = bench.invoke("ADD", "c1", "eth0", &args, &config).ok();
    let addresses = result_addresses(&result);
    assert_eq!(addresses.len(), 1, "{result}");
    assert!(addresses[0].starts_with("10.11.0."));
    // The pod still has both interfaces: merging shapes the answer, not the plumbing.
    assert_eq!(bench.pod.addresses("eth1").len(), 1);
    bench.invoke("DEL", "c1", "eth0", &args, &config).ok();
    bench.assert_clean();
}

#[test]
fn pod_annotations_from_runtime_config() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let config = bench.config(
        "1.1.0",
        json!({"runtimeConfig": {"io.kubernetes.cri.pod-annotations": {"cni": "flannel"}}}),
    );
    let result = bench.invoke("ADD", "c1", "eth0", POD, &config).ok();
    assert!(addresses_on(&result, "eth0")[0].starts_with("10.12.0."));
    bench.invoke("DEL", "c1", "eth0", POD, &config).ok();
    bench.assert_clean();
}
