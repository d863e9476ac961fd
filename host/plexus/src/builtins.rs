//! The policies compiled into the binary, selectable as `builtin:NAME`.

/// A policy embedded at build time (see `build.rs`).
pub struct BuiltinPolicy {
    pub name: &'static str,
    pub wasm: &'static [u8],
    pub sha256: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

/// The built-ins as the policy runtime looks them up.
pub fn table() -> Vec<(&'static str, &'static [u8], &'static str)> {
    BUILTIN_POLICIES
        .iter()
        .map(|policy| (policy.name, policy.wasm, policy.sha256))
        .collect()
}
