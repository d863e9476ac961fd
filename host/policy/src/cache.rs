//! The compile cache: policies compiled by this runtime's own engine, kept on disk so
//! that a CNI invocation maps machine code instead of compiling a component.
//!
//! For each `.wasm` (by sha256) and engine, two files:
//! - `<wasm sha256>-<engine key>.cwasm`: wasmtime's serialized component, as wasmtime
//!   wrote it, so that it can be mapped into memory rather than read and copied;
//! - `<wasm sha256>-<engine key>.info`: what the artifact is (its `.wasm`, engine and own
//!   sha256), what was learnt when compiling it (the toolchain that made the policy and
//!   what its `metadata` returned, so that a load need not instantiate it to ask), and,
//!   once the artifact has been checked whole and has [settled](FileStamp::settled),
//!   its [stamp](FileStamp).
//!
//! And for each policy file, `<sha256 of its path>.source`: the sha256 of its content
//! under the stamp the file had when it was hashed.
//!
//! Loading a compiled component runs native code with no further checks. The cache is
//! used only if the directory and each file are ours alone (whoever can write there can
//! make us run code). Within that, the checksum guards against what we might do to our
//! own files: an artifact is used if its sha256 matches its `.info`, or if its stamp is
//! still the one it had when it last did, since any write since would have changed it.
//! So a Python or JavaScript policy (16–35 MB of artifact) costs a few `stat`s and a
//! mapping per invocation, not hashing and copying it all. Anything that does not check
//! out is recompiled.

use std::fs::{self, File, Metadata};
use std::hash::{Hash, Hasher};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use tracing::{debug, warn};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::stamp::FileStamp;
use crate::toolchain::Toolchain;
use crate::types::PolicyMetadata;

/// Names the artifact layout; part of the engine key too, so a new layout never reads an
/// old file. (Layout 1 wrapped the serialized component in a header and a checksum,
/// which kept it from being mapped; layout 2's `.info` had no metadata; layout 3's
/// artifacts kept the exports that `prune` now drops, so they load slower.)
const FORMAT: &str = "plexus-policy-cwasm-4";
/// The first line of a `.source` file.
const SOURCE_FORMAT: &str = "plexus-policy-source-1";
/// Permission bits that would let someone else write the directory or a file in it.
const WRITABLE_BY_OTHERS: u32 = 0o022;

pub(crate) struct Cache {
    dir: PathBuf,
    engine_key: String,
    owner: u32,
}

/// A compiled policy found in the cache.
pub(crate) struct Cached {
    pub(crate) component: Component,
    pub(crate) toolchain: Option<Toolchain>,
    /// What its `metadata` returned when it was compiled; `None` for versions without.
    pub(crate) metadata: Option<PolicyMetadata>,
}

/// What an artifact's `.info` says.
#[derive(Debug, PartialEq, Eq)]
struct Info {
    wasm_sha256: String,
    engine_key: String,
    /// The sha256 (hex) of the `.cwasm` as written.
    cwasm_sha256: String,
    toolchain: Option<Toolchain>,
    metadata: Option<PolicyMetadata>,
    /// The `.cwasm`'s stamp, once it was checked whole and had settled.
    stamp: Option<FileStamp>,
}

impl Info {
    fn to_text(&self) -> String {
        let optional = |value: Option<String>| value.unwrap_or_else(|| "-".to_owned());
        format!(
            "{FORMAT}\nwasm {}\nengine {}\ncwasm {}\ntoolchain {}\nmetadata {}\nstamp {}\n",
            self.wasm_sha256,
            self.engine_key,
            self.cwasm_sha256,
            optional(self.toolchain.map(|toolchain| toolchain.to_string())),
            optional(self.metadata.as_ref().map(metadata_to_text)),
            optional(self.stamp.map(|stamp| stamp.to_string())),
        )
    }

    fn parse(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        (lines.next()? == FORMAT).then_some(())?;
        let mut field = |name: &str| lines.next()?.strip_prefix(name)?.strip_prefix(' ');
        fn optional(value: &str) -> Option<&str> {
            (value != "-").then_some(value)
        }
        let info = Self {
            wasm_sha256: field("wasm")?.to_owned(),
            engine_key: field("engine")?.to_owned(),
            cwasm_sha256: field("cwasm")?.to_owned(),
            toolchain: optional(field("toolchain")?)
                .map(str::parse)
                .transpose()
                .ok()?,
            metadata: optional(field("metadata")?)
                .map(|text| metadata_from_text(text).ok_or(()))
                .transpose()
                .ok()?,
            stamp: optional(field("stamp")?).map(str::parse).transpose().ok()?,
        };
        lines.next().is_none().then_some(info)
    }
}

