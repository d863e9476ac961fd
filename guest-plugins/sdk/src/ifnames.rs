//! Interface names inside the pod: checking them and handing out `eth1`, `net1`, ...

use crate::types::Attachment;

/// The longest interface name Linux accepts, in bytes (`IFNAMSIZ` minus the NUL).
pub const MAX_LEN: usize = 15;

/// Checks that `name` is an interface name Linux accepts: 1 to 15 bytes, not `.` or
/// `..`, and without `/`, `:` or whitespace.
///
/// ```
/// use plexus_policy_sdk::ifnames::validate;
/// assert!(validate("eth1").is_ok());
/// assert!(validate("a-very-long-name").is_err());
/// ```
pub fn validate(name: &str) -> Result<(), String> {
    let problem = if name.is_empty() {
        "it is empty"
    } else if name.len() > MAX_LEN {
        "it is longer than 15 bytes"
    } else if name == "." || name == ".." {
        "`.` and `..` are not interface names"
    } else if name.contains(['/', ':']) {
        "it contains `/` or `:`"
    } else if name.chars().any(char::is_whitespace) {
        "it contains whitespace"
    } else if name.contains('\0') {
        "it contains a NUL byte"
    } else {
        return Ok(());
    };
    Err(format!("invalid interface name {name:?}: {problem}"))
}

/// Hands out unique interface names for one pod.
///
/// Claim the names that are fixed (asked for by the pod, or `CNI_IFNAME`) with
/// [`claim`](Self::claim) first, then draw generated ones with [`next`](Self::next), which
/// skips every name already claimed.
///
/// ```
/// use plexus_policy_sdk::ifnames::IfnameAllocator;
/// let mut allocator = IfnameAllocator::new();
/// allocator.claim("eth0", "calico").unwrap();
/// allocator.claim("eth1", "flannel").unwrap();
/// assert_eq!(allocator.next("eth", "weave").unwrap(), "eth2");
/// assert!(allocator.claim("eth2", "macvlan").is_err());
/// ```
#[derive(Debug, Default, Clone)]
pub struct IfnameAllocator {
    /// Each claimed name with what claimed it, so a clash can name both claimants.
    claimed: Vec<(String, String)>,
}

impl IfnameAllocator {
    /// An allocator with no name taken.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `name` has been claimed or handed out.
    pub fn is_taken(&self, name: &str) -> bool {
        self.claimant(name).is_some()
    }

    /// Takes `name` for `owner` (a network name or anything that tells the user who asked
    /// for it). Fails if the name is invalid or already taken; the error names both owners.
    pub fn claim(&mut self, name: &str, owner: &str) -> Result<(), String> {
        validate(name).map_err(|err| format!("{owner}: {err}"))?;
        if let Some(previous) = self.claimant(name) {
            return Err(format!(
                "interface name {name:?} is used twice: by {previous} and by {owner}"
            ));
        }
        self.claimed.push((name.to_owned(), owner.to_owned()));
        Ok(())
    }

    /// Takes and returns the first free name `<prefix>1`, `<prefix>2`, ... for `owner`.
    /// Fails only if the prefix makes the name invalid.
    pub fn next(&mut self, prefix: &str, owner: &str) -> Result<String, String> {
        // Among one more candidate than there are claimed names, one is always free.
        let name = (1..=self.claimed.len() + 1)
            .map(|index| format!("{prefix}{index}"))
            .find(|name| !self.is_taken(name))
            .ok_or_else(|| format!("{owner}: no free interface name starts with {prefix:?}"))?;
        self.claim(&name, owner)?;
        Ok(name)
    }

    fn claimant(&self, name: &str) -> Option<&str> {
        self.claimed
            .iter()
            .find(|(claimed, _)| claimed == name)
            .map(|(_, owner)| owner.as_str())
    }
}

/// Checks the interface names of a selector's answer: each valid, none used twice.
/// Errors name the attachment's network file.
pub fn check_attachments(attachments: &[Attachment]) -> Result<(), String> {
    let mut allocator = IfnameAllocator::new();
    attachments
        .iter()
        .try_for_each(|attachment| allocator.claim(&attachment.ifname, &attachment.network_file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for name in ["eth0", "net1", "a", "veth-data_0.1", "fifteen-bytes-x"] {
            assert_eq!(validate(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn rejects_bad_names_saying_why() {
        let cases = [
            ("", "empty"),
            ("sixteen-bytes-xx", "longer than 15"),
            (".", "`.` and `..`"),
            ("..", "`.` and `..`"),
            ("eth/0", "`/` or `:`"),
            ("eth0:1", "`/` or `:`"),
            ("eth 0", "whitespace"),
            ("eth\t0", "whitespace"),
            ("net\0", "NUL"),
        ];
        for (name, reason) in cases {
            let err = validate(name).unwrap_err();
            assert!(err.contains(reason), "{name:?}: {err}");
        }
    }

    #[test]
    fn length_counts_bytes() {
        // Five three-byte characters are 15 bytes, the limit; one more byte is too long.
        assert_eq!(validate("€€€€€"), Ok(()));
        assert!(
            validate("€€€€€a")
                .unwrap_err()
                .contains("longer than 15 bytes")
        );
    }

    #[test]
    fn next_skips_taken_names_per_prefix() {
        let mut allocator = IfnameAllocator::new();
        allocator.claim("eth0", "a").unwrap();
        allocator.claim("eth2", "b").unwrap();
        allocator.claim("net1", "c").unwrap();
        assert_eq!(allocator.next("eth", "d"), Ok("eth1".to_owned()));
        assert_eq!(allocator.next("eth", "e"), Ok("eth3".to_owned()));
        assert_eq!(allocator.next("net", "f"), Ok("net2".to_owned()));
        assert!(allocator.is_taken("eth3"));
    }

    #[test]
    fn duplicate_claims_name_both_owners() {
        let mut allocator = IfnameAllocator::new();
        allocator.claim("eth1", "calico").unwrap();
        assert_eq!(
            allocator.claim("eth1", "flannel"),
            Err("interface name \"eth1\" is used twice: by calico and by flannel".to_owned())
        );
    }

    #[test]
    fn invalid_claims_name_the_owner() {
        let mut allocator = IfnameAllocator::new();
        let err = allocator.claim("eth:0", "calico").unwrap_err();
        assert!(err.starts_with("calico: invalid interface name"), "{err}");
        let err = allocator
            .next("much-too-long-prefix", "flannel")
            .unwrap_err();
        assert!(err.starts_with("flannel: invalid interface name"), "{err}");
    }

    #[test]
    fn check_attachments_finds_duplicates_and_bad_names() {
        let attachment = |file: &str, ifname: &str| Attachment {
            network_file: file.to_owned(),
            ifname: ifname.to_owned(),
            ..Attachment::default()
        };
        assert_eq!(
            check_attachments(&[
                attachment("10-a.conf", "eth0"),
                attachment("20-b.conf", "eth1")
            ]),
            Ok(())
        );
        let err = check_attachments(&[
            attachment("10-a.conf", "eth0"),
            attachment("20-b.conf", "eth0"),
        ])
        .unwrap_err();
        assert!(err.contains("by 10-a.conf and by 20-b.conf"), "{err}");
        let err = check_attachments(&[attachment("10-a.conf", "")]).unwrap_err();
        assert!(err.contains("10-a.conf: invalid interface name"), "{err}");
    }
}
