//! What keeps path policies safe to replace on a live node: the last version of each that
//! loaded (its record and its bytes, kept by content) and the mark of a policy that is
//! being served from that last version because its file no longer loads.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::policies::PolicyStore;
use super::{StateError, StateStore, create_private_dir, ignore_missing, io_error};

/// `policies/files/<k>.json`: the last version of a path policy that loaded here; its
/// bytes are the blob `sha256`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastGood {
    pub path: PathBuf,
    pub sha256: String,
}

/// `policies/state/<k>.json`: a policy served from its last-good version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyState {
    pub reference: String,
    pub degraded: Degraded,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Degraded {
    /// The sha256 of the version that fails, `None` when it cannot even be read.
    pub failing: Option<String>,
    pub last_good: String,
    /// RFC 3339, UTC: when this failure was first seen.
    pub since: String,
    pub reason: String,
}

impl StateStore {
    /// The last version of the path policy `path` that loaded on this node, if its
    /// record reads; one that does not is as good as none (it only costs the fallback).
    pub fn last_good(&self, path: &Path) -> Option<LastGood> {
        read_json(&self.layout.policy_file_record(path))
            .filter(|last_good: &LastGood| last_good.path == path)
    }

    /// Remembers that `bytes` are the version of `path` that loaded last: the blob
    /// first, then the record that names it, so a record never names a blob that is not
    /// there.
    pub fn keep_last_good(&self, path: &Path, bytes: &[u8]) -> Result<(), StateError> {
        let digest = PolicyStore::new(self.layout.clone()).put_blob(bytes)?;
        let sha256 = digest.trim_start_matches("sha256:");
        let record = self.layout.policy_file_record(path);
        create_private_dir(record.parent().expect("a record is in a directory"))?;
        self.replace_json(
            &record,
            &LastGood {
                path: path.to_owned(),
                sha256: sha256.to_owned(),
            },
        )
    }

    /// The degraded mark of the policy configured as `key`; `None` when it is not degraded.
    pub fn policy_state(&self, key: &str) -> Option<PolicyState> {
        read_json(&self.layout.policy_state(key))
    }

    /// Marks `key` degraded, unless it is already marked for the same failing and
    /// last-good versions: the mark keeps the time the failure was first seen, and ADDs
    /// on a degraded node do not rewrite it.
    pub fn mark_degraded(
        &self,
        key: &str,
        failing: Option<&str>,
        last_good: &str,
        reason: &str,
    ) -> Result<(), StateError> {
        if let Some(current) = self.policy_state(key)
            && current.degraded.failing.as_deref() == failing
            && current.degraded.last_good == last_good
        {
            return Ok(());
        }
        let path = self.layout.policy_state(key);
        create_private_dir(path.parent().expect("a mark is in a directory"))?;
        self.replace_json(
            &path,
            &PolicyState {
                reference: key.to_owned(),
                degraded: Degraded {
                    failing: failing.map(str::to_owned),
                    last_good: last_good.to_owned(),
                    since: rfc3339(SystemTime::now()),
                    reason: reason.to_owned(),
                },
            },
        )
    }

    /// Clears the degraded mark of `key`; one that is not there is fine.
    pub fn clear_degraded(&self, key: &str) -> Result<(), StateError> {
        let path = self.layout.policy_state(key);
        ignore_missing(fs::remove_file(&path)).map_err(io_error(&path))
    }
}

/// A small JSON file of the policy store; absent or unreadable reads as `None` (with a
/// warning for the latter).
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return None,
        Err(error) => {
            warn!(file = %path.display(), %error, "cannot read a policy store file");
            return None;
        }
    };
    serde_json::from_slice(&bytes)
        .inspect_err(
            |error| warn!(file = %path.display(), %error, "ignoring a corrupt policy store file"),
        )
        .ok()
}

/// `time` as RFC 3339 in UTC, to the second (`2026-12-01T08:00:00Z`).
pub(crate) fn rfc3339(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date of `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sha2::{Digest, Sha256};

    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        // `date -u -d @0 +%FT%TZ`, `date -u -d @951782400 ...` (a leap day), `@1796112000`
        for (secs, expected) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_796_115_661, "2026-12-01T09:01:01Z"),
        ] {
            assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(secs)), expected);
        }
    }

    #[test]
    fn last_good_and_marks_round_trip_and_marks_are_written_on_change_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let policy = Path::new("/etc/plexus/select.wasm");
        assert_eq!(store.last_good(policy), None);
        store.keep_last_good(policy, b"\0asm").unwrap();
        let sha256 = hex::encode(Sha256::digest(b"\0asm"));
        assert_eq!(
            store.last_good(policy),
            Some(LastGood {
                path: policy.into(),
                sha256: sha256.clone()
            })
        );
        assert_eq!(
            fs::read(store.layout().policy_blob(&sha256)).unwrap(),
            b"\0asm"
        );

        let key = "/etc/plexus/select.wasm";
        store.mark_degraded(key, None, "aa", "unreadable").unwrap();
        let first = fs::read(store.layout().policy_state(key)).unwrap();
        let mark = store.policy_state(key).unwrap();
        assert_eq!(mark.degraded.failing, None);
        assert_eq!(mark.degraded.last_good, "aa");
        // The same failure again leaves the file as it was (its inode too).
        let inode = |path: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(path).unwrap());
        let before = inode(&store.layout().policy_state(key));
        store.mark_degraded(key, None, "aa", "unreadable").unwrap();
        assert_eq!(inode(&store.layout().policy_state(key)), before);
        assert_eq!(fs::read(store.layout().policy_state(key)).unwrap(), first);
        store
            .mark_degraded(key, Some("bb"), "aa", "not a component")
            .unwrap();
        assert_eq!(
            store.policy_state(key).unwrap().degraded.failing.as_deref(),
            Some("bb")
        );
        store.clear_degraded(key).unwrap();
        assert_eq!(store.policy_state(key), None);
        store.clear_degraded(key).unwrap();
    }
}