/// A policy's metadata on one line: its fields are the policy's own strings, which may
/// hold spaces or line breaks, so each is hex-encoded.
fn metadata_to_text(metadata: &PolicyMetadata) -> String {
    let PolicyMetadata {
        name,
        version,
        min_host_version,
    } = metadata;
    [name, version, min_host_version].map(hex::encode).join(" ")
}

fn metadata_from_text(text: &str) -> Option<PolicyMetadata> {
    let mut fields = text
        .split(' ')
        .map(|field| String::from_utf8(hex::decode(field).ok()?).ok());
    let metadata = PolicyMetadata {
        name: fields.next()??,
        version: fields.next()??,
        min_host_version: fields.next()??,
    };
    fields.next().is_none().then_some(metadata)
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

    fn info_path(&self, wasm_sha256: &str) -> PathBuf {
        self.artifact_path(wasm_sha256).with_extension("info")
    }

    /// Where what is known of the policy file at `path` lives: named by the sha256 of the
    /// path as given, so one file per policy path however often it changes.
    fn source_path(&self, path: &Path) -> PathBuf {
        let name = hex::encode(Sha256::digest(path.as_os_str().as_bytes()));
        self.dir.join(format!("{name}.source"))
    }

    /// The sha256 of the policy file at `path` as it was last hashed, if the file has
    /// not changed since (its stamp is the same): without reading the file.
    pub(crate) fn source_digest(&self, path: &Path) -> Option<String> {
        let stamp = FileStamp::of(&fs::metadata(path).ok()?);
        let index = self.source_path(path);
        let text = self.read_ours(&index).ok()?;
        let mut lines = text.lines();
        let known = lines.next() == Some(SOURCE_FORMAT)
            && lines.next().and_then(|line| line.strip_prefix("stamp "))
                == Some(&stamp.to_string());
        let sha256 = lines.next()?.strip_prefix("wasm ")?;
        (known && lines.next().is_none()).then(|| sha256.to_owned())
    }

    /// Remembers that the policy file at `path` had `sha256` when its stamp was `stamp`,
    /// taken at `taken_at` (before the file was read), if the file had settled by then:
    /// then any change since has changed its stamp. Failing to is only logged: the file
    /// is hashed again next time.
    pub(crate) fn remember_source(
        &self,
        path: &Path,
        stamp: FileStamp,
        taken_at: SystemTime,
        sha256: &str,
    ) {
        if !stamp.settled(taken_at) {
            return;
        }
        let index = self.source_path(path);
        let text = format!("{SOURCE_FORMAT}\nstamp {stamp}\nwasm {sha256}\n");
        if let Err(error) = self.write_atomically(&index, text.as_bytes(), false) {
            debug!(path = %path.display(), %error, "cannot remember the policy file's sha256");
        }
    }

    /// The cached component, or `None` when there is none or it cannot be trusted or
    /// loaded (logged): the caller compiles and stores it again.
    // Mapping a compiled component is unsafe in wasmtime (see the SAFETY comment).
    #[allow(unsafe_code)]
    pub(crate) fn load(&self, engine: &Engine, policy: &str, wasm_sha256: &str) -> Option<Cached> {
        let path = self.artifact_path(wasm_sha256);
        // Before the stamp is taken: see `FileStamp::settled`.
        let now = SystemTime::now();
        let (artifact, metadata) = match self.open_ours(&path) {
            Ok(opened) => opened,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                debug!(policy, path = %path.display(), "policy not in the compile cache");
                return None;
            }
            Err(error) => {
                warn!(policy, path = %path.display(), %error, "cannot read cached policy; recompiling");
                return None;
            }
        };
        let mut info = match self.info(wasm_sha256) {
            Ok(info) => info,
            Err(reason) => {
                warn!(policy, path = %path.display(), reason, "ignoring cached policy; recompiling");
                return None;
            }
        };
        let stamp = FileStamp::of(&metadata);
        if info.stamp != Some(stamp) {
            match sha256_hex(&artifact) {
                Ok(sha256) if sha256 == info.cwasm_sha256 => {}
                Ok(_) => {
                    warn!(policy, path = %path.display(), "ignoring corrupt cached policy (its checksum does not match: truncated or modified); recompiling");
                    return None;
                }
                Err(error) => {
                    warn!(policy, path = %path.display(), %error, "cannot read cached policy; recompiling");
                    return None;
                }
            }
            if stamp.settled(now) {
                info.stamp = Some(stamp);
                self.write_info(wasm_sha256, &info);
            }
        }
        // The file we checked, not whatever the path names by now.
        let mapped = format!("/proc/self/fd/{}", artifact.as_raw_fd());
        // SAFETY: `deserialize_file` maps the file and runs it as wasmtime's own output,
        // and the mapping must not change while the component lives. This file is what
        // `store` wrote: it was checked whole against the sha256 recorded beside it, now or
        // when its stamp was recorded, and its stamp says it has not been written since.
        // The directory and file are owned by us and writable by no one else, and we
        // never write an artifact in place (`write_atomically` renames a new file over
        // it, which leaves this inode, and so the mapping, as it is). Wasmtime itself
        // still refuses artifacts of another version or configuration.
        match unsafe { Component::deserialize_file(engine, &mapped) } {
            Ok(component) => Some(Cached {
                component,
                toolchain: info.toolchain,
                metadata: info.metadata,
            }),
            Err(error) => {
                warn!(policy, path = %path.display(), error = %format!("{error:#}"), "cannot load cached policy; recompiling");
                None
            }
        }
    }

    /// Writes `component`'s artifact and its `.info` (see [`write_atomically`]), with
    /// the toolchain that made it and what its `metadata` returned.
    ///
    /// [`write_atomically`]: Self::write_atomically
    pub(crate) fn store(
        &self,
        wasm_sha256: &str,
        component: &Component,
        toolchain: Option<Toolchain>,
        metadata: Option<&PolicyMetadata>,
    ) -> Result<PathBuf, String> {
        let serialized = component
            .serialize()
            .map_err(|error| format!("cannot serialize the compiled policy: {error:#}"))?;
        let path = self.artifact_path(wasm_sha256);
        self.write_atomically(&path, &serialized, true)
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
        let info = Info {
            wasm_sha256: wasm_sha256.to_owned(),
            engine_key: self.engine_key.clone(),
            cwasm_sha256: hex::encode(Sha256::digest(&serialized)),
            toolchain,
            metadata: metadata.cloned(),
            // Just written: it has not settled (the next loads check it whole until it has).
            stamp: None,
        };
        let info_path = self.info_path(wasm_sha256);
        self.write_atomically(&info_path, info.to_text().as_bytes(), false)
            .map_err(|error| format!("cannot write {}: {error}", info_path.display()))?;
        debug!(path = %path.display(), "stored compiled policy");
        Ok(path)
    }

    /// The `.info` of the artifact for this `.wasm`, if it is ours and for this engine.
    fn info(&self, wasm_sha256: &str) -> Result<Info, String> {
        let text = self
            .read_ours(&self.info_path(wasm_sha256))
            .map_err(|error| format!("cannot read its .info: {error}"))?;
        let info = Info::parse(&text).ok_or("its .info is malformed")?;
        if info.wasm_sha256 != wasm_sha256 || info.engine_key != self.engine_key {
            return Err("its .info is of another policy or engine".to_owned());
        }
        Ok(info)
    }

    /// Rewrites an artifact's `.info`; failing to is only logged, as it only costs the
    /// next load a check of the whole artifact.
    fn write_info(&self, wasm_sha256: &str, info: &Info) {
        let path = self.info_path(wasm_sha256);
        if let Err(error) = self.write_atomically(&path, info.to_text().as_bytes(), false) {
            debug!(path = %path.display(), %error, "cannot record the cached policy's stamp");
        }
    }

    /// Writes `contents` to `path` whole or not at all: a temporary file in the same
    /// directory, renamed over `path`, so that a concurrent reader sees the old file or
    /// the new one, whole, and a file already mapped is never written (`durable`: synced
    /// before the rename, for artifacts, whose content is trusted by stamp).
    fn write_atomically(&self, path: &Path, contents: &[u8], durable: bool) -> io::Result<()> {
        let mut file = tempfile::Builder::new()
            .prefix(".")
            .suffix(".tmp")
            .tempfile_in(&self.dir)?;
        file.write_all(contents)?;
        if durable {
            file.as_file().sync_all()?;
        }
        file.persist(path)?;
        Ok(())
    }

    /// Opens `path`, if it is a regular file that only we can write; checked on the open
    /// file, so it is the file then read.
    fn open_ours(&self, path: &Path) -> io::Result<(File, Metadata)> {
        let file = File::open(path)?;
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
        Ok((file, metadata))
    }

    /// The text of a small file of ours ([`open_ours`](Self::open_ours)).
    fn read_ours(&self, path: &Path) -> io::Result<String> {
        let (mut file, _) = self.open_ours(path)?;
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        Ok(text)
    }
}

