//! Plexus policies as OCI artifacts.
//!
//! - [`reference`]: `oci://HOST[:PORT]/REPO:TAG` and `…@sha256:…` as configuration writes them.
//! - [`artifact`]: the policy artifact's manifest and config, built and validated.
//! - [`cosign`]: signatures in cosign's format (a `sha256-<hex>.sig` tag holding simple-signing
//!   payloads), made and checked with P-256 keys.
//! - [`registry`]: a blocking client for one registry (anonymous, HTTPS or plain HTTP).
//! - [`layout`]: OCI layout tarballs, written and read, for nodes without a registry.
//!
//! Nothing here knows WebAssembly, CNI or a node's state directory: the `plexus` CLI puts
//! them together.

pub mod artifact;
pub mod cosign;
pub mod layout;
pub mod reference;
pub mod registry;

pub use reference::OciRef;

use sha2::{Digest, Sha256};

/// `sha256:<hex>` of `bytes`: how OCI names content.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The hex part of a `sha256:<hex>` digest, if it is one (64 lowercase hex digits).
pub fn sha256_hex(digest: &str) -> Option<&str> {
    digest.strip_prefix("sha256:").filter(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}
