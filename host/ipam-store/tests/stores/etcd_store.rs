//! The etcd store, against a real etcd the tests start.

use std::time::{Duration, Instant};

use plexus_ipam_store::{
    EtcdClientIdentity, EtcdConfig, EtcdStore, EtcdTls, Revision, Store, StoreError,
};

use crate::workers::{self, StoreSpec};
use plexus_tests::etcd::EtcdServer;

fn connect(server: &EtcdServer, network: &str, timeout: Duration) -> EtcdStore {
    let mut config = EtcdConfig::new(vec![server.endpoint()]);
    config.timeout = timeout;
    EtcdStore::connect(&config, network).unwrap()
}

#[test]
fn etcd_store_keeps_the_store_contract() {
    let server = EtcdServer::start();
    let store = connect(&server, "pods", Duration::from_secs(5));
    let other = connect(&server, "pods2", Duration::from_secs(5));
    crate::semantics::check(&store, &other);
}

#[test]
fn three_nodes_allocate_300_addresses_without_duplicates() {
    let server = EtcdServer::start();
    let started = Instant::now();
    let spec = StoreSpec::Etcd(server.endpoint());
    let allocations = workers::allocate_in_processes(&spec, "pods", 3, 100, 1024);
    eprintln!(
        "3 etcd clients allocated 300 addresses in {:?}",
        started.elapsed()
    );
    let store = connect(&server, "pods", Duration::from_secs(5));
    workers::check_allocations(&store, &allocations, 300);
}

/// A store on `server` with `timeout` that allocated `ip/10.0.0.1` to pod-a, and the
/// allocation's revision.
fn allocated_one(server: &EtcdServer, timeout: Duration) -> (EtcdStore, Revision) {
    let store = connect(server, "pods", timeout);
    assert!(
        store
            .compare_and_swap("ip/10.0.0.1", None, b"pod-a")
            .unwrap()
    );
    let (_, revision) = store.get("ip/10.0.0.1").unwrap().unwrap();
    (store, revision)
}

#[test]
fn etcd_down_is_unreachable_naming_the_endpoints_and_comes_back() {
    let mut server = EtcdServer::start();
    // Short, so that the budget of 3 × timeout each failure spends is too.
    let timeout = Duration::from_secs(1);
    let (store, revision) = allocated_one(&server, timeout);

    server.stop();
    let attempt = |name: &str| match name {
        "create" => store
            .compare_and_swap("ip/10.0.0.2", None, b"pod-b")
            .map(drop),
        "update" => store
            .compare_and_swap("ip/10.0.0.1", Some(revision), b"pod-x")
            .map(drop),
        "get" => store.get("ip/10.0.0.1").map(drop),
        _ => store.list("").map(drop),
    };
    for name in ["create", "update", "get", "list"] {
        let started = Instant::now();
        let error = attempt(name).unwrap_err();
        let elapsed = started.elapsed();
        assert!(
            matches!(error, StoreError::Unreachable { .. }),
            "{name}: {error}"
        );
        let message = error.to_string();
        assert!(
            message.contains(&server.endpoint()) && message.contains("\"pods\""),
            "{message}"
        );
        // Retried until the budget of 3 × timeout is spent, then reported: the pause
        // before a further attempt (at most 1 s) must still fit in the budget.
        assert!(
            elapsed >= 3 * timeout - Duration::from_secs(1)
                && elapsed < 3 * timeout + Duration::from_secs(2),
            "{name} took {elapsed:?}"
        );
        assert!(message.contains("gave up after"), "{message}");
        eprintln!("{name} with etcd down: {elapsed:?}: {message}");
    }
    // A new client finds it down too, on its first operation.
    let late = connect(&server, "pods", timeout);
    assert!(matches!(late.get("x"), Err(StoreError::Unreachable { .. })));

    server.restart();
    // Nothing of the failed writes happened; the old revision still holds.
    assert!(store.get("ip/10.0.0.2").unwrap().is_none());
    assert_eq!(
        store.get("ip/10.0.0.1").unwrap(),
        Some((b"pod-a".to_vec(), revision))
    );
    assert!(
        store
            .compare_and_swap("ip/10.0.0.1", Some(revision), b"pod-a2")
            .unwrap()
    );
    assert!(
        late.compare_and_swap("ip/10.0.0.2", None, b"pod-b")
            .unwrap()
    );
}

#[test]
fn an_etcd_restart_within_the_retry_budget_is_ridden_out() {
    let mut server = EtcdServer::start();
    // A budget of 15 s: etcd restarts well within it, even on a loaded machine.
    let (store, revision) = allocated_one(&server, Duration::from_secs(5));

    server.stop();
    let (writing, started) = std::sync::mpsc::channel();
    let (created, updated) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            writing.send(()).unwrap();
            let created = store.compare_and_swap("ip/10.0.0.2", None, b"pod-b");
            let updated = store.compare_and_swap("ip/10.0.0.1", Some(revision), b"pod-a2");
            (created, updated)
        });
        // The writer's first attempt meets the stopped etcd: starting etcd takes far
        // longer than a refused connection.
        started.recv().unwrap();
        server.restart();
        writer.join().unwrap()
    });
    assert!(created.unwrap(), "the create did not happen");
    assert!(updated.unwrap(), "the update did not happen");
    assert_eq!(store.get("ip/10.0.0.2").unwrap().unwrap().0, b"pod-b");
    assert_eq!(store.get("ip/10.0.0.1").unwrap().unwrap().0, b"pod-a2");
}

#[test]
fn etcd_store_refuses_an_unusable_configuration() {
    let error = EtcdStore::connect(&EtcdConfig::new(vec![]), "pods").unwrap_err();
    assert!(matches!(error, StoreError::Config { .. }), "{error}");
    let error = EtcdStore::connect(&EtcdConfig::new(vec!["http://127.0.0.1:1".into()]), "../x")
        .unwrap_err();
    assert!(
        matches!(error, StoreError::InvalidNetwork { .. }),
        "{error}"
    );
}

#[test]
fn etcd_store_speaks_tls_with_a_client_certificate() {
    let server = EtcdServer::start_tls();
    let certs = server.certs().unwrap();
    let mut config = EtcdConfig::new(vec![server.endpoint()]);
    config.tls = Some(EtcdTls {
        ca_file: certs.ca.clone(),
        client: Some(EtcdClientIdentity {
            cert_file: certs.client_cert.clone(),
            key_file: certs.client_key.clone(),
        }),
    });
    let store = EtcdStore::connect(&config, "pods").unwrap();
    assert!(
        store
            .compare_and_swap("ip/10.0.0.1", None, b"pod-a")
            .unwrap()
    );
    assert_eq!(store.get("ip/10.0.0.1").unwrap().unwrap().0, b"pod-a");

    // Without the client certificate etcd refuses the connection: no write.
    config.tls = Some(EtcdTls {
        ca_file: certs.ca.clone(),
        client: None,
    });
    let anonymous = EtcdStore::connect(&config, "pods").unwrap();
    let error = anonymous
        .compare_and_swap("ip/10.0.0.2", None, b"pod-b")
        .unwrap_err();
    assert!(matches!(error, StoreError::Unreachable { .. }), "{error}");
    assert!(store.get("ip/10.0.0.2").unwrap().is_none());

    // An unreadable CA is a configuration error naming the file.
    config.tls = Some(EtcdTls {
        ca_file: "/nonexistent/ca.pem".into(),
        client: None,
    });
    let error = EtcdStore::connect(&config, "pods").unwrap_err();
    assert!(matches!(error, StoreError::Config { .. }), "{error}");
    assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
}
