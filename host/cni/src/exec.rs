//! Finding and executing one plugin binary.
//!
//! A plugin run is a child process with piped stdio, bounded in time and output: it runs
//! in a process group of its own, which is killed whole when the run takes longer than
//! its timeout or prints more than [`MAX_OUTPUT_BYTES`], and it is killed when the thread
//! that started it dies (so when plexus is killed mid-call, its delegate goes too).

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, ChildStdout, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::env::{Command, format_cni_args};
use crate::error::{CniError, code};

/// How many of a failed plugin's last stderr lines go into its error.
const STDERR_TAIL_LINES: usize = 10;
/// How much of a failed plugin's unparsable stdout goes into its error.
const STDOUT_EXCERPT_BYTES: usize = 1024;
/// The most a plugin may print on stdout, the bound plexus puts on its own stdin: a
/// result is a few KiB, and a plugin gone wrong must not make plexus hold gigabytes.
pub const MAX_OUTPUT_BYTES: usize = 16 << 20;
/// The longest stderr line logged; the rest of a longer one is dropped.
const MAX_STDERR_LINE_BYTES: usize = 64 << 10;
/// How long one plugin run may take unless the caller says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How plugins are run: where they are found (also their `CNI_PATH`) and how long one
/// run may take before its whole process group is killed.
#[derive(Debug, Clone, Copy)]
pub struct Runner<'a> {
    /// The directories searched for a plugin, in order.
    pub path: &'a [PathBuf],
    /// The bound of one plugin run, from start to its output closed and its exit.
    pub timeout: Duration,
}

impl<'a> Runner<'a> {
    /// Plugins found in `path`, each run bounded by [`DEFAULT_TIMEOUT`].
    pub fn new(path: &'a [PathBuf]) -> Self {
        Runner {
            path,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same, with runs bounded by `timeout`.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        Runner { timeout, ..self }
    }
}

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
    /// It did not finish within the timeout; its process group was killed.
    #[error(
        "timed out after {} s without finishing; it was killed with everything it started",
        after.as_secs_f64()
    )]
    TimedOut {
        /// The timeout it ran into.
        after: Duration,
    },
    /// It printed more than [`MAX_OUTPUT_BYTES`] on stdout; its process group was killed.
    #[error("printed more than {} MiB on stdout; it was killed", limit >> 20)]
    OutputTooLarge {
        /// The bound it went past, in bytes.
        limit: usize,
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
            DelegateErrorKind::BadOutput { .. } | DelegateErrorKind::OutputTooLarge { .. } => {
                code::DECODE
            }
            // A delegate stuck on something outside it (a store, an API) may answer later.
            DelegateErrorKind::TimedOut { .. } => code::TRY_AGAIN_LATER,
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
    /// Where to find the plugin (also its `CNI_PATH`), and its timeout.
    pub runner: Runner<'a>,
}

