//! `oci://` policy references as configuration writes them (`OciRef::from_str`).
//!
//! Properties: a reference that parses prints back as written; it has a tag or a digest;
//! its repository is lowercase; the reference of its signature tag parses too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_oci::OciRef;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(reference) = text.parse::<OciRef>() else {
        return;
    };
    assert_eq!(reference.to_string(), text);
    assert!(reference.tag.is_some() || reference.digest.is_some());
    assert!(!reference.repository.bytes().any(|b| b.is_ascii_uppercase()));
    let digest = format!("sha256:{}", "a".repeat(64));
    let signature = reference.signature_ref(&digest).to_string();
    assert_eq!(signature.parse::<OciRef>().unwrap().to_string(), signature);
});
