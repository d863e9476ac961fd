//! Who the pod is and what it is annotated with, from the two places runtimes put it.

use serde_json::{Map, Value};

use crate::config::{POD_ANNOTATIONS_CAPABILITY, PluginConfig};

/// `CNI_ARGS` key carrying the annotations as a JSON object (Virtlet's CNI-Genie convention).
const ANNOTATIONS_ARG: &str = "K8S_ANNOT";

#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error("CNI_ARGS {ANNOTATIONS_ARG} is not a JSON object of strings: {reason}")]
    Annotations { reason: String },
}

/// The pod identity from `CNI_ARGS`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodIdentity {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl PodIdentity {
    pub fn from_args(args: &[(String, String)]) -> Self {
        let arg = |key: &str| {
            args.iter()
                .find(|(name, _)| name == key)
                .map(|(_, value)| value.clone())
                .unwrap_or_default()
        };
        PodIdentity {
            namespace: arg("K8S_POD_NAMESPACE"),
            name: arg("K8S_POD_NAME"),
            uid: arg("K8S_POD_UID"),
        }
    }
}

/// The pod's annotations: the runtime's capability argument wins over `K8S_ANNOT`, since
/// it is what the CRI runtime itself saw.
pub fn annotations(
    config: &PluginConfig,
    args: &[(String, String)],
) -> Result<Vec<(String, String)>, PodError> {
    if let Some(map) = config.runtime_annotations() {
        return string_pairs(map);
    }
    let Some((_, json)) = args.iter().find(|(key, _)| key == ANNOTATIONS_ARG) else {
        return Ok(Vec::new());
    };
    let value: Value = serde_json::from_str(json).map_err(|err| PodError::Annotations {
        reason: err.to_string(),
    })?;
    let map = value.as_object().ok_or_else(|| PodError::Annotations {
        reason: "not an object".into(),
    })?;
    string_pairs(map)
}

/// Why no pod annotation reached plexus, when none did by either route (the runtime's
/// capability argument, `K8S_ANNOT`): the warning an operator migrating a CNI-Genie node
/// needs, since a Genie configuration declares no capabilities and its pods then
/// silently get the default networks.
pub fn unreached_annotations(config: &PluginConfig, args: &[(String, String)]) -> Option<String> {
    if config.runtime_annotations().is_some() || args.iter().any(|(key, _)| key == ANNOTATIONS_ARG)
    {
        return None;
    }
    Some(if config.declares_pod_annotations() {
        format!(
            "the runtime passed no pod annotations although the configuration declares the \
             capability {POD_ANNOTATIONS_CAPABILITY}: does it support it? Every pod gets \
             defaultNetworks"
        )
    } else {
        missing_capability()
    })
}

/// What a configuration without the pod-annotations capability means for its pods.
pub fn missing_capability() -> String {
    format!(
        "the configuration does not declare \"capabilities\": {{\"{POD_ANNOTATIONS_CAPABILITY}\": \
         true}}, so containerd and CRI-O pass no pod annotations (a CNI-Genie configuration \
         has none) and every pod gets defaultNetworks, whatever it is annotated with"
    )
}

fn string_pairs(map: &Map<String, Value>) -> Result<Vec<(String, String)>, PodError> {
    map.iter()
        .map(|(key, value)| match value {
            Value::String(text) => Ok((key.clone(), text.clone())),
            _ => Err(PodError::Annotations {
                reason: format!("annotation {key} is not a string"),
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn config(json: &str) -> PluginConfig {
        PluginConfig::from_slice(json.as_bytes()).unwrap()
    }

    #[test]
    fn identity_comes_from_k8s_args() {
        let pod = PodIdentity::from_args(&args(&[
            ("IgnoreUnknown", "1"),
            ("K8S_POD_NAMESPACE", "web"),
            ("K8S_POD_NAME", "front-0"),
            ("K8S_POD_UID", "u-1"),
        ]));
        assert_eq!(pod.namespace, "web");
        assert_eq!(pod.name, "front-0");
        assert_eq!(pod.uid, "u-1");
    }

    #[test]
    fn runtime_config_annotations_win_over_k8s_annot() {
        let config = config(
            r#"{"cniVersion":"1.0.0","runtimeConfig":
                {"io.kubernetes.cri.pod-annotations":{"cni":"a,b"}}}"#,
        );
        let found = annotations(&config, &args(&[("K8S_ANNOT", r#"{"cni":"c"}"#)])).unwrap();
        assert_eq!(found, [("cni".to_string(), "a,b".to_string())]);
    }

    #[test]
    fn k8s_annot_is_read_when_the_capability_is_absent() {
        let config = config(r#"{"cniVersion":"1.0.0"}"#);
        let found = annotations(&config, &args(&[("K8S_ANNOT", r#"{"cni":"c"}"#)])).unwrap();
        assert_eq!(found, [("cni".to_string(), "c".to_string())]);
        let err = annotations(&config, &args(&[("K8S_ANNOT", "[1]")])).unwrap_err();
        assert!(err.to_string().contains("K8S_ANNOT"));
    }
}
