//! The file store: contract, path safety, 200 concurrent allocators, kill -9.

use std::time::{Duration, Instant};

use plexus_ipam_store::{FileStore, Store, StoreError};

use crate::workers::{self, StoreSpec, Worker};

#[test]
fn file_store_keeps_the_store_contract() {
    let root = tempfile::tempdir().unwrap();
    let store = FileStore::open(root.path(), "pods").unwrap();
    let other = FileStore::open(root.path(), "pods2").unwrap();
    crate::semantics::check(&store, &other);
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
