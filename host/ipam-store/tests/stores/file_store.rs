//! The file store: contract, path safety, 200 concurrent allocators, kill -9, torn
//! tails, compaction, and migration from the first layout.

use std::path::Path;
use std::time::{Duration, Instant};

use plexus_ipam_store::{FileStore, Revision, Store, StoreError};

use crate::workers::{self, StoreSpec, Worker};

#[test]
fn file_store_keeps_the_store_contract() {
    let root = tempfile::tempdir().unwrap();
    let store = FileStore::open(root.path(), "pods").unwrap();
    let other = FileStore::open(root.path(), "pods2").unwrap();
    crate::semantics::check(&store, &other);
    // Leaving the fdatasync to `sync` changes when a write is durable, nothing else.
    let store = FileStore::open(root.path(), "deferred")
        .unwrap()
        .deferring_sync();
    let other = FileStore::open(root.path(), "deferred2")
        .unwrap()
        .deferring_sync();
    crate::semantics::check(&store, &other);
    store.sync().unwrap();
    other.sync().unwrap();
}

#[test]
fn network_names_cannot_leave_the_root() {
    let root = tempfile::tempdir().unwrap();
    let inside = root.path().join("inside");
    for name in [
        "",
        ".",
        "..",
        "../escape",
        "a/b",
        "/abs",
        "bad name",
        "a\0b",
    ] {
        let error = FileStore::open(&inside, name).unwrap_err();
        assert!(
            matches!(error, StoreError::InvalidNetwork { .. }),
            "{name:?}: {error}"
        );
    }
    assert!(!inside.exists(), "a refused name created a directory");
    assert!(!root.path().join("escape").exists());
}

#[test]
fn a_foreign_entry_is_reported_as_corrupt_with_the_network() {
    let root = tempfile::tempdir().unwrap();
    let store = FileStore::open(root.path(), "pods").unwrap();
    // Where the first layout kept an entry, something else: the migration refuses it.
    let foreign = root.path().join("pods/ip%2F10.0.0.9");
    std::fs::write(&foreign, b"not an entry").unwrap();
    let error = FileStore::open(root.path(), "pods").unwrap_err();
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("\"pods\"") && message.contains("ip/10.0.0.9"),
        "{message}"
    );
    // Or an entry of that layout no store would have written: a value over the limit.
    let huge = "x".repeat(plexus_ipam_store::MAX_VALUE_LEN + 1);
    write_first_layout_entry(&root.path().join("pods"), "ip%2F10.0.0.9", 1, &huge);
    let error = FileStore::open(root.path(), "pods").unwrap_err();
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
    std::fs::remove_file(&foreign).unwrap();

    // A journal that is not one.
    std::fs::write(root.path().join("pods/.journal"), b"not a journal").unwrap();
    let error = store.get("ip/10.0.0.9").unwrap_err();
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
    assert!(error.to_string().contains("\"pods\""), "{error}");
    assert!(store.list("ip/").is_err());
    assert!(store.compare_and_swap("ip/10.0.0.9", None, b"x").is_err());
}

#[test]
fn two_hundred_processes_allocate_two_hundred_distinct_addresses() {
    let root = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let spec = StoreSpec::File(root.path().to_owned());
    let allocations = workers::allocate_in_processes(&spec, "pods", 200, 1, 254);
    eprintln!(
        "200 processes allocated 200 addresses in {:?}",
        started.elapsed()
    );
    let store = FileStore::open(root.path(), "pods").unwrap();
    workers::check_allocations(&store, &allocations, 200);
}

#[test]
fn two_hundred_threads_allocate_two_hundred_distinct_addresses() {
    // Threads of one process share nothing but the directory: each operation
    // opens its own lock, which is what keeps them apart.
    let root = tempfile::tempdir().unwrap();
    let store = FileStore::open(root.path(), "pods").unwrap();
    let started = Instant::now();
    let allocations = workers::allocate_in_threads(&store, 200);
    eprintln!(
        "200 threads allocated 200 addresses in {:?}",
        started.elapsed()
    );
    workers::check_allocations(&store, &allocations, 200);
}

