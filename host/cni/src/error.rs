//! The error a CNI plugin prints on stdout, and the specification's codes.

use std::fmt;

use serde_json::{Map, Value};

/// Error codes reserved by the CNI specification (0-99); plugins may use
/// 100 and above for their own.
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in network configuration; the message names it.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist: the runtime need not clean up.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables; the message names them.
    pub const INVALID_ENVIRONMENT: u32 = 4;
    /// I/O failure, e.g. reading the config from stdin.
    pub const IO_FAILURE: u32 = 5;
    /// Failed to decode content, e.g. the config or a version string.
    pub const DECODE: u32 = 6;
    /// Invalid network config.
    pub const INVALID_CONFIG: u32 = 7;
    /// A transient condition; the runtime should retry later.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// STATUS: the plugin cannot service ADD requests.
    pub const NOT_AVAILABLE: u32 = 50;
    /// STATUS: not available, and existing containers may have limited connectivity.
    pub const LIMITED_CONNECTIVITY: u32 = 51;
    /// Not a specification code: the conventional "anything else" of libcni plugins.
    pub const INTERNAL: u32 = 999;
}

/// A CNI error result: what a failing plugin prints on stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    /// One of [`code`], or a plugin-specific code of 100 and above.
    pub code: u32,
    /// A short message characterizing the error.
    pub msg: String,
    /// A longer description; empty when there is none.
    pub details: String,
}

impl CniError {
    /// An error with no details.
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// The same error with `details` set.
    pub fn with_details(self, details: impl Into<String>) -> Self {
        CniError {
            details: details.into(),
            ..self
        }
    }

    /// The wire form: `{"cniVersion","code","msg","details"}`, `details`
    /// omitted when empty.
    pub fn to_json(&self, cni_version: &str) -> Value {
        let mut map = Map::new();
        map.insert("cniVersion".into(), cni_version.into());
        map.insert("code".into(), self.code.into());
        map.insert("msg".into(), self.msg.clone().into());
        if !self.details.is_empty() {
            map.insert("details".into(), self.details.clone().into());
        }
        Value::Object(map)
    }

    /// Reads a plugin's error output. `None` unless `value` is an object with
    /// an unsigned integer `code`; `msg` and `details` default to empty, and
    /// `cniVersion` is not required because the error carries no versioned data.
    pub fn from_json(value: &Value) -> Option<Self> {
        let obj = value.as_object()?;
        let code = u32::try_from(obj.get("code")?.as_u64()?).ok()?;
        let text = |key: &str| {
            obj.get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Some(CniError {
            code,
            msg: text("msg"),
            details: text("details"),
        })
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        write!(f, " (code {})", self.code)
    }
}

impl std::error::Error for CniError {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prints_wire_form() {
        let e = CniError::new(code::INVALID_CONFIG, "Invalid Configuration");
        assert_eq!(
            e.to_json("1.1.0"),
            json!({"cniVersion": "1.1.0", "code": 7, "msg": "Invalid Configuration"})
        );
        let e = e.with_details("Network 192.168.0.0/31 too small to allocate from.");
        assert_eq!(
            e.to_json("0.4.0"),
            json!({
                "cniVersion": "0.4.0",
                "code": 7,
                "msg": "Invalid Configuration",
                "details": "Network 192.168.0.0/31 too small to allocate from.",
            })
        );
    }

    #[test]
    fn reads_wire_form() {
        let e = CniError::from_json(&json!({
            "cniVersion": "1.0.0", "code": 11, "msg": "busy", "details": "lock held"
        }))
        .unwrap();
        assert_eq!(
            e,
            CniError::new(code::TRY_AGAIN_LATER, "busy").with_details("lock held")
        );
        let e = CniError::from_json(&json!({"code": 100})).unwrap();
        assert_eq!(e, CniError::new(100, ""));
        let back = CniError::from_json(&e.to_json("1.1.0")).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn rejects_non_errors() {
        for v in [
            json!({"msg": "no code"}),
            json!({"code": "7", "msg": "string code"}),
            json!({"code": -1}),
            json!({"code": 4294967296u64}),
            json!({"code": 1.5}),
            json!([]),
            json!("error"),
            json!({"cniVersion": "1.0.0", "interfaces": []}),
        ] {
            assert_eq!(CniError::from_json(&v), None, "{v}");
        }
    }

    #[test]
    fn displays_msg_details_and_code() {
        let e = CniError::new(11, "failed to allocate");
        assert_eq!(e.to_string(), "failed to allocate (code 11)");
        let e = e.with_details("range 0 full");
        assert_eq!(e.to_string(), "failed to allocate: range 0 full (code 11)");
    }

    #[test]
    fn codes_match_the_spec() {
        let codes = [
            code::INCOMPATIBLE_VERSION,
            code::UNSUPPORTED_FIELD,
            code::UNKNOWN_CONTAINER,
            code::INVALID_ENVIRONMENT,
            code::IO_FAILURE,
            code::DECODE,
            code::INVALID_CONFIG,
            code::TRY_AGAIN_LATER,
            code::NOT_AVAILABLE,
            code::LIMITED_CONNECTIVITY,
            code::INTERNAL,
        ];
        assert_eq!(codes, [1, 2, 3, 4, 5, 6, 7, 11, 50, 51, 999]);
    }
}