/// The sha256 (hex) of what is left to read of `file`.
fn sha256_hex(mut file: &File) -> io::Result<String> {
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
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
    use std::time::Duration;

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
        cache.store(SHA, &component, None, None).unwrap()
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

        // Foreign code under our key, with a checksum that is in order:
        // wasmtime's own compatibility check must still refuse it.
        let cache = cache(tmp.path(), &ours);
        let component = Component::new(&foreign, EMPTY_COMPONENT).unwrap();
        cache.store(SHA, &component, None, None).unwrap();
        assert!(cache.load(&ours, "p", SHA).is_none());
    }

    #[test]
    fn the_toolchain_and_metadata_are_kept_with_the_artifact() {
        let tmp = tempfile::tempdir().unwrap();
        let engine = engine();
        let cache = cache(tmp.path(), &engine);
        let component = Component::new(&engine, EMPTY_COMPONENT).unwrap();
        let metadata = PolicyMetadata {
            name: "by namespace\nand more".to_owned(),
            version: "1.2.3".to_owned(),
            min_host_version: "0.4.0".to_owned(),
        };
        cache
            .store(SHA, &component, Some(Toolchain::Python), Some(&metadata))
            .unwrap();
        let cached = cache.load(&engine, "p", SHA).unwrap();
        assert_eq!(cached.toolchain, Some(Toolchain::Python));
        assert_eq!(cached.metadata, Some(metadata));
    }

    #[test]
    fn an_artifact_without_its_info_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let engine = engine();
        let cache = cache(tmp.path(), &engine);
        stored(&cache, &engine);
        fs::remove_file(cache.info_path(SHA)).unwrap();
        assert!(cache.load(&engine, "p", SHA).is_none());
    }

    #[test]
    fn info_reads_back_as_written() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let info = Info {
            wasm_sha256: SHA.to_owned(),
            engine_key: "0011223344556677".to_owned(),
            cwasm_sha256: SHA.replace('0', "e"),
            toolchain: Some(Toolchain::JavaScript),
            metadata: Some(PolicyMetadata {
                name: "two words".to_owned(),
                version: "1.0.0".to_owned(),
                min_host_version: "0.2.0".to_owned(),
            }),
            stamp: Some(FileStamp::of(&tmp.as_file().metadata().unwrap())),
        };
        assert_eq!(Info::parse(&info.to_text()), Some(info));
        let bare = Info {
            wasm_sha256: SHA.to_owned(),
            engine_key: "0011223344556677".to_owned(),
            cwasm_sha256: SHA.to_owned(),
            toolchain: None,
            metadata: None,
            stamp: None,
        };
        assert_eq!(Info::parse(&bare.to_text()), Some(bare));
        assert_eq!(Info::parse("plexus-policy-cwasm-2\nwasm x\n"), None);
    }

    /// A policy file in `dir` and when it is taken to have been read: an hour later, so
    /// that it has settled (the real clock is for the integration tests).
    fn policy_file(dir: &Path, content: &[u8]) -> (PathBuf, FileStamp, SystemTime) {
        let path = dir.join("policy.wasm");
        fs::write(&path, content).unwrap();
        let stamp = FileStamp::of(&fs::metadata(&path).unwrap());
        (path, stamp, SystemTime::now() + Duration::from_secs(3600))
    }

    #[test]
    fn a_settled_policy_file_is_known_by_its_stamp_until_it_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = cache(tmp.path(), &engine());
        let (path, stamp, later) = policy_file(tmp.path(), b"first");
        assert_eq!(cache.source_digest(&path), None);
        cache.remember_source(&path, stamp, later, SHA);
        assert_eq!(cache.source_digest(&path).as_deref(), Some(SHA));

        // Replaced by rename: another inode (the old one still open, so not reused).
        let _old = File::open(&path).unwrap();
        let new = tmp.path().join("new.wasm");
        fs::write(&new, b"other").unwrap();
        fs::rename(&new, &path).unwrap();
        assert_eq!(cache.source_digest(&path), None);
    }

    #[test]
    fn a_policy_file_read_before_it_settled_is_not_remembered() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = cache(tmp.path(), &engine());
        let (path, stamp, _) = policy_file(tmp.path(), b"fresh");
        cache.remember_source(&path, stamp, SystemTime::now(), SHA);
        assert_eq!(cache.source_digest(&path), None);
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
