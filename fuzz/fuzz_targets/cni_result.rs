//! A delegate's ADD result (stdout), of any version 0.3.0–1.1.0, and its conversion
//! to every other version: what Plexus reads from each delegate and prints back.
//!
//! Properties: a result that parses prints in every version as a result that parses
//! again and prints identically; read back it equals the original less exactly the
//! fields that version lacks (1.1.0 loses nothing); a chain of conversions through
//! several versions loses no more than its oldest version; before 1.0.0 every ip
//! carries the `version` of its address family, from 1.0.0 none does; the serde
//! (storage) form round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_cni::{CniResult, CniVersion, parse_cidr};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(result) = CniResult::from_json(&value) else {
        return;
    };

    for version in CniVersion::ALL {
        let printed = result.to_json(version);
        assert_eq!(printed["cniVersion"], version.as_str());
        let back = CniResult::from_json(&printed)
            .unwrap_or_else(|e| panic!("{version} form does not parse: {e}\n{printed}"));
        assert_eq!(back, in_version(&result, version), "{version}");
        assert_eq!(back.to_json(version), printed, "{version} reprint");
        for ip in printed["ips"].as_array().into_iter().flatten() {
            let family = match parse_cidr(ip["address"].as_str().unwrap()) {
                Ok((address, _)) if address.is_ipv4() => "4",
                Ok(_) => "6",
                Err(e) => panic!("printed address does not parse: {e}"),
            };
            if version < CniVersion::V1_0_0 {
                assert_eq!(ip["version"], family, "{ip}");
            } else {
                assert!(ip.get("version").is_none(), "{ip}");
            }
        }
    }
    assert_eq!(
        CniResult::from_json(&result.to_json(CniVersion::LATEST)).unwrap(),
        result,
        "1.1.0 is lossless"
    );

    // Down to each version and back up: what is lost is what the oldest one lacks.
    for oldest in CniVersion::ALL {
        let mut carried = result.clone();
        let upwards = CniVersion::ALL.into_iter().filter(|v| *v > oldest);
        for version in [CniVersion::LATEST, oldest].into_iter().chain(upwards) {
            carried = CniResult::from_json(&carried.to_json(version)).unwrap();
        }
        assert_eq!(carried, in_version(&result, oldest), "via {oldest}");
    }

    let stored = serde_json::to_value(&result).unwrap();
    assert!(stored.get("cniVersion").is_none());
    let restored: CniResult = serde_json::from_value(stored).expect("storage form reads back");
    assert_eq!(restored, result);
});

/// `result` less the fields `version` does not define.
fn in_version(result: &CniResult, version: CniVersion) -> CniResult {
    let mut r = result.clone();
    if version < CniVersion::V1_1_0 {
        for interface in &mut r.interfaces {
            interface.mtu = None;
            interface.socket_path = None;
            interface.pci_id = None;
        }
        for route in &mut r.routes {
            route.mtu = None;
            route.advmss = None;
            route.priority = None;
            route.table = None;
            route.scope = None;
        }
    }
    r
}
