//! The behaviour every store promises, checked the same way for each.

use plexus_ipam_store::{MAX_KEY_LEN, MAX_VALUE_LEN, Store, StoreError};

/// Checks `store` (empty) against the [`Store`] contract; `other` is a store of
/// another network in the same place, which must never see `store`'s entries.
pub fn check(store: &dyn Store, other: &dyn Store) {
    assert!(store.get("ip/10.0.0.1").unwrap().is_none());
    assert!(store.list("").unwrap().is_empty());

    // Create: only while the key does not exist.
    assert!(
        store
            .compare_and_swap("ip/10.0.0.1", None, b"pod-a")
            .unwrap()
    );
    assert!(
        !store
            .compare_and_swap("ip/10.0.0.1", None, b"pod-b")
            .unwrap()
    );
    let (value, r1) = store.get("ip/10.0.0.1").unwrap().unwrap();
    assert_eq!(value, b"pod-a");

    // Update: only from the current revision, and every write gets a new one.
    assert!(
        store
            .compare_and_swap("ip/10.0.0.1", Some(r1), b"pod-a2")
            .unwrap()
    );
    let (value, r2) = store.get("ip/10.0.0.1").unwrap().unwrap();
    assert_eq!(value, b"pod-a2");
    assert_ne!(r1, r2);
    assert!(
        !store
            .compare_and_swap("ip/10.0.0.1", Some(r1), b"stale")
            .unwrap()
    );
    assert_eq!(store.get("ip/10.0.0.1").unwrap().unwrap().0, b"pod-a2");

    // Delete: only from the current revision.
    assert!(!store.delete("ip/10.0.0.1", r1).unwrap());
    assert!(store.delete("ip/10.0.0.1", r2).unwrap());
    assert!(store.get("ip/10.0.0.1").unwrap().is_none());
    assert!(!store.delete("ip/10.0.0.1", r2).unwrap(), "deleted twice");
    assert!(
        !store
            .compare_and_swap("ip/10.0.0.1", Some(r2), b"gone")
            .unwrap()
    );

    // Re-created, the key never gets an old revision back (no ABA).
    assert!(
        store
            .compare_and_swap("ip/10.0.0.1", None, b"pod-c")
            .unwrap()
    );
    let (_, r3) = store.get("ip/10.0.0.1").unwrap().unwrap();
    assert!(r3 != r1 && r3 != r2);
    assert!(!store.delete("ip/10.0.0.1", r2).unwrap());

    // Awkward keys round-trip; list filters by prefix and sorts by key.
    for key in [
        "ip/fd00::2",
        ".lock",
        "..",
        "100%",
        "ip/10.0.0.0",
        "lease/a/b",
    ] {
        assert!(
            store.compare_and_swap(key, None, key.as_bytes()).unwrap(),
            "{key}"
        );
        assert_eq!(store.get(key).unwrap().unwrap().0, key.as_bytes());
    }
    let keys: Vec<_> = store
        .list("ip/")
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys, ["ip/10.0.0.0", "ip/10.0.0.1", "ip/fd00::2"]);
    let all = store.list("").unwrap();
    assert_eq!(all.len(), 7);
    assert!(
        all.iter()
            .all(|e| store.get(&e.key).unwrap() == Some((e.value.clone(), e.revision)))
    );

    // Another network sees none of it.
    assert!(other.list("").unwrap().is_empty());
    assert!(other.get("ip/10.0.0.1").unwrap().is_none());
    assert!(
        other
            .compare_and_swap("ip/10.0.0.1", None, b"other")
            .unwrap()
    );
    assert_eq!(store.get("ip/10.0.0.1").unwrap().unwrap().0, b"pod-c");

    // Bad keys and values are refused with the network named, nothing written.
    let long_key = "k".repeat(MAX_KEY_LEN + 1);
    for key in ["", "with space", "tab\t", long_key.as_str(), "é"] {
        let error = store.compare_and_swap(key, None, b"x").unwrap_err();
        assert!(
            matches!(error, StoreError::InvalidKey { .. }),
            "{key:?}: {error}"
        );
        assert!(error.to_string().contains(store.network()), "{error}");
    }
    assert!(
        store
            .compare_and_swap(&"k".repeat(MAX_KEY_LEN), None, b"x")
            .unwrap()
    );
    let big = vec![b'x'; MAX_VALUE_LEN + 1];
    let error = store.compare_and_swap("big", None, &big).unwrap_err();
    assert!(matches!(error, StoreError::ValueTooLarge { .. }), "{error}");
    assert!(store.get("big").unwrap().is_none());
    let max = vec![b'x'; MAX_VALUE_LEN];
    assert!(store.compare_and_swap("big", None, &max).unwrap());
    assert_eq!(store.get("big").unwrap().unwrap().0, max);
}
