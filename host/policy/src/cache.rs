//! The compile cache: policies compiled by this runtime's own engine, kept on disk so
//! that a CNI invocation loads machine code instead of compiling a component.
//!
//! An artifact is `<dir>/<wasm sha256>-<engine key>.cwasm`, laid out as
//! `prefix | wasmtime's serialized component | sha256(prefix | serialized)`, where the
//! prefix names the format, the `.wasm` and the engine. Deserializing runs native code
//! with no further checks, so an artifact is used only if the directory and the file
//! are ours alone and the whole file checks out; anything else is recompiled.

use std::fs::{self, File};
use std::hash::{Hash, Hasher};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tracing::{debug, warn};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Names the artifact layout; part of the engine key too, so a new layout never reads an
/// old file.
const FORMAT: &str = "plexus-policy-cwasm-1";
const DIGEST_LEN: usize = 32;
/// Permission bits that would let someone else write the directory or an artifact.
const WRITABLE_BY_OTHERS: u32 = 0o022;

pub(crate) struct Cache {
    dir: PathBuf,
    engine_key: String,
    owner: u32,
}

impl Cache {
    /// The cache in `dir`, created `0700` if missing; `None` (with a warning) when the
    /// directory cannot be made or is not ours alone, and policies are then compiled in
    /// memory.
    pub(crate) fn open(dir: PathBuf, engine: &Engine) -> Option<Self> {
        let owner = nix::unistd::geteuid().as_raw();
        match check_dir(&dir, owner) {
            Ok(()) => Some(Self {
                dir,
                engine_key: engine_key(engine),
                owner,
            }),
            Err(reason) => {
                warn!(
                    dir = %dir.display(),
                    %reason,
                    "not using the policy compile cache; compiling policies in memory"
                );
                None
            }
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the artifact of the `.wasm` with this sha256 (hex) lives.
    pub(crate) fn artifact_path(&self, wasm_sha256: &str) -> PathBuf {
        self.dir
            .join(format!("{wasm_sha256}-{}.cwasm", self.engine_key))
    }

    /// The cached component, or `None` when there is none or it cannot be trusted or
    /// loaded (logged): the caller compiles and stores it again.
    // Loading a compiled component is unsafe in wasmtime (see the SAFETY comment).
    #[allow(unsafe_code)]
    pub(crate) fn load(
        &self,
        engine: &Engine,
        policy: &str,
        wasm_sha256: &str,
    ) -> Option<Component> {
        let path = self.artifact_path(wasm_sha256);
        let bytes = match self.read_artifact(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                debug!(policy, path = %path.display(), "policy not in the compile cache");
                return None;
            }
            Err(error) => {
                warn!(policy, path = %path.display(), %error, "cannot read cached policy; recompiling");
                return None;
            }
        };
        let serialized = match self.verify(&bytes, wasm_sha256) {
            Ok(serialized) => serialized,
            Err(reason) => {
                warn!(policy, path = %path.display(), reason, "ignoring corrupt cached policy; recompiling");
                return None;
            }
        };
        // SAFETY: `deserialize` trusts its input to be wasmtime's own output. These bytes
        // are exactly what `store` wrote: the directory and file are owned by us and
        // writable by no one else, and the checksum over the whole file matches, so they
        // came from this runtime compiling this `.wasm`. Wasmtime itself still refuses
        // artifacts of another version or configuration.
        match unsafe { Component::deserialize(engine, serialized) } {
            Ok(component) => Some(component),
            Err(error) => {
                warn!(policy, path = %path.display(), error = %format!("{error:#}"), "cannot load cached policy; recompiling");
                None
            }
        }
    }

    /// Writes `component`'s artifact atomically (temporary file in the same directory,
    /// then rename), so that a concurrent reader sees the old file or the new one, whole.
    pub(crate) fn store(
        &self,
        wasm_sha256: &str,
        component: &Component,
    ) -> Result<PathBuf, String> {
        let serialized = component
            .serialize()
            .map_err(|error| format!("cannot serialize the compiled policy: {error:#}"))?;
        let prefix = self.prefix(wasm_sha256);
        let digest = Sha256::new()
            .chain_update(&prefix)
            .chain_update(&serialized)
            .finalize();
        let path = self.artifact_path(wasm_sha256);
        let write = || -> io::Result<()> {
            let mut file = tempfile::Builder::new()
                .prefix(".")
                .suffix(".tmp")
                .tempfile_in(&self.dir)?;
            file.write_all(&prefix)?;
            file.write_all(&serialized)?;
            file.write_all(&digest)?;
            file.as_file().sync_all()?;
            file.persist(&path)?;
            Ok(())
        };
        write().map_err(|error| format!("cannot write {}: {error}", path.display()))?;
        debug!(path = %path.display(), "stored compiled policy");
        Ok(path)
    }

    fn prefix(&self, wasm_sha256: &str) -> Vec<u8> {
        format!("{FORMAT}\n{wasm_sha256}\n{}\n", self.engine_key).into_bytes()
    }

    /// The file's bytes, if it is a regular file that only we can write.
    fn read_artifact(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut file = File::open(path)?;
        // Checked on the open file, so it is the file we then read.
        let metadata = file.metadata()?;
        if !metadata.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        if metadata.uid() != self.owner || metadata.mode() & WRITABLE_BY_OTHERS != 0 {
            return Err(io::Error::other(format!(
                "owned by uid {} with mode {:o}: not written by this cache",
                metadata.uid(),
                metadata.mode() & 0o7777
            )));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
        file.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// The serialized component inside an artifact's bytes, if they are whole and for this
    /// `.wasm` and engine.
    fn verify<'a>(&self, bytes: &'a [u8], wasm_sha256: &str) -> Result<&'a [u8], &'static str> {
        let prefix = self.prefix(wasm_sha256);
        if !bytes.starts_with(&prefix) {
            return Err("its header does not match this policy and engine");
        }
        let (content, digest) = bytes
            .split_last_chunk::<DIGEST_LEN>()
            .filter(|(content, _)| content.len() >= prefix.len())
            .ok_or("it is truncated")?;
        if Sha256::digest(content).as_slice() != digest {
            return Err("its checksum does not match (truncated or modified)");
        }
        Ok(&content[prefix.len()..])
    }
}

/// Creates `dir` (`0700`) if needed, and accepts it only if it is a directory owned by
/// `owner` and writable by no one else: whoever can write there can make us run code.
fn check_dir(dir: &Path, owner: u32) -> Result<(), String> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|error| format!("cannot create it: {error}"))?;
    let metadata = fs::metadata(dir).map_err(|error| format!("cannot inspect it: {error}"))?;
    if !metadata.is_dir() {
        return Err("it is not a directory".to_owned());
    }
    if metadata.uid() != owner {
        return Err(format!(
            "it is owned by uid {}, not by this process's uid {owner}",
            metadata.uid()
        ));
    }
    if metadata.mode() & WRITABLE_BY_OTHERS != 0 {
        return Err(format!(
            "it is writable by group or others (mode {:o}); it must be 0700",
            metadata.mode() & 0o7777
        ));
    }
    Ok(())
}

