//! The invocation: `CNI_*` environment variables and their validation.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::{CniError, code};

/// A CNI operation, as `CNI_COMMAND` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// Add the container to the network.
    Add,
    /// Remove the container from the network.
    Del,
    /// Check the container's networking is as expected.
    Check,
    /// Report the supported specification versions.
    Version,
    /// Clean up resources of attachments that no longer exist.
    Gc,
    /// Report whether the plugin can service ADD.
    Status,
}

impl Command {
    /// The `CNI_COMMAND` spelling, e.g. `"ADD"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Gc => "GC",
            Command::Status => "STATUS",
        }
    }

    /// ADD, DEL and CHECK act on one attachment (container id + interface).
    pub fn is_attachment(self) -> bool {
        matches!(self, Command::Add | Command::Del | Command::Check)
    }
}

/// A `CNI_COMMAND` value that names no operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown CNI command {0:?} (expected ADD, DEL, CHECK, VERSION, GC or STATUS)")]
pub struct UnknownCommand(pub String);

impl FromStr for Command {
    type Err = UnknownCommand;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const ALL: [Command; 6] = [
            Command::Add,
            Command::Del,
            Command::Check,
            Command::Version,
            Command::Gc,
            Command::Status,
        ];
        ALL.into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownCommand(s.to_owned()))
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A missing or invalid `CNI_*` variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// A variable the command requires is unset or empty.
    #[error("{var} is required for this command but is not set")]
    Missing {
        /// The variable, e.g. `CNI_IFNAME`.
        var: &'static str,
    },
    /// A variable is set to something unusable.
    #[error("{var} is invalid: {reason}")]
    Invalid {
        /// The variable, e.g. `CNI_IFNAME`.
        var: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
}

impl From<&EnvError> for CniError {
    fn from(e: &EnvError) -> Self {
        CniError::new(code::INVALID_ENVIRONMENT, e.to_string())
    }
}

/// One plugin invocation, read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID`; set for ADD, DEL and CHECK.
    pub container_id: Option<String>,
    /// `CNI_NETNS`; set for ADD and CHECK, and for DEL when given.
    pub netns: Option<String>,
    /// `CNI_IFNAME`; set for ADD, DEL and CHECK.
    pub ifname: Option<String>,
    /// `CNI_ARGS` split into pairs (ADD, DEL and CHECK only).
    pub args: Vec<(String, String)>,
    /// `CNI_ARGS` as given, empty when unset.
    pub raw_args: String,
    /// `CNI_PATH` split into directories; empty for VERSION when unset.
    pub path: Vec<PathBuf>,
}

