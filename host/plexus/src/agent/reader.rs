//! Reading the invocation trace as plugins append to it, across rotations.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::state::StateLayout;
use crate::trace::TraceRecord;

/// The most read from one file at one go; the rest waits for the next read.
const MAX_READ_BYTES: u64 = 4 << 20;

/// Where the agent is in the trace: which file (by inode) and how far.
#[derive(Debug, Default)]
pub struct TraceReader {
    position: Option<(u64, u64)>,
}

/// What one read found.
#[derive(Debug, Default)]
pub struct Batch {
    pub records: Vec<TraceRecord>,
    /// Lines that did not parse.
    pub unreadable: u64,
}

impl TraceReader {
    /// The records appended since the last read. The first read takes what both files
    /// hold, so that what ran while the agent was down is counted as far as the bound
    /// kept it. After a rotation the old file's rest is read from `.1` (if it is still
    /// the file this reader was in), then the new file from its start; a file rotated
    /// twice between two reads is lost to the count, which the trace's bound allows.
    pub fn read(&mut self, layout: &StateLayout) -> io::Result<Batch> {
        let mut found = Batch::default();
        let Some(current) = open(&layout.trace_file())? else {
            return Ok(found);
        };
        let current_ino = current.metadata()?.ino();
        let from = match self.position {
            Some((ino, offset)) if ino == current_ino => offset,
            position => {
                if let Some(mut rotated) = open(&layout.trace_rotated())? {
                    let rotated_ino = rotated.metadata()?.ino();
                    let offset = match position {
                        None => Some(0),
                        Some((ino, offset)) if ino == rotated_ino => Some(offset),
                        Some(_) => None,
                    };
                    if let Some(offset) = offset {
                        read_lines(&mut rotated, offset, &mut found)?;
                    }
                }
                0
            }
        };
        let mut current = current;
        let offset = read_lines(&mut current, from, &mut found)?;
        self.position = Some((current_ino, offset));
        Ok(found)
    }
}

fn open(path: &Path) -> io::Result<Option<File>> {
    match File::open(path) {
        Ok(file) => Ok(Some(file)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// Parses the complete lines of `file` from `offset` on and returns the offset after the
/// last of them: a line still being written is read next time.
fn read_lines(file: &mut File, offset: u64, found: &mut Batch) -> io::Result<u64> {
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    file.take(MAX_READ_BYTES).read_to_end(&mut bytes)?;
    let complete = bytes
        .iter()
        .rposition(|&byte| byte == b'\n')
        .map_or(0, |last| last + 1);
    for line in bytes[..complete].split(|&byte| byte == b'\n') {
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<TraceRecord>(line) {
            Ok(record) => found.records.push(record),
            Err(_) => found.unreadable += 1,
        }
    }
    Ok(offset + complete as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{TRACE_VERSION, append};
    use std::io::Write;

    fn record(wall_us: u64) -> TraceRecord {
        TraceRecord {
            v: TRACE_VERSION,
            at_ms: 0,
            command: "ADD".into(),
            code: None,
            cause: None,
            wall_us,
            delegate_us: 0,
            networks: Vec::new(),
            policies: Vec::new(),
            truncated: false,
        }
    }

    fn walls(read: &Batch) -> Vec<u64> {
        read.records.iter().map(|record| record.wall_us).collect()
    }

    #[test]
    fn reads_each_record_once_across_a_rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = StateLayout::new(dir.path());
        let mut reader = TraceReader::default();
        assert!(
            reader
                .read(&layout)
                .expect("no trace yet")
                .records
                .is_empty()
        );
        let line = record(10).to_line().expect("line").len() as u64;
        let bound = 3 * line;
        for wall in [10, 11] {
            append(&layout, &record(wall), bound).expect("append");
        }
        assert_eq!(walls(&reader.read(&layout).expect("read")), [10, 11]);
        // 12 fills the file; 13 rotates it.
        for wall in [12, 13, 14] {
            append(&layout, &record(wall), bound).expect("append");
        }
        assert_eq!(walls(&reader.read(&layout).expect("read")), [12, 13, 14]);
        assert!(reader.read(&layout).expect("read").records.is_empty());
        // A new reader (an agent restarted) takes both files.
        let mut fresh = TraceReader::default();
        assert_eq!(
            walls(&fresh.read(&layout).expect("read")),
            [10, 11, 12, 13, 14]
        );
    }

    #[test]
    fn a_partial_line_waits_and_garbage_is_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = StateLayout::new(dir.path());
        append(&layout, &record(1), u64::MAX).expect("append");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(layout.trace_file())
            .expect("open");
        file.write_all(b"not json\n{\"v\":1,").expect("write");
        let mut reader = TraceReader::default();
        let read = reader.read(&layout).expect("read");
        assert_eq!((walls(&read), read.unreadable), (vec![1], 1));
        file.write_all(b"\"atMs\":0,\"command\":\"DEL\",\"wallUs\":7,\"delegateUs\":0}\n")
            .expect("write");
        assert_eq!(walls(&reader.read(&layout).expect("read")), [7]);
    }
}
