//! Reading loosely typed CNI JSON with errors that name the offending key.
//!
//! serde's derived errors say "invalid type: integer, expected a string" but
//! not where; operators fixing a config file need the key path.

use serde_json::{Map, Value};

/// A value at `path` has the wrong shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{reason}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct FieldError {
    /// Where, e.g. `plugins[1].type`; empty for the document itself.
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

impl FieldError {
    pub(crate) fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn wrong_type(path: String, expected: &str, found: &Value) -> FieldError {
    FieldError::new(path, format!("expected {expected}, found {}", kind(found)))
}

/// A JSON object together with its path from the document root.
pub(crate) struct Obj<'a> {
    pub map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Obj<'a> {
    /// `value` at `path` must be an object.
    pub fn new(value: &'a Value, path: impl Into<String>) -> Result<Self, FieldError> {
        let path = path.into();
        match value {
            Value::Object(map) => Ok(Obj { map, path }),
            other => Err(wrong_type(path, "an object", other)),
        }
    }

    pub fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// The value of `key`; JSON `null` counts as absent, as Go's decoder
    /// (and so every libcni-based plugin) treats it.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(wrong_type(self.path_of(key), "a string", other)),
        }
    }

    /// An optional string where `""` also means absent: libcni writes its
    /// optional strings with `omitempty`, so the two must read alike.
    pub fn opt_nonempty_str(&self, key: &str) -> Result<Option<&'a str>, FieldError> {
        Ok(self.opt_str(key)?.filter(|s| !s.is_empty()))
    }

    pub fn req_str(&self, key: &str) -> Result<&'a str, FieldError> {
        self.opt_str(key)?
            .ok_or_else(|| FieldError::new(self.path_of(key), "missing"))
    }

    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    FieldError::new(
                        self.path_of(key),
                        format!("expected an unsigned 32-bit integer, found {v}"),
                    )
                }),
        }
    }

    /// A boolean; like libcni, the strings "true"/"false" (any case) are
    /// accepted because hand-written configs use them.
    pub fn lenient_bool(&self, key: &str) -> Result<bool, FieldError> {
        match self.get(key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
            Some(other) => Err(FieldError::new(
                self.path_of(key),
                format!("expected true or false, found {other}"),
            )),
        }
    }

    /// The elements of an optional array, each with its path (`key[i]`).
    pub fn opt_array(&self, key: &str) -> Result<Vec<(String, &'a Value)>, FieldError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => {
                let base = self.path_of(key);
                Ok(items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (format!("{base}[{i}]"), v))
                    .collect())
            }
            Some(other) => Err(wrong_type(self.path_of(key), "an array", other)),
        }
    }

    pub fn opt_strings(&self, key: &str) -> Result<Vec<String>, FieldError> {
        self.opt_array(key)?
            .into_iter()
            .map(|(path, v)| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(wrong_type(path, "a string", other)),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with<T>(v: Value, f: impl FnOnce(Obj<'_>) -> T) -> T {
        f(Obj::new(&v, "top").unwrap())
    }

    #[test]
    fn non_object_is_named() {
        let v = json!([1]);
        let err = Obj::new(&v, "").err().unwrap();
        assert_eq!(err.to_string(), "expected an object, found an array");
        let err = Obj::new(&v, "a.b").err().unwrap();
        assert_eq!(err.to_string(), "a.b: expected an object, found an array");
    }

    #[test]
    fn strings() {
        with(json!({"a": "x", "n": null, "e": "", "i": 1}), |o| {
            assert_eq!(o.opt_str("a").unwrap(), Some("x"));
            assert_eq!(o.opt_str("n").unwrap(), None);
            assert_eq!(o.opt_str("missing").unwrap(), None);
            assert_eq!(o.opt_str("e").unwrap(), Some(""));
            assert_eq!(o.opt_nonempty_str("e").unwrap(), None);
            assert_eq!(
                o.opt_str("i").unwrap_err().to_string(),
                "top.i: expected a string, found a number"
            );
            assert_eq!(o.req_str("n").unwrap_err().to_string(), "top.n: missing");
        });
    }

    #[test]
    fn unsigned_integers() {
        with(
            json!({"a": 1500, "neg": -1, "big": 4294967296u64, "f": 1.5, "s": "1"}),
            |o| {
                assert_eq!(o.opt_u32("a").unwrap(), Some(1500));
                assert_eq!(o.opt_u32("none").unwrap(), None);
                for bad in ["neg", "big", "f", "s"] {
                    let err = o.opt_u32(bad).unwrap_err();
                    assert_eq!(err.path, format!("top.{bad}"));
                }
            },
        );
    }

    #[test]
    fn lenient_booleans() {
        with(
            json!({"t": true, "f": false, "ts": "TRUE", "fs": "False", "x": "yes", "n": 1}),
            |o| {
                assert!(o.lenient_bool("t").unwrap());
                assert!(!o.lenient_bool("f").unwrap());
                assert!(o.lenient_bool("ts").unwrap());
                assert!(!o.lenient_bool("fs").unwrap());
                assert!(!o.lenient_bool("absent").unwrap());
                assert_eq!(
                    o.lenient_bool("x").unwrap_err().to_string(),
                    "top.x: expected true or false, found \"yes\""
                );
                assert!(o.lenient_bool("n").is_err());
            },
        );
    }

    #[test]
    fn arrays() {
        with(json!({"a": ["x", "y"], "bad": ["x", 2], "o": {}}), |o| {
            assert_eq!(o.opt_strings("a").unwrap(), vec!["x", "y"]);
            assert!(o.opt_strings("none").unwrap().is_empty());
            assert_eq!(
                o.opt_strings("bad").unwrap_err().to_string(),
                "top.bad[1]: expected a string, found a number"
            );
            assert_eq!(
                o.opt_array("o").unwrap_err().to_string(),
                "top.o: expected an array, found an object"
            );
            let items = o.opt_array("a").unwrap();
            assert_eq!(items[1].0, "top.a[1]");
        });
    }

    #[test]
    fn root_paths_have_no_prefix() {
        let v = json!({"k": 1});
        let o = Obj::new(&v, "").unwrap();
        assert_eq!(o.path_of("k"), "k");
    }
}
