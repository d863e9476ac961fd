//! Reading the plugin configuration's `policyConfig`.

use serde::de::DeserializeOwned;

/// Parses `policy_config` (the request's `policy-config`, JSON) into `T`.
///
/// Empty or blank text counts as `{}`, and only a JSON object is accepted. Keys `T` does
/// not declare are ignored (unless `T` says `#[serde(deny_unknown_fields)]`), so one
/// `policyConfig` can serve several policies. Errors begin with `policyConfig:`.
///
/// ```
/// use plexus_policy_sdk::config;
/// #[derive(serde::Deserialize, Default)]
/// struct MyConfig { #[serde(default)] prefix: Option<String> }
/// let parsed: MyConfig = config::parse(r#"{"prefix": "data", "other": 1}"#).unwrap();
/// assert_eq!(parsed.prefix.as_deref(), Some("data"));
/// assert!(config::parse::<MyConfig>("[1]").is_err());
/// ```
pub fn parse<T: DeserializeOwned>(policy_config: &str) -> Result<T, String> {
    let text = if policy_config.trim().is_empty() {
        "{}"
    } else {
        policy_config
    };
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|err| format!("policyConfig: not valid JSON: {err}"))?;
    if !value.is_object() {
        return Err(format!("policyConfig: must be a JSON object, not {value}"));
    }
    serde_json::from_value(value).map_err(|err| format!("policyConfig: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Example {
        #[serde(default)]
        limit: u32,
    }

    #[test]
    fn empty_means_defaults() {
        assert_eq!(parse::<Example>(""), Ok(Example { limit: 0 }));
        assert_eq!(parse::<Example>(" {} "), Ok(Example { limit: 0 }));
    }

    #[test]
    fn unknown_keys_are_ignored() {
        assert_eq!(
            parse::<Example>(r#"{"limit": 3, "other": true}"#),
            Ok(Example { limit: 3 })
        );
    }

    #[test]
    fn errors_say_policy_config() {
        for text in ["{", "[]", "7", r#"{"limit": "x"}"#] {
            let err = parse::<Example>(text).unwrap_err();
            assert!(err.starts_with("policyConfig: "), "{text}: {err}");
        }
    }
}
