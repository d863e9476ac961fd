//! `plexus` run as a CNI plugin: one invocation, read from the environment and stdin,
//! answered with one JSON document on stdout.

mod add;
mod check;
mod delegates;
mod gc;
mod status;
mod teardown;
mod vm;

pub use vm::VmAttachment;

use std::io::{self, Read, Write};
use std::panic;
use std::process::ExitCode;

use plexus_cni::{CniVersion, Command, Invocation};
use plexus_policy::{Limits, PolicyRuntime};
use serde_json::Value;
use tracing::{debug, error};

use crate::config::{ConfigError, PluginConfig};
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

/// The most configuration a runtime can hand over on stdin; more is refused, not read.
const MAX_STDIN_BYTES: u64 = 16 << 20;

/// Runs the invocation and prints its answer; the exit status tells success.
pub fn main() -> ExitCode {
    let mut stdin = Vec::new();
    let read = io::stdin()
        .take(MAX_STDIN_BYTES + 1)
        .read_to_end(&mut stdin);
    let invocation = Invocation::from_env();
    // The config may be unreadable; its version still decides how an error is printed.
    let caller_version = caller_version(&stdin);
    let outcome = read
        .map_err(PlexusError::Stdin)
        .and_then(|size| {
            if size as u64 > MAX_STDIN_BYTES {
                Err(PlexusError::Stdin(io::Error::other(format!(
                    "more than {MAX_STDIN_BYTES} bytes"
                ))))
            } else {
                Ok(())
            }
        })
        .and_then(|()| invocation.map_err(PlexusError::from))
        // A bug must still answer with a CNI error on stdout, never a bare panic.
        .and_then(|invocation| {
            panic::catch_unwind(|| run(invocation, &stdin)).unwrap_or_else(|panic| {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|text| (*text).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(PlexusError::Internal(message))
            })
        });
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

/// Answers every invocation under `name` with an error: a mode this build does not have.
pub fn refuse(name: &str) -> ExitCode {
    let mut stdin = Vec::new();
    let _ = io::stdin().take(MAX_STDIN_BYTES).read_to_end(&mut stdin);
    let error = PlexusError::Config(ConfigError::Invalid {
        key: "ipam.type".into(),
        reason: format!("{name} is not available in this build of Plexus"),
    });
    print(&error.to_cni().to_json(caller_version(&stdin).as_str()));
    ExitCode::FAILURE
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
    check_command_version(invocation.command, &config)?;
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

/// Commands the caller's CNI version does not have are refused, as the spec asks; and
/// Plexus makes the pod's interfaces itself, so it must come first in its list.
fn check_command_version(command: Command, config: &PluginConfig) -> Result<(), PlexusError> {
    let since = match command {
        Command::Check => CniVersion::V0_4_0,
        Command::Gc | Command::Status => CniVersion::V1_1_0,
        Command::Add | Command::Del | Command::Version => CniVersion::V0_3_0,
    };
    if config.cni_version < since {
        return Err(PlexusError::NotInVersion {
            command,
            version: config.cni_version,
        });
    }
    if command == Command::Add && config.document.get("prevResult").is_some() {
        return Err(PlexusError::Config(ConfigError::Key {
            key: "prevResult",
            reason: "plexus must be the first plugin of its list: it makes the pod's \
                     interfaces itself"
                .into(),
        }));
    }
    Ok(())
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
