use std::fmt;
use std::path::PathBuf;

use crate::PolicyError;

const BUILTIN_PREFIX: &str = "builtin:";

/// Where a policy's component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// A policy compiled into the binary, with the sha256 (hex) of `wasm` computed at build time.
    Builtin {
        name: String,
        wasm: &'static [u8],
        sha256: &'static str,
    },
    /// A `.wasm` component on disk, read (and hashed) each time it is loaded.
    File(PathBuf),
    /// A component kept by content in a node's policy store: `name` is how errors and
    /// logs call it (an `oci://` reference), `path` the blob, `sha256` (hex) what its
    /// bytes must hash to. Its sha256 being known, a compiled copy in the cache is used
    /// without reading the blob; a blob read that hashes otherwise is
    /// [`PolicyError::Damaged`].
    Stored {
        name: String,
        path: PathBuf,
        sha256: String,
    },
}

impl PolicySource {
    /// Parses a policy reference as written in configuration.
    ///
    /// `builtin:NAME` is looked up in `builtins` (`(name, wasm, sha256 hex)` triples); an
    /// unknown name is an error listing the known ones. Anything else is a path to a
    /// `.wasm` component.
    pub fn parse(
        spec: &str,
        builtins: &[(&'static str, &'static [u8], &'static str)],
    ) -> Result<Self, PolicyError> {
        let Some(name) = spec.strip_prefix(BUILTIN_PREFIX) else {
            return Ok(Self::File(PathBuf::from(spec)));
        };
        builtins
            .iter()
            .find(|(builtin, _, _)| *builtin == name)
            .map(|&(_, wasm, sha256)| Self::Builtin {
                name: name.to_owned(),
                wasm,
                sha256,
            })
            .ok_or_else(|| PolicyError::UnknownBuiltin {
                name: name.to_owned(),
                known: builtins
                    .iter()
                    .map(|(builtin, _, _)| format!("{BUILTIN_PREFIX}{builtin}"))
                    .collect(),
            })
    }
}

/// `builtin:NAME` or the path: how errors and logs name the policy.
impl fmt::Display for PolicySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Builtin { name, .. } => write!(f, "{BUILTIN_PREFIX}{name}"),
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Stored { name, .. } => f.write_str(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUILTINS: &[(&str, &[u8], &str)] = &[
        ("annotations", b"\0asm", "aa"),
        ("merge-all", b"\0asm", "bb"),
    ];

    #[test]
    fn builtin_is_looked_up_and_named() {
        let source = PolicySource::parse("builtin:merge-all", BUILTINS).unwrap();
        assert!(matches!(source, PolicySource::Builtin { sha256: "bb", .. }));
        assert_eq!(source.to_string(), "builtin:merge-all");
    }

    #[test]
    fn unknown_builtin_lists_the_known_ones() {
        let error = PolicySource::parse("builtin:nope", BUILTINS).unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown policy builtin:nope; the built-in policies are: \
             builtin:annotations, builtin:merge-all"
        );
    }

    #[test]
    fn a_stored_policy_is_named_by_its_reference() {
        let source = PolicySource::Stored {
            name: "oci://h/r:t".into(),
            path: "/var/lib/plexus/policies/blobs/sha256/ab".into(),
            sha256: "ab".into(),
        };
        assert_eq!(source.to_string(), "oci://h/r:t");
    }

    #[test]
    fn anything_else_is_a_path() {
        let source = PolicySource::parse("/etc/plexus/select.wasm", BUILTINS).unwrap();
        assert_eq!(source, PolicySource::File("/etc/plexus/select.wasm".into()));
        assert_eq!(source.to_string(), "/etc/plexus/select.wasm");
    }
}
