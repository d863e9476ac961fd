//! Finding and executing one plugin binary.
//!
//! Only std: a plugin run is a child process with piped stdio, which
//! `std::process` does fully.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::env::{Command, format_cni_args};
use crate::error::{CniError, code};

/// How many of a failed plugin's last stderr lines go into its error.
const STDERR_TAIL_LINES: usize = 10;
/// How much of a failed plugin's unparsable stdout goes into its error.
const STDOUT_EXCERPT_BYTES: usize = 1024;

/// A delegate plugin could not be found, run, or understood, or it failed.
#[derive(Debug, thiserror::Error)]
#[error("plugin {plugin:?}: {kind}")]
pub struct DelegateError {
    /// The plugin's `type`.
    pub plugin: String,
    /// What went wrong.
    pub kind: DelegateErrorKind,
}

/// What went wrong with a delegate plugin.
#[derive(Debug, thiserror::Error)]
pub enum DelegateErrorKind {
    /// The request cannot be made: a bad plugin type, or a CNI path that
    /// cannot be put in `CNI_PATH`.
    #[error("{reason}")]
    InvalidRequest {
        /// Why.
        reason: String,
    },
    /// No regular file named after the plugin type in any CNI path directory.
    #[error("not found in CNI path {}", show_path(searched))]
    NotFound {
        /// The directories searched, in order.
        searched: Vec<PathBuf>,
    },
    /// The binary was found but could not be started.
    #[error("cannot execute {}: {error}", path.display())]
    Spawn {
        /// The binary.
        path: PathBuf,
        /// The OS's reason.
        error: io::Error,
    },
    /// Reading or writing the plugin's stdio failed.
    #[error("I/O error talking to the plugin: {0}")]
    Io(io::Error),
    /// The plugin failed and said why, as a CNI error.
    #[error("{0}")]
    Plugin(CniError),
    /// The plugin failed without printing a CNI error.
    #[error(
        "failed ({status}) without a CNI error on stdout{}{}",
        excerpt("stdout", stdout),
        excerpt("stderr", stderr_tail)
    )]
    Failed {
        /// How it exited.
        status: ExitStatus,
        /// The start of what it printed on stdout.
        stdout: String,
        /// Its last lines of stderr.
        stderr_tail: String,
    },
    /// It succeeded but its output is not what the protocol asks for.
    #[error("bad output: {reason}")]
    BadOutput {
        /// What is wrong with the output.
        reason: String,
    },
}

fn show_path(path: &[PathBuf]) -> String {
    if path.is_empty() {
        return "(the CNI path is empty)".into();
    }
    path.iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

fn excerpt(label: &str, text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!("; {label}: {text}")
    }
}

impl DelegateError {
    pub(crate) fn new(plugin: &str, kind: DelegateErrorKind) -> Self {
        DelegateError {
            plugin: plugin.to_owned(),
            kind,
        }
    }

    /// The plugin's own error code, when it printed a CNI error.
    pub fn code(&self) -> Option<u32> {
        match &self.kind {
            DelegateErrorKind::Plugin(e) => Some(e.code),
            _ => None,
        }
    }
}

impl From<&DelegateError> for CniError {
    /// The error to hand back to our runtime: the plugin's own code, message
    /// (prefixed with the plugin) and details when it gave them.
    fn from(e: &DelegateError) -> Self {
        let code = match &e.kind {
            DelegateErrorKind::Plugin(inner) => {
                return CniError::new(inner.code, format!("plugin {:?}: {}", e.plugin, inner.msg))
                    .with_details(inner.details.clone());
            }
            DelegateErrorKind::InvalidRequest { .. } => code::INVALID_CONFIG,
            // Delegate binaries are often installed by a DaemonSet after the
            // configuration is in place, so a missing one is usually transient.
            DelegateErrorKind::NotFound { .. } => code::TRY_AGAIN_LATER,
            DelegateErrorKind::Spawn { .. } | DelegateErrorKind::Io(_) => code::IO_FAILURE,
            DelegateErrorKind::Failed { .. } => code::INTERNAL,
            DelegateErrorKind::BadOutput { .. } => code::DECODE,
        };
        CniError::new(code, e.to_string())
    }
}

