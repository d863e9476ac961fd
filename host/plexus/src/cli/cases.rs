//! The case files of `plexus policy test`: what a case says, and whether an outcome of the
//! policy meets it. No policy runs here (the caller runs it), so the format is tested and
//! fuzzed on its own.

use serde::Deserialize;
use serde_json::Value;

/// A case file holds one case or `{"cases": [...]}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum CaseFile {
    Many { cases: Vec<Case> },
    One(Case),
}

/// One case: the input of a policy call and what must come of it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: Option<String>,
    pub input: Value,
    /// The output expected, compared as `match` says.
    output: Option<Value>,
    #[serde(default, rename = "match")]
    matching: Matching,
    /// A substring the error message must contain.
    error: Option<String>,
}

/// How a case's `output` is compared with the policy's.
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

/// The cases of one case file's JSON.
pub fn parse(file: Value) -> Result<Vec<Case>, serde_json::Error> {
    Ok(match serde_json::from_value(file)? {
        CaseFile::Many { cases } => cases,
        CaseFile::One(case) => vec![case],
    })
}

impl Case {
    /// Whether `outcome` (the policy's output, or its error message) meets the case; if
    /// not, why.
    pub fn judge(&self, outcome: Result<Value, String>) -> Result<(), String> {
        match (outcome, &self.output, &self.error) {
            (Ok(actual), Some(expected), None) => {
                let matches = match self.matching {
                    Matching::Exact => actual == *expected,
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
            (Err(error), None, Some(wanted)) if error.contains(wanted.as_str()) => Ok(()),
            (Err(error), None, Some(wanted)) => {
                Err(format!("error {error:?} does not contain {wanted:?}"))
            }
            (Ok(actual), None, Some(wanted)) => Err(format!(
                "expected an error containing {wanted:?}, got output {actual}"
            )),
            (Err(error), Some(_), None) => Err(format!("expected output, got error: {error}")),
            _ => Err("a case needs exactly one of `output` and `error`".into()),
        }
    }
}

/// Whether `actual` has everything `expected` names (see [`Matching::Subset`]).
pub fn is_subset(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(wanted), Value::Object(found)) => wanted
            .iter()
            .all(|(key, value)| found.get(key).is_some_and(|other| is_subset(value, other))),
        (Value::Array(wanted), Value::Array(found)) => {
            wanted.len() == found.len()
                && wanted
                    .iter()
                    .zip(found)
                    .all(|(value, other)| is_subset(value, other))
        }
        _ => expected == actual,
    }
}
