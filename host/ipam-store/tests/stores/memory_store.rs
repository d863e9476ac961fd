//! The store in memory that offline IPAM runs use (`plexus policy run` and `test`): the
//! contract of the node's stores, so a policy behaves offline as it does on a node.

use plexus_ipam_store::{MemoryStore, Store, StoreError};

use crate::workers;

#[test]
fn memory_store_keeps_the_store_contract() {
    let store = MemoryStore::new("pods", []).unwrap();
    let other = MemoryStore::new("pods2", []).unwrap();
    crate::semantics::check(&store, &other);
}

#[test]
fn what_it_starts_from_is_held_to_the_same_rules() {
    let error = MemoryStore::new("../escape", []).unwrap_err();
    assert!(
        matches!(error, StoreError::InvalidNetwork { .. }),
        "{error}"
    );
    let entries = [("with space".to_owned(), b"x".to_vec())];
    let error = MemoryStore::new("pods", entries).unwrap_err();
    assert!(matches!(error, StoreError::InvalidKey { .. }), "{error}");

    let store = MemoryStore::new("pods", [("ip/10.0.0.1".to_owned(), b"w0".to_vec())]).unwrap();
    let (value, revision) = store.get("ip/10.0.0.1").unwrap().unwrap();
    assert_eq!(value, b"w0");
    assert!(!store.compare_and_swap("ip/10.0.0.1", None, b"w1").unwrap());
    assert!(store.delete("ip/10.0.0.1", revision).unwrap());
    assert!(store.contents().is_empty());
}

#[test]
fn two_hundred_threads_allocate_two_hundred_distinct_addresses() {
    let store = MemoryStore::new("pods", []).unwrap();
    let allocations = workers::allocate_in_threads(&store, 200);
    workers::check_allocations(&store, &allocations, 200);
}
