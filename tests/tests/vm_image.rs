//! The test VM itself (`tests/vm/build-image`), with no Plexus in the way: the guest
//! booted on taps in a namespace of the test's own, where nothing answers. Root and QEMU
//! are required: the test fails without them, it never skips.

use std::time::Duration;

use plexus_tests::vm::{self, Launch};
use plexus_tests::{Netns, require_root};

/// DHCPv4 gives up after 10 s per NIC, the IPv6 wait after 30 s, under TCG on a loaded
/// machine.
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

#[test]
fn with_ipv6_the_guest_runs_dhcpcd_on_every_nic_and_reports_that_nothing_answered() {
    require_root();
    let netns = Netns::new("vm-image");
    for tap in ["tap0", "tap1"] {
        netns.ip(&["tuntap", "add", tap, "mode", "tap"]);
        netns.ip(&["link", "set", tap, "up"]);
    }
    let launch = Launch {
        ipv6: true,
        ping: vec!["fd00:9::9".to_owned(), "10.9.9.9".to_owned()],
        ..Launch::default()
    };
    let taps = [("tap0", "52:54:00:12:34:56"), ("tap1", "52:54:00:12:34:57")];

    let console = vm::boot_with(netns.path(), &taps, &launch, BOOT_TIMEOUT);

    let text = console.text();
    // dhcpcd loaded (its libraries are in the image), started its privilege separation
    // (its user is), and kept soliciting on each NIC (one dhcpcd per NIC) until it gave
    // up on routers, all within the guest's wait.
    for nic in ["eth0", "eth1"] {
        for said in [
            format!("{nic}: soliciting an IPv6 router"),
            format!("{nic}: no IPv6 Routers available"),
        ] {
            assert!(text.contains(&said), "no {said:?}\n{console}");
        }
    }
    for trouble in [
        "error while loading shared libraries",
        "no such user",
        "PLEXUS-ERROR",
    ] {
        assert!(!text.contains(trouble), "{trouble:?}\n{console}");
    }
    assert!(console.nics().is_empty(), "{console}");
    assert!(console.nics6().is_empty(), "{console}");
    assert!(console.advertisements().is_empty(), "{console}");
    assert_eq!(console.nic6_failures(), ["eth0", "eth1"], "{console}");
    assert!(text.contains("--- ip -6 addr\n"), "{console}");
    assert!(text.contains("--- ip -6 route\n"), "{console}");
    assert_eq!(console.ping(), None, "{console}");
    assert_eq!(
        console.pings(),
        [
            (false, "fd00:9::9".to_owned()),
            (false, "10.9.9.9".to_owned())
        ],
        "{console}"
    );
}
