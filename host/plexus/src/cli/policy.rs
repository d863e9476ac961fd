//! `plexus policy`: run one policy call, run a table of cases, precompile into the cache.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;
use plexus_ipam_store::MemoryStore;
use plexus_policy::{Limits, Policy, PolicyKind, PolicyRuntime, PolicySource};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::cases::{self, Case};
use super::{CliResult, scaffold};
use crate::builtins;
use crate::config::DEFAULT_STATE_DIR;
use crate::recording::{self, Recording};

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Run one call of a policy on a request read from a JSON file; print its output.
    Run {
        /// `builtin:NAME` or a path to a `.wasm` component.
        policy: String,
        /// A select-request (for a selector), a merge-request (for a merger), or for an
        /// IPAM policy `{"call": "allocate" | "release" | "check" | "gc", "request": ...,
        /// "store": {KEY: VALUE, ...}}` (the store it starts from; it prints the answer
        /// and the store afterwards), as JSON.
        #[arg(long)]
        input: PathBuf,
    },
    /// Run table-driven cases against a policy, or replay recorded calls through it;
    /// exits non-zero if any case fails or any replayed pod would change.
    Test {
        policy: String,
        /// Case files (JSON), or directories of them.
        #[arg(required_unless_present = "replay")]
        cases: Vec<PathBuf>,
        /// Replay the calls recorded in this `recordDir` instead, printing the pods whose
        /// output would differ, and nothing else.
        #[arg(long, value_name = "DIR", conflicts_with = "cases")]
        replay: Option<PathBuf>,
        /// Print the outcome as one JSON document, for CI.
        #[arg(long)]
        json: bool,
    },
    /// Create a new policy project (SDK and WIT included) that builds and passes its cases.
    New {
        /// The project's name: its directory and cargo package.
        name: String,
        #[arg(long, value_enum, default_value = "select")]
        kind: scaffold::Kind,
        /// Where to create it.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Describe a policy: world, WIT version, imports and exports, size, sha256,
    /// metadata, and whether the node's cache holds it compiled.
    Inspect {
        policy: String,
        /// The `stateDir` whose cache to look in.
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// Print the description as JSON.
        #[arg(long)]
        json: bool,
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
        PolicyCommand::Test {
            policy,
            cases,
            replay: None,
            json,
        } => test(&policy, &cases, json),
        PolicyCommand::Test {
            policy,
            replay: Some(dir),
            json,
            ..
        } => replay(&policy, &dir, json),
        PolicyCommand::New { name, kind, dir } => scaffold::new_policy(&name, kind, &dir),
        PolicyCommand::Inspect {
            policy,
            state_dir,
            json,
        } => inspect(&policy, &state_dir, json),
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
        PolicyKind::Ipam => return call_ipam(runtime, policy, request),
    };
    output.map_err(CallError::Input)
}

/// `value` as the request type of the call.
fn shaped<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T, CallError> {
    T::deserialize(value).map_err(CallError::Input)
}

/// What an offline IPAM call starts from: the call, its request, and the store's entries.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IpamInput {
    #[serde(default)]
    call: IpamCallName,
    request: Value,
    #[serde(default)]
    store: BTreeMap<String, String>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum IpamCallName {
    #[default]
    Allocate,
    Release,
    Check,
    Gc,
}

/// An IPAM call against an in-memory store: `{"result": ..., "store": {...}}`, the store
/// as the call left it (as it was, when the call failed: the host undid its writes).
fn call_ipam(runtime: &PolicyRuntime, policy: &Policy, input: Value) -> Result<Value, CallError> {
    let input: IpamInput = serde_json::from_value(input).map_err(CallError::Input)?;
    let network = input
        .request
        .get("network")
        .and_then(Value::as_str)
        .unwrap_or("network")
        .to_owned();
    let entries = input
        .store
        .into_iter()
        .map(|(key, value)| (key, value.into_bytes()));
    let store = Arc::new(
        MemoryStore::new(&network, entries).map_err(|error| CallError::Store(error.to_string()))?,
    );
    let request = &input.request;
    let result = match input.call {
        IpamCallName::Allocate => {
            serde_json::to_value(policy.allocate(runtime, store.clone(), &shaped(request)?)?)
                .map_err(CallError::Input)?
        }
        IpamCallName::Release => policy
            .release(runtime, store.clone(), &shaped(request)?)
            .map(|()| Value::Null)?,
        IpamCallName::Check => policy
            .check(runtime, store.clone(), &shaped(request)?)
            .map(|()| Value::Null)?,
        IpamCallName::Gc => policy
            .gc(runtime, store.clone(), &shaped(request)?)
            .map(|()| Value::Null)?,
    };
    let contents: serde_json::Map<String, Value> = store
        .contents()
        .into_iter()
        .map(|(key, value)| {
            (
                key,
                Value::String(String::from_utf8_lossy(&value).into_owned()),
            )
        })
        .collect();
    Ok(json!({ "result": result, "store": contents }))
}

