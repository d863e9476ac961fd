//! The meta-plugin's own configuration (the plugin entry on stdin,
//! `PluginConfig::from_slice`) and the pod's annotations and identity it then reads from
//! `runtimeConfig` or `CNI_ARGS` (`K8S_ANNOT`).
//!
//! The input is the configuration, then after a NUL byte the value of `CNI_ARGS`.
//!
//! Properties: a configuration that parses has a supported `cniVersion`; absolute
//! `networksDir`, `stateDir`, `logFile`, `recordDir`; a policy time limit, memory limit,
//! attachment bound, VM lease time and VM queue count of at least 1; a `policyConfig` that is JSON text;
//! Genie's `default_plugin` list has no empty or untrimmed name. Annotations, when they
//! read, are the runtime's capability argument if given (as strings), else `K8S_ANNOT`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus::config::PluginConfig;
use plexus::pod;
use plexus_cni::{CniVersion, parse_cni_args};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let (stdin, cni_args) = match data.iter().position(|&b| b == 0) {
        Some(at) => (
            &data[..at],
            String::from_utf8_lossy(&data[at + 1..]).into_owned(),
        ),
        None => (data, String::new()),
    };
    let Ok(config) = PluginConfig::from_slice(stdin) else {
        return;
    };
    assert_eq!(
        config.cni_version.as_str().parse::<CniVersion>(),
        Ok(config.cni_version)
    );
    assert!(config.networks_dir.is_absolute() && config.common.state_dir.is_absolute());
    assert!(
        config
            .common
            .log_file
            .as_ref()
            .is_none_or(|p| p.is_absolute())
    );
    assert!(config.record_dir.as_ref().is_none_or(|p| p.is_absolute()));
    assert!(config.common.policy_limits.timeout.as_millis() >= 1);
    assert!(config.common.policy_limits.memory_bytes >= 1 << 20);
    assert!(config.max_attachments >= 1);
    assert!(config.vm.lease_secs >= 1 && config.vm.queues >= 1);
    serde_json::from_str::<Value>(&config.policy_config).expect("policyConfig is JSON text");
    let document: Value = serde_json::from_slice(stdin).unwrap();
    if document.get("defaultNetworks").is_none_or(Value::is_null)
        && document.get("default_plugin").is_some_and(Value::is_string)
    {
        for name in &config.default_networks {
            assert!(
                !name.is_empty() && name == name.trim() && !name.contains(','),
                "{name:?}"
            );
        }
    }

    let Ok(args) = parse_cni_args(&cni_args) else {
        return;
    };
    let identity = pod::PodIdentity::from_args(&args);
    let _ = (identity.namespace, identity.name, identity.uid);
    let Ok(annotations) = pod::annotations(&config, &args) else {
        return;
    };
    if let Some(map) = config.runtime_annotations() {
        assert_eq!(annotations.len(), map.len());
        for (key, value) in &annotations {
            assert_eq!(map.get(key).and_then(Value::as_str), Some(value.as_str()));
        }
    } else if let Some((_, json)) = args.iter().find(|(key, _)| key == "K8S_ANNOT") {
        let object: serde_json::Map<String, Value> = serde_json::from_str(json).unwrap();
        assert_eq!(annotations.len(), object.len());
    } else {
        assert!(annotations.is_empty());
    }
    let _ = config.vm.mode.is_vm_pod(&annotations);
});
