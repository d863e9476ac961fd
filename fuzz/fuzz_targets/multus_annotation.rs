//! Multus's pod annotation `k8s.v1.cni.cncf.io/networks`, written by tenants: the short
//! list (`ns/name@ifname, other`) and the JSON list of network objects.
//!
//! Properties: short form — one request per entry, name, namespace and interface
//! trimmed, non-empty and free of `,` `@` `/` (the interface may hold `/`: checked when
//! named), written back it parses the same. JSON form — names trimmed and non-empty;
//! every `ips` entry is a CIDR that the host's own parser (`plexus_cni::parse_cidr`,
//! which reads the delegates' results) accepts too; `mac` is six hex octets;
//! `default-route` entries are IP addresses; `cni-args` is a JSON object; written back
//! as JSON it parses the same.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use plexus_policy_sdk::annotations::{NetworkRequest, parse_multus};
use serde_json::{Map, Value, json};

fuzz_target!(|data: &[u8]| {
    let value = &*String::from_utf8_lossy(data);
    let Ok(requests) = parse_multus(value) else {
        return;
    };
    assert!(!requests.is_empty());
    let trimmed = value.trim_start();
    if trimmed.starts_with('[') || trimmed.starts_with('{') {
        json_form(&requests);
    } else {
        short_form(value, &requests);
    }
});

fn short_form(value: &str, requests: &[NetworkRequest]) {
    assert_eq!(requests.len(), value.split(',').count());
    for request in requests {
        check_part(&request.name, &[',', '@', '/']);
        if let Some(namespace) = &request.namespace {
            check_part(namespace, &[',', '@', '/']);
        }
        if let Some(interface) = &request.interface {
            check_part(interface, &[',', '@']);
        }
        assert!(request.ips.is_empty() && request.mac.is_none() && request.cni_args.is_none());
    }
    let written: Vec<String> = requests
        .iter()
        .map(|r| {
            let mut entry = r.name.clone();
            if let Some(namespace) = &r.namespace {
                entry = format!("{namespace}/{entry}");
            }
            if let Some(interface) = &r.interface {
                entry = format!("{entry}@{interface}");
            }
            entry
        })
        .collect();
    assert_eq!(parse_multus(&written.join(", ")).as_deref(), Ok(requests));
}

fn json_form(requests: &[NetworkRequest]) {
    for request in requests {
        assert!(!request.name.is_empty() && request.name == request.name.trim());
        for cidr in &request.ips {
            if let Err(e) = plexus_cni::parse_cidr(cidr) {
                panic!("the SDK accepts ips entry {cidr:?}, the host does not: {e}");
            }
        }
        if let Some(mac) = &request.mac {
            let octets: Vec<&str> = mac.split(':').collect();
            assert!(octets.len() == 6, "{mac:?}");
            for octet in octets {
                assert!(
                    u8::from_str_radix(octet, 16).is_ok() && octet.len() == 2,
                    "{mac:?}"
                );
            }
        }
        for gateway in &request.default_route {
            assert!(gateway.parse::<IpAddr>().is_ok(), "{gateway:?}");
        }
        if let Some(args) = &request.cni_args {
            assert!(
                serde_json::from_str::<Map<String, Value>>(args).is_ok(),
                "cni-args {args:?} is not a JSON object"
            );
        }
        if let Some(namespace) = &request.namespace {
            assert!(!namespace.trim().is_empty());
        }
    }
    let written: Vec<Value> = requests
        .iter()
        .map(|r| {
            let mut object = json!({
                "name": r.name,
                "namespace": r.namespace,
                "interface": r.interface,
                "ips": r.ips,
                "mac": r.mac,
                "default-route": r.default_route,
            });
            if let Some(args) = &r.cni_args {
                object["cni-args"] = serde_json::from_str(args).unwrap();
            }
            object
        })
        .collect();
    let text = Value::Array(written).to_string();
    let reread = parse_multus(&text).expect("written back, it parses");
    assert_eq!(reread.len(), requests.len());
    for (a, b) in requests.iter().zip(&reread) {
        // `cni-args` is JSON text: compared as JSON (a float may be printed differently).
        let args = |r: &NetworkRequest| {
            r.cni_args
                .as_deref()
                .map(|t| serde_json::from_str(t).unwrap())
        };
        match (args(a), args(b)) {
            (Some(x), Some(y)) => assert!(plexus_fuzz::json_eq(&x, &y), "{x} != {y}"),
            (x, y) => assert_eq!(x, y),
        }
        let without_args = |r: &NetworkRequest| NetworkRequest {
            cni_args: None,
            ..r.clone()
        };
        assert_eq!(without_args(a), without_args(b));
    }
}

fn check_part(part: &str, forbidden: &[char]) {
    assert!(!part.is_empty(), "empty part");
    assert_eq!(part, part.trim(), "untrimmed {part:?}");
    assert!(!part.contains(forbidden), "{part:?}");
}
