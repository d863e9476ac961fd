//! The case files of `plexus policy test`: what a case says, and whether an outcome of the
//! policy meets it. No policy runs here (the caller runs it), so the format is tested and
//! fuzzed on its own.
//!
//! A case file is read strictly: a key it does not know is an error naming the key, in
//! the `{"cases": [...]}` wrapper as in a case, so a misspelt key never turns a case into
//! one that checks less than its author meant.

use serde::Deserialize;
use serde_json::{Map, Value};

/// A file of many cases: `{"cases": [...]}` and nothing else.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseList {
    cases: Vec<Value>,
}

/// One case as its file spells it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: Option<String>,
    input: Value,
    output: Option<Value>,
    #[serde(default, rename = "match")]
    matching: Matching,
    error: Option<String>,
}

/// One case: the input of a policy call and what must come of it.
#[derive(Debug)]
pub struct Case {
    pub name: Option<String>,
    pub input: Value,
    expected: Expected,
}

/// What must come of a case's call: exactly one of these.
#[derive(Debug)]
enum Expected {
    /// This output, compared as `match` says.
    Output(Value, Matching),
    /// An error whose message contains this.
    Error(String),
}

/// How a case's `output` is compared with the policy's.
///
/// In both, a key whose value is `null` and a key that is absent are the same: the WIT's
/// optional fields (`mac`, `gateway`, ...) print as `null` when unset, and a case need not
/// spell them out.
#[derive(Debug, Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Matching {
    /// Equal JSON.
    #[default]
    Exact,
    /// Every key the expectation names has a matching value; lists match element by
    /// element and have the same length.
    Subset,
}

/// The cases of one case file's JSON: a case, or `{"cases": [...]}`. An error says which
/// case (its position, counted from 1, in a list) and what is wrong with it.
pub fn parse(file: Value) -> Result<Vec<Case>, String> {
    let is_list = file
        .as_object()
        .is_some_and(|object| object.contains_key("cases"));
    if !is_list {
        return Ok(vec![case(file)?]);
    }
    let CaseList { cases } = serde_json::from_value(file).map_err(|err| err.to_string())?;
    cases
        .into_iter()
        .enumerate()
        .map(|(index, value)| case(value).map_err(|err| format!("case {}: {err}", index + 1)))
        .collect()
}

fn case(value: Value) -> Result<Case, String> {
    let raw: RawCase = serde_json::from_value(value).map_err(|err| err.to_string())?;
    let expected = match (raw.output, raw.error) {
        (Some(output), None) => Expected::Output(output, raw.matching),
        (None, Some(error)) => Expected::Error(error),
        _ => return Err("a case needs exactly one of `output` and `error`".into()),
    };
    Ok(Case {
        name: raw.name,
        input: raw.input,
        expected,
    })
}

impl Case {
    /// Whether `outcome` (the policy's output, or the error it or the host's check of its
    /// answer gave) meets the case; if not, why.
    pub fn judge(&self, outcome: Result<Value, String>) -> Result<(), String> {
        match (outcome, &self.expected) {
            (Ok(actual), Expected::Output(expected, matching)) => {
                let matches = match matching {
                    Matching::Exact => is_same(expected, &actual),
                    Matching::Subset => is_subset(expected, &actual),
                };
                if matches {
                    Ok(())
                } else {
                    Err(format!(
                        "output differs\n  expected: {expected}\n  actual:   {actual}"
                    ))
                }
            }
            (Err(error), Expected::Error(wanted)) if error.contains(wanted.as_str()) => Ok(()),
            (Err(error), Expected::Error(wanted)) => {
                Err(format!("error {error:?} does not contain {wanted:?}"))
            }
            (Ok(actual), Expected::Error(wanted)) => Err(format!(
                "expected an error containing {wanted:?}, got output {actual}"
            )),
            (Err(error), Expected::Output(..)) => {
                Err(format!("expected output, got error: {error}"))
            }
        }
    }
}

/// Whether `expected` and `actual` are equal JSON, a `null` value and an absent key being
/// the same (see [`Matching`]).
pub fn is_same(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(wanted), Value::Object(found)) => {
            covers(wanted, found, is_same) && covers(found, wanted, is_same)
        }
        (Value::Array(wanted), Value::Array(found)) => pairwise(wanted, found, is_same),
        _ => expected == actual,
    }
}

/// Whether two arrays have the same length and each element of `found` `matches` the
/// element of `wanted` at its place.
fn pairwise(wanted: &[Value], found: &[Value], matches: fn(&Value, &Value) -> bool) -> bool {
    wanted.len() == found.len()
        && wanted
            .iter()
            .zip(found)
            .all(|(value, other)| matches(value, other))
}

/// Whether `actual` has everything `expected` names (see [`Matching::Subset`]).
pub fn is_subset(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(wanted), Value::Object(found)) => covers(wanted, found, is_subset),
        (Value::Array(wanted), Value::Array(found)) => pairwise(wanted, found, is_subset),
        _ => expected == actual,
    }
}

/// Whether every key of `wanted` has a value in `found` that `matches` its own, an absent
/// key counting as `null`.
fn covers(
    wanted: &Map<String, Value>,
    found: &Map<String, Value>,
    matches: fn(&Value, &Value) -> bool,
) -> bool {
    wanted
        .iter()
        .all(|(key, value)| matches(value, found.get(key).unwrap_or(&Value::Null)))
}
