//! `plexus policy new`: a policy project that builds and passes its cases out of the box,
//! outside this repository: the SDK and the WIT travel with it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::ValueEnum;

use super::CliResult;

include!(concat!(env!("OUT_DIR"), "/sdk_files.rs"));

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

/// Creates `<parent>/<name>` as a new policy project.
pub fn new_policy(name: &str, kind: Kind, parent: &Path) -> CliResult {
    check_name(name)?;
    let project = parent.join(name);
    if project.exists() {
        return Err(format!("{} already exists", project.display()).into());
    }
    let (world, key, cases_file, source, cases) = match kind {
        Kind::Select => (
            "selector",
            "`select` key",
            "select",
            include_str!("templates/select.rs.tmpl"),
            include_str!("templates/select-cases.json.tmpl"),
        ),
        Kind::Merge => (
            "merger",
            "`merge` key",
            "merge",
            include_str!("templates/merge.rs.tmpl"),
            include_str!("templates/merge-cases.json.tmpl"),
        ),
        Kind::Ipam => (
            "ipam",
            "delegate networks' `ipam.policy` (with `\"type\": \"plexus-ipam\"`)",
            "ipam",
            include_str!("templates/ipam.rs.tmpl"),
            include_str!("templates/ipam-cases.json.tmpl"),
        ),
    };
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{kind}}", world)
            .replace("{{key}}", key)
    };
    let mut files: Vec<(PathBuf, String)> = vec![
        (
            "Cargo.toml".into(),
            fill(include_str!("templates/Cargo.toml.tmpl")),
        ),
        ("src/lib.rs".into(), fill(source)),
        (format!("cases/{cases_file}.json").into(), fill(cases)),
        (
            "README.md".into(),
            fill(include_str!("templates/README.md.tmpl")),
        ),
    ];
    files.extend(
        SDK_FILES
            .iter()
            .map(|(path, contents)| (PathBuf::from(path), (*contents).to_owned())),
    );
    for (path, contents) in files {
        let path = project.join(path);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|err| format!("{}: {err}", dir.display()))?;
        }
        fs::write(&path, contents).map_err(|err| format!("{}: {err}", path.display()))?;
    }
    println!("created {world} policy {}", project.display());
    println!(
        "  cd {} && cargo build --release --target wasm32-wasip2",
        project.display()
    );
    Ok(ExitCode::SUCCESS)
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
