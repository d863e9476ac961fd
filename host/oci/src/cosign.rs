//! Signatures the way cosign makes them with a key: a "simple signing" payload naming the
//! manifest digest, signed with ECDSA P-256 over its SHA-256 (ASN.1 DER, base64), kept as
//! a layer of the manifest tagged `sha256-<hex>.sig` in the same repository, the signature
//! in the layer's `dev.cosignproject.cosign/signature` annotation. `cosign verify --key`
//! checks exactly this (the signature, and that the payload's digest is the image's).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{DerSignature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::artifact::{Descriptor, MAX_MANIFEST_BYTES, Manifest};

pub const PAYLOAD_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
pub const IMAGE_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const PAYLOAD_TYPE: &str = "cosign container image signature";
/// The most signatures one `.sig` manifest may hold for a pull to look at.
pub const MAX_SIGNATURES: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "encrypted keys are not supported; openssl ec -in KEY -out plain.pem writes it unencrypted"
    )]
    Encrypted,
    #[error("not a P-256 key")]
    NotP256,
    #[error("no {0} in it (a PEM file)")]
    NoPem(&'static str),
}

/// The key `plexus policy push --key` signs with.
pub struct PrivateKey(SigningKey);

/// A key `--verify-key` and `policyVerifyKey` check signatures with.
#[derive(Clone)]
pub struct PublicKey(VerifyingKey);

impl PrivateKey {
    /// An unencrypted P-256 key in PEM: `EC PRIVATE KEY` (SEC1, what `openssl ecparam
    /// -genkey` writes, after an `EC PARAMETERS` block) or `PRIVATE KEY` (PKCS#8).
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        if text.contains("ENCRYPTED") {
            return Err(KeyError::Encrypted);
        }
        let secret = if let Some(block) = pem_block(text, "EC PRIVATE KEY") {
            p256::SecretKey::from_sec1_pem(&block).map_err(|_| KeyError::NotP256)?
        } else if let Some(block) = pem_block(text, "PRIVATE KEY") {
            p256::SecretKey::from_pkcs8_pem(&block).map_err(|_| KeyError::NotP256)?
        } else {
            return Err(KeyError::NoPem("private key"));
        };
        Ok(PrivateKey(SigningKey::from(&secret)))
    }

    /// The base64 of the DER signature of `payload`.
    pub fn sign(&self, payload: &[u8]) -> String {
        let signature: DerSignature = self.0.sign(payload);
        BASE64.encode(signature.as_bytes())
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(*self.0.verifying_key())
    }
}

impl PublicKey {
    /// A P-256 `PUBLIC KEY` (SPKI) in PEM, as `openssl ec -pubout` and cosign write it.
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        let block = pem_block(text, "PUBLIC KEY").ok_or(KeyError::NoPem("PUBLIC KEY"))?;
        VerifyingKey::from_public_key_pem(&block)
            .map(PublicKey)
            .map_err(|_| KeyError::NotP256)
    }

    /// `sha256:<hex>` of the key's SPKI DER: the same as
    /// `openssl pkey -pubin -in pub.pem -outform DER | sha256sum`.
    pub fn key_id(&self) -> String {
        let der = self
            .0
            .to_public_key_der()
            .expect("a P-256 key encodes as SPKI");
        format!("sha256:{}", hex::encode(Sha256::digest(der.as_bytes())))
    }

    /// Whether `signature` (base64 DER) signs `payload` with this key.
    pub fn verifies(&self, payload: &[u8], signature: &str) -> bool {
        let Ok(der) = BASE64.decode(signature.trim()) else {
            return false;
        };
        let Ok(signature) = p256::ecdsa::Signature::from_der(&der) else {
            return false;
        };
        self.0.verify(payload, &signature).is_ok()
    }
}

