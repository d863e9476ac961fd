//! One CNI invocation end to end, for every mode of the binary (the meta-plugin and
//! `plexus-ipam`): the environment and stdin in, one JSON answer or CNI error out on
//! stdout, which nothing else ever writes to.

use std::io::{self, Read, Write};
use std::panic::{self, UnwindSafe};
use std::process::ExitCode;

use plexus_cni::{CniVersion, Command, Invocation};
use serde_json::{Value, json};
use tracing::error;

use crate::error::PlexusError;

/// The most configuration a runtime can hand over on stdin; more is refused, not read.
const MAX_STDIN_BYTES: u64 = 16 << 20;

/// Reads one invocation (environment and stdin), runs it with `run`, and prints its
/// answer or its error as JSON on stdout; the exit status tells success.
pub fn serve(
    run: impl FnOnce(Invocation, &[u8]) -> Result<Option<Value>, PlexusError> + UnwindSafe,
) -> ExitCode {
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

/// The answer to VERSION: the versions every mode of the binary speaks.
pub fn version() -> Value {
    json!({
        "cniVersion": CniVersion::LATEST.as_str(),
        "supportedVersions": CniVersion::ALL.iter().map(|version| version.as_str()).collect::<Vec<_>>(),
    })
}

/// Refuses, as the spec asks, a command the caller's CNI version does not have.
pub fn check_command_version(command: Command, version: CniVersion) -> Result<(), PlexusError> {
    let since = match command {
        Command::Check => CniVersion::V0_4_0,
        Command::Gc | Command::Status => CniVersion::V1_1_0,
        Command::Add | Command::Del | Command::Version => CniVersion::V0_3_0,
    };
    if version < since {
        return Err(PlexusError::NotInVersion { command, version });
    }
    Ok(())
}

fn caller_version(stdin: &[u8]) -> CniVersion {
    serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|config| config.get("cniVersion")?.as_str()?.parse().ok())
        .unwrap_or(CniVersion::LATEST)
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
