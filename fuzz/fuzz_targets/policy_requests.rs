//! The policy runtime's JSON request types (`plexus_policy::types`): what
//! `plexus policy run --input` and the `input` of `plexus policy test` cases read, and
//! what recordings replay.
//!
//! The first byte picks the type (select, merge, IPAM or GC request); the rest is JSON.
//! Properties: a request that reads prints as JSON that reads back to the same request
//! and prints identically; every field name it prints is one the reader knows (unknown
//! fields are refused).
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_policy::types::{GcRequest, IpamRequest, MergeRequest, SelectRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;

fuzz_target!(|data: &[u8]| {
    let Some((&which, json)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => round_trip::<SelectRequest>(json),
        1 => round_trip::<MergeRequest>(json),
        2 => round_trip::<IpamRequest>(json),
        _ => round_trip::<GcRequest>(json),
    }
});

fn round_trip<T>(json: &[u8])
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let Ok(request) = serde_json::from_slice::<T>(json) else {
        return;
    };
    let printed = serde_json::to_vec(&request).expect("a request prints");
    let back: T = serde_json::from_slice(&printed).unwrap_or_else(|e| {
        panic!(
            "printed request does not read back: {e}\n{}",
            String::from_utf8_lossy(&printed)
        )
    });
    assert_eq!(back, request);
    assert_eq!(serde_json::to_vec(&back).unwrap(), printed);
}
