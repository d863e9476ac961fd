//! The `cni.dev/valid-attachments` list of a GC request (or the legacy
//! `cni.dev/attachments`): which attachments GC must not release.
//!
//! Properties: a list that reads has only valid container ids and interface names;
//! written back under either key it reads the same; a request without either key is
//! an error, never "nothing is valid" (which would release every attachment).
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_cni::config::{LEGACY_ATTACHMENTS_KEY, VALID_ATTACHMENTS_KEY};
use plexus_cni::{parse_valid_attachments, validate_container_id, validate_ifname};
use serde_json::{Value, json};

fuzz_target!(|data: &[u8]| {
    let Ok(request) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(valid) = parse_valid_attachments(&request) else {
        return;
    };
    let listed = [VALID_ATTACHMENTS_KEY, LEGACY_ATTACHMENTS_KEY]
        .iter()
        .find_map(|key| request.get(key).filter(|v| !v.is_null()));
    assert!(listed.is_some(), "no list, yet it read as {valid:?}");
    assert_eq!(listed.unwrap().as_array().map(Vec::len), Some(valid.len()));
    for (id, ifname) in &valid {
        validate_container_id(id).unwrap();
        validate_ifname(ifname).unwrap();
    }
    let items: Vec<Value> = valid
        .iter()
        .map(|(id, ifname)| json!({"containerID": id, "ifname": ifname}))
        .collect();
    for key in [VALID_ATTACHMENTS_KEY, LEGACY_ATTACHMENTS_KEY] {
        let written = json!({ key: items });
        assert_eq!(parse_valid_attachments(&written).unwrap(), valid);
    }
});
