//! The invocation trace: one line per plugin invocation under `stateDir/trace/`, which
//! `plexus agent` reads to count and time what ran (see `agent`).
//!
//! Why a file and not a message to the agent: the CNI path must never wait on, or fail
//! for, a process that may be down. Appending a line costs the plugin an `open`, a
//! `flock` nobody else holds for long and one `write`.
//!
//! Format: a JSON line ([`TraceRecord`]). It is self-describing, so the agent can read a
//! trace written by an older or newer plugin (unknown fields are ignored, `v` says which
//! version wrote it), and serde already serialises everything else in the binary; a
//! fixed binary format would save a few hundred bytes per invocation and cost a format of
//! its own. A record is kept under [`MAX_RECORD_BYTES`] (its lists are dropped, and
//! `truncated` set, past that) so that one `write` of it to an `O_APPEND` file is one
//! piece of the file even without the lock.
//!
//! Bounded: past [`MAX_TRACE_BYTES`] the file is renamed to `.1` (replacing the previous
//! one) under the file's lock, as `recording` does, so a node keeps at most two bounds'
//! worth. Not durable: nothing is synced. The trace feeds metrics, which a crash may lose
//! a few of; it is never state that an invocation or the agent's GC depends on.
//! A trace that cannot be written costs a warning, never the pod.

use std::fs::{self, DirBuilder};
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use plexus_cni::Command;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::error::{Cause, PlexusError};
use crate::flock::lock_current;
use crate::state::StateLayout;

/// The trace file's bound before it is rotated: about 4000 invocations.
pub const MAX_TRACE_BYTES: u64 = 1 << 20;

/// The most one record takes, newline included: below `PIPE_BUF` (4096 on Linux).
pub const MAX_RECORD_BYTES: usize = 4000;

/// The version of the record format written here.
pub const TRACE_VERSION: u32 = 1;

/// One plugin invocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceRecord {
    pub v: u32,
    /// When it ended, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// `ADD`, `DEL`, `CHECK`, `GC` or `STATUS`.
    pub command: String,
    /// The CNI code it failed with; absent when it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
    /// From reading the configuration to the answer, in microseconds.
    pub wall_us: u64,
    /// Of that, the time spent waiting for delegates (see [`delegate_time`]).
    pub delegate_us: u64,
    /// The networks it attached, undid or checked.
    #[serde(default)]
    pub networks: Vec<String>,
    /// The policies it ran.
    #[serde(default)]
    pub policies: Vec<PolicyUse>,
    /// The lists did not fit in [`MAX_RECORD_BYTES`] and were dropped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// A policy an invocation ran: as configured (`builtin:NAME` or a path) and its sha256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyUse {
    pub policy: String,
    pub sha256: String,
}

