//! The records of `plexus:policy/types`, newest version (`wit/v0.3.0`), as Rust types.
//!
//! Generated from the WIT package by `wasmtime::component::bindgen!`, so they are exactly
//! what crosses the policy boundary; a policy built against an older version gets them
//! converted to its own. They serialize to JSON with the WIT's own (kebab-case) field
//! names, e.g. `network-file`, `container-id`: the shape `plexus policy run` reads and
//! prints. When reading JSON a missing field takes its default (empty string, list,
//! `false` or `none`) and an unknown field is an error, so a typo is reported rather than
//! silently ignored.

pub use crate::wit::v0_3_0::selector::plexus::policy::types::{
    Attachment, AttachmentId, CniResult, DelegateResult, Dns, GcRequest, Interface, IpConfig,
    IpamRequest, MergeRequest, Network, Pod, PolicyMetadata, Route, SelectRequest,
};

/// Gives each record serde impls with the WIT's field names.
///
/// `bindgen!` can add derives but not the `#[serde(...)]` attributes that rename fields,
/// so each record gets a serde "remote" definition, and its impls forward to it. The
/// field lists cannot drift from the WIT: deserializing builds the generated record with
/// a struct literal, so a missing, extra or mistyped field fails to compile.
macro_rules! wit_serde {
    ($($record:ident { $($field:ident: $ty:ty),* $(,)? })*) => {$(
        const _: () = {
            type Remote = $record;

            #[derive(serde::Serialize, serde::Deserialize)]
            #[serde(
                remote = "Remote",
                rename_all = "kebab-case",
                default = "Remote::default",
                deny_unknown_fields
            )]
            struct Wire {
                $($field: $ty,)*
            }

            impl serde::Serialize for $record {
                fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                    Wire::serialize(self, serializer)
                }
            }

            impl<'de> serde::Deserialize<'de> for $record {
                fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                    Wire::deserialize(deserializer)
                }
            }
        };
    )*};
}

wit_serde! {
    Pod { namespace: String, name: String, uid: String, container_id: String, ifname: String }
    Network { name: String, plugin_type: String, cni_version: String, file: String }
    SelectRequest {
        pod: Pod,
        annotations: Vec<(String, String)>,
        cni_args: Vec<(String, String)>,
        runtime_config: String,
        networks: Vec<Network>,
        default_networks: Vec<String>,
        policy_config: String,
        vm: bool,
    }
    Attachment {
        network_file: String,
        ifname: String,
        ips: Vec<String>,
        mac: Option<String>,
        cni_args: Option<String>,
        default_route: Vec<String>,
    }
    Interface {
        name: String,
        mac: Option<String>,
        mtu: Option<u32>,
        sandbox: Option<String>,
        socket_path: Option<String>,
        pci_id: Option<String>,
    }
    IpConfig { address: String, gateway: Option<String>, interface: Option<u32> }
    Route {
        dst: String,
        gw: Option<String>,
        mtu: Option<u32>,
        advmss: Option<u32>,
        priority: Option<u32>,
        table: Option<u32>,
        scope: Option<u32>,
    }
    Dns { nameservers: Vec<String>, domain: Option<String>, search: Vec<String>, options: Vec<String> }
    CniResult { interfaces: Vec<Interface>, ips: Vec<IpConfig>, routes: Vec<Route>, dns: Dns }
    DelegateResult { attachment: Attachment, network: Network, result: CniResult }
    MergeRequest { pod: Pod, results: Vec<DelegateResult>, policy_config: String }
    PolicyMetadata { name: String, version: String, min_host_version: String }
    IpamRequest {
        pod: Pod,
        network: String,
        config: String,
        requested_ips: Vec<String>,
        cni_args: Vec<(String, String)>,
        now: u64,
    }
    AttachmentId { container_id: String, ifname: String }
    GcRequest { network: String, config: String, valid_attachments: Vec<AttachmentId>, now: u64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_uses_the_wit_field_names() {
        let attachment = Attachment {
            network_file: "10-calico.conf".into(),
            ifname: "eth0".into(),
            mac: Some("02:00:00:00:00:01".into()),
            ..Attachment::default()
        };
        let json = serde_json::to_value(&attachment).unwrap();
        assert_eq!(json["network-file"], "10-calico.conf");
        assert_eq!(json["default-route"], serde_json::json!([]));
        assert!(json.get("network_file").is_none());
        let back: Attachment = serde_json::from_value(json).unwrap();
        assert_eq!(back.network_file, attachment.network_file);
        assert_eq!(back.mac, attachment.mac);
    }

    #[test]
    fn missing_fields_default_and_unknown_fields_are_refused() {
        let request: SelectRequest =
            serde_json::from_str(r#"{"pod": {"container-id": "abc", "ifname": "eth0"}}"#).unwrap();
        assert_eq!(request.pod.container_id, "abc");
        assert!(request.networks.is_empty());
        assert!(!request.vm);

        let typo = serde_json::from_str::<Pod>(r#"{"container_id": "abc"}"#).unwrap_err();
        assert!(typo.to_string().contains("container_id"), "{typo}");
    }

    #[test]
    fn vm_and_metadata_use_the_wit_names() {
        let request: SelectRequest = serde_json::from_str(r#"{"vm": true}"#).unwrap();
        assert!(request.vm);
        let metadata = PolicyMetadata {
            name: "annotations".into(),
            version: "1.2.3".into(),
            min_host_version: "0.1.0".into(),
        };
        let json = serde_json::to_value(&metadata).unwrap();
        assert_eq!(json["min-host-version"], "0.1.0");
    }

    #[test]
    fn nested_records_round_trip() {
        let request = MergeRequest {
            results: vec![DelegateResult {
                result: CniResult {
                    ips: vec![IpConfig {
                        address: "10.1.0.5/24".into(),
                        interface: Some(0),
                        ..IpConfig::default()
                    }],
                    ..CniResult::default()
                },
                ..DelegateResult::default()
            }],
            ..MergeRequest::default()
        };
        let json = serde_json::to_string(&request).unwrap();
        assert!(json.contains(r#""policy-config""#), "{json}");
        let back: MergeRequest = serde_json::from_str(&json).unwrap();
        assert_eq!(back.results[0].result.ips[0].interface, Some(0));
    }
}
