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

impl Kind {
    /// The WIT world of a policy of this kind.
    fn world(self) -> &'static str {
        match self {
            Kind::Select => "selector",
            Kind::Merge => "merger",
            Kind::Ipam => "ipam",
        }
    }

    /// The configuration key that names a policy of this kind, for the README.
    fn key(self) -> &'static str {
        match self {
            Kind::Select => "`select` key",
            Kind::Merge => "`merge` key",
            Kind::Ipam => "delegate networks' `ipam.policy` (with `\"type\": \"plexus-ipam\"`)",
        }
    }

    /// The cases every language's project starts with: the same file for each, as each
    /// language's starting policy does the same.
    fn cases(self) -> (&'static str, &'static str) {
        match self {
            Kind::Select => ("select", include_str!("templates/cases/select.json.tmpl")),
            Kind::Merge => ("merge", include_str!("templates/cases/merge.json.tmpl")),
            Kind::Ipam => ("ipam", include_str!("templates/cases/ipam.json.tmpl")),
        }
    }
}

/// The language the new policy is written in.
#[derive(Clone, Copy, ValueEnum)]
pub enum Lang {
    /// A cargo crate built for `wasm32-wasip2`.
    Rust,
    /// An `app.py` built with componentize-py.
    Python,
    /// A project without dependencies, built with the `jco` that `scripts/setup` installs
    /// (QuickJS).
    Javascript,
}

/// What a language puts in a new project besides its cases: its own files (templates,
/// filled in), the SDK and WIT it vendors, and the command that builds the component.
struct Language {
    templates: Vec<(&'static str, &'static str)>,
    vendored: &'static [(&'static str, &'static str)],
    build: &'static str,
}

impl Lang {
    fn language(self, kind: Kind) -> Language {
        match self {
            Lang::Rust => Language {
                templates: vec![
                    ("Cargo.toml", include_str!("templates/rust/Cargo.toml.tmpl")),
                    ("README.md", include_str!("templates/rust/README.md.tmpl")),
                    (
                        "src/lib.rs",
                        match kind {
                            Kind::Select => include_str!("templates/rust/select.rs.tmpl"),
                            Kind::Merge => include_str!("templates/rust/merge.rs.tmpl"),
                            Kind::Ipam => include_str!("templates/rust/ipam.rs.tmpl"),
                        },
                    ),
                ],
                vendored: SDK_FILES,
                build: "cargo build --release --target wasm32-wasip2",
            },
            Lang::Python => Language {
                templates: vec![
                    ("README.md", include_str!("templates/python/README.md.tmpl")),
                    (
                        "conftest.py",
                        include_str!("templates/python/conftest.py.tmpl"),
                    ),
                    (
                        "tests/test_cases.py",
                        include_str!("templates/python/test_cases.py.tmpl"),
                    ),
                    (
                        "app.py",
                        match kind {
                            Kind::Select => include_str!("templates/python/select.py.tmpl"),
                            Kind::Merge => include_str!("templates/python/merge.py.tmpl"),
                            Kind::Ipam => include_str!("templates/python/ipam.py.tmpl"),
                        },
                    ),
                ],
                vendored: PYTHON_SDK_FILES,
                build: "componentize-py -d wit -w {{kind}} componentize --stub-wasi app -o {{name}}.wasm",
            },
            Lang::Javascript => Language {
                templates: vec![
                    (
                        "package.json",
                        include_str!("templates/javascript/package.json.tmpl"),
                    ),
                    (
                        "README.md",
                        include_str!("templates/javascript/README.md.tmpl"),
                    ),
                    (
                        "test/policy.test.js",
                        include_str!("templates/javascript/policy.test.js.tmpl"),
                    ),
                    (
                        "src/policy.js",
                        match kind {
                            Kind::Select => include_str!("templates/javascript/select.js.tmpl"),
                            Kind::Merge => include_str!("templates/javascript/merge.js.tmpl"),
                            Kind::Ipam => include_str!("templates/javascript/ipam.js.tmpl"),
                        },
                    ),
                    (
                        "src/component.js",
                        match kind {
                            Kind::Select => {
                                include_str!("templates/javascript/select-component.js.tmpl")
                            }
                            Kind::Merge => {
                                include_str!("templates/javascript/merge-component.js.tmpl")
                            }
                            Kind::Ipam => {
                                include_str!("templates/javascript/ipam-component.js.tmpl")
                            }
                        },
                    ),
                ],
                vendored: JAVASCRIPT_SDK_FILES,
                build: "npm test && npm run build",
            },
        }
    }
}

/// Creates `<parent>/<name>` as a new policy project.
pub fn new_policy(name: &str, kind: Kind, lang: Lang, parent: &Path) -> CliResult {
    check_name(name)?;
    let language = lang.language(kind);
    let project = parent.join(name);
    if project.exists() {
        return Err(format!("{} already exists", project.display()).into());
    }
    let world = kind.world();
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{kind}}", world)
            .replace("{{key}}", kind.key())
            .replace("{{cases}}", kind.cases().0)
    };
    let (cases_file, cases) = kind.cases();
    let mut files: Vec<(PathBuf, String)> = language
        .templates
        .iter()
        .map(|(path, template)| (PathBuf::from(path), fill(template)))
        .collect();
    files.push((format!("cases/{cases_file}.json").into(), fill(cases)));
    files.extend(
        language
            .vendored
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
    println!("  cd {} && {}", project.display(), fill(language.build));
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