impl Invocation {
    /// Reads the invocation from this process's environment.
    pub fn from_env() -> Result<Self, EnvError> {
        // Lossy rather than `env::var`, whose non-UTF-8 error would read as
        // "not set"; a mangled value then fails validation by name.
        Self::from_lookup(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
    }

    /// Reads the invocation through `lookup` (a variable's value, `None`
    /// when unset), validating what the command needs:
    /// - every command: `CNI_COMMAND` names one;
    /// - all but VERSION: `CNI_PATH` has at least one directory;
    /// - ADD, DEL, CHECK: `CNI_CONTAINERID` and `CNI_IFNAME` are valid,
    ///   `CNI_ARGS` parses; ADD and CHECK also need `CNI_NETNS`.
    ///
    /// Variables a command does not use are not read, so a stale one in a
    /// GC or STATUS call cannot fail it.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, EnvError> {
        // An empty value means unset: runtimes built on libcni export every
        // variable, with "" for the ones that do not apply.
        let get = |var: &str| lookup(var).filter(|v| !v.is_empty());
        let required = |var: &'static str| get(var).ok_or(EnvError::Missing { var });

        let command: Command = required("CNI_COMMAND")?
            .parse()
            .map_err(|e: UnknownCommand| EnvError::Invalid {
                var: "CNI_COMMAND",
                reason: e.to_string(),
            })?;

        let raw_path = get("CNI_PATH");
        let path: Vec<PathBuf> = raw_path
            .as_deref()
            .map(|p| {
                std::env::split_paths(p)
                    .filter(|d| !d.as_os_str().is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if command != Command::Version && path.is_empty() {
            return Err(match raw_path {
                None => EnvError::Missing { var: "CNI_PATH" },
                Some(p) => EnvError::Invalid {
                    var: "CNI_PATH",
                    reason: format!("{p:?} names no directory"),
                },
            });
        }

        let mut inv = Invocation {
            command,
            container_id: None,
            netns: None,
            ifname: None,
            args: Vec::new(),
            raw_args: get("CNI_ARGS").unwrap_or_default(),
            path,
        };
        if !command.is_attachment() {
            return Ok(inv);
        }

        let container_id = required("CNI_CONTAINERID")?;
        validate_container_id(&container_id).map_err(|reason| EnvError::Invalid {
            var: "CNI_CONTAINERID",
            reason,
        })?;
        let ifname = required("CNI_IFNAME")?;
        validate_ifname(&ifname).map_err(|reason| EnvError::Invalid {
            var: "CNI_IFNAME",
            reason,
        })?;
        inv.netns = match command {
            // DEL is best-effort and must work after the netns is gone.
            Command::Del => get("CNI_NETNS"),
            _ => Some(required("CNI_NETNS")?),
        };
        inv.args = parse_cni_args(&inv.raw_args)?;
        inv.container_id = Some(container_id);
        inv.ifname = Some(ifname);
        Ok(inv)
    }
}

/// The `CNI_ARGS` key whose value is the pod's annotations as a JSON object, which may
/// hold `;` in its strings.
pub const ANNOTATIONS_ARG: &str = "K8S_ANNOT";

/// Splits `CNI_ARGS` (`K=V;K2=V2`) into pairs. A value runs to the next `;`
/// and may contain `=` (e.g. `K8S_ANNOT={"a":"b=c"}`); empty segments, as
/// from a trailing `;`, are skipped; a segment without `=` or with an
/// empty key is an error.
///
/// `K8S_ANNOT`'s value is a JSON object, whose strings may hold `;` (an
/// annotation is any text): when it begins with `{`, the `;` up to the `}` that
/// closes that object (brackets counted outside strings, `\` escapes honoured)
/// are part of the value, which then runs to the next `;` as any other. An
/// object that never closes is split at its first `;` as before, and so
/// answered as JSON that does not parse.
pub fn parse_cni_args(raw: &str) -> Result<Vec<(String, String)>, EnvError> {
    let mut pairs = Vec::new();
    let mut rest = raw;
    while !rest.is_empty() {
        let (pair, after) = next_segment(rest);
        rest = after;
        if pair.is_empty() {
            continue;
        }
        match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => pairs.push((k.to_owned(), v.to_owned())),
            _ => {
                return Err(EnvError::Invalid {
                    var: "CNI_ARGS",
                    reason: format!("{pair:?} is not of the form KEY=VALUE"),
                });
            }
        }
    }
    Ok(pairs)
}

/// The first segment of `raw` and what follows the `;` that ends it.
fn next_segment(raw: &str) -> (&str, &str) {
    // Where to look for the `;` that ends the segment: past a JSON object that closes.
    let from = raw
        .strip_prefix(ANNOTATIONS_ARG)
        .and_then(|after| after.strip_prefix('='))
        .and_then(json_object_len)
        .map_or(0, |len| ANNOTATIONS_ARG.len() + 1 + len);
    match raw[from..].find(';') {
        Some(end) => (&raw[..from + end], &raw[from + end + 1..]),
        None => (raw, ""),
    }
}

/// The length of the JSON object `text` begins with, up to and including the `}` that
/// closes it, counting brackets outside strings; `None` if `text` does not begin with
/// `{` or the object never closes. Only brackets and strings are looked at: whether
/// the object is valid JSON is for whoever reads it.
fn json_object_len(text: &str) -> Option<usize> {
    if !text.starts_with('{') {
        return None;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    // Bytes: the characters that matter are ASCII, which never occur inside a
    // multi-byte UTF-8 character, so every index found is a character boundary.
    for (at, byte) in text.bytes().enumerate() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(at + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// Formats pairs as `CNI_ARGS` (`K=V;K2=V2`) as every plugin reads it, splitting at each
/// `;` (libcni's Go plugins do): the inverse of [`parse_cni_args`], except that a `;` in
/// `K8S_ANNOT`'s value is written `\u003b`. In JSON a `;` can only be inside a string,
/// where `\u003b` is the same character to any JSON reader, so the annotations a
/// delegate (or plexus as its IPAM) reads are the pod's own.
pub fn format_cni_args(args: &[(String, String)]) -> String {
    args.iter()
        .map(|(k, v)| match k.as_str() {
            ANNOTATIONS_ARG => format!("{k}={}", v.replace(';', "\\u003b")),
            _ => format!("{k}={v}"),
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// Linux's rule for interface names (net/core/dev.c `dev_valid_name`):
/// 1 to 15 bytes, not `.` or `..`, no `/`, `:` or whitespace.
pub fn validate_ifname(name: &str) -> Result<(), String> {
    const MAX: usize = 15;
    if name.is_empty() {
        return Err("interface name is empty".into());
    }
    if name.len() > MAX {
        return Err(format!(
            "interface name {name:?} is {} bytes long, the limit is {MAX}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("interface name {name:?} is not allowed"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| *c == '/' || *c == ':' || *c == '\0' || c.is_whitespace())
    {
        return Err(format!(
            "interface name {name:?} contains {c:?}; '/', ':', NUL and whitespace are not allowed"
        ));
    }
    Ok(())
}

/// The specification's rule for container ids: `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`.
pub fn validate_container_id(id: &str) -> Result<(), String> {
    check_cni_name("container id", id)
}

/// The specification's rule for network names, the same as for container ids.
pub fn validate_network_name(name: &str) -> Result<(), String> {
    check_cni_name("network name", name)
}

fn check_cni_name(what: &str, s: &str) -> Result<(), String> {
    let mut chars = s.chars();
    match chars.next() {
        None => Err(format!("{what} is empty")),
        Some(c) if !c.is_ascii_alphanumeric() => Err(format!(
            "{what} {s:?} must start with a letter or digit, not {c:?}"
        )),
        _ => match chars.find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
            Some(c) => Err(format!(
                "{what} {s:?} contains {c:?}; only letters, digits, '_', '.' and '-' are allowed"
            )),
            None => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn inv(vars: &[(&str, &str)]) -> Result<Invocation, EnvError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Invocation::from_lookup(|k| map.get(k).cloned())
    }

    const ADD: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc123"),
        ("CNI_NETNS", "/run/netns/pod"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", "K8S_POD_NAME=web;K8S_POD_NAMESPACE=default"),
        ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
    ];

    fn with(
        base: &[(&'static str, &'static str)],
        changes: &[(&'static str, Option<&'static str>)],
    ) -> Vec<(&'static str, &'static str)> {
        let mut v: Vec<_> = base.to_vec();
        for (k, val) in changes {
            v.retain(|(key, _)| key != k);
            if let Some(val) = val {
                v.push((k, val));
            }
        }
        v
    }

    #[test]
    fn commands_parse_and_print() {
        for (s, c) in [
            ("ADD", Command::Add),
            ("DEL", Command::Del),
            ("CHECK", Command::Check),
            ("VERSION", Command::Version),
            ("GC", Command::Gc),
            ("STATUS", Command::Status),
        ] {
            assert_eq!(s.parse::<Command>(), Ok(c));
            assert_eq!(c.to_string(), s);
        }
        assert_eq!("add".parse::<Command>(), Err(UnknownCommand("add".into())));
    }

    #[test]
    fn reads_a_full_add() {
        let i = inv(ADD).unwrap();
        assert_eq!(i.command, Command::Add);
        assert_eq!(i.container_id.as_deref(), Some("abc123"));
        assert_eq!(i.netns.as_deref(), Some("/run/netns/pod"));
        assert_eq!(i.ifname.as_deref(), Some("eth0"));
        assert_eq!(
            i.args,
            vec![
                ("K8S_POD_NAME".into(), "web".into()),
                ("K8S_POD_NAMESPACE".into(), "default".into())
            ]
        );
        assert_eq!(i.raw_args, "K8S_POD_NAME=web;K8S_POD_NAMESPACE=default");
        assert_eq!(
            i.path,
            vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
        );
    }

    #[test]
    fn command_is_required_and_known() {
        assert_eq!(
            inv(&[]).unwrap_err(),
            EnvError::Missing { var: "CNI_COMMAND" }
        );
        let err = inv(&with(ADD, &[("CNI_COMMAND", Some("ATTACH"))])).unwrap_err();
        assert!(matches!(
            err,
            EnvError::Invalid {
                var: "CNI_COMMAND",
                ..
            }
        ));
        assert!(
            err.to_string()
                .starts_with("CNI_COMMAND is invalid: unknown CNI command \"ATTACH\"")
        );
    }

    #[test]
    fn attachment_commands_need_id_and_ifname() {
        for cmd in ["ADD", "DEL", "CHECK"] {
            for var in ["CNI_CONTAINERID", "CNI_IFNAME"] {
                let vars = with(ADD, &[("CNI_COMMAND", Some(cmd)), (var, None)]);
                assert_eq!(inv(&vars).unwrap_err(), EnvError::Missing { var }, "{cmd}");
                let vars = with(ADD, &[("CNI_COMMAND", Some(cmd)), (var, Some(""))]);
                assert_eq!(
                    inv(&vars).unwrap_err(),
                    EnvError::Missing { var },
                    "{cmd} empty"
                );
            }
        }
        let err = inv(&with(ADD, &[("CNI_CONTAINERID", Some("-bad"))])).unwrap_err();
        assert!(matches!(
            err,
            EnvError::Invalid {
                var: "CNI_CONTAINERID",
                ..
            }
        ));
        let err = inv(&with(ADD, &[("CNI_IFNAME", Some("eth0:1"))])).unwrap_err();
        assert!(matches!(
            err,
            EnvError::Invalid {
                var: "CNI_IFNAME",
                ..
            }
        ));
        assert!(err.to_string().contains("':'"), "{err}");
    }

    #[test]
    fn netns_is_optional_only_for_del() {
        for cmd in ["ADD", "CHECK"] {
            let vars = with(ADD, &[("CNI_COMMAND", Some(cmd)), ("CNI_NETNS", None)]);
            assert_eq!(
                inv(&vars).unwrap_err(),
                EnvError::Missing { var: "CNI_NETNS" }
            );
        }
        let del = inv(&with(
            ADD,
            &[("CNI_COMMAND", Some("DEL")), ("CNI_NETNS", None)],
        ))
        .unwrap();
        assert_eq!(del.netns, None);
        let del = inv(&with(
            ADD,
            &[("CNI_COMMAND", Some("DEL")), ("CNI_NETNS", Some(""))],
        ))
        .unwrap();
        assert_eq!(del.netns, None);
        let del = inv(&with(ADD, &[("CNI_COMMAND", Some("DEL"))])).unwrap();
        assert_eq!(del.netns.as_deref(), Some("/run/netns/pod"));
    }

    #[test]
    fn path_is_required_except_for_version() {
        for cmd in ["ADD", "DEL", "CHECK", "GC", "STATUS"] {
            let vars = with(ADD, &[("CNI_COMMAND", Some(cmd)), ("CNI_PATH", None)]);
            assert_eq!(
                inv(&vars).unwrap_err(),
                EnvError::Missing { var: "CNI_PATH" },
                "{cmd}"
            );
            let vars = with(ADD, &[("CNI_COMMAND", Some(cmd)), ("CNI_PATH", Some("::"))]);
            assert!(matches!(
                inv(&vars).unwrap_err(),
                EnvError::Invalid {
                    var: "CNI_PATH",
                    ..
                }
            ));
        }
        let v = inv(&[("CNI_COMMAND", "VERSION")]).unwrap();
        assert_eq!(v.command, Command::Version);
        assert!(v.path.is_empty());
        assert_eq!(v.container_id, None);
    }

    #[test]
    fn an_interface_name_with_a_nul_byte_is_refused() {
        let error = validate_ifname("net\0").unwrap_err();
        assert!(error.contains("NUL"), "{error}");
    }

    #[test]
    fn path_skips_empty_entries() {
        let i = inv(&with(ADD, &[("CNI_PATH", Some(":/a::/b:"))])).unwrap();
        assert_eq!(i.path, vec![PathBuf::from("/a"), PathBuf::from("/b")]);
    }

    #[test]
    fn gc_and_status_need_only_path() {
        for cmd in ["GC", "STATUS"] {
            let i = inv(&[("CNI_COMMAND", cmd), ("CNI_PATH", "/opt/cni/bin")]).unwrap();
            assert_eq!(i.path, vec![PathBuf::from("/opt/cni/bin")]);
            assert_eq!((i.container_id, i.ifname, i.netns), (None, None, None));
            // Junk in variables they do not use is not read.
            let i = inv(&[
                ("CNI_COMMAND", cmd),
                ("CNI_PATH", "/opt/cni/bin"),
                ("CNI_CONTAINERID", "-bad"),
                ("CNI_IFNAME", "a/b"),
                ("CNI_ARGS", "junk"),
            ])
            .unwrap();
            assert!(i.args.is_empty());
        }
    }

    #[test]
    fn bad_cni_args_fail_attachments() {
        let err = inv(&with(ADD, &[("CNI_ARGS", Some("IgnoreUnknown"))])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "CNI_ARGS is invalid: \"IgnoreUnknown\" is not of the form KEY=VALUE"
        );
        assert_eq!(CniError::from(&err).code, code::INVALID_ENVIRONMENT);
    }

    #[test]
    fn cni_args_rules() {
        assert_eq!(parse_cni_args("").unwrap(), vec![]);
        assert_eq!(
            parse_cni_args("A=1;B=x=y;C=;").unwrap(),
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "x=y".into()),
                ("C".into(), "".into())
            ]
        );
        assert_eq!(
            parse_cni_args(r#"K8S_ANNOT={"cni":"a,b"}"#).unwrap(),
            vec![("K8S_ANNOT".into(), r#"{"cni":"a,b"}"#.into())]
        );
        assert!(parse_cni_args("=v").is_err());
        assert!(parse_cni_args("A=1;B").is_err());
        let pairs = parse_cni_args("A=1;B=x=y").unwrap();
        assert_eq!(format_cni_args(&pairs), "A=1;B=x=y");
        assert_eq!(format_cni_args(&[]), "");
    }

    #[test]
    fn annotations_may_hold_semicolons() {
        fn pairs(raw: &str) -> Vec<(String, String)> {
            parse_cni_args(raw).unwrap()
        }
        fn pair(k: &str, v: &str) -> (String, String) {
            (k.to_owned(), v.to_owned())
        }
        // The field trial's case: a `;` in an annotation's value.
        assert_eq!(
            pairs(r#"K8S_ANNOT={"a":"x;y"}"#),
            [pair("K8S_ANNOT", r#"{"a":"x;y"}"#)]
        );
        // Among other pairs, with escaped quotes and backslashes, nested objects and
        // arrays, brackets inside strings and multi-byte characters.
        let annot = r#"{"k8s.v1.cni.cncf.io/networks":"[{\"name\":\"a;b\"}]","q":"\\;\";}","n":{"l":[1,";",{"m":"}"}]},"é":"ü;"}"#;
        assert!(serde_json::from_str::<serde_json::Value>(annot).is_ok());
        let raw = format!("IgnoreUnknown=1;K8S_POD_NAME=p;K8S_ANNOT={annot};K8S_POD_UID=u");
        assert_eq!(
            pairs(&raw),
            [
                pair("IgnoreUnknown", "1"),
                pair("K8S_POD_NAME", "p"),
                pair("K8S_ANNOT", annot),
                pair("K8S_POD_UID", "u"),
            ]
        );
        // Formatted for a delegate, which splits at every `;`, the `;` in the JSON's
        // strings are escaped: the same annotations, and the other pairs unchanged.
        let formatted = format_cni_args(&pairs(&raw));
        assert_eq!(formatted.split(';').count(), 4, "{formatted}");
        let again = pairs(&formatted);
        assert_eq!(again[0..2], pairs(&raw)[0..2]);
        assert_eq!(again[3], pairs(&raw)[3]);
        let json = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
        assert_eq!(again[2].0, "K8S_ANNOT");
        assert_eq!(json(&again[2].1), json(annot));
        assert_eq!(format_cni_args(&again), formatted);
        // After the object, the value runs to the next `;` as any other (the JSON reader
        // then says what is wrong with it).
        assert_eq!(
            pairs(r#"K8S_ANNOT={"a":";"}x;B=1"#),
            [pair("K8S_ANNOT", r#"{"a":";"}x"#), pair("B", "1")]
        );
        // An object that never closes is split at its first `;`, as before.
        assert_eq!(
            pairs(r#"K8S_ANNOT={"a":"x;B=1"#),
            [pair("K8S_ANNOT", r#"{"a":"x"#), pair("B", "1")]
        );
        // Only K8S_ANNOT's value, and only a JSON object, is read this way.
        assert!(parse_cni_args(r#"OTHER={"a":"x;y"}"#).is_err());
        assert_eq!(
            pairs("K8S_ANNOT=x;y=1"),
            [pair("K8S_ANNOT", "x"), pair("y", "1")]
        );
        assert_eq!(
            pairs(r#"K8S_ANNOTX={"a":"x;B=1"}"#),
            [pair("K8S_ANNOTX", r#"{"a":"x"#), pair("B", r#"1"}"#)]
        );
    }

    #[test]
    fn ifname_rules() {
        for ok in ["eth0", "a", "net1", "123456789012345", "veth-ä"] {
            assert_eq!(validate_ifname(ok), Ok(()), "{ok}");
        }
        let cases = [
            ("", "empty"),
            ("1234567890123456", "16 bytes long, the limit is 15"),
            ("ääääääää", "16 bytes long"),
            (".", "not allowed"),
            ("..", "not allowed"),
            ("a/b", "'/'"),
            ("eth0:1", "':'"),
            ("eth 0", "' '"),
            ("eth\t0", "'\\t'"),
        ];
        for (bad, why) in cases {
            let err = validate_ifname(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn container_id_and_network_name_rules() {
        for ok in ["a", "0", "abc-123_x.y", "K8S"] {
            assert_eq!(validate_container_id(ok), Ok(()));
            assert_eq!(validate_network_name(ok), Ok(()));
        }
        let cases = [
            ("", "is empty"),
            ("-a", "must start with a letter or digit, not '-'"),
            ("_a", "must start"),
            ("a/b", "contains '/'"),
            ("a b", "contains ' '"),
            ("é", "must start"),
        ];
        for (bad, why) in cases {
            let err = validate_container_id(bad).unwrap_err();
            assert!(err.starts_with("container id"), "{err}");
            assert!(err.contains(why), "{bad:?}: {err}");
            assert!(
                validate_network_name(bad)
                    .unwrap_err()
                    .starts_with("network name")
            );
        }
    }
}
