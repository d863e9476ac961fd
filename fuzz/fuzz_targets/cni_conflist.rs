//! A network configuration file (`.conflist`, or a single-plugin `.conf`/`.json`) as
//! Plexus reads it from `networksDir`, and the configuration each delegate then gets.
//!
//! Properties: a configuration that parses has a supported `cniVersion`, a valid
//! network name, at least one plugin, each with a valid `type`; its serde form (a
//! `.conflist`) parses back to the same list, by both readers; the configuration built
//! for each plugin carries the list's name and version, only the capability arguments
//! the plugin enables, and a `prevResult` that reads back as the result given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_cni::{
    CniResult, CniVersion, IpConfig, NetworkConfigList, RuntimeConf, plugin_config, plugin_type,
    validate_network_name, validate_plugin_type,
};
use plexus_fuzz::json_eq;
use serde_json::{Map, Value, json};

fuzz_target!(|data: &[u8]| {
    let Ok(list) = NetworkConfigList::from_slice(data, "fuzz.conflist") else {
        return;
    };
    assert!(CniVersion::ALL.contains(&list.cni_version));
    assert_eq!(
        list.cni_version.as_str().parse::<CniVersion>(),
        Ok(list.cni_version)
    );
    validate_network_name(&list.name).expect("a parsed list has a valid name");
    assert!(!list.plugins.is_empty(), "a parsed list has plugins");
    for plugin in &list.plugins {
        validate_plugin_type(plugin_type(plugin)).expect("every plugin has a valid type");
    }
    assert_eq!(list.first_plugin_type(), plugin_type(&list.plugins[0]));

    // The serde form is itself a conflist, read back alike by both readers.
    let stored = serde_json::to_vec(&list).expect("a list serializes");
    let reread = NetworkConfigList::from_slice(&stored, "stored").expect("the stored form parses");
    same_list(&list, &reread);
    let deserialized: NetworkConfigList =
        serde_json::from_slice(&stored).expect("the stored form deserializes");
    same_list(&list, &deserialized);

    // What each delegate is sent.
    let capability_args: Map<String, Value> = json!({
        "mac": "02:00:00:00:00:01",
        "ips": ["10.1.0.5/24"],
        "io.kubernetes.cri.pod-annotations": {"cni": "a,b"},
    })
    .as_object()
    .cloned()
    .unwrap();
    let rt = RuntimeConf {
        container_id: "c1".into(),
        netns: Some("/run/netns/p".into()),
        ifname: "eth0".into(),
        args: vec![("K8S_POD_NAME".into(), "p".into())],
        capability_args: capability_args.clone(),
        cni_args: json!({"vlan": 7}).as_object().cloned(),
    };
    let prev = CniResult {
        ips: vec![IpConfig {
            address: "10.1.0.5/24".into(),
            gateway: Some("10.1.0.1".into()),
            interface: None,
        }],
        ..CniResult::default()
    };
    for (index, plugin) in list.plugins.iter().enumerate() {
        let conf = plugin_config(&list, index, &rt, Some(&prev)).expect("the plugin exists");
        let conf = conf
            .as_object()
            .expect("a plugin configuration is an object");
        assert_eq!(conf["name"], list.name.as_str());
        assert_eq!(conf["cniVersion"], list.cni_version.as_str());
        assert_eq!(conf["type"], plugin["type"]);
        let enabled = |cap: &str| {
            plugin
                .get("capabilities")
                .and_then(|c| c.get(cap))
                .and_then(Value::as_bool)
                == Some(true)
        };
        let applied: Map<String, Value> = capability_args
            .iter()
            .filter(|(cap, _)| enabled(cap))
            .map(|(cap, value)| (cap.clone(), value.clone()))
            .collect();
        if applied.is_empty() {
            // Nothing to pass: whatever the file wrote stays.
            assert_eq!(conf.get("runtimeConfig"), plugin.get("runtimeConfig"));
        } else {
            assert_eq!(conf.get("runtimeConfig"), Some(&Value::Object(applied)));
        }
        assert_eq!(conf["args"]["cni"]["vlan"], 7);
        let back = CniResult::from_json(&conf["prevResult"]).expect("prevResult reads back");
        assert_eq!(back, prev);
    }
    assert!(plugin_config(&list, list.plugins.len(), &rt, None).is_none());
});

fn same_list(a: &NetworkConfigList, b: &NetworkConfigList) {
    assert_eq!(a.name, b.name);
    assert_eq!(a.cni_version, b.cni_version);
    assert_eq!(a.disable_check, b.disable_check);
    assert_eq!(a.disable_gc, b.disable_gc);
    assert_eq!(a.plugins.len(), b.plugins.len());
    for (x, y) in a.plugins.iter().zip(&b.plugins) {
        assert!(
            json_eq(&Value::Object(x.clone()), &Value::Object(y.clone())),
            "plugin changed: {x:?} -> {y:?}"
        );
    }
}