#[test]
fn kill_9_during_writes_leaves_the_store_consistent() {
    let root = tempfile::tempdir().unwrap();
    let spec = StoreSpec::File(root.path().to_owned());
    let dir = root.path().join("pods");
    let mut torn_writes_left = 0;
    for round in 0..25u64 {
        let mut worker = Worker::spawn("churn", &spec, "pods", &[]);
        worker.wait_ready();
        // Let it write a few times, then kill it a varying while later, so the
        // kills land at different points of a write.
        let mut acknowledged: u64 = 0;
        for _ in 0..=round % 4 {
            acknowledged = worker.next_report().expect("worker died").parse().unwrap();
        }
        let deadline = Instant::now() + Duration::from_micros(round * 397 % 4000);
        while Instant::now() < deadline {
            std::hint::spin_loop();
        }
        let reports = worker.kill();
        if workers::has_leftover_temp(&dir) {
            torn_writes_left += 1;
        }

        // The counter is the last one acknowledged, or the one being written if
        // its rename had happened: never torn, never older.
        let store = FileStore::open(root.path(), "pods").unwrap();
        if let Some(last) = reports.last() {
            acknowledged = last.parse().unwrap();
        }
        let (value, revision) = store.get("counter").unwrap().expect("counter lost");
        let n = workers::parse_counter(&value);
        assert!(
            n == acknowledged || n == acknowledged + 1,
            "round {round}: counter {n}, last acknowledged {acknowledged}"
        );
        for entry in store.list("ip/").unwrap() {
            assert!(entry.value.starts_with(b"owner "), "{entry:?}");
        }
        // And the store takes the next write.
        assert!(
            store
                .compare_and_swap("counter", Some(revision), &workers::counter_value(n))
                .unwrap()
        );
    }
    assert!(
        !workers::has_leftover_temp(&dir),
        "a write did not clean up"
    );
    eprintln!("25 kills, {torn_writes_left} of them in the middle of writing a file");
}

/// Writes an entry file as the first layout did: `plexus-ipam-store/1 <revision>
/// <length>`, a newline, the value.
fn write_first_layout_entry(dir: &Path, name: &str, revision: u64, value: &str) {
    let contents = format!("plexus-ipam-store/1 {revision} {}\n{value}", value.len());
    std::fs::write(dir.join(name), contents).unwrap();
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn entries(store: &FileStore) -> Vec<(String, String, u64)> {
    store
        .list("")
        .unwrap()
        .into_iter()
        .map(|entry| {
            let value = String::from_utf8(entry.value).unwrap();
            (entry.key, value, u64::from(entry.revision))
        })
        .collect()
}

#[test]
fn a_store_of_the_first_layout_keeps_its_entries_and_revisions() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("pods");
    std::fs::create_dir(&dir).unwrap();
    // A node's store as the first layout left it: one file per escaped key, and the
    // last revision handed out, higher than any entry's because a deleted key had it.
    write_first_layout_entry(&dir, "ip%2F10.0.0.2", 3, "owner a");
    write_first_layout_entry(&dir, "ip%2F10.0.0.3", 5, "owner b");
    write_first_layout_entry(&dir, "last%2F0", 6, "10.0.0.3");
    std::fs::write(dir.join(".revision"), "9\n").unwrap();
    std::fs::write(dir.join(".lock"), "").unwrap();

    let store = FileStore::open(root.path(), "pods").unwrap();
    let migrated = vec![
        ("ip/10.0.0.2".to_owned(), "owner a".to_owned(), 3),
        ("ip/10.0.0.3".to_owned(), "owner b".to_owned(), 5),
        ("last/0".to_owned(), "10.0.0.3".to_owned(), 6),
    ];
    assert_eq!(entries(&store), migrated);
    assert_eq!(file_names(&dir), [".journal", ".lock"], "old files left");

    // Revisions go on after the old counter's, never reusing one.
    assert!(
        store
            .compare_and_swap("ip/10.0.0.4", None, b"owner c")
            .unwrap()
    );
    let (_, revision) = store.get("ip/10.0.0.4").unwrap().unwrap();
    assert_eq!(u64::from(revision), 10);
    // The old revisions still guard the old entries.
    assert!(!store.delete("ip/10.0.0.2", Revision::from(2)).unwrap());
    assert!(store.delete("ip/10.0.0.2", Revision::from(3)).unwrap());

    // A migration killed after its rename leaves old files beside the journal: the
    // journal stands, so the address deleted since does not come back.
    write_first_layout_entry(&dir, "ip%2F10.0.0.2", 3, "owner a");
    std::fs::write(dir.join(".revision"), "9\n").unwrap();
    let store = FileStore::open(root.path(), "pods").unwrap();
    assert_eq!(file_names(&dir), [".journal", ".lock"], "remnants left");
    let (keys, revisions): (Vec<_>, Vec<_>) = entries(&store)
        .into_iter()
        .map(|(key, _, revision)| (key, revision))
        .unzip();
    assert_eq!(keys, ["ip/10.0.0.3", "ip/10.0.0.4", "last/0"]);
    assert_eq!(revisions, [5, 10, 6]);
}