#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("the request does not have the policy's request shape: {0}")]
    Input(#[source] serde_json::Error),
    #[error(transparent)]
    Policy(#[from] plexus_policy::PolicyError),
    #[error("the input's store: {0}")]
    Store(String),
}

/// One case's verdict.
#[derive(Serialize)]
struct Verdict {
    name: String,
    passed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

fn test(spec: &str, paths: &[PathBuf], json: bool) -> CliResult {
    let (runtime, policy) = load(spec, None)?;
    let mut verdicts = Vec::new();
    for file in case_files(paths)? {
        let cases = cases::parse(read_json(&file)?)
            .map_err(|err| format!("case file {}: {err}", file.display()))?;
        for (index, case) in cases.into_iter().enumerate() {
            let name = case
                .name
                .clone()
                .unwrap_or_else(|| format!("{}#{}", file.display(), index + 1));
            let reason = judge(&runtime, &policy, &case).err();
            verdicts.push(Verdict {
                name,
                passed: reason.is_none(),
                reason,
            });
        }
    }
    let failed = verdicts.iter().filter(|verdict| !verdict.passed).count();
    let passed = verdicts.len() - failed;
    if json {
        print_json(&json!({ "passed": passed, "failed": failed, "cases": verdicts }))?;
    } else {
        for verdict in &verdicts {
            match &verdict.reason {
                None => println!("ok   {}", verdict.name),
                Some(reason) => println!("FAIL {}: {reason}", verdict.name),
            }
        }
        println!("{passed} passed, {failed} failed");
    }
    Ok(exit_code(failed == 0))
}

fn judge(runtime: &PolicyRuntime, policy: &Policy, case: &Case) -> Result<(), String> {
    let outcome = call(runtime, policy, case.input.clone()).map_err(|error| error.to_string());
    case.judge(outcome)
}

/// Runs the recorded calls of one kind through `spec` and prints, per pod (its latest
/// recorded call), where the new policy's answer differs from the recorded one.
fn replay(spec: &str, dir: &Path, json: bool) -> CliResult {
    let (runtime, policy) = load(spec, None)?;
    let recordings = recording::read_all(dir, policy.kind())
        .map_err(|err| format!("recordings in {}: {err}", dir.display()))?;
    let mut latest: BTreeMap<String, Recording> = BTreeMap::new();
    for recorded in recordings {
        latest.insert(recorded.pod.clone(), recorded);
    }
    let mut changes = Vec::new();
    for (pod, recorded) in &latest {
        let now = recording::outcome(
            policy.name(),
            &call(&runtime, &policy, recorded.input.clone()),
        );
        if now != recorded.outcome {
            changes.push(json!({ "pod": pod, "recorded": recorded.outcome, "now": now }));
        }
    }
    if json {
        print_json(&Value::Array(changes.clone()))?;
    } else {
        for change in &changes {
            println!("{}", change["pod"].as_str().unwrap_or_default());
            println!("  recorded: {}", change["recorded"]);
            println!("  now:      {}", change["now"]);
        }
    }
    eprintln!(
        "replayed {} pod(s) through {spec}: {} would change",
        latest.len(),
        changes.len()
    );
    Ok(exit_code(changes.is_empty()))
}

/// Looks the policy up in the cache without compiling into it: inspecting is not
/// compiling for the node.
fn inspect(spec: &str, state_dir: &Path, json: bool) -> CliResult {
    let runtime = PolicyRuntime::new(Some(state_dir.join("cache")), Limits::default())
        .map_err(|err| err.to_string())?;
    let info = runtime
        .inspect(&source(spec)?)
        .map_err(|err| err.to_string())?;
    if json {
        return print_json(&serde_json::to_value(&info).map_err(|err| err.to_string())?)
            .map(|()| ExitCode::SUCCESS);
    }
    println!("policy       {}", info.policy);
    println!("world        {} ({})", info.world, info.kind);
    println!("wit version  {}", info.wit_version);
    println!("size         {} bytes", info.size);
    println!("sha256       {}", info.sha256);
    match &info.metadata {
        Some(metadata) => println!(
            "metadata     {} {} (needs Plexus >= {})",
            metadata.name, metadata.version, metadata.min_host_version
        ),
        None => println!("metadata     none (built against plexus:policy@0.1.0)"),
    }
    if let Some(reason) = &info.refused {
        println!("refused      {reason}");
    }
    match &info.cached {
        Some(artifact) => println!("cached       {}", artifact.display()),
        None => println!("cached       no"),
    }
    println!("exports      {}", info.exports.join(", "));
    println!("imports      {}", info.imports.join(", "));
    Ok(ExitCode::SUCCESS)
}

fn exit_code(success: bool) -> ExitCode {
    if success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
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