/// Checks a plugin `type` can only name a file inside a CNI path directory:
/// non-empty, not `.` or `..`, and no `/` or NUL.
pub fn validate_plugin_type(plugin_type: &str) -> Result<(), String> {
    if plugin_type.is_empty() {
        return Err("plugin type is empty".into());
    }
    if plugin_type == "." || plugin_type == ".." {
        return Err(format!("plugin type {plugin_type:?} is not a file name"));
    }
    if let Some(c) = plugin_type.chars().find(|c| matches!(c, '/' | '\0')) {
        return Err(format!(
            "plugin type {plugin_type:?} contains {c:?}; it must be a plain file name"
        ));
    }
    Ok(())
}

/// The first regular file (symlinks followed) named `plugin_type` in the
/// directories of `path`, searched in order.
pub fn find_plugin(plugin_type: &str, path: &[PathBuf]) -> Result<PathBuf, DelegateError> {
    validate_plugin_type(plugin_type).map_err(|reason| {
        DelegateError::new(plugin_type, DelegateErrorKind::InvalidRequest { reason })
    })?;
    path.iter()
        .map(|dir| dir.join(plugin_type))
        .find(|candidate| candidate.metadata().is_ok_and(|m| m.is_file()))
        .ok_or_else(|| {
            DelegateError::new(
                plugin_type,
                DelegateErrorKind::NotFound {
                    searched: path.to_vec(),
                },
            )
        })
}

/// The `CNI_*` parameters of one plugin run.
#[derive(Debug, Clone, Copy)]
pub struct PluginRequest<'a> {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID`, set when `Some`.
    pub container_id: Option<&'a str>,
    /// `CNI_NETNS`, set when `Some`.
    pub netns: Option<&'a str>,
    /// `CNI_IFNAME`, set when `Some`.
    pub ifname: Option<&'a str>,
    /// `CNI_ARGS`, set when not empty.
    pub args: &'a [(String, String)],
    /// Where to find the plugin; also its `CNI_PATH`.
    pub path: &'a [PathBuf],
}

impl<'a> PluginRequest<'a> {
    /// A request that concerns no attachment (VERSION, GC, STATUS): only
    /// `CNI_COMMAND` and `CNI_PATH` are set.
    pub fn global(command: Command, path: &'a [PathBuf]) -> Self {
        PluginRequest {
            command,
            container_id: None,
            netns: None,
            ifname: None,
            args: &[],
            path,
        }
    }
}

/// The environment for a plugin: `parent` without any `CNI_*` variable (a
/// stale one from our own invocation must not leak into the delegate's),
/// plus the request's.
fn plugin_env(
    parent: impl IntoIterator<Item = (OsString, OsString)>,
    req: &PluginRequest<'_>,
) -> Result<Vec<(OsString, OsString)>, String> {
    let cni_path = std::env::join_paths(req.path)
        .map_err(|e| format!("cannot form CNI_PATH from {}: {e}", show_path(req.path)))?;
    let mut env: Vec<(OsString, OsString)> = parent
        .into_iter()
        .filter(|(k, _)| !k.as_encoded_bytes().starts_with(b"CNI_"))
        .collect();
    let mut set = |k: &str, v: &OsStr| env.push((k.into(), v.to_owned()));
    set("CNI_COMMAND", req.command.as_str().as_ref());
    set("CNI_PATH", &cni_path);
    let args = format_cni_args(req.args);
    let optional = [
        ("CNI_CONTAINERID", req.container_id),
        ("CNI_NETNS", req.netns),
        ("CNI_IFNAME", req.ifname),
        ("CNI_ARGS", Some(args.as_str()).filter(|a| !a.is_empty())),
    ];
    for (k, v) in optional {
        if let Some(v) = v {
            set(k, v.as_ref());
        }
    }
    Ok(env)
}