#[test]
fn a_torn_tail_is_ignored_and_the_next_write_replaces_it() {
    let root = tempfile::tempdir().unwrap();
    let journal = root.path().join("pods/.journal");
    let store = FileStore::open(root.path(), "pods").unwrap();
    assert!(
        store
            .compare_and_swap("ip/10.0.0.2", None, b"owner a")
            .unwrap()
    );
    let (_, first) = store.get("ip/10.0.0.2").unwrap().unwrap();
    let acknowledged = std::fs::read(&journal).unwrap();
    assert!(
        store
            .compare_and_swap("ip/10.0.0.2", Some(first), b"owner b")
            .unwrap()
    );
    let whole = std::fs::read(&journal).unwrap();
    assert!(whole.starts_with(&acknowledged));

    // What a power cut during the second append can leave: any prefix of its record,
    // or the file grown with its data never written (zeros), or bytes that are not the
    // record at all.
    let mut tails: Vec<Vec<u8>> = (0..whole.len() - acknowledged.len())
        .map(|cut| whole[acknowledged.len()..acknowledged.len() + cut].to_vec())
        .collect();
    tails.push(vec![0; 64]);
    let mut flipped = whole[acknowledged.len()..].to_vec();
    *flipped.last_mut().unwrap() ^= 1;
    tails.push(flipped);
    for tail in tails {
        std::fs::write(&journal, [&acknowledged[..], &tail].concat()).unwrap();
        let store = FileStore::open(root.path(), "pods").unwrap();
        assert_eq!(
            store.get("ip/10.0.0.2").unwrap(),
            Some((b"owner a".to_vec(), first)),
            "tail {tail:?}"
        );
        assert_eq!(store.list("").unwrap().len(), 1);
        // The next write goes where the torn record was, so no record follows garbage.
        assert!(
            store
                .compare_and_swap("ip/10.0.0.2", Some(first), b"owner c")
                .unwrap()
        );
        let (value, revision) = store.get("ip/10.0.0.2").unwrap().unwrap();
        assert_eq!(value, b"owner c");
        assert!(u64::from(revision) > u64::from(first));
        let after = std::fs::read(&journal).unwrap();
        assert_eq!(after.len(), whole.len(), "tail {tail:?} was not replaced");
        assert!(after.starts_with(&acknowledged));
    }
}

#[test]
fn compaction_keeps_entries_and_never_reuses_a_revision() {
    let root = tempfile::tempdir().unwrap();
    let journal = root.path().join("pods/.journal");
    let store = FileStore::open(root.path(), "pods").unwrap();
    let value = vec![b'x'; 8 * 1024];
    let mut last = 0;
    let mut largest = 0;
    // Creates and deletes keys, so that most of the journal is dead records and the
    // last revision handed out belongs to a deleted key when compaction runs.
    for round in 0..100 {
        let key = format!("ip/10.0.0.{round}");
        assert!(store.compare_and_swap(&key, None, &value).unwrap());
        let (_, revision) = store.get(&key).unwrap().unwrap();
        assert!(u64::from(revision) > last);
        last = u64::from(revision);
        if round % 10 != 0 {
            assert!(store.delete(&key, revision).unwrap());
            last += 1;
        }
        largest = largest.max(std::fs::metadata(&journal).unwrap().len());
    }
    // Uncompacted, 100 records of 8 KiB; the live ones are at most 10.
    assert!(
        largest < 4 * 10 * 8 * 1024,
        "never compacted: the journal reached {largest} bytes"
    );
    let keys: Vec<String> = store.list("").unwrap().into_iter().map(|e| e.key).collect();
    assert_eq!(keys.len(), 10);
    // The next revision is after the deleted keys' too, also in a new process's view.
    let store = FileStore::open(root.path(), "pods").unwrap();
    assert!(store.compare_and_swap("after", None, b"y").unwrap());
    let (_, revision) = store.get("after").unwrap().unwrap();
    assert_eq!(u64::from(revision), last + 1);
}
