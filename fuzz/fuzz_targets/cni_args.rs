//! `CNI_ARGS` (`K=V;K2=V2`), which carries the pod's identity and, in `K8S_ANNOT`,
//! its annotations.
//!
//! Properties: parsing either fails or yields pairs with non-empty keys, no `=` in a
//! key and no `;` anywhere; formatting them gives the input less its empty segments,
//! and parsing that again gives the same pairs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_cni::{format_cni_args, parse_cni_args};

fuzz_target!(|data: &[u8]| {
    // As `Invocation::from_env` reads the environment: lossily.
    let raw = &*String::from_utf8_lossy(data);
    let Ok(pairs) = parse_cni_args(raw) else {
        let bad = |segment: &str| match segment.split_once('=') {
            Some((key, _)) => key.is_empty(),
            None => !segment.is_empty(),
        };
        assert!(
            raw.split(';').any(bad),
            "{raw:?} was refused but every segment is KEY=VALUE"
        );
        return;
    };
    for (key, value) in &pairs {
        assert!(!key.is_empty());
        assert!(!key.contains('=') && !key.contains(';'), "{key:?}");
        assert!(!value.contains(';'), "{value:?}");
    }
    let formatted = format_cni_args(&pairs);
    let without_empty: Vec<&str> = raw.split(';').filter(|s| !s.is_empty()).collect();
    assert_eq!(formatted, without_empty.join(";"));
    assert_eq!(parse_cni_args(&formatted).unwrap(), pairs);
});
