//! cosign simple-signing payloads read from a `.sig` tag (`cosign::signed_digest`).
//!
//! Properties: reading never panics; the payload Plexus writes for any repository and
//! digest reads back as that digest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_oci::cosign;

fuzz_target!(|data: &[u8]| {
    let _ = cosign::signed_digest(data);
    let text = String::from_utf8_lossy(data);
    let (repository, digest) = text.split_once('\n').unwrap_or((&text, "sha256:0"));
    let payload = cosign::payload(repository, digest);
    assert_eq!(cosign::signed_digest(&payload).as_deref(), Some(digest));
});
