//! `plexus` run as a CNI plugin: one invocation, read from the environment and stdin,
//! answered with one JSON document on stdout.

mod add;
mod check;
mod delegates;
mod gc;
mod status;
mod teardown;

use std::io::{self, Read, Write};
use std::process::ExitCode;

use plexus_cni::{CniVersion, Command, Invocation};
use plexus_policy::{Limits, Policy, PolicyError, PolicyKind, PolicyRuntime, PolicySource};
use serde_json::Value;
use tracing::{debug, error};

use crate::builtins;
use crate::config::PluginConfig;
use crate::error::PlexusError;
use crate::logging;
use crate::state::StateStore;

/// What one invocation works with.
pub(crate) struct Context {
    pub invocation: Invocation,
    pub config: PluginConfig,
    pub store: StateStore,
}

impl Context {
    /// The policy runtime, made only by the commands that run policies: DEL never pays
    /// for an engine.
    fn policy_runtime(&self) -> Result<PolicyRuntime, PlexusError> {
        let limits = Limits {
            timeout: self.config.policy_timeout,
            memory_bytes: self.config.policy_memory_bytes,
        };
        Ok(PolicyRuntime::new(Some(self.store.cache_dir()), limits)?)
    }

    fn container_id(&self) -> &str {
        self.invocation.container_id.as_deref().unwrap_or_default()
    }

    fn ifname(&self) -> &str {
        self.invocation.ifname.as_deref().unwrap_or_default()
    }
}

/// Loads the policy configured under `key`, which must implement `kind`; errors that
/// come from the configuration name the key.
pub(crate) fn load_policy(
    runtime: &PolicyRuntime,
    key: &'static str,
    spec: &str,
    kind: PolicyKind,
) -> Result<Policy, PlexusError> {
    let in_key = |source| PlexusError::PolicySpec { key, source };
    let source = PolicySource::parse(spec, &builtins::table()).map_err(in_key)?;
    let policy = runtime.load(&source)?;
    if policy.kind() != kind {
        return Err(in_key(PolicyError::WrongWorld {
            policy: policy.name().to_owned(),
            expected: kind,
            found: policy.kind(),
        }));
    }
    Ok(policy)
}

/// Runs the invocation and prints its answer; the exit status tells success.
pub fn main() -> ExitCode {
    let mut stdin = Vec::new();
    let read = io::stdin().read_to_end(&mut stdin);
    let invocation = Invocation::from_env();
    // The config may be unreadable; its version still decides how an error is printed.
    let caller_version = caller_version(&stdin);
    let outcome = read
        .map_err(PlexusError::Stdin)
        .and_then(|_| invocation.map_err(PlexusError::from))
        .and_then(|invocation| run(invocation, &stdin));
    match outcome {
        Ok(Some(answer)) => print(&answer),
        Ok(None) => ExitCode::SUCCESS,
        Err(err) => {
            error!(error = %err, "invocation failed");
            let cni_error = err.to_cni();
            print(&cni_error.to_json(caller_version.as_str()));
            ExitCode::FAILURE
        }
    }
}

fn caller_version(stdin: &[u8]) -> CniVersion {
    serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|config| config.get("cniVersion")?.as_str()?.parse().ok())
        .unwrap_or(CniVersion::LATEST)
}

fn run(invocation: Invocation, stdin: &[u8]) -> Result<Option<Value>, PlexusError> {
    if invocation.command == Command::Version {
        return Ok(Some(status::version()));
    }
    let config = PluginConfig::from_slice(stdin)?;
    logging::init(config.log_file.as_deref(), &config.log_level);
    debug!(command = %invocation.command, container = ?invocation.container_id, "invoked");
    let store = StateStore::open(&config.state_dir)?;
    let context = Context {
        invocation,
        config,
        store,
    };
    match context.invocation.command {
        Command::Add => add::add(&context).map(Some),
        Command::Del => teardown::del(&context).map(|()| None),
        Command::Check => check::check(&context).map(|()| None),
        Command::Gc => gc::gc(&context).map(|()| None),
        Command::Status => status::status(&context).map(|()| None),
        Command::Version => Ok(Some(status::version())),
    }
}

fn print(answer: &Value) -> ExitCode {
    let mut stdout = io::stdout().lock();
    let written = serde_json::to_writer(&mut stdout, answer)
        .map_err(io::Error::from)
        .and_then(|()| stdout.flush());
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}
