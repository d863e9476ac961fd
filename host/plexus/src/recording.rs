//! Policy calls as they happened on a node, kept for replay against a new policy.
//!
//! With `recordDir` set, every policy call of a real invocation appends one JSON line to
//! `<recordDir>/<select|merge>.jsonl`: which policy, which pod, its input and its output
//! or error. Nothing is added beyond what the runtime passed the plugin. With
//! `selectShadow`, each ADD where the shadow answered otherwise than the deciding policy
//! appends one line to `<recordDir>/shadow.jsonl`. A file that would grow past its bound
//! is rotated to `<name>.1.jsonl` (replacing the previous one), so a node keeps at most
//! two bounds' worth per file.

use std::fmt::Display;
use std::fs::{self, DirBuilder, File};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use plexus_policy::PolicyKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::flock::lock_current;
use crate::state::Role;

/// One recorded policy call.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recording {
    /// The policy as configured (`builtin:NAME` or a path) and its sha256.
    pub policy: String,
    pub sha256: String,
    /// `namespace/name` of the pod, or the container id when the runtime gave no pod.
    pub pod: String,
    pub container_id: String,
    pub input: Value,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// What the policy answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    Output(Value),
    Error(String),
}

/// One ADD where the shadow policy answered otherwise than the policy that decided.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShadowDifference {
    /// RFC 3339, UTC.
    pub time: String,
    /// `namespace/name`, or the container id when the runtime gave no pod.
    pub pod: String,
    pub pod_uid: String,
    pub container_id: String,
    pub decided: Decided,
    pub shadow: Shadowed,
}

/// What the deciding policy chose (checked by the node).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Decided {
    pub policy: String,
    pub sha256: String,
    pub role: Role,
    pub output: Value,
}

/// What the shadow answered: its checked choice, or why it has none.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shadowed {
    pub policy: String,
    /// `None` when the shadow did not even load.
    pub sha256: Option<String>,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Appends recordings under one directory.
pub struct Recorder {
    dir: PathBuf,
    max_bytes: u64,
}

impl Recorder {
    pub fn new(dir: &Path, max_bytes: u64) -> Self {
        Recorder {
            dir: dir.to_owned(),
            max_bytes,
        }
    }

    /// Appends one recording.
    pub fn append(&self, kind: PolicyKind, recording: &Recording) -> io::Result<()> {
        self.append_line(kind.export(), recording)
    }

    /// Appends one difference between a shadow policy and the deciding one.
    pub fn append_shadow(&self, difference: &ShadowDifference) -> io::Result<()> {
        self.append_line(SHADOW, difference)
    }

    /// Appends `value` as one line of `<name>.jsonl`. Concurrent invocations take turns
    /// on a lock, so lines never interleave and rotation happens once.
    fn append_line(&self, name: &str, value: &impl Serialize) -> io::Result<()> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let mut line = serde_json::to_vec(value).map_err(io::Error::other)?;
        line.push(b'\n');
        let path = current_file(&self.dir, name);
        loop {
            let mut file = lock_current(&path)?;
            let size = file.metadata()?.len();
            if size > 0 && size + line.len() as u64 > self.max_bytes {
                // Whoever waits on the old file finds it renamed and moves on to the new
                // one, as this writer does.
                fs::rename(&path, rotated_file(&self.dir, name))?;
                continue;
            }
            return file.write_all(&line);
        }
    }
}

/// What a policy answered, comparable across policies: an error message loses the
/// policy's own name, which differs between the recorded policy and a replacement.
pub fn outcome<O: Serialize, E: Display>(policy: &str, answer: &Result<O, E>) -> Outcome {
    match answer {
        Ok(output) => Outcome::Output(serde_json::to_value(output).unwrap_or_default()),
        Err(error) => Outcome::Error(error.to_string().replace(policy, "<policy>")),
    }
}

/// Every recording of `kind` under `dir`, oldest first; lines that do not parse (a file
/// cut short by a full disk, say) are skipped.
pub fn read_all(dir: &Path, kind: PolicyKind) -> io::Result<Vec<Recording>> {
    let mut recordings = Vec::new();
    for path in [
        rotated_file(dir, kind.export()),
        current_file(dir, kind.export()),
    ] {
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err),
        };
        for line in BufReader::new(file).lines() {
            if let Ok(recording) = serde_json::from_str(&line?) {
                recordings.push(recording);
            }
        }
    }
    Ok(recordings)
}

/// The file the differences of a shadow policy go to: `shadow.jsonl`.
const SHADOW: &str = "shadow";

fn current_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.jsonl"))
}

fn rotated_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.1.jsonl"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn recording(pod: &str, output: Value) -> Recording {
        Recording {
            policy: "builtin:annotations".into(),
            sha256: "00".into(),
            pod: pod.into(),
            container_id: "c1".into(),
            input: json!({"pod": {"name": pod}}),
            outcome: Outcome::Output(output),
        }
    }

    #[test]
    fn recordings_come_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = Recorder::new(dir.path(), 1 << 20);
        for pod in ["a", "b", "c"] {
            recorder
                .append(PolicyKind::Selector, &recording(pod, json!([])))
                .unwrap();
        }
        let pods: Vec<String> = read_all(dir.path(), PolicyKind::Selector)
            .unwrap()
            .into_iter()
            .map(|recording| recording.pod)
            .collect();
        assert_eq!(pods, ["a", "b", "c"]);
        assert!(read_all(dir.path(), PolicyKind::Merger).unwrap().is_empty());
    }

    #[test]
    fn files_are_bounded_by_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let one = serde_json::to_vec(&recording("pod-00", json!([])))
            .unwrap()
            .len() as u64
            + 1;
        let recorder = Recorder::new(dir.path(), one * 3);
        for index in 0..10 {
            recorder
                .append(
                    PolicyKind::Selector,
                    &recording(&format!("pod-{index:02}"), json!([])),
                )
                .unwrap();
        }
        for file in ["select.jsonl", "select.1.jsonl"] {
            let size = fs::metadata(dir.path().join(file)).unwrap().len();
            assert!(size <= one * 3, "{file}: {size}");
        }
        let kept = read_all(dir.path(), PolicyKind::Selector).unwrap();
        assert_eq!(kept.last().unwrap().pod, "pod-09", "the newest is kept");
        assert!(kept.len() <= 6);
    }
}