/// The PEM block labelled `label` (whole, with its armour), if the text has one: a file
/// may hold several (`EC PARAMETERS` before `EC PRIVATE KEY`).
fn pem_block(text: &str, label: &str) -> Option<String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)?;
    let stop = text[start..].find(&end)? + start + end.len();
    Some(text[start..stop].to_owned() + "\n")
}

/// The simple-signing payload for the manifest `digest` of `repository` (`HOST/REPO`):
/// byte for byte what cosign's Go `json.Marshal` writes.
pub fn payload(repository: &str, digest: &str) -> Vec<u8> {
    let quote = |text: &str| serde_json::to_string(text).expect("a string serializes");
    format!(
        "{{\"critical\":{{\"identity\":{{\"docker-reference\":{}}},\"image\":{{\"docker-manifest-digest\":{}}},\"type\":{}}},\"optional\":null}}",
        quote(repository),
        quote(digest),
        quote(PAYLOAD_TYPE)
    )
    .into_bytes()
}

#[derive(Deserialize)]
struct Payload {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    digest: String,
}

/// The manifest digest a payload signs, if it is a cosign payload.
pub fn signed_digest(payload: &[u8]) -> Option<String> {
    let payload: Payload = serde_json::from_slice(payload).ok()?;
    (payload.critical.kind == PAYLOAD_TYPE).then_some(payload.critical.image.digest)
}

/// One signature: its payload's descriptor and the base64 signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureLayer {
    pub payload: Descriptor,
    pub signature: String,
}

impl SignatureLayer {
    pub fn new(payload: &[u8], signature: String) -> Self {
        SignatureLayer {
            payload: Descriptor::of(PAYLOAD_MEDIA_TYPE, payload),
            signature,
        }
    }
}

/// The signature layers of a `.sig` manifest (those of cosign's payload type that carry a
/// signature), at most [`MAX_SIGNATURES`].
pub fn signature_layers(manifest: &Manifest) -> Vec<SignatureLayer> {
    manifest
        .layers
        .iter()
        .filter(|layer| layer.media_type == PAYLOAD_MEDIA_TYPE && layer.size <= MAX_MANIFEST_BYTES)
        .filter_map(|layer| {
            let signature = layer.annotations.get(SIGNATURE_ANNOTATION)?;
            Some(SignatureLayer {
                payload: Descriptor {
                    annotations: BTreeMap::new(),
                    ..layer.clone()
                },
                signature: signature.clone(),
            })
        })
        .take(MAX_SIGNATURES)
        .collect()
}

