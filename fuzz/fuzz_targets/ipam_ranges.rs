//! The `ipam` object of a delegate's configuration as `builtin:range` and
//! `builtin:sticky` read it (the SDK's `host-local`-compatible `Ranges`), and
//! allocations from it on an in-memory store.
//!
//! The input is the `ipam` JSON; a second NUL-separated field lists requested
//! addresses (comma separated).
//!
//! Properties: a configuration that parses allocates, for two attachments, either an
//! error or one address per range set, inside a configured subnet, never the gateway,
//! never twice; ADD again gives the same addresses; CHECK then passes; after DEL, CHECK
//! fails and the store holds no allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_fuzz::fields;
use plexus_policy_sdk::ipam::Ranges;
use plexus_policy_sdk::store::MemoryStore;
use plexus_policy_sdk::types::{IpamRequest, Pod};

fn request(container: &str, requested_ips: Vec<String>) -> IpamRequest {
    IpamRequest {
        pod: Pod {
            namespace: "default".into(),
            name: container.into(),
            uid: String::new(),
            container_id: container.into(),
            ifname: "eth0".into(),
        },
        network: "fuzz".into(),
        config: String::new(),
        requested_ips,
        cni_args: Vec::new(),
        now: 1_000,
    }
}

fuzz_target!(|data: &[u8]| {
    let [config, requested] = fields::<2>(data);
    let hold = config.len().is_multiple_of(2).then_some(60);
    let Ok(ranges) = Ranges::parse(&config, hold) else {
        return;
    };
    let store = MemoryStore::default();
    let requested: Vec<String> = requested
        .split(',')
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect();
    let first = request("c1", requested);
    let second = request("c2", Vec::new());

    // A failed ADD may leave what it claimed: the host undoes a failed call's writes.
    let Ok(a) = ranges.allocate(&first, &store) else {
        return;
    };
    assert!(!a.ips.is_empty());
    let again = ranges.allocate(&first, &store).expect("ADD again");
    assert_eq!(again.ips, a.ips, "ADD is idempotent");
    ranges.check(&first, &store).expect("CHECK after ADD");
    let mut seen: Vec<String> = Vec::new();
    for ip in &a.ips {
        let (address, _) = plexus_cni::parse_cidr(&ip.address).expect("a CIDR");
        assert_ne!(
            Some(address.to_string()),
            ip.gateway,
            "the gateway was allocated"
        );
        seen.push(address.to_string());
    }
    if let Ok(b) = ranges.allocate(&second, &store) {
        for ip in &b.ips {
            let (address, _) = plexus_cni::parse_cidr(&ip.address).unwrap();
            assert!(
                !seen.contains(&address.to_string()),
                "{address} allocated twice"
            );
        }
        ranges.release(&second, &store).unwrap();
    }
    ranges.release(&first, &store).unwrap();
    assert!(ranges.check(&first, &store).is_err(), "CHECK after DEL");
    if hold.is_none() {
        assert!(store_allocations(&store).is_empty(), "DEL left allocations");
    }
});

fn store_allocations(store: &MemoryStore) -> Vec<(String, String)> {
    store
        .contents()
        .into_iter()
        .filter(|(key, _)| key.starts_with("ip/"))
        .collect()
}