impl<'a> PluginRequest<'a> {
    /// A request that concerns no attachment (VERSION, GC, STATUS): only
    /// `CNI_COMMAND` and `CNI_PATH` are set.
    pub fn global(command: Command, runner: Runner<'a>) -> Self {
        PluginRequest {
            command,
            container_id: None,
            netns: None,
            ifname: None,
            args: &[],
            runner,
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
    let path = req.runner.path;
    let cni_path = std::env::join_paths(path)
        .map_err(|e| format!("cannot form CNI_PATH from {}: {e}", show_path(path)))?;
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

/// Runs plugin `plugin_type`, found in `req.runner.path`, with `stdin` as its input, and
/// returns its stdout when it exits 0.
///
/// The environment is ours minus every `CNI_*`, plus the request's. The plugin's stderr
/// is logged line by line to `tracing` (target `delegate`, field `plugin`), never to our
/// stdout, which belongs to our own caller. stdin, stdout and stderr are serviced
/// concurrently so no amount of output can deadlock. On a non-zero exit, a CNI error on
/// stdout becomes [`DelegateErrorKind::Plugin`]; anything else
/// [`DelegateErrorKind::Failed`] with the stdout excerpt and the stderr tail.
///
/// The run, until the plugin exited and closed its output, is bounded by the runner's
/// timeout; past it, or past [`MAX_OUTPUT_BYTES`] of stdout, the plugin's process group
/// is killed, so nothing it started lives on.
pub fn exec_plugin(
    plugin_type: &str,
    req: &PluginRequest<'_>,
    stdin: &[u8],
) -> Result<Vec<u8>, DelegateError> {
    let fail = |kind| DelegateError::new(plugin_type, kind);
    let binary = find_plugin(plugin_type, req.runner.path)?;
    let env = plugin_env(std::env::vars_os(), req)
        .map_err(|reason| fail(DelegateErrorKind::InvalidRequest { reason }))?;

    tracing::debug!(plugin = plugin_type, command = %req.command, binary = %binary.display(), "running delegate");
    let started = Instant::now();
    // A timeout too large to add to a clock bounds nothing: such a run waits as long as
    // it takes.
    let deadline = started.checked_add(req.runner.timeout);
    let mut child = spawn(&binary, env).map_err(|error| {
        fail(DelegateErrorKind::Spawn {
            path: binary.clone(),
            error,
        })
    })?;
    let group = ProcessGroup::of(&child);
    let (Some(mut child_in), Some(child_out), Some(child_err)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        unreachable!("spawn() pipes all three of stdin, stdout and stderr");
    };

    // Every wait below is bounded by the deadline, so each stream is serviced by a thread
    // of its own that reports on a channel: a thread stuck on a stream that something
    // outside the plugin's group still holds is left behind, not waited for.
    let input = stdin.to_vec();
    let written = in_background(move || {
        // Dropping `child_in` at the end closes the pipe: the plugin sees EOF.
        match child_in.write_all(&input) {
            // A plugin may exit without reading its input (e.g. on VERSION).
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            other => other,
        }
    });
    let read = in_background(move || read_bounded(child_out));
    // The caller's subscriber and span are thread-local: carry them over so the plugin's
    // lines land where the rest of its logs do.
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    let span = tracing::Span::current();
    let owned_type = plugin_type.to_owned();
    let stderr_tail = in_background(move || {
        tracing::dispatcher::with_default(&dispatch, || {
            span.in_scope(|| forward_stderr(&owned_type, child_err))
        })
    });
    let exited = in_background(move || child.wait());

    let timeout = req.runner.timeout;
    let outcome = (|| {
        let stdout = match wait_until(&read, deadline, timeout)? {
            Ok(out) if out.len() > MAX_OUTPUT_BYTES => {
                return Err(DelegateErrorKind::OutputTooLarge {
                    limit: MAX_OUTPUT_BYTES,
                });
            }
            Ok(out) => out,
            Err(e) => return Err(DelegateErrorKind::Io(e)),
        };
        let status = wait_until(&exited, deadline, timeout)?.map_err(DelegateErrorKind::Io)?;
        let written = wait_until(&written, deadline, timeout)?;
        let tail = wait_until(&stderr_tail, deadline, timeout)?;
        Ok((status, stdout, written, tail))
    })()
    .inspect_err(|_| group.kill(plugin_type));
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let (status, stdout, written, stderr_tail) = outcome.map_err(|kind| {
        tracing::warn!(plugin = plugin_type, command = %req.command, elapsed_ms, error = %kind, "delegate killed");
        fail(kind)
    })?;
    tracing::debug!(plugin = plugin_type, command = %req.command, %status, elapsed_ms, "delegate finished");

    if !status.success() {
        return Err(fail(failure(status, &stdout, stderr_tail)));
    }
    written.map_err(|e| fail(DelegateErrorKind::Io(e)))?;
    Ok(stdout)
}

/// Runs `work` on a thread of its own; its answer arrives on the returned channel.
fn in_background<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> mpsc::Receiver<T> {
    let (sender, receiver) = mpsc::sync_channel(1);
    std::thread::spawn(move || {
        // The receiver is gone only when the run was given up: nobody wants the answer.
        let _ = sender.send(work());
    });
    receiver
}

/// The answer on `channel`, if it comes before `deadline` (the end of a run bounded by
/// `timeout`). A thread that died without answering (a panic) counts as never answering.
fn wait_until<T>(
    channel: &mpsc::Receiver<T>,
    deadline: Option<Instant>,
    timeout: Duration,
) -> Result<T, DelegateErrorKind> {
    let answer = match deadline {
        Some(deadline) => channel.recv_timeout(deadline.saturating_duration_since(Instant::now())),
        None => channel
            .recv()
            .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
    };
    answer.map_err(|_| DelegateErrorKind::TimedOut { after: timeout })
}

/// Reads stdout to its end, but no more than one byte past [`MAX_OUTPUT_BYTES`]: that
/// byte tells a plugin that printed too much.
fn read_bounded(stdout: ChildStdout) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    stdout
        .take(MAX_OUTPUT_BYTES as u64 + 1)
        .read_to_end(&mut out)?;
    Ok(out)
}

/// The process group a plugin runs in: its own, led by it.
struct ProcessGroup(Pid);

impl ProcessGroup {
    fn of(child: &std::process::Child) -> Self {
        // A pid always fits: the kernel's pid_max is far below i32::MAX.
        ProcessGroup(Pid::from_raw(child.id() as i32))
    }

    /// Kills every process of the group; one already gone is no error.
    fn kill(&self, plugin_type: &str) {
        match killpg(self.0, Signal::SIGKILL) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(error) => {
                tracing::error!(plugin = plugin_type, group = %self.0, %error, "cannot kill a delegate's process group");
            }
        }
    }
}

/// Starts the binary in a process group of its own, to die with the thread that started
/// it, retrying while it is "text file busy": a plugin being installed, or one just
/// written (by a test) while another thread forked.
// `pre_exec`, to set the parent-death signal in the child.
#[allow(unsafe_code)]
fn spawn(binary: &Path, env: Vec<(OsString, OsString)>) -> io::Result<std::process::Child> {
    let mut cmd = std::process::Command::new(binary);
    cmd.env_clear()
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe calls are allowed: prctl(PR_SET_PDEATHSIG) and getppid are. It
    // allocates nothing and touches no lock.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
            // The parent may have died between fork and prctl: then nobody would kill us.
            if nix::unistd::getppid() != parent {
                return Err(io::Error::other("plexus exited while starting the plugin"));
            }
            Ok(())
        });
    }
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
    while read_line_bounded(&mut reader, &mut buf).is_ok_and(|n| n > 0) {
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

/// Reads one line into `buf`, keeping at most [`MAX_STDERR_LINE_BYTES`] of it and
/// dropping the rest; returns how many bytes the line had (0 at the end).
fn read_line_bounded(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut total = 0;
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok(total);
        }
        let (chunk, ends_line) = match available.iter().position(|b| *b == b'\n') {
            Some(end) => (&available[..=end], true),
            None => (available, false),
        };
        let room = MAX_STDERR_LINE_BYTES.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = chunk.len();
        reader.consume(used);
        total += used;
        if ends_line {
            return Ok(total);
        }
    }
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