/// The `.sig` manifest holding `layers`, and its config blob (an image config whose
/// `diff_ids` are the payloads, as cosign writes it).
pub fn signature_manifest(layers: &[SignatureLayer]) -> (Vec<u8>, Vec<u8>) {
    let config = serde_json::json!({
        "architecture": "",
        "os": "",
        "config": {},
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|layer| layer.payload.digest.clone()).collect::<Vec<_>>(),
        },
    });
    let config = serde_json::to_vec(&config).expect("a config serializes");
    let manifest = Manifest::new(
        None,
        Descriptor::of(IMAGE_CONFIG_MEDIA_TYPE, &config),
        layers
            .iter()
            .map(|layer| {
                let mut descriptor = layer.payload.clone();
                descriptor
                    .annotations
                    .insert(SIGNATURE_ANNOTATION.to_owned(), layer.signature.clone());
                descriptor
            })
            .collect(),
    );
    (manifest.to_bytes(), config)
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;
    use crate::digest_of;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn openssl(args: &[&str]) -> Vec<u8> {
        let output = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl must be installed (scripts/setup)");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    #[test]
    fn payload_is_what_cosign_writes() {
        assert_eq!(
            String::from_utf8(payload("127.0.0.1:5000/policies/select", DIGEST)).unwrap(),
            format!(
                "{{\"critical\":{{\"identity\":{{\"docker-reference\":\"127.0.0.1:5000/policies/select\"}},\"image\":{{\"docker-manifest-digest\":\"{DIGEST}\"}},\"type\":\"cosign container image signature\"}},\"optional\":null}}"
            )
        );
        assert_eq!(
            signed_digest(&payload("h/r", DIGEST)).as_deref(),
            Some(DIGEST)
        );
        assert_eq!(
            signed_digest(
                br#"{"critical":{"image":{"docker-manifest-digest":"x"},"type":"other"}}"#
            ),
            None
        );
    }

    #[test]
    fn keys_of_every_form_sign_and_openssl_agrees() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
        // The ecparam file has an EC PARAMETERS block before the key.
        openssl(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-out",
            &path("ec.pem"),
        ]);
        openssl(&[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            &path("ec.pem"),
            "-out",
            &path("pk8.pem"),
        ]);
        openssl(&[
            "ec",
            "-in",
            &path("ec.pem"),
            "-pubout",
            "-out",
            &path("pub.pem"),
        ]);
        let public =
            PublicKey::from_pem(&std::fs::read_to_string(path("pub.pem")).unwrap()).unwrap();
        let der = openssl(&["pkey", "-pubin", "-in", &path("pub.pem"), "-outform", "DER"]);
        assert_eq!(public.key_id(), digest_of(&der));
        let message = payload("h/r", DIGEST);
        std::fs::write(path("payload"), &message).unwrap();
        for key in ["ec.pem", "pk8.pem"] {
            let private =
                PrivateKey::from_pem(&std::fs::read_to_string(path(key)).unwrap()).unwrap();
            assert_eq!(private.public_key().key_id(), public.key_id());
            let signature = private.sign(&message);
            assert!(public.verifies(&message, &signature));
            assert!(!public.verifies(b"other", &signature));
            std::fs::write(path("sig.der"), BASE64.decode(&signature).unwrap()).unwrap();
            let verified = openssl(&[
                "dgst",
                "-sha256",
                "-verify",
                &path("pub.pem"),
                "-signature",
                &path("sig.der"),
                &path("payload"),
            ]);
            assert_eq!(String::from_utf8_lossy(&verified).trim(), "Verified OK");
        }
        // A signature openssl made verifies here.
        openssl(&[
            "dgst",
            "-sha256",
            "-sign",
            &path("ec.pem"),
            "-out",
            &path("openssl.der"),
            &path("payload"),
        ]);
        let signature = BASE64.encode(std::fs::read(path("openssl.der")).unwrap());
        assert!(public.verifies(&message, &signature));
        // Encrypted, other curves and missing blocks are refused with a reason.
        openssl(&[
            "pkcs8",
            "-topk8",
            "-in",
            &path("ec.pem"),
            "-passout",
            "pass:x",
            "-out",
            &path("enc.pem"),
        ]);
        assert!(matches!(
            PrivateKey::from_pem(&std::fs::read_to_string(path("enc.pem")).unwrap()),
            Err(KeyError::Encrypted)
        ));
        openssl(&[
            "ecparam",
            "-name",
            "secp384r1",
            "-genkey",
            "-noout",
            "-out",
            &path("p384.pem"),
        ]);
        assert!(matches!(
            PrivateKey::from_pem(&std::fs::read_to_string(path("p384.pem")).unwrap()),
            Err(KeyError::NotP256)
        ));
        assert!(matches!(
            PublicKey::from_pem("nothing"),
            Err(KeyError::NoPem(_))
        ));
    }

    #[test]
    fn signature_manifest_round_trips() {
        let layers = vec![SignatureLayer::new(&payload("h/r", DIGEST), "c2ln".into())];
        let (manifest, config) = signature_manifest(&layers);
        let parsed = Manifest::parse(&manifest).unwrap();
        assert_eq!(parsed.config.digest, digest_of(&config));
        assert_eq!(signature_layers(&parsed), layers);
        assert!(
            String::from_utf8(config)
                .unwrap()
                .contains(&layers[0].payload.digest)
        );
    }
}