impl TraceRecord {
    /// The record of an invocation that took `wall` and `delegate`, with what it noted.
    pub fn new<T>(
        command: Command,
        outcome: &Result<T, PlexusError>,
        wall: Duration,
        delegate: Duration,
        notes: Notes,
    ) -> Self {
        let (code, cause) = match outcome {
            Ok(_) => (None, None),
            Err(error) => (Some(error.to_cni().code), Some(error.cause())),
        };
        let Notes { networks, policies } = notes;
        TraceRecord {
            v: TRACE_VERSION,
            at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| {
                    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
                }),
            command: command.to_string(),
            code,
            cause,
            wall_us: micros(wall),
            delegate_us: micros(delegate.min(wall)),
            networks,
            policies,
            truncated: false,
        }
    }

    /// The record as one line of at most [`MAX_RECORD_BYTES`].
    pub fn to_line(&self) -> io::Result<Vec<u8>> {
        let mut line = serde_json::to_vec(self).map_err(io::Error::other)?;
        if line.len() >= MAX_RECORD_BYTES {
            let mut shorter = self.clone();
            shorter.networks.clear();
            shorter.policies.clear();
            shorter.truncated = true;
            line = serde_json::to_vec(&shorter).map_err(io::Error::other)?;
        }
        line.push(b'\n');
        Ok(line)
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// What an invocation noted for its record as it went: its networks and policies.
#[derive(Debug, Default)]
pub struct Notes {
    networks: Vec<String>,
    policies: Vec<PolicyUse>,
}

/// [`Notes`] that the code of one invocation adds to through a shared reference.
#[derive(Debug, Default)]
pub struct Notebook(Mutex<Notes>);

impl Notebook {
    pub fn network(&self, name: &str) {
        let mut notes = self.lock();
        if !notes.networks.iter().any(|known| known == name) {
            notes.networks.push(name.to_owned());
        }
    }

    pub fn policy(&self, policy: &str, sha256: &str) {
        let mut notes = self.lock();
        if !notes.policies.iter().any(|known| known.sha256 == sha256) {
            notes.policies.push(PolicyUse {
                policy: policy.to_owned(),
                sha256: sha256.to_owned(),
            });
        }
    }

    pub fn into_notes(self) -> Notes {
        self.0
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Notes> {
        // Notes are plain lists: one a panicking thread left half-pushed is still usable.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The time this process has waited for delegates, in nanoseconds. A process-wide
/// counter because the delegates run far from the invocation's context (on threads of
/// their own, side by side); a plugin process runs one invocation, which reads it before
/// and after.
static DELEGATE_NANOS: AtomicU64 = AtomicU64::new(0);

/// Runs `work`, which waits for delegates, adding its duration to the delegate time.
/// Side-by-side delegates are timed as one wait, not as the sum of theirs, so that the
/// plugin's own time (wall minus delegate) stays meaningful.
pub fn delegate_time<T>(work: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let outcome = work();
    let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    DELEGATE_NANOS.fetch_add(nanos, Ordering::Relaxed);
    outcome
}

/// The delegate time so far; an invocation takes the difference of two readings.
pub fn delegate_elapsed() -> Duration {
    Duration::from_nanos(DELEGATE_NANOS.load(Ordering::Relaxed))
}

/// Appends `record` to the layout's trace, rotating it past `max_bytes`.
pub fn append(layout: &StateLayout, record: &TraceRecord, max_bytes: u64) -> io::Result<()> {
    let line = record.to_line()?;
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(layout.trace_dir())?;
    let path = layout.trace_file();
    loop {
        // The lock makes the size check and the rename one step: two writers never both
        // rotate (which would throw the first rotation's file away).
        let mut file = lock_current(&path)?;
        let size = file.metadata()?.len();
        if size > 0 && size + line.len() as u64 > max_bytes {
            // A writer waiting on the old file finds it renamed and moves on, as this one.
            fs::rename(&path, layout.trace_rotated())?;
            continue;
        }
        // One write: an O_APPEND write of a regular file is not split between writers.
        return file.write_all(&line);
    }
}

/// Appends the record of one invocation; a failure is a warning (metrics are not worth
/// a pod).
pub fn append_or_warn(layout: &StateLayout, record: &TraceRecord) {
    if let Err(error) = append(layout, record, MAX_TRACE_BYTES) {
        warn!(dir = %layout.trace_dir().display(), %error, "cannot append to the invocation trace");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(command: Command, code: Option<u32>) -> TraceRecord {
        TraceRecord {
            v: TRACE_VERSION,
            at_ms: 1,
            command: command.to_string(),
            code,
            cause: code.map(|_| Cause::PolicyRejected),
            wall_us: 1500,
            delegate_us: 1000,
            networks: vec!["net-a".into()],
            policies: vec![PolicyUse {
                policy: "builtin:annotations".into(),
                sha256: "ab".repeat(32),
            }],
            truncated: false,
        }
    }

    #[test]
    fn a_record_is_one_json_line_that_reads_back() {
        let written = record(Command::Add, Some(102));
        let line = written.to_line().expect("serialises");
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(line.last(), Some(&b'\n'));
        let text = String::from_utf8(line).expect("utf-8");
        assert!(text.contains(r#""command":"ADD""#), "{text}");
        assert!(text.contains(r#""cause":"policy-rejected""#), "{text}");
        let read: TraceRecord = serde_json::from_str(text.trim_end()).expect("parses");
        assert_eq!(read, written);
        // A success carries no code or cause at all.
        let ok = record(Command::Del, None).to_line().expect("serialises");
        let ok = String::from_utf8(ok).expect("utf-8");
        assert!(!ok.contains("code") && !ok.contains("cause"), "{ok}");
    }

    #[test]
    fn an_oversized_record_drops_its_lists_and_says_so() {
        let mut big = record(Command::Add, None);
        big.networks = (0..200).map(|i| format!("network-number-{i}")).collect();
        let line = big.to_line().expect("serialises");
        assert!(line.len() <= MAX_RECORD_BYTES, "{}", line.len());
        let read: TraceRecord = serde_json::from_slice(&line).expect("parses");
        assert!(read.truncated && read.networks.is_empty());
    }

    #[test]
    fn the_trace_rotates_to_one_previous_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = StateLayout::new(dir.path());
        let line_len = record(Command::Add, None).to_line().expect("line").len() as u64;
        // Room for three records per file.
        let bound = line_len * 3;
        for _ in 0..8 {
            append(&layout, &record(Command::Add, None), bound).expect("appends");
        }
        let current = fs::read(layout.trace_file()).expect("current");
        let rotated = fs::read(layout.trace_rotated()).expect("rotated");
        // 8 records: two rotations, the last one kept 3, the current file has 2.
        assert_eq!(rotated.len() as u64, 3 * line_len);
        assert_eq!(current.len() as u64, 2 * line_len);
        assert!(!dir.path().join("trace/invocations.jsonl.2").exists());
    }

    #[test]
    fn concurrent_writers_never_interleave_or_lose_a_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = StateLayout::new(dir.path());
        let (threads, each) = (8, 200);
        std::thread::scope(|scope| {
            for thread in 0..threads {
                let layout = &layout;
                scope.spawn(move || {
                    for index in 0..each {
                        let mut written = record(Command::Add, None);
                        // Each line distinct and long, to make a torn write visible.
                        written.networks = vec![format!("t{thread}-i{index}-{}", "x".repeat(900))];
                        append(layout, &written, u64::MAX).expect("appends");
                    }
                });
            }
        });
        let text = fs::read_to_string(layout.trace_file()).expect("reads");
        let mut seen = std::collections::HashSet::new();
        for line in text.lines() {
            let read: TraceRecord = serde_json::from_str(line).expect("an intact line");
            assert!(seen.insert(read.networks[0].clone()), "duplicate line");
        }
        assert_eq!(seen.len(), threads * each);
    }
}