/// Runs plugin `plugin_type`, found in `req.path`, with `stdin` as its
/// input, and returns its stdout when it exits 0.
///
/// The environment is ours minus every `CNI_*`, plus the request's. The
/// plugin's stderr is logged line by line to `tracing` (target `delegate`,
/// field `plugin`), never to our stdout, which belongs to our own caller.
/// stdin, stdout and stderr are serviced concurrently so no amount of
/// output can deadlock. On a non-zero exit, a CNI error on stdout becomes
/// [`DelegateErrorKind::Plugin`]; anything else [`DelegateErrorKind::Failed`]
/// with the stdout excerpt and the stderr tail.
pub fn exec_plugin(
    plugin_type: &str,
    req: &PluginRequest<'_>,
    stdin: &[u8],
) -> Result<Vec<u8>, DelegateError> {
    let fail = |kind| DelegateError::new(plugin_type, kind);
    let binary = find_plugin(plugin_type, req.path)?;
    let env = plugin_env(std::env::vars_os(), req)
        .map_err(|reason| fail(DelegateErrorKind::InvalidRequest { reason }))?;

    tracing::debug!(plugin = plugin_type, command = %req.command, binary = %binary.display(), "running delegate");
    let started = Instant::now();
    let mut child = spawn(&binary, env).map_err(|error| {
        fail(DelegateErrorKind::Spawn {
            path: binary.clone(),
            error,
        })
    })?;
    let (Some(mut child_in), Some(mut child_out), Some(child_err)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        unreachable!("spawn() pipes all three of stdin, stdout and stderr");
    };

    let (written, read, stderr_tail) = std::thread::scope(|s| {
        let writer = s.spawn(move || {
            // Dropping `child_in` at the end closes the pipe: the plugin sees EOF.
            match child_in.write_all(stdin) {
                // A plugin may exit without reading its input (e.g. on VERSION).
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
                other => other,
            }
        });
        // The caller's subscriber and span are thread-local: carry them over
        // so the plugin's lines land where the rest of its logs do.
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        let span = tracing::Span::current();
        let logger = s.spawn(move || {
            tracing::dispatcher::with_default(&dispatch, || {
                span.in_scope(|| forward_stderr(plugin_type, child_err))
            })
        });
        let mut out = Vec::new();
        let read = child_out.read_to_end(&mut out).map(|_| out);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("stdin writer panicked")));
        let tail = logger.join().unwrap_or_default();
        (written, read, tail)
    });
    let status = child.wait().map_err(|e| fail(DelegateErrorKind::Io(e)))?;
    tracing::debug!(plugin = plugin_type, command = %req.command, %status, elapsed_ms = started.elapsed().as_millis() as u64, "delegate finished");

    let stdout = read.map_err(|e| fail(DelegateErrorKind::Io(e)))?;
    if !status.success() {
        return Err(fail(failure(status, &stdout, stderr_tail)));
    }
    written.map_err(|e| fail(DelegateErrorKind::Io(e)))?;
    Ok(stdout)
}

/// Starts the binary, retrying while it is "text file busy": a plugin being
/// installed, or one just written (by a test) while another thread forked.
fn spawn(binary: &Path, env: Vec<(OsString, OsString)>) -> io::Result<std::process::Child> {
    let mut cmd = std::process::Command::new(binary);
    cmd.env_clear()
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut delay = Duration::from_millis(50);
    for _ in 0..5 {
        match cmd.spawn() {
            Err(e) if e.kind() == io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(delay);
                delay *= 2;
            }
            other => return other,
        }
    }
    cmd.spawn()
}

/// Logs each stderr line as it arrives and returns the last few.
fn forward_stderr(plugin_type: &str, stderr: ChildStderr) -> String {
    let mut tail = VecDeque::with_capacity(STDERR_TAIL_LINES);
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    // A read error ends the forwarding only: stderr is informational.
    while reader.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
        let line = String::from_utf8_lossy(&buf).trim_end().to_owned();
        buf.clear();
        if line.is_empty() {
            continue;
        }
        tracing::info!(target: "delegate", plugin = plugin_type, "{line}");
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    Vec::from(tail).join("\n")
}

fn failure(status: ExitStatus, stdout: &[u8], stderr_tail: String) -> DelegateErrorKind {
    if let Some(e) = serde_json::from_slice(stdout)
        .ok()
        .and_then(|v| CniError::from_json(&v))
    {
        return DelegateErrorKind::Plugin(e);
    }
    let text = String::from_utf8_lossy(stdout);
    let text = text.trim();
    let mut cut = text.len().min(STDOUT_EXCERPT_BYTES);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let more = if cut < text.len() { "..." } else { "" };
    DelegateErrorKind::Failed {
        status,
        stdout: format!("{}{more}", &text[..cut]),
        stderr_tail,
    }
}

#[cfg(test)]
mod tests;
