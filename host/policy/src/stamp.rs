//! What tells a file's versions apart without reading it: the compile cache's way to
//! know that a `.wasm` or an artifact is still the one it hashed, without hashing 16–35 MB
//! on every CNI invocation.

use std::fmt;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long after its last change a file's stamp is trusted to change with its content.
///
/// The kernel stamps a change with the filesystem's clock, at that filesystem's
/// granularity: a tick (1–10 ms) on Linux before 6.13, a whole second on ext4 with small
/// inodes. A second write within the same step of that clock leaves the change time as it
/// was, so a file that changed less than one such step ago may change again unseen. Two
/// seconds covers every granularity a node's filesystems keep, with room for the clock's
/// lag behind `SystemTime::now`.
pub(crate) const SETTLE: Duration = Duration::from_secs(2);

/// A file's device, inode, size, modification and change times (nanoseconds since the
/// epoch).
///
/// Writing the file changes its change time (`ctime`), which no one can set back: only
/// the kernel writes it, from the clock. Replacing the file (a rename over it, or delete
/// and create) brings another inode, or the same inode number with a new change time.
/// `touch` and `utimensat` change the change time too. So two equal stamps, the older one
/// [`settled`](Self::settled), mean the same content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileStamp {
    pub(crate) fn of(metadata: &Metadata) -> Self {
        let nanos = |seconds: i64, nanoseconds: i64| {
            i128::from(seconds) * 1_000_000_000 + i128::from(nanoseconds)
        };
        Self {
            dev: metadata.dev(),
            ino: metadata.ino(),
            size: metadata.size(),
            mtime_ns: nanos(metadata.mtime(), metadata.mtime_nsec()),
            ctime_ns: nanos(metadata.ctime(), metadata.ctime_nsec()),
        }
    }

    /// Whether the file last changed at least [`SETTLE`] before `now`: then any later
    /// change gives it another stamp, and content read after taking this stamp may be
    /// remembered under it. A file changed more recently may change again within the
    /// same step of the filesystem's clock, keeping its stamp.
    pub(crate) fn settled(&self, now: SystemTime) -> bool {
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        let settle = SETTLE.as_nanos();
        u128::try_from(self.ctime_ns).is_ok_and(|changed| changed.saturating_add(settle) <= now)
    }
}

/// `DEV INO SIZE MTIME_NS CTIME_NS`, as the cache's index files keep it.
impl fmt::Display for FileStamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            dev,
            ino,
            size,
            mtime_ns,
            ctime_ns,
        } = self;
        write!(f, "{dev} {ino} {size} {mtime_ns} {ctime_ns}")
    }
}

impl FromStr for FileStamp {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        let mut fields = text.split(' ');
        let mut next = || fields.next().ok_or(());
        let stamp = Self {
            dev: next()?.parse().map_err(drop)?,
            ino: next()?.parse().map_err(drop)?,
            size: next()?.parse().map_err(drop)?,
            mtime_ns: next()?.parse().map_err(drop)?,
            ctime_ns: next()?.parse().map_err(drop)?,
        };
        match fields.next() {
            None => Ok(stamp),
            Some(_) => Err(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn a_stamp_reads_back_as_written() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let stamp = FileStamp::of(&tmp.as_file().metadata().unwrap());
        assert_eq!(stamp.to_string().parse(), Ok(stamp));
        assert_eq!("1 2 3 4".parse::<FileStamp>(), Err(()));
        assert_eq!("1 2 3 4 5 6".parse::<FileStamp>(), Err(()));
    }

    #[test]
    fn a_file_settles_once_its_last_change_is_settle_old() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let stamp = FileStamp::of(&tmp.as_file().metadata().unwrap());
        let changed = fs::metadata(tmp.path()).unwrap().modified().unwrap();
        assert!(!stamp.settled(SystemTime::now()));
        assert!(stamp.settled(changed + SETTLE + Duration::from_secs(1)));
    }

    #[test]
    fn a_replaced_file_has_another_stamp() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("policy.wasm");
        fs::write(&path, b"first").unwrap();
        let first = FileStamp::of(&fs::metadata(&path).unwrap());
        // The same size, by rename: another inode while the first still exists.
        let other = tmp.path().join("other.wasm");
        fs::write(&other, b"other").unwrap();
        let _kept = fs::File::open(&path).unwrap();
        fs::rename(&other, &path).unwrap();
        assert_ne!(FileStamp::of(&fs::metadata(&path).unwrap()), first);
    }
}
