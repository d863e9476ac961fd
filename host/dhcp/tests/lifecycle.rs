//! How a server ends: on request, when its interface is deleted, when its namespace is
//! removed; how it fails to start; and how it tells whether its NIC is still there. As
//! root, in a namespace of its own.

use std::{process::Command, thread, time::Duration};

use plexus_dhcp::{DhcpError, Lease, Lease6, Presence, ServerConfig, Stop, Stopped, serve};
use plexus_plumbing::testing::{TestNetns, ip, require_root, wait_for};

fn config(pod: &TestNetns, interface: &str) -> ServerConfig {
    ServerConfig {
        netns: pod.path(),
        interface: interface.into(),
        client_mac: "02:00:00:00:00:01".parse().unwrap(),
        lease: Some(Lease {
            router: Some("10.0.0.1".parse().unwrap()),
            ..Lease::new("10.0.0.2".parse().unwrap(), 24, 600)
        }),
        lease6: None,
        server_id: None,
    }
}

/// Starts a server on a thread and waits until its packet socket is bound.
fn start(
    pod: &TestNetns,
    config: ServerConfig,
    stop: Stop,
) -> thread::JoinHandle<Result<Stopped, DhcpError>> {
    let sockets = || {
        let output = Command::new("ip")
            .args(["netns", "exec", &pod.name, "cat", "/proc/net/packet"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .count()
            .saturating_sub(1)
    };
    let before = sockets();
    let server = thread::spawn(move || serve(&config, &stop));
    wait_for("the server's socket", Duration::from_secs(10), || {
        sockets() > before
    });
    server
}

/// A pod namespace with `tap0` (a veth standing in for a VM NIC's tap, peer `peer0`).
fn pod_with_tap() -> TestNetns {
    require_root();
    let pod = TestNetns::new("pod");
    ip(
        &pod,
        &[
            "link", "add", "tap0", "type", "veth", "peer", "name", "peer0",
        ],
    );
    pod
}

#[test]
fn serve_ends_on_stop_interface_gone_and_netns_gone() {
    let mut pod = pod_with_tap();

    let stop = Stop::new().unwrap();
    let server = start(&pod, config(&pod, "tap0"), stop.clone());
    stop.stop();
    assert_eq!(server.join().unwrap().unwrap(), Stopped::Requested);

    let server = start(&pod, config(&pod, "tap0"), Stop::new().unwrap());
    ip(&pod, &["link", "del", "tap0"]);
    assert_eq!(server.join().unwrap().unwrap(), Stopped::InterfaceGone);

    ip(
        &pod,
        &[
            "link", "add", "tap0", "type", "veth", "peer", "name", "peer0",
        ],
    );
    let server = start(&pod, config(&pod, "tap0"), Stop::new().unwrap());
    pod.delete();
    assert_eq!(server.join().unwrap().unwrap(), Stopped::NetnsGone);
}

#[test]
fn serve_fails_with_the_namespace_and_interface_named() {
    require_root();
    let pod = TestNetns::new("pod");
    let error = serve(&config(&pod, "tap-missing"), &Stop::new().unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&pod.name) && error.contains("tap-missing"),
        "{error}"
    );

    let mut gone = config(&pod, "tap0");
    gone.netns = "/var/run/netns/plexus-no-such-netns".into();
    let error = serve(&gone, &Stop::new().unwrap()).unwrap_err().to_string();
    assert!(error.contains("plexus-no-such-netns"), "{error}");

    let mut bad = config(&pod, "tap0");
    bad.lease.as_mut().unwrap().prefix_len = 40;
    assert!(matches!(
        serve(&bad, &Stop::new().unwrap()),
        Err(DhcpError::Lease(_))
    ));

    // An IPv6 router must be link-local: refused before any socket is opened.
    let mut bad6 = config(&pod, "tap0");
    bad6.lease6 = Some(Lease6 {
        router: Some("fd00::1".parse().unwrap()),
        ..Lease6::new("fd00::5".parse().unwrap(), 64, 600)
    });
    assert!(matches!(
        serve(&bad6, &Stop::new().unwrap()),
        Err(DhcpError::Lease(_))
    ));
}

#[test]
fn presence_tells_whether_the_nic_is_still_there() {
    let mut pod = pod_with_tap();
    let served = config(&pod, "tap0");
    assert_eq!(served.presence(), Presence::Present);
    assert_eq!(
        config(&pod, "tap-missing").presence(),
        Presence::InterfaceGone
    );

    // A namespace file left behind unmounted (as after a reboot with a persistent
    // directory) is an ordinary file, not a namespace.
    let directory = tempfile::tempdir().unwrap();
    let stale = directory.path().join("cni-stale");
    std::fs::write(&stale, b"").unwrap();
    let mut unmounted = config(&pod, "tap0");
    unmounted.netns = stale;
    assert_eq!(unmounted.presence(), Presence::NetnsGone);

    pod.delete();
    assert_eq!(served.presence(), Presence::NetnsGone);
}
