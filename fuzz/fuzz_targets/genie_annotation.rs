//! CNI-Genie's pod annotation `cni: "calico,flannel@eth1"`, written by tenants.
//!
//! Properties: an annotation that parses names one network per comma-separated entry,
//! each name and interface trimmed, non-empty and free of `,` and `@`, with nothing
//! but name and interface set; written back as `name[@ifname],...` it parses to the
//! same requests.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_policy_sdk::annotations::{NetworkRequest, parse_genie};

fuzz_target!(|data: &[u8]| {
    let value = &*String::from_utf8_lossy(data);
    let Ok(requests) = parse_genie(value) else {
        return;
    };
    assert_eq!(requests.len(), value.split(',').count());
    for request in &requests {
        check_part(&request.name);
        if let Some(interface) = &request.interface {
            check_part(interface);
        }
        let NetworkRequest {
            namespace,
            ips,
            mac,
            default_route,
            cni_args,
            ..
        } = request;
        assert!(namespace.is_none() && ips.is_empty() && mac.is_none());
        assert!(default_route.is_empty() && cni_args.is_none());
    }
    let written: Vec<String> = requests
        .iter()
        .map(|r| match &r.interface {
            Some(interface) => format!("{}@{interface}", r.name),
            None => r.name.clone(),
        })
        .collect();
    assert_eq!(parse_genie(&written.join(",")), Ok(requests));
});

fn check_part(part: &str) {
    assert!(!part.is_empty(), "empty part");
    assert_eq!(part, part.trim(), "untrimmed {part:?}");
    assert!(!part.contains(',') && !part.contains('@'), "{part:?}");
}
