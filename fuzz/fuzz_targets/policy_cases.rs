//! The case files of `plexus policy test` (`plexus::cli::cases`).
//!
//! Properties: a file either fails to parse or yields cases, each with exactly one of
//! `output` and `error`; a case whose `output` is given is met by exactly that output,
//! and by it with its `null` keys dropped (and, with `"match": "subset"`, by any object
//! that has more keys); a case whose `error` is given is met by an error message
//! containing it and never by an output; the subset relation is reflexive.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus::cli::cases;
use serde_json::{Value, json};

fuzz_target!(|data: &[u8]| {
    let Ok(file) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    assert!(
        cases::is_subset(&file, &file),
        "subset is reflexive: {file}"
    );
    let Ok(cases) = cases::parse(file.clone()) else {
        return;
    };
    // The expected output and error of each case, as the file gives them.
    let specs: Vec<&Value> = match file.get("cases").and_then(Value::as_array) {
        Some(list) => list.iter().collect(),
        None => vec![&file],
    };
    assert_eq!(specs.len(), cases.len(), "one case per entry");
    for (case, spec) in cases.iter().zip(specs) {
        assert_eq!(
            Some(&case.input),
            spec.get("input"),
            "the input as given: {spec}"
        );
        assert_eq!(
            case.name.as_deref(),
            spec.get("name").and_then(Value::as_str),
            "the name as given: {spec}"
        );
        match (
            spec.get("output").filter(|v| !v.is_null()),
            spec.get("error").and_then(Value::as_str),
        ) {
            (Some(output), None) => {
                assert_eq!(
                    case.judge(Ok(output.clone())),
                    Ok(()),
                    "its own output meets {spec}"
                );
                assert!(
                    case.judge(Err("boom".into())).is_err(),
                    "an error never meets {spec}"
                );
                assert_eq!(
                    case.judge(Ok(without_nulls(output))),
                    Ok(()),
                    "a null value is an absent key: {spec}"
                );
                if spec.get("match").and_then(Value::as_str) == Some("subset") {
                    if let Value::Object(map) = output {
                        let mut more = map.clone();
                        more.insert("\u{1}extra".into(), json!(1));
                        assert_eq!(case.judge(Ok(Value::Object(more))), Ok(()), "{spec}");
                    }
                }
            }
            (None, Some(error)) => {
                assert_eq!(
                    case.judge(Err(format!("policy x: {error}!"))),
                    Ok(()),
                    "{spec}"
                );
                assert!(
                    case.judge(Ok(json!(null))).is_err(),
                    "an output never meets {spec}"
                );
            }
            _ => panic!("a case needs exactly one of output and error, yet parsed: {spec}"),
        }
    }
});

/// `value` with every object key whose value is `null` dropped, at every depth.
fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, value)| !value.is_null())
                .map(|(key, value)| (key.clone(), without_nulls(value)))
                .collect(),
        ),
        Value::Array(list) => Value::Array(list.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}
