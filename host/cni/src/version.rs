//! CNI specification versions this crate speaks.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A CNI specification version with a rich (0.3.0 or later) result type.
///
/// Versions order as the specification does, so `v >= CniVersion::V0_4_0`
/// asks "does this version have CHECK?".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CniVersion {
    /// 0.3.0: rich result type, plugin chaining.
    V0_3_0,
    /// 0.3.1: a typo fix over 0.3.0.
    V0_3_1,
    /// 0.4.0: CHECK, and prevResult on DEL.
    V0_4_0,
    /// 1.0.0: `ips[].version` removed.
    V1_0_0,
    /// 1.1.0: GC, STATUS, `cniVersions`, more interface and route fields.
    V1_1_0,
}

/// A version string that is not one of [`CniVersion::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unsupported CNI version {version:?} (supported: {})",
    supported_list()
)]
pub struct VersionError {
    /// The version as it was written.
    pub version: String,
}

impl CniVersion {
    /// Every supported version, oldest first.
    pub const ALL: [CniVersion; 5] = [
        CniVersion::V0_3_0,
        CniVersion::V0_3_1,
        CniVersion::V0_4_0,
        CniVersion::V1_0_0,
        CniVersion::V1_1_0,
    ];

    /// The newest supported version.
    pub const LATEST: CniVersion = CniVersion::V1_1_0;

    /// The version as the specification spells it, e.g. `"1.0.0"`.
    pub fn as_str(self) -> &'static str {
        match self {
            CniVersion::V0_3_0 => "0.3.0",
            CniVersion::V0_3_1 => "0.3.1",
            CniVersion::V0_4_0 => "0.4.0",
            CniVersion::V1_0_0 => "1.0.0",
            CniVersion::V1_1_0 => "1.1.0",
        }
    }
}

fn supported_list() -> String {
    CniVersion::ALL.map(CniVersion::as_str).join(", ")
}

/// The answer to `CNI_COMMAND=VERSION`: `cniVersion` echoes the version the
/// caller asked about, `supportedVersions` lists [`CniVersion::ALL`].
pub fn version_result(cni_version: &str) -> serde_json::Value {
    serde_json::json!({
        "cniVersion": cni_version,
        "supportedVersions": CniVersion::ALL.map(CniVersion::as_str),
    })
}

impl FromStr for CniVersion {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CniVersion::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| VersionError {
                version: s.to_owned(),
            })
    }
}

impl fmt::Display for CniVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for CniVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CniVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_every_version() {
        for v in CniVersion::ALL {
            assert_eq!(v.as_str().parse::<CniVersion>(), Ok(v));
            assert_eq!(v.to_string(), v.as_str());
        }
    }

    #[test]
    fn rejects_unknown_versions() {
        for s in ["0.1.0", "0.2.0", "1.2.0", "1.0", "", " 1.0.0"] {
            let err = s.parse::<CniVersion>().unwrap_err();
            assert_eq!(err.version, s);
            assert!(
                err.to_string()
                    .contains("0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0")
            );
        }
    }

    #[test]
    fn orders_like_the_spec() {
        assert!(CniVersion::V0_3_1 < CniVersion::V0_4_0);
        assert!(CniVersion::V1_0_0 < CniVersion::LATEST);
        assert_eq!(CniVersion::ALL.iter().max(), Some(&CniVersion::LATEST));
        let mut sorted = CniVersion::ALL;
        sorted.sort();
        assert_eq!(sorted, CniVersion::ALL);
    }

    #[test]
    fn serde_uses_the_string() {
        let json = serde_json::to_value(CniVersion::V0_4_0).unwrap();
        assert_eq!(json, serde_json::json!("0.4.0"));
        let back: CniVersion = serde_json::from_value(json).unwrap();
        assert_eq!(back, CniVersion::V0_4_0);
        assert!(serde_json::from_value::<CniVersion>(serde_json::json!("0.2.0")).is_err());
        assert!(serde_json::from_value::<CniVersion>(serde_json::json!(1)).is_err());
    }

    #[test]
    fn version_result_lists_all() {
        assert_eq!(
            version_result("1.0.0"),
            serde_json::json!({
                "cniVersion": "1.0.0",
                "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
            })
        );
    }
}
