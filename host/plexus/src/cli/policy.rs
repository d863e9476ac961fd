//! `plexus policy`: run one policy call, run a table of cases, precompile into the cache.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;
use plexus_ipam_store::MemoryStore;
use plexus_oci::OciRef;
use plexus_policy::types::{
    self as wit, Attachment, GcRequest, IpamRequest, MergeRequest, SelectRequest,
};
use plexus_policy::{
    AnyPolicy, Ipam, Limits, Merger, PolicyKind, PolicyRuntime, PolicySource, Selector,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::cases;
use super::{CliError, CliResult, archive, pull, push, scaffold, sync};
use crate::builtins;
use crate::config::{DEFAULT_MAX_ATTACHMENTS, DEFAULT_STATE_DIR};
use crate::error::PlexusError;
use crate::recording::{self, Recording};
use crate::state::StateLayout;
use crate::{policy_io, selection, stored_policy};

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
        /// The `stateDir` whose policy store an `oci://` POLICY is resolved from (as ADD
        /// resolves it: never from a registry).
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
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
        /// With --replay: compare against what this policy answers now (the active one,
        /// say), not against what was recorded, and print the pods where they differ.
        #[arg(long, value_name = "REF", requires = "replay")]
        against: Option<String>,
        /// Print the outcome as one JSON document, for CI.
        #[arg(long)]
        json: bool,
        /// The `stateDir` whose policy store `oci://` policies are resolved from.
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Create a new policy project (SDK and WIT included) that builds and passes its cases.
    New {
        /// The project's name: its directory and cargo package.
        name: String,
        #[arg(long, value_enum, default_value = "select")]
        kind: scaffold::Kind,
        /// The language to write it in.
        #[arg(long, value_enum, default_value = "rust")]
        lang: scaffold::Lang,
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
    /// Publish a policy to an OCI registry (optionally signed as cosign signs); prints
    /// the artifact's digest.
    Push {
        /// `builtin:NAME` or a path to a `.wasm` component.
        policy: String,
        /// `oci://HOST[:PORT]/REPO:TAG`.
        reference: String,
        /// Sign with this ECDSA P-256 private key (PEM, unencrypted).
        #[arg(long, value_name = "PRIVATE.pem")]
        key: Option<PathBuf>,
        /// Case files that must pass, embedded in the artifact for every pull to run.
        #[arg(long, value_name = "DIR")]
        cases: Option<PathBuf>,
        /// Speak plain HTTP to the registry (a test or loopback registry).
        #[arg(long)]
        plain_http: bool,
    },
    /// Bring a policy from a registry into this node's policy store: verified (with
    /// `--verify-key`), checked, precompiled, its embedded cases run, then activated.
    Pull {
        /// `oci://HOST[:PORT]/REPO:TAG` or `oci://HOST[:PORT]/REPO@sha256:…`.
        reference: String,
        /// Refuse it unless a cosign signature by this P-256 public key (PEM) signs it.
        #[arg(long, value_name = "PUB.pem")]
        verify_key: Option<PathBuf>,
        /// The `stateDir` of the plexus configuration.
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// Speak plain HTTP to the registry.
        #[arg(long)]
        plain_http: bool,
    },
    /// Keep this node's policy store in step with the `oci://` policies a plexus
    /// configuration names (and its plexus-ipam delegates): pull what moved, verify,
    /// check, activate; on failure keep the active version and say why.
    Sync {
        /// The plexus configuration (`.conflist` or the plugin's `.conf`).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Run a round every SECONDS (±10 %) until SIGTERM.
        #[arg(
            long,
            value_name = "SECONDS",
            required_unless_present = "once",
            conflicts_with = "once"
        )]
        interval: Option<u64>,
        /// Run one round; exit non-zero if any reference could not be brought in step.
        #[arg(long)]
        once: bool,
        /// Speak plain HTTP to the registries.
        #[arg(long)]
        plain_http: bool,
    },
    /// Write a stored policy (and its signatures) as an OCI layout tarball, for nodes
    /// without a registry.
    Save {
        /// The `oci://` reference as it was pulled.
        reference: String,
        #[arg(short = 'o', long = "output", value_name = "FILE.tar")]
        output: PathBuf,
        /// The `stateDir` whose store holds it.
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Bring the policies of an OCI layout tarball into this node's store, with the same
    /// checks as a pull.
    Load {
        file: PathBuf,
        /// Refuse it unless a cosign signature by this P-256 public key (PEM) signs it.
        #[arg(long, value_name = "PUB.pem")]
        verify_key: Option<PathBuf>,
        /// The `stateDir` of the plexus configuration.
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// The reference to store its one policy as, when the tarball names it by a tag
        /// only (as `skopeo copy … oci-archive:` does).
        #[arg(long = "as", value_name = "oci://HOST/REPO:TAG")]
        as_ref: Option<String>,
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
        PolicyCommand::Run {
            policy,
            input,
            state_dir,
        } => {
            let (runtime, policy) = load_named(&policy, &state_dir)?;
            let request = Request::shape(&policy, read_json(&input)?)
                .map_err(|err| format!("{}: {err}", input.display()))?;
            let output = answer(&runtime, &policy, &request)?;
            print_json(&output)?;
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Test {
            policy,
            cases,
            replay: None,
            json,
            state_dir,
            ..
        } => test(&policy, &cases, json, &state_dir),
        PolicyCommand::Test {
            policy,
            replay: Some(dir),
            against,
            json,
            state_dir,
            ..
        } => replay(&policy, &dir, against.as_deref(), json, &state_dir),
        PolicyCommand::New {
            name,
            kind,
            lang,
            dir,
        } => scaffold::new_policy(&name, kind, lang, &dir),
        PolicyCommand::Inspect {
            policy,
            state_dir,
            json,
        } => inspect(&policy, &state_dir, json),
        PolicyCommand::Push {
            policy,
            reference,
            key,
            cases,
            plain_http,
        } => push::run(&push::PushArgs {
            policy: &policy,
            reference: &reference,
            key: key.as_deref(),
            cases: cases.as_deref(),
            plain_http,
        }),
        PolicyCommand::Pull {
            reference,
            verify_key,
            state_dir,
            plain_http,
        } => pull::run(&reference, verify_key.as_deref(), &state_dir, plain_http),
        PolicyCommand::Sync {
            config,
            interval,
            once: _,
            plain_http,
        } => sync::run(&config, interval, plain_http),
        PolicyCommand::Save {
            reference,
            output,
            state_dir,
        } => archive::save(&reference, &output, &state_dir),
        PolicyCommand::Load {
            file,
            verify_key,
            state_dir,
            as_ref,
        } => archive::load(&file, verify_key.as_deref(), &state_dir, as_ref.as_deref()),
        PolicyCommand::Compile { wasm, state_dir } => {
            let source = source(&wasm)?;
            let runtime = PolicyRuntime::new(
                Some(StateLayout::new(&state_dir).cache_dir()),
                Limits::default(),
            )?;
            let artifact = runtime.precompile(&source)?;
            println!("{}", artifact.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn source(spec: &str) -> Result<PolicySource, CliError> {
    Ok(PolicySource::parse(spec, &builtins::table())?)
}

/// Offline runs compile in memory: an author's machine has no node cache to fill.
fn load(spec: &str, cache: Option<PathBuf>) -> Result<(PolicyRuntime, AnyPolicy), CliError> {
    let runtime = PolicyRuntime::new(cache, Limits::default())?;
    let policy = runtime.load(&source(spec)?)?;
    Ok((runtime, policy))
}

/// A policy as a command names it: an `oci://` reference from the policy store under
/// `state_dir` (as ADD resolves it: never from a registry), else a built-in or a file.
fn load_named(spec: &str, state_dir: &Path) -> Result<(PolicyRuntime, AnyPolicy), CliError> {
    if OciRef::is_oci(spec) {
        load_stored(spec, state_dir)
    } else {
        load(spec, None)
    }
}

/// An `oci://` policy from a node's store, with the node's compile cache (the pull
/// precompiled it there).
fn load_stored(spec: &str, state_dir: &Path) -> Result<(PolicyRuntime, AnyPolicy), CliError> {
    let stored = stored_policy::resolve(state_dir, None, "policy", spec)?;
    let runtime = PolicyRuntime::new(
        Some(StateLayout::new(state_dir).cache_dir()),
        Limits::default(),
    )?;
    let policy = runtime.load(&stored.source)?;
    Ok((runtime, policy))
}

/// One policy call: the policy, and its input in the request type of its world.
enum Request<'p> {
    Select(&'p Selector, SelectRequest),
    Merge(&'p Merger, MergeRequest),
    /// An IPAM call against an in-memory store holding what the input gave.
    Ipam(&'p Ipam, IpamCall, Arc<MemoryStore>),
}

enum IpamCall {
    Allocate(IpamRequest),
    Release(IpamRequest),
    Check(IpamRequest),
    Gc(GcRequest),
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

/// An input that is not the request of the policy's world: a misspelt key, a value of the
/// wrong type, or a request for a policy of another world.
#[derive(Debug, thiserror::Error)]
#[error("policy {policy} is a {kind}, and the input is not {expected}: {reason}")]
struct InputError {
    policy: String,
    kind: PolicyKind,
    /// What the input of a policy of `kind` is.
    expected: &'static str,
    reason: String,
}

impl<'p> Request<'p> {
    /// `input` as the request of `policy`'s world. Every key must be one the request has,
    /// as the node would send it.
    fn shape(policy: &'p AnyPolicy, input: Value) -> Result<Self, InputError> {
        let kind = policy.kind();
        let invalid = |reason: String| InputError {
            policy: policy.name().to_owned(),
            kind,
            expected: match kind {
                PolicyKind::Selector => "a select-request",
                PolicyKind::Merger => "a merge-request",
                PolicyKind::Ipam => {
                    "an IPAM call ({\"call\": ..., \"request\": an ipam-request, or a \
                     gc-request for \"gc\", \"store\": {...}})"
                }
            },
            reason,
        };
        fn shaped<T: serde::de::DeserializeOwned>(
            value: Value,
            invalid: &impl Fn(String) -> InputError,
        ) -> Result<T, InputError> {
            serde_json::from_value(value).map_err(|err| invalid(err.to_string()))
        }
        Ok(match policy {
            AnyPolicy::Selector(selector) => Self::Select(selector, shaped(input, &invalid)?),
            AnyPolicy::Merger(merger) => Self::Merge(merger, shaped(input, &invalid)?),
            AnyPolicy::Ipam(ipam) => {
                let input: IpamInput = shaped(input, &invalid)?;
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
                let store = MemoryStore::new(&network, entries)
                    .map_err(|error| invalid(format!("its store: {error}")))?;
                let request = input.request;
                let call = match input.call {
                    IpamCallName::Allocate => IpamCall::Allocate(shaped(request, &invalid)?),
                    IpamCallName::Release => IpamCall::Release(shaped(request, &invalid)?),
                    IpamCallName::Check => IpamCall::Check(shaped(request, &invalid)?),
                    IpamCallName::Gc => IpamCall::Gc(shaped(request, &invalid)?),
                };
                Self::Ipam(ipam, call, Arc::new(store))
            }
        })
    }
}

/// What a policy answered, as its world types it.
enum Answer {
    Selection(Vec<Attachment>),
    Merged(wit::CniResult),
    /// What `allocate` gave (`None` for the other IPAM calls), and the store afterwards.
    Ipam(Option<wit::CniResult>, Arc<MemoryStore>),
}

#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Policy(#[from] plexus_policy::PolicyError),
    /// The node's check refused the answer (code 103 on the node, with this message).
    #[error(transparent)]
    Answer(#[from] PlexusError),
    #[error("cannot print the answer as JSON: {0}")]
    Print(#[from] serde_json::Error),
}

/// One call, as the policy answered it.
fn call(runtime: &PolicyRuntime, request: &Request) -> Result<Answer, CallError> {
    Ok(match request {
        Request::Select(policy, request) => Answer::Selection(policy.select(runtime, request)?),
        Request::Merge(policy, request) => Answer::Merged(policy.merge(runtime, request)?),
        Request::Ipam(policy, call, store) => {
            let shared = || -> Arc<dyn plexus_ipam_store::Store> { store.clone() };
            let allocation = match call {
                IpamCall::Allocate(request) => Some(policy.allocate(runtime, shared(), request)?),
                IpamCall::Release(request) => {
                    policy.release(runtime, shared(), request).map(|()| None)?
                }
                IpamCall::Check(request) => {
                    policy.check(runtime, shared(), request).map(|()| None)?
                }
                IpamCall::Gc(request) => policy.gc(runtime, shared(), request).map(|()| None)?,
            };
            Answer::Ipam(allocation, store.clone())
        }
    })
}

/// One call, its answer checked exactly as the node checks it (the node's own code) and
/// printed as JSON in the WIT's shapes. An IPAM call prints `{"result": ..., "store":
/// {...}}`, the store as the call left it (as it was, when the call failed: the host undid
/// its writes).
fn answer(
    runtime: &PolicyRuntime,
    policy: &AnyPolicy,
    request: &Request,
) -> Result<Value, CallError> {
    let answer = call(runtime, request)?;
    let refused = |reason: String| PlexusError::InvalidAnswer {
        policy: policy.name().to_owned(),
        reason,
    };
    match (&answer, request) {
        (Answer::Selection(chosen), Request::Select(_, request)) => {
            selection::check_answer(
                policy.name(),
                &request.networks,
                |network| &network.file,
                DEFAULT_MAX_ATTACHMENTS,
                chosen.clone(),
            )?;
        }
        (Answer::Merged(result), _) => {
            policy_io::check_result(&policy_io::from_policy_result(result.clone()))
                .map_err(refused)?;
        }
        (Answer::Ipam(Some(result), _), _) => {
            policy_io::check_allocation(&policy_io::from_policy_result(result.clone()))
                .map_err(refused)?;
        }
        _ => {}
    }
    to_json(answer)
}

fn to_json(answer: Answer) -> Result<Value, CallError> {
    Ok(match answer {
        Answer::Selection(chosen) => serde_json::to_value(chosen)?,
        Answer::Merged(result) => serde_json::to_value(result)?,
        Answer::Ipam(result, store) => {
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
            json!({ "result": serde_json::to_value(result)?, "store": contents })
        }
    })
}

/// One case's verdict.
#[derive(Serialize)]
pub(super) struct Verdict {
    pub name: String,
    pub passed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn test(spec: &str, paths: &[PathBuf], json: bool, state_dir: &Path) -> CliResult {
    let (runtime, policy) = load_named(spec, state_dir)?;
    let values = case_values(paths)?;
    if values.is_empty() {
        return Err(format!(
            "no cases: {} hold no case",
            paths
                .iter()
                .map(|path| path.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
        .into());
    }
    let verdicts = run_cases(&runtime, &policy, &values)?;
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

/// A case's JSON, with its `name`, and the file it came from.
pub(super) struct NamedCase {
    pub file: String,
    pub case: Value,
}

/// The cases of case files (or directories of them), each one's JSON with its `name`
/// (`FILE#N` when it has none), checked: a file with a mistake is an error naming it.
/// `plexus policy push` embeds these in the artifact.
pub(super) fn case_values(paths: &[PathBuf]) -> Result<Vec<NamedCase>, CliError> {
    let mut values = Vec::new();
    for file in case_files(paths)? {
        let in_file = |err: String| format!("case file {}: {err}", file.display());
        let document = read_json(&file)?;
        cases::parse(document.clone()).map_err(in_file)?;
        let listed = match document {
            Value::Object(mut object) if object.contains_key("cases") => {
                match object.remove("cases") {
                    Some(Value::Array(list)) => list,
                    _ => Vec::new(),
                }
            }
            single => vec![single],
        };
        for (index, mut case) in listed.into_iter().enumerate() {
            if let Value::Object(object) = &mut case
                && !object.contains_key("name")
            {
                object.insert(
                    "name".into(),
                    Value::String(format!("{}#{}", file.display(), index + 1)),
                );
            }
            values.push(NamedCase {
                file: file.display().to_string(),
                case,
            });
        }
    }
    Ok(values)
}

/// Runs named cases (as [`case_values`] gives them) against a policy. Every input is
/// shaped before any runs: a case with a mistake is an error of the run, never a case
/// that passes or fails for it.
pub(super) fn run_cases(
    runtime: &PolicyRuntime,
    policy: &AnyPolicy,
    values: &[NamedCase],
) -> Result<Vec<Verdict>, CliError> {
    let mut shaped = Vec::new();
    for named in values {
        let in_file = |err: String| format!("case file {}: {err}", named.file);
        let case = cases::parse(named.case.clone())
            .map_err(in_file)?
            .pop()
            .ok_or_else(|| in_file("no case".into()))?;
        let name = case.name.clone().unwrap_or_default();
        let request = Request::shape(policy, case.input.clone())
            .map_err(|err| in_file(format!("case {name}: input: {err}")))?;
        shaped.push((name, case, request));
    }
    Ok(shaped
        .into_iter()
        .map(|(name, case, request)| {
            let outcome = answer(runtime, policy, &request).map_err(|error| error.to_string());
            let reason = case.judge(outcome).err();
            Verdict {
                name,
                passed: reason.is_none(),
                reason,
            }
        })
        .collect())
}

/// Runs the recorded calls of one kind through `spec` and prints, per pod (its latest
/// recorded call), where the new policy's answer differs from the recorded one, or with
/// `against` from what that policy answers to the same call. The recordings hold what
/// the policy answered before the node checked it, so the answers are compared unchecked.
fn replay(
    spec: &str,
    dir: &Path,
    against: Option<&str>,
    json: bool,
    state_dir: &Path,
) -> CliResult {
    let (runtime, policy) = load_named(spec, state_dir)?;
    let reference = against
        .map(|against| load_named(against, state_dir))
        .transpose()?;
    if let Some((_, reference)) = &reference
        && reference.kind() != policy.kind()
    {
        return Err(format!(
            "--against {}: it is a {}, {spec} a {}: compare policies of one kind",
            reference.name(),
            reference.kind(),
            policy.kind()
        )
        .into());
    }
    let recordings = recording::read_all(dir, policy.kind())
        .map_err(|err| format!("recordings in {}: {err}", dir.display()))?;
    let mut latest: BTreeMap<String, Recording> = BTreeMap::new();
    for recorded in recordings {
        latest.insert(recorded.pod.clone(), recorded);
    }
    let outcome = |runtime: &PolicyRuntime, policy: &AnyPolicy, input: &Value| {
        let answer = Request::shape(policy, input.clone())
            .map_err(CallError::from)
            .and_then(|request| to_json(call(runtime, &request)?));
        recording::outcome(policy.name(), &answer)
    };
    let baseline = if against.is_some() {
        "against"
    } else {
        "recorded"
    };
    let mut changes = Vec::new();
    for (pod, recorded) in &latest {
        let now = outcome(&runtime, &policy, &recorded.input);
        let before = match &reference {
            Some((runtime, reference)) => outcome(runtime, reference, &recorded.input),
            None => recorded.outcome.clone(),
        };
        if now != before {
            changes.push(json!({ "pod": pod, baseline: before, "now": now }));
        }
    }
    if json {
        print_json(&Value::Array(changes.clone()))?;
    } else {
        for change in &changes {
            println!("{}", change["pod"].as_str().unwrap_or_default());
            println!("  {:<10}{}", format!("{baseline}:"), change[baseline]);
            println!("  now:      {}", change["now"]);
        }
    }
    let compared = against.map_or_else(String::new, |against| format!(" against {against}"));
    eprintln!(
        "replayed {} pod(s) through {spec}{compared}: {} would change",
        latest.len(),
        changes.len()
    );
    Ok(exit_code(changes.is_empty()))
}

/// Looks the policy up in the cache without compiling into it: inspecting is not
/// compiling for the node.
fn inspect(spec: &str, state_dir: &Path, json: bool) -> CliResult {
    let runtime = PolicyRuntime::new(
        Some(StateLayout::new(state_dir).cache_dir()),
        Limits::default(),
    )?;
    let info = runtime.inspect(&source(spec)?)?;
    if json {
        return print_json(&serde_json::to_value(&info)?).map(|()| ExitCode::SUCCESS);
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

fn case_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, CliError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = fs::read_dir(path)
                .map_err(|err| format!("{}: {err}", path.display()))?
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|file| file.extension().is_some_and(|ext| ext == "json"))
                .collect();
            if found.is_empty() {
                return Err(format!("{}: no case files (*.json) in it", path.display()).into());
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn read_json(path: &Path) -> Result<Value, CliError> {
    let text = fs::read(path).map_err(|err| format!("{}: {err}", path.display()))?;
    Ok(serde_json::from_slice(&text).map_err(|err| format!("{}: {err}", path.display()))?)
}

fn print_json(value: &Value) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)?;
    println!("{text}");
    Ok(())
}