/// A short, stable name for what artifacts `engine` can load: its precompile
/// compatibility hash (wasmtime version, target, settings) and our artifact format.
fn engine_key(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher::default();
    FORMAT.hash(&mut hasher);
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex::encode(&hasher.0.finalize()[..8])
}

/// Feeds a `Hash` into sha256. `DefaultHasher` is not promised to be stable, and this
/// key names files that outlive the process.
#[derive(Default)]
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        let mut first = [0; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use wasmtime::Config;

    use super::*;

    /// The smallest component: the preamble alone. Enough to compile and serialize.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\x00\x01\x00";
    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn engine() -> Engine {
        crate::runtime::new_engine().unwrap()
    }

    fn cache(dir: &Path, engine: &Engine) -> Cache {
        Cache::open(dir.join("cache"), engine).unwrap()
    }

    fn stored(cache: &Cache, engine: &Engine) -> PathBuf {
        let component = Component::new(engine, EMPTY_COMPONENT).unwrap();
        cache.store(SHA, &component).unwrap()
    }

    #[test]
    fn creates_the_directory_private() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = cache(tmp.path(), &engine());
        let mode = fs::metadata(cache.dir()).unwrap().mode() & 0o777;
        assert_eq!(mode & !0o700, 0, "mode {mode:o}");
    }

    #[test]
    fn refuses_a_directory_others_can_write() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("open");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(Cache::open(dir, &engine()).is_none());
    }

    #[test]
    fn stored_artifacts_load() {
        let tmp = tempfile::tempdir().unwrap();
        let engine = engine();
        let cache = cache(tmp.path(), &engine);
        assert!(cache.load(&engine, "p", SHA).is_none());
        let path = stored(&cache, &engine);
        assert_eq!(path, cache.artifact_path(SHA));
        assert!(cache.load(&engine, "p", SHA).is_some());
    }

    #[test]
    fn flipped_or_truncated_artifacts_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let engine = engine();
        let cache = cache(tmp.path(), &engine);
        let path = stored(&cache, &engine);
        let good = fs::read(&path).unwrap();

        let mut flipped = good.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0xff;
        fs::write(&path, &flipped).unwrap();
        assert!(cache.load(&engine, "p", SHA).is_none());

        fs::write(&path, &good[..good.len() - 100]).unwrap();
        assert!(cache.load(&engine, "p", SHA).is_none());

        fs::write(&path, &good[..10]).unwrap();
        assert!(cache.load(&engine, "p", SHA).is_none());

        fs::write(&path, &good).unwrap();
        assert!(cache.load(&engine, "p", SHA).is_some());
    }

    #[test]
    fn an_artifact_is_bound_to_its_wasm() {
        let tmp = tempfile::tempdir().unwrap();
        let engine = engine();
        let cache = cache(tmp.path(), &engine);
        let path = stored(&cache, &engine);
        let other = SHA.replace('0', "f");
        fs::rename(&path, cache.artifact_path(&other)).unwrap();
        assert!(cache.load(&engine, "p", &other).is_none());
    }

    #[test]
    fn another_engine_configuration_has_another_key_and_its_code_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let ours = engine();
        // Without epoch interruption the compiled code has no deadline checks: loading it
        // would silently lift the time limit.
        let foreign = Engine::new(&Config::new()).unwrap();
        assert_ne!(engine_key(&ours), engine_key(&foreign));

        // Foreign code under our key, with a header and checksum that are all in order:
        // wasmtime's own compatibility check must still refuse it.
        let cache = cache(tmp.path(), &ours);
        let component = Component::new(&foreign, EMPTY_COMPONENT).unwrap();
        cache.store(SHA, &component).unwrap();
        assert!(cache.load(&ours, "p", SHA).is_none());
    }

    #[test]
    fn an_artifact_others_can_write_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let engine = engine();
        let cache = cache(tmp.path(), &engine);
        let path = stored(&cache, &engine);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        assert!(cache.load(&engine, "p", SHA).is_none());
    }
}
