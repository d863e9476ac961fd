//! Policy references as configuration writes them: `oci://HOST[:PORT]/REPO:TAG` or
//! `oci://HOST[:PORT]/REPO@sha256:<hex>` (both: the digest decides). The registry is
//! always explicit and there is no implicit `latest`: a node's configuration says exactly
//! what it runs.

use std::fmt;
use std::str::FromStr;

use crate::sha256_hex;

pub const SCHEME: &str = "oci://";

/// A parsed `oci://` reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OciRef {
    /// `HOST` or `HOST:PORT`.
    pub registry: String,
    /// The repository path, lowercase (`policies/select`).
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<hex>`.
    pub digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{spec}: {reason}")]
pub struct RefError {
    pub spec: String,
    pub reason: String,
}

impl OciRef {
    /// Whether `spec` is meant as an OCI reference (it may still be malformed).
    pub fn is_oci(spec: &str) -> bool {
        spec.starts_with(SCHEME)
    }

    /// `HOST[:PORT]/REPO`: the repository, as cosign's payload names it.
    pub fn repository_name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository at `digest`, without a tag.
    pub fn at_digest(&self, digest: &str) -> OciRef {
        OciRef {
            tag: None,
            digest: Some(digest.to_owned()),
            ..self.clone()
        }
    }

    /// The same repository at `tag`.
    pub fn at_tag(&self, tag: &str) -> OciRef {
        OciRef {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        }
    }

    /// The tag cosign stores the signatures of the manifest `digest` under:
    /// `sha256-<hex>.sig`.
    pub fn signature_ref(&self, digest: &str) -> OciRef {
        self.at_tag(&format!("{}.sig", digest.replacen(':', "-", 1)))
    }

    /// The reference without `oci://`, as OCI tools write it (`HOST/REPO:TAG`).
    pub fn without_scheme(&self) -> String {
        let mut text = self.repository_name();
        if let Some(tag) = &self.tag {
            text.push(':');
            text.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            text.push('@');
            text.push_str(digest);
        }
        text
    }
}

impl fmt::Display for OciRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}", self.without_scheme())
    }
}

impl FromStr for OciRef {
    type Err = RefError;

    fn from_str(spec: &str) -> Result<Self, RefError> {
        let fail = |reason: &str| RefError {
            spec: spec.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = spec
            .strip_prefix(SCHEME)
            .ok_or_else(|| fail("an OCI reference starts with oci://"))?;
        let (rest, digest) = match rest.split_once('@') {
            Some((rest, digest)) => {
                if sha256_hex(digest).is_none() {
                    return Err(fail(
                        "the digest must be sha256: and 64 lowercase hex digits",
                    ));
                }
                (rest, Some(digest.to_owned()))
            }
            None => (rest, None),
        };
        let (registry, path) = rest.split_once('/').ok_or_else(|| {
            fail("it needs a registry and a repository: oci://HOST[:PORT]/REPO:TAG")
        })?;
        check_registry(registry).map_err(|reason| fail(&reason))?;
        // A tag's `:` comes after the last `/`; the registry's port is already split off.
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repository, tag)) if !tag.contains('/') => (repository, Some(tag.to_owned())),
            _ => (path, None),
        };
        check_repository(repository).map_err(|reason| fail(&reason))?;
        if let Some(tag) = &tag {
            check_tag(tag).map_err(|reason| fail(&reason))?;
        }
        if tag.is_none() && digest.is_none() {
            return Err(fail(
                "it needs a :TAG or an @sha256:DIGEST (there is no implicit latest)",
            ));
        }
        Ok(OciRef {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            tag,
            digest,
        })
    }
}

fn check_registry(registry: &str) -> Result<(), String> {
    let (host, port) = match registry.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if !host_ok {
        return Err(format!(
            "registry {registry:?} is not a host name or address"
        ));
    }
    if let Some(port) = port
        && port.parse::<u16>().map_or(true, |port| port == 0)
    {
        return Err(format!("registry port {port:?} is not a port number"));
    }
    Ok(())
}

/// The distribution spec's repository grammar: `/`-separated components of lowercase
/// alphanumerics joined by `.`, `_`, `__` or runs of `-`.
fn check_repository(repository: &str) -> Result<(), String> {
    if repository.is_empty() {
        return Err("the repository is empty".into());
    }
    if repository.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("repository must be lowercase".into());
    }
    if repository.len() > 255 {
        return Err("repository is longer than 255 characters".into());
    }
    for component in repository.split('/') {
        let bytes = component.as_bytes();
        let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let ok = !bytes.is_empty()
            && bytes.first().is_some_and(alnum)
            && bytes.last().is_some_and(alnum)
            && bytes
                .iter()
                .all(|b| alnum(b) || matches!(b, b'.' | b'_' | b'-'))
            && !component.contains("..")
            && !component.contains("___")
            && !["._", "_.", ".-", "-.", "_-", "-_"]
                .iter()
                .any(|pair| component.contains(pair));
        if !ok {
            return Err(format!(
                "repository component {component:?} is not valid (lowercase letters, digits, and . _ __ - between them)"
            ));
        }
    }
    Ok(())
}

/// `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn check_tag(tag: &str) -> Result<(), String> {
    let bytes = tag.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tag {tag:?} is not valid ([A-Za-z0-9_][A-Za-z0-9._-]{{0,127}})"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn valid_references_parse_and_print_back() {
        for spec in [
            "oci://127.0.0.1:5000/policies/select:v1",
            "oci://registry.example.com/select:1.2.0-rc_1",
            "oci://localhost/a/b/c:latest",
            "oci://r.io/my-org/sel__ect.x:t",
            &format!("oci://127.0.0.1:5000/policies/select@{DIGEST}"),
            &format!("oci://127.0.0.1:5000/policies/select:v1@{DIGEST}"),
        ] {
            let parsed: OciRef = spec.parse().unwrap_or_else(|e| panic!("{spec}: {e}"));
            assert_eq!(parsed.to_string(), spec);
        }
        let parsed: OciRef = "oci://127.0.0.1:5000/policies/select:v1".parse().unwrap();
        assert_eq!(parsed.registry, "127.0.0.1:5000");
        assert_eq!(parsed.repository, "policies/select");
        assert_eq!(parsed.tag.as_deref(), Some("v1"));
        assert_eq!(parsed.repository_name(), "127.0.0.1:5000/policies/select");
        assert_eq!(
            parsed.signature_ref(DIGEST).to_string(),
            "oci://127.0.0.1:5000/policies/select:sha256-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.sig"
        );
    }

    #[test]
    fn invalid_references_say_why() {
        for (spec, why) in [
            ("127.0.0.1:5000/policies/select:v1", "starts with oci://"),
            ("oci://h/Repo:t", "repository must be lowercase"),
            ("oci://h/repo", "needs a :TAG"),
            ("oci://repo:t", "needs a registry"),
            ("oci://h:99999/r:t", "not a port"),
            ("oci://h/r:-t", "tag"),
            ("oci://h/r@sha256:abc", "digest"),
            ("oci://h/r@md5:0123", "digest"),
            ("oci://h/r//x:t", "component"),
            ("oci://h/r/.x:t", "component"),
            ("oci://h_x/r:t", "registry"),
            ("oci:///r:t", "registry"),
        ] {
            let error = spec.parse::<OciRef>().unwrap_err().to_string();
            assert!(error.contains(why), "{spec}: {error}");
            assert!(error.starts_with(spec), "{spec}: {error}");
        }
    }
}
