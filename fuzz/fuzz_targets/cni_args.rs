//! `CNI_ARGS` (`K=V;K2=V2`), which carries the pod's identity and, in `K8S_ANNOT`,
//! its annotations as a JSON object whose strings may hold `;`.
//!
//! Properties: parsing either fails or yields pairs with non-empty keys and no `=` or
//! `;` in a key; only a `K8S_ANNOT` value that begins with `{` holds a `;`. Formatting
//! the pairs (for a delegate, which splits at every `;`) gives the input less its empty
//! segments when no value holds a `;`; otherwise one `;` between pairs and none elsewhere,
//! each `;` of `K8S_ANNOT` written `\u003b`. Parsing that gives the same pairs so
//! written, and formatting them again the same text. Any text in an annotation, written
//! as JSON, comes back whole among other pairs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_cni::env::ANNOTATIONS_ARG;
use plexus_cni::{format_cni_args, parse_cni_args};

fuzz_target!(|data: &[u8]| {
    // As `Invocation::from_env` reads the environment: lossily.
    let raw = &*String::from_utf8_lossy(data);
    annotation_comes_back(raw);
    let Ok(pairs) = parse_cni_args(raw) else {
        // A JSON object only ever joins segments that begin KEY=, so a refusal still
        // means some `;`-separated segment is not KEY=VALUE.
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
        assert!(
            !value.contains(';') || (key == ANNOTATIONS_ARG && value.starts_with('{')),
            "{key:?}={value:?}"
        );
    }
    let formatted = format_cni_args(&pairs);
    if pairs.iter().all(|(_, value)| !value.contains(';')) {
        let without_empty: Vec<&str> = raw.split(';').filter(|s| !s.is_empty()).collect();
        assert_eq!(formatted, without_empty.join(";"));
    } else {
        assert_eq!(formatted.split(';').count(), pairs.len(), "{formatted:?}");
    }
    let written: Vec<(String, String)> = pairs
        .iter()
        .map(|(key, value)| match key.as_str() {
            ANNOTATIONS_ARG => (key.clone(), value.replace(';', "\\u003b")),
            _ => (key.clone(), value.clone()),
        })
        .collect();
    assert_eq!(parse_cni_args(&formatted).unwrap(), written);
    assert_eq!(format_cni_args(&written), formatted);
});

/// The input as the text of an annotation, in `K8S_ANNOT` between two other pairs.
fn annotation_comes_back(text: &str) {
    let annotations = serde_json::json!({ "note": text, "cni": "a;b" }).to_string();
    let raw = format!("K8S_POD_NAME=p;{ANNOTATIONS_ARG}={annotations};K8S_POD_UID=u");
    let pairs = parse_cni_args(&raw).expect("CNI_ARGS with a JSON annotation");
    let expected = [
        ("K8S_POD_NAME", "p"),
        (ANNOTATIONS_ARG, annotations.as_str()),
        ("K8S_POD_UID", "u"),
    ]
    .map(|(key, value)| (key.to_owned(), value.to_owned()));
    assert_eq!(pairs, expected);
    // As a delegate gets it: the same annotations, though its `;` are escaped.
    let formatted = format_cni_args(&pairs);
    let delegate = parse_cni_args(&formatted).expect("CNI_ARGS formatted for a delegate");
    assert_eq!(formatted.split(';').count(), 3, "{formatted:?}");
    let read = |json: &str| serde_json::from_str::<serde_json::Value>(json).expect("JSON");
    assert_eq!(read(&delegate[1].1), read(&annotations));
}
