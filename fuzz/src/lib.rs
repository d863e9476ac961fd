//! Helpers shared by the fuzz targets in `fuzz_targets/`.

use serde_json::Value;

/// Whether two JSON values are equal, numbers compared as `f64` within a relative
/// 1e-12 when either is not an integer: serde_json's default float parser (no
/// `float_roundtrip` feature, as Plexus builds it) may read a printed float back one
/// unit in the last place off, which is not what these targets look for.
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x.is_f64() || y.is_f64() {
                match (x.as_f64(), y.as_f64()) {
                    (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
                    _ => false,
                }
            } else {
                x == y
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, x)| y.get(key).is_some_and(|y| json_eq(x, y)))
        }
        _ => a == b,
    }
}

/// Splits fuzz input at NUL bytes into at most `N` UTF-8 strings (lossy), the rest
/// empty: how targets that take several strings (environment variables, a config and
/// `CNI_ARGS`) cut one byte string.
pub fn fields<const N: usize>(data: &[u8]) -> [String; N] {
    let mut parts = data.splitn(N, |&b| b == 0);
    std::array::from_fn(|_| {
        parts
            .next()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default()
    })
}
