//! A pulled manifest checked to be a policy artifact (`PolicyManifest::validate`).
//!
//! Properties: an accepted manifest has one component layer within the size limit, at
//! most one cases layer within its limit, a config within the manifest limit, and every
//! digest is sha256.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_oci::artifact::{MAX_CASES_BYTES, MAX_MANIFEST_BYTES, MAX_WASM_BYTES, PolicyManifest, WASM_MEDIA_TYPE};
use plexus_oci::sha256_hex;

fuzz_target!(|data: &[u8]| {
    let Ok(manifest) = PolicyManifest::validate(data) else {
        return;
    };
    assert_eq!(manifest.wasm.media_type, WASM_MEDIA_TYPE);
    assert!(manifest.wasm.size <= MAX_WASM_BYTES);
    assert!(manifest.config.size <= MAX_MANIFEST_BYTES);
    assert!(manifest.cases.as_ref().is_none_or(|cases| cases.size <= MAX_CASES_BYTES));
    for descriptor in manifest.descriptors() {
        assert!(sha256_hex(&descriptor.digest).is_some(), "{}", descriptor.digest);
    }
});
