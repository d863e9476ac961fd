//! `plexus policy`: run one policy call, run a table of cases, precompile into the cache.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use plexus_policy::{Limits, Policy, PolicyKind, PolicyRuntime, PolicySource};
use serde::Deserialize;
use serde_json::Value;

use super::CliResult;
use crate::builtins;
use crate::config::DEFAULT_STATE_DIR;

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Run one call of a policy on a request read from a JSON file; print its output.
    Run {
        /// `builtin:NAME` or a path to a `.wasm` component.
        policy: String,
        /// A select-request (for a selector) or merge-request (for a merger), as JSON.
        #[arg(long)]
        input: PathBuf,
    },
    /// Run table-driven cases against a policy; exits non-zero if any fails.
    Test {
        policy: String,
        /// Case files (JSON), or directories of them.
        #[arg(required = true)]
        cases: Vec<PathBuf>,
    },
    /// Precompile a policy into the node's cache.
    Compile {
        wasm: String,
        /// The `stateDir` whose cache the plugin reads.
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
}

pub fn run(command: PolicyCommand) -> CliResult {
    match command {
        PolicyCommand::Run { policy, input } => {
            let (runtime, policy) = load(&policy, None)?;
            let request = read_json(&input)?;
            let output = call(&runtime, &policy, request).map_err(|err| err.to_string())?;
            print_json(&output)?;
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Test { policy, cases } => test(&policy, &cases),
        PolicyCommand::Compile { wasm, state_dir } => {
            let source = source(&wasm)?;
            let runtime = PolicyRuntime::new(Some(state_dir.join("cache")), Limits::default())
                .map_err(|err| err.to_string())?;
            let artifact = runtime.precompile(&source).map_err(|err| err.to_string())?;
            println!("{}", artifact.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn source(spec: &str) -> Result<PolicySource, String> {
    PolicySource::parse(spec, &builtins::table()).map_err(|err| err.to_string())
}

/// Offline runs compile in memory: an author's machine has no node cache to fill.
fn load(spec: &str, cache: Option<PathBuf>) -> Result<(PolicyRuntime, Policy), String> {
    let runtime = PolicyRuntime::new(cache, Limits::default()).map_err(|err| err.to_string())?;
    let policy = runtime
        .load(&source(spec)?)
        .map_err(|err| err.to_string())?;
    Ok((runtime, policy))
}

/// One call, with the request and the answer as JSON in the WIT's shapes.
fn call(runtime: &PolicyRuntime, policy: &Policy, request: Value) -> Result<Value, CallError> {
    let output = match policy.kind() {
        PolicyKind::Selector => {
            let request = serde_json::from_value(request).map_err(CallError::Input)?;
            serde_json::to_value(policy.select(runtime, &request)?)
        }
        PolicyKind::Merger => {
            let request = serde_json::from_value(request).map_err(CallError::Input)?;
            serde_json::to_value(policy.merge(runtime, &request)?)
        }
    };
    output.map_err(CallError::Input)
}

#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("the request does not have the policy's request shape: {0}")]
    Input(#[source] serde_json::Error),
    #[error(transparent)]
    Policy(#[from] plexus_policy::PolicyError),
}

/// A case file holds one case or `{"cases": [...]}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum CaseFile {
    Many { cases: Vec<Case> },
    One(Case),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: Option<String>,
    input: Value,
    /// The exact output expected.
    output: Option<Value>,
    /// A substring the error message must contain.
    error: Option<String>,
}

fn test(spec: &str, paths: &[PathBuf]) -> CliResult {
    let (runtime, policy) = load(spec, None)?;
    let mut cases = Vec::new();
    for file in case_files(paths)? {
        let parsed: CaseFile = serde_json::from_value(read_json(&file)?)
            .map_err(|err| format!("case file {}: {err}", file.display()))?;
        let found = match parsed {
            CaseFile::Many { cases } => cases,
            CaseFile::One(case) => vec![case],
        };
        for (index, case) in found.into_iter().enumerate() {
            let name = case
                .name
                .clone()
                .unwrap_or_else(|| format!("{}#{}", file.display(), index + 1));
            cases.push((name, case));
        }
    }
    let (mut passed, mut failed) = (0, 0);
    for (name, case) in cases {
        match judge(&runtime, &policy, case) {
            Ok(()) => {
                passed += 1;
                println!("ok   {name}");
            }
            Err(why) => {
                failed += 1;
                println!("FAIL {name}: {why}");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn judge(runtime: &PolicyRuntime, policy: &Policy, case: Case) -> Result<(), String> {
    let outcome = call(runtime, policy, case.input);
    match (outcome, case.output, case.error) {
        (Ok(actual), Some(expected), None) if actual == expected => Ok(()),
        (Ok(actual), Some(expected), None) => Err(format!(
            "output differs\n  expected: {expected}\n  actual:   {actual}"
        )),
        (Err(error), None, Some(wanted)) if error.to_string().contains(&wanted) => Ok(()),
        (Err(error), None, Some(wanted)) => Err(format!(
            "error {:?} does not contain {wanted:?}",
            error.to_string()
        )),
        (Ok(actual), None, Some(wanted)) => Err(format!(
            "expected an error containing {wanted:?}, got output {actual}"
        )),
        (Err(error), Some(_), None) => Err(format!("expected output, got error: {error}")),
        _ => Err("a case needs exactly one of `output` and `error`".into()),
    }
}

fn case_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = fs::read_dir(path)
                .map_err(|err| format!("{}: {err}", path.display()))?
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|file| file.extension().is_some_and(|ext| ext == "json"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = fs::read(path).map_err(|err| format!("{}: {err}", path.display()))?;
    serde_json::from_slice(&text).map_err(|err| format!("{}: {err}", path.display()))
}

fn print_json(value: &Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|err| err.to_string())?;
    println!("{text}");
    Ok(())
}
