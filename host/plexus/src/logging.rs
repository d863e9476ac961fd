//! Logs go to the configured file or to stderr: stdout is the CNI protocol channel.

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

/// Installs the process's logger. A log file that cannot be opened falls back to stderr,
/// since failing the pod because of its log would be worse than logging elsewhere.
pub fn init(log_file: Option<&Path>, level: &str) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    // A span's end is logged with its duration: the phases of an invocation (`phase`).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::CLOSE);
    let file = log_file.and_then(|path| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .inspect_err(|err| eprintln!("plexus: cannot open logFile {}: {err}", path.display()))
            .ok()
    });
    // A second init (the CLI after a failed first) keeps the first logger.
    let _ = match file {
        Some(file) => builder
            .with_ansi(false)
            .with_writer(Mutex::new(file))
            .try_init(),
        // Colour codes only for a person at a terminal: a runtime's log (kubelet,
        // containerd and podman read a plugin's stderr) or a pipe gets plain text.
        None => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .try_init(),
    };
}
