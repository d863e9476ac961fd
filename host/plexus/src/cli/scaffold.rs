//! `plexus policy new`: a policy project that builds and passes its cases out of the box,
//! outside this repository: the SDK and the WIT travel with it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::ValueEnum;

use super::CliResult;

include!(concat!(env!("OUT_DIR"), "/sdk_files.rs"));
include!(concat!(env!("OUT_DIR"), "/javascript_sdk_files.rs"));

/// The language the new policy is written in.
#[derive(Clone, Copy, ValueEnum)]
pub enum Lang {
    /// A cargo project, built with `cargo build --target wasm32-wasip2`.
    Rust,
    /// An npm-style project without dependencies, built with `jco` (QuickJS).
    Javascript,
}

/// What the new policy decides.
#[derive(Clone, Copy, ValueEnum)]
pub enum Kind {
    /// A selection policy (the `select` key): which networks a pod gets.
    Select,
    /// A merge policy (the `merge` key): the pod's one result from the delegates'.
    Merge,
    /// An IPAM policy (a delegate's `ipam.policy`, with `plexus-ipam`): a pod's addresses.
    Ipam,
}

/// Creates `<parent>/<name>` as a new policy project in `lang`.
pub fn new_policy(name: &str, kind: Kind, lang: Lang, parent: &Path) -> CliResult {
    check_name(name)?;
    let project = parent.join(name);
    if project.exists() {
        return Err(format!("{} already exists", project.display()).into());
    }
    let (files, build) = match lang {
        Lang::Rust => rust_project(name, kind),
        Lang::Javascript => javascript_project(name, kind),
    };
    for (path, contents) in files {
        let path = project.join(path);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|err| format!("{}: {err}", dir.display()))?;
        }
        fs::write(&path, contents).map_err(|err| format!("{}: {err}", path.display()))?;
    }
    println!("created {} policy {}", kind.world(), project.display());
    println!("  cd {} && {build}", project.display());
    Ok(ExitCode::SUCCESS)
}

/// What the project's templates fill in, for each kind: the world, where the
/// configuration names the policy, and the case file's name.
impl Kind {
    fn world(self) -> &'static str {
        match self {
            Kind::Select => "selector",
            Kind::Merge => "merger",
            Kind::Ipam => "ipam",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Kind::Select => "`select` key",
            Kind::Merge => "`merge` key",
            Kind::Ipam => "delegate networks' `ipam.policy` (with `\"type\": \"plexus-ipam\"`)",
        }
    }

    fn cases(self) -> (&'static str, &'static str) {
        match self {
            Kind::Select => ("select", include_str!("templates/select-cases.json.tmpl")),
            Kind::Merge => ("merge", include_str!("templates/merge-cases.json.tmpl")),
            Kind::Ipam => ("ipam", include_str!("templates/ipam-cases.json.tmpl")),
        }
    }
}

/// `template` with the project's name, kind and key filled in.
fn fill(template: &str, name: &str, kind: Kind) -> String {
    template
        .replace("{{name}}", name)
        .replace("{{crate}}", &name.replace('-', "_"))
        .replace("{{kind}}", kind.world())
        .replace("{{key}}", kind.key())
        .replace("{{cases}}", kind.cases().0)
}

/// A project's files (path in the project, contents) and the command that builds it.
type Project = (Vec<(PathBuf, String)>, &'static str);

/// A cargo project with the Rust SDK vendored.
fn rust_project(name: &str, kind: Kind) -> Project {
    let source = match kind {
        Kind::Select => include_str!("templates/select.rs.tmpl"),
        Kind::Merge => include_str!("templates/merge.rs.tmpl"),
        Kind::Ipam => include_str!("templates/ipam.rs.tmpl"),
    };
    let (cases_file, cases) = kind.cases();
    let mut files: Vec<(PathBuf, String)> = vec![
        (
            "Cargo.toml".into(),
            fill(include_str!("templates/Cargo.toml.tmpl"), name, kind),
        ),
        ("src/lib.rs".into(), fill(source, name, kind)),
        (
            format!("cases/{cases_file}.json").into(),
            fill(cases, name, kind),
        ),
        (
            "README.md".into(),
            fill(include_str!("templates/README.md.tmpl"), name, kind),
        ),
    ];
    files.extend(vendored(SDK_FILES));
    (files, "cargo build --release --target wasm32-wasip2")
}

/// A JavaScript project with the JavaScript SDK and the WIT vendored; its `package.json`
/// scripts test it with node and build it with the `jco` that `scripts/setup` installs.
fn javascript_project(name: &str, kind: Kind) -> Project {
    let (source, component) = match kind {
        Kind::Select => (
            include_str!("templates/javascript/select.js.tmpl"),
            include_str!("templates/javascript/select-component.js.tmpl"),
        ),
        Kind::Merge => (
            include_str!("templates/javascript/merge.js.tmpl"),
            include_str!("templates/javascript/merge-component.js.tmpl"),
        ),
        Kind::Ipam => (
            include_str!("templates/javascript/ipam.js.tmpl"),
            include_str!("templates/javascript/ipam-component.js.tmpl"),
        ),
    };
    let (cases_file, cases) = kind.cases();
    let template = |path: &str, template: &str| (PathBuf::from(path), fill(template, name, kind));
    let mut files = vec![
        template(
            "package.json",
            include_str!("templates/javascript/package.json.tmpl"),
        ),
        template("src/policy.js", source),
        template("src/component.js", component),
        template(
            "test/policy.test.js",
            include_str!("templates/javascript/policy.test.js.tmpl"),
        ),
        template(&format!("cases/{cases_file}.json"), cases),
        template(
            "README.md",
            include_str!("templates/javascript/README.md.tmpl"),
        ),
    ];
    files.extend(vendored(JAVASCRIPT_SDK_FILES));
    (files, "npm test && npm run build")
}

fn vendored(files: &[(&str, &str)]) -> impl Iterator<Item = (PathBuf, String)> {
    files
        .iter()
        .map(|(path, contents)| (PathBuf::from(path), (*contents).to_owned()))
}

/// A cargo package name that is also a safe directory name.
fn check_name(name: &str) -> Result<(), String> {
    let valid = name.len() <= 64
        && name.starts_with(|first: char| first.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "policy name {name:?}: use lowercase letters, digits, `-` and `_`, starting with a letter"
        ))
    }
}
