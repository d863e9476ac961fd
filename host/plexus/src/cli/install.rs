//! `plexus install` and `plexus uninstall`: put Plexus on a node as its runtime's pod
//! network, and take it off again.
//!
//! Both verbs live in this one file because uninstall is defined by what install
//! recorded: the manifest, the file names, the marker and the checks that tell "ours"
//! from "someone else's" are one contract, and splitting them would split it.
//!
//! Install writes, in this order (so a runtime never points at a missing plugin):
//! the manifest (`CONF_DIR/.plexus-install`, no config extension, so no runtime or
//! Plexus reads it as a network), the binary (`BIN_DIR/plexus`), the `plexus-ipam`
//! symlink, then `CONF_DIR/00-plexus.conflist`. Every file is written beside its
//! destination under a name no runtime reads, synced, and renamed over: a runtime
//! running the old binary keeps its inode, one starting it gets the old or the new
//! whole, and the binary is never opened for writing where it runs ("text file busy").
//!
//! Uninstall removes the conflist first (the runtime goes back to the previous network
//! at once), then the link and the binary — each only if it is still what install
//! wrote — and the manifest last, so an interrupted uninstall can be run again.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::CliResult;
use crate::config::POD_ANNOTATIONS_CAPABILITY;
use crate::networks::{self, NetworksError};

/// The conflist install writes: `00-` so that it sorts first, which is what makes it
/// the runtime's pod network (containerd and CRI-O take the first file by name).
pub const CONFLIST_FILE: &str = "00-plexus.conflist";
/// What install wrote, for uninstall. No `.conf`/`.conflist`/`.json` ending: runtimes
/// and Plexus' own network scan skip it.
pub const MANIFEST_FILE: &str = ".plexus-install";
/// The top-level key of the conflist that says install wrote it (libcni and Plexus
/// ignore unknown top-level keys of a conflist).
pub const MARKER_KEY: &str = "plexus.io/installed-by";
const BINARY_FILE: &str = "plexus";
const IPAM_LINK_FILE: &str = "plexus-ipam";
/// The conflist's network name.
const NETWORK_NAME: &str = "plexus";
const MANIFEST_VERSION: u32 = 1;

#[derive(Args)]
pub struct InstallArgs {
    /// Where the runtime looks for CNI plugins.
    #[arg(long, default_value = "/opt/cni/bin")]
    bin_dir: PathBuf,
    /// Where the runtime reads its CNI configurations.
    #[arg(long, default_value = "/etc/cni/net.d")]
    conf_dir: PathBuf,
    /// `stateDir` of the written configuration; Plexus' default when not given.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// `logFile` of the written configuration; stderr (the runtime's log) when not given.
    #[arg(long)]
    log_file: Option<PathBuf>,
    /// Print what would be written, and write nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Args)]
pub struct UninstallArgs {
    /// Where install put the binary; the manifest's directory when not given (given,
    /// it must be that one).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Where install wrote the conflist and its manifest.
    #[arg(long, default_value = "/etc/cni/net.d")]
    conf_dir: PathBuf,
    /// Print what would be removed, and remove nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot tell where this plexus binary is: {0}")]
    OwnBinary(#[source] io::Error),
    #[error(transparent)]
    Networks(#[from] NetworksError),
    #[error(
        "no CNI network in {}: install makes the runtime's current pod network Plexus' default network, so one must be configured first",
        dir.display()
    )]
    NoNetwork { dir: PathBuf },
    #[error(
        "{} would be the default network but cannot be used: {reason}",
        path.display()
    )]
    BrokenNetwork { path: PathBuf, reason: String },
    #[error(
        "{} exists and was not written by plexus install (no `{MARKER_KEY}` key); move it away first",
        path.display()
    )]
    Foreign { path: PathBuf },
    #[error(
        "{} sorts before {CONFLIST_FILE}: the runtime would keep using it as the pod network; rename it (or move it away) first",
        path.display()
    )]
    SortsFirst { path: PathBuf },
    #[error("manifest {}: {reason}", path.display())]
    Manifest { path: PathBuf, reason: String },
    #[error(
        "plexus was installed into {}, not {}",
        installed.display(),
        given.display()
    )]
    OtherBinDir { installed: PathBuf, given: PathBuf },
}

/// What install wrote, as recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Manifest {
    version: u32,
    /// The Plexus version that installed.
    plexus_version: String,
    bin_dir: PathBuf,
    conf_dir: PathBuf,
    /// The binary and the sha256 of what was written.
    binary: InstalledFile,
    /// The `plexus-ipam` symlink and its target.
    ipam_link: InstalledLink,
    conflist: InstalledFile,
    /// The network that was the runtime's before, now Plexus' default network.
    previous_network: PreviousNetwork,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InstalledFile {
    path: PathBuf,
    sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InstalledLink {
    path: PathBuf,
    target: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PreviousNetwork {
    file: String,
    name: String,
    cni_version: String,
}

/// Where install puts things and what it puts in the conflist.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    pub bin_dir: PathBuf,
    pub conf_dir: PathBuf,
    pub state_dir: Option<PathBuf>,
    pub log_file: Option<PathBuf>,
}

/// Everything install will write, decided before anything is.
#[derive(Debug)]
struct InstallPlan {
    source: PathBuf,
    manifest: Manifest,
    manifest_bytes: Vec<u8>,
    conflist_bytes: Vec<u8>,
    /// Whether an earlier install's conflist is replaced.
    replaces: bool,
}

pub fn run_install(args: &InstallArgs) -> CliResult {
    let source = std::env::current_exe().map_err(InstallError::OwnBinary)?;
    let options = InstallOptions {
        bin_dir: args.bin_dir.clone(),
        conf_dir: args.conf_dir.clone(),
        state_dir: args.state_dir.clone(),
        log_file: args.log_file.clone(),
    };
    install(&source, &options, args.dry_run, &mut io::stdout().lock())?;
    Ok(ExitCode::SUCCESS)
}

pub fn run_uninstall(args: &UninstallArgs) -> CliResult {
    uninstall(
        &args.conf_dir,
        args.bin_dir.as_deref(),
        args.dry_run,
        &mut io::stdout().lock(),
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Installs `source` (the plexus binary) and the conflist per `options`; with `dry_run`
/// only says what it would write. What was done is told on `out`.
pub fn install(
    source: &Path,
    options: &InstallOptions,
    dry_run: bool,
    out: &mut dyn Write,
) -> Result<(), InstallError> {
    let plan = plan_install(source, options)?;
    let manifest = &plan.manifest;
    let say = |out: &mut dyn Write, line: String| {
        // stdout going away (a closed pipe) must not undo an install half-way.
        let _ = writeln!(out, "{line}");
    };
    if dry_run {
        say(
            out,
            format!(
                "would write {} (a copy of {}, sha256 {})",
                manifest.binary.path.display(),
                source.display(),
                manifest.binary.sha256
            ),
        );
        say(
            out,
            format!(
                "would link {} -> {}",
                manifest.ipam_link.path.display(),
                manifest.ipam_link.target.display()
            ),
        );
        let verb = if plan.replaces { "replace" } else { "write" };
        say(
            out,
            format!("would {verb} {}:", manifest.conflist.path.display()),
        );
        say(
            out,
            String::from_utf8_lossy(&plan.conflist_bytes).into_owned(),
        );
        let manifest_path = options_manifest_path(&manifest.conf_dir);
        say(out, format!("would write {}:", manifest_path.display()));
        say(
            out,
            String::from_utf8_lossy(&plan.manifest_bytes).into_owned(),
        );
        return Ok(());
    }
    apply_install(&plan)?;
    tracing::info!(conf_dir = %manifest.conf_dir.display(), bin_dir = %manifest.bin_dir.display(), default_network = %manifest.previous_network.name, "installed");
    say(
        out,
        format!(
            "installed {} and {}",
            manifest.binary.path.display(),
            manifest.ipam_link.path.display()
        ),
    );
    say(
        out,
        format!(
            "{} {}: pods get {:?} (from {}) as eth0, plus the networks they are annotated with",
            if plan.replaces { "replaced" } else { "wrote" },
            manifest.conflist.path.display(),
            manifest.previous_network.name,
            manifest.previous_network.file
        ),
    );
    Ok(())
}

fn options_manifest_path(conf_dir: &Path) -> PathBuf {
    conf_dir.join(MANIFEST_FILE)
}

fn plan_install(source: &Path, options: &InstallOptions) -> Result<InstallPlan, InstallError> {
    let absolute = |path: &Path| {
        std::path::absolute(path).map_err(|source| InstallError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let bin_dir = absolute(&options.bin_dir)?;
    let conf_dir = absolute(&options.conf_dir)?;
    let conflist_path = conf_dir.join(CONFLIST_FILE);
    let replaces = match fs::read(&conflist_path) {
        Ok(bytes) if has_marker(&bytes) => true,
        Ok(_) => {
            return Err(InstallError::Foreign {
                path: conflist_path,
            });
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => false,
        Err(source) => {
            return Err(InstallError::Read {
                path: conflist_path,
                source,
            });
        }
    };
    let previous = previous_network(&conf_dir)?;
    let conflist = conflist(&previous, &conf_dir, options);
    let conflist_bytes = pretty(&conflist);
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        plexus_version: env!("CARGO_PKG_VERSION").to_owned(),
        binary: InstalledFile {
            path: bin_dir.join(BINARY_FILE),
            sha256: sha256_of_file(source)?,
        },
        ipam_link: InstalledLink {
            path: bin_dir.join(IPAM_LINK_FILE),
            // Relative, so the link follows the binary if the directory is mounted
            // elsewhere (a node image, a container's view of the host).
            target: PathBuf::from(BINARY_FILE),
        },
        conflist: InstalledFile {
            path: conflist_path,
            sha256: hex::encode(Sha256::digest(&conflist_bytes)),
        },
        previous_network: previous,
        bin_dir,
        conf_dir,
    };
    let manifest_bytes =
        serde_json::to_vec_pretty(&manifest).map_err(|error| InstallError::Manifest {
            path: options_manifest_path(&manifest.conf_dir),
            reason: error.to_string(),
        })?;
    Ok(InstallPlan {
        source: source.to_owned(),
        manifest,
        manifest_bytes,
        conflist_bytes,
        replaces,
    })
}

fn apply_install(plan: &InstallPlan) -> Result<(), InstallError> {
    let manifest = &plan.manifest;
    fs::create_dir_all(&manifest.bin_dir).map_err(|source| InstallError::Write {
        path: manifest.bin_dir.clone(),
        source,
    })?;
    // The manifest first: an install cut short leaves files uninstall knows of.
    write_atomically(&options_manifest_path(&manifest.conf_dir), 0o600, |file| {
        file.write_all(&plan.manifest_bytes)
    })?;
    let mut source = fs::File::open(&plan.source).map_err(|error| InstallError::Read {
        path: plan.source.clone(),
        source: error,
    })?;
    write_atomically(&manifest.binary.path, 0o755, |file| {
        io::copy(&mut source, file).map(drop)
    })?;
    link_atomically(&manifest.ipam_link.path, &manifest.ipam_link.target)?;
    // Last: the runtime switches to Plexus only once the plugin is in place.
    write_atomically(&manifest.conflist.path, 0o644, |file| {
        file.write_all(&plan.conflist_bytes)
    })
}

/// The runtime's pod network before install: the first configuration file by name, as
/// libcni (containerd, CRI-O) picks it — Plexus' own and CNI-Genie's skipped. Fails
/// if a file other than ours sorts before [`CONFLIST_FILE`], since then the runtime
/// would never use Plexus.
fn previous_network(conf_dir: &Path) -> Result<PreviousNetwork, InstallError> {
    let scanned = networks::scan(conf_dir)?;
    let first_usable = scanned.usable.first();
    let first_broken = scanned.broken.first();
    let first_file = [
        first_usable.map(|network| network.file.as_str()),
        first_broken.map(|broken| broken.file.as_str()),
    ]
    .into_iter()
    .flatten()
    .min()
    .ok_or_else(|| InstallError::NoNetwork {
        dir: conf_dir.to_owned(),
    })?;
    if first_file < CONFLIST_FILE {
        return Err(InstallError::SortsFirst {
            path: conf_dir.join(first_file),
        });
    }
    if let Some(broken) = first_broken.filter(|broken| broken.file == first_file) {
        return Err(InstallError::BrokenNetwork {
            path: conf_dir.join(&broken.file),
            reason: broken.reason.clone(),
        });
    }
    let Some(network) = first_usable else {
        return Err(InstallError::NoNetwork {
            dir: conf_dir.to_owned(),
        });
    };
    let path = conf_dir.join(&network.file);
    // The file's own `cniVersion`, as written: the runtime already speaks it. A file
    // with only `cniVersions` gets the version Plexus reads it at.
    let bytes = fs::read(&path).map_err(|source| InstallError::Read {
        path: path.clone(),
        source,
    })?;
    let cni_version = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|document| document.get("cniVersion")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| network.config.cni_version.to_string());
    Ok(PreviousNetwork {
        file: network.file.clone(),
        name: network.config.name.clone(),
        cni_version,
    })
}

/// The conflist that makes Plexus the pod network, with `previous` as every pod's
/// default network (what Multus' auto-configuration does).
fn conflist(previous: &PreviousNetwork, conf_dir: &Path, options: &InstallOptions) -> Value {
    let mut plugin = Map::new();
    plugin.insert("type".into(), json!("plexus"));
    // The previous network's file stays where it is, so Plexus finds it as a delegate.
    plugin.insert("networksDir".into(), json!(conf_dir));
    plugin.insert("defaultNetworks".into(), json!([previous.name]));
    plugin.insert(
        "capabilities".into(),
        capabilities(&conf_dir.join(&previous.file)),
    );
    if let Some(state_dir) = &options.state_dir {
        plugin.insert("stateDir".into(), json!(state_dir));
    }
    if let Some(log_file) = &options.log_file {
        plugin.insert("logFile".into(), json!(log_file));
    }
    json!({
        "cniVersion": previous.cni_version,
        "name": NETWORK_NAME,
        MARKER_KEY: { "command": "plexus install", "version": env!("CARGO_PKG_VERSION") },
        "plugins": [plugin],
    })
}

/// The pod-annotations capability, plus every capability the previous network's
/// plugins declared (port mappings, bandwidth, …): the runtime fills in only what the
/// first plugin of the conflist declares, and Plexus hands it to the first attachment,
/// which is the previous network.
fn capabilities(previous_file: &Path) -> Value {
    let mut capabilities = Map::new();
    capabilities.insert(POD_ANNOTATIONS_CAPABILITY.into(), Value::Bool(true));
    let document: Option<Value> = fs::read(previous_file)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let plugins: Vec<&Value> = match &document {
        Some(document) => match document.get("plugins").and_then(Value::as_array) {
            Some(plugins) => plugins.iter().collect(),
            None => vec![document],
        },
        None => Vec::new(),
    };
    for plugin in plugins {
        if let Some(declared) = plugin.get("capabilities").and_then(Value::as_object) {
            for (name, enabled) in declared {
                if enabled == &Value::Bool(true) {
                    capabilities.insert(name.clone(), Value::Bool(true));
                }
            }
        }
    }
    Value::Object(capabilities)
}

fn has_marker(bytes: &[u8]) -> bool {
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .is_some_and(|document| document.get(MARKER_KEY).is_some())
}

fn pretty(value: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

fn sha256_of_file(path: &Path) -> Result<String, InstallError> {
    let read_error = |source| InstallError::Read {
        path: path.to_owned(),
        source,
    };
    let mut file = fs::File::open(path).map_err(read_error)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = file.read(&mut buffer).map_err(read_error)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// A name beside `path` that no runtime reads as a configuration or runs as a plugin:
/// hidden, and ending in `.plexus-new`.
fn temp_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.plexus-new"))
}

/// Writes `path` whole or not at all: `fill` writes a temp file beside it, which is
/// synced, given `mode` and renamed over `path`; then the directory is synced.
fn write_atomically(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut fs::File) -> io::Result<()>,
) -> Result<(), InstallError> {
    let temp = temp_beside(path);
    let write_error = |source| InstallError::Write {
        path: path.to_owned(),
        source,
    };
    // A temp file an earlier install left when it was cut short.
    remove_if_present(&temp).map_err(write_error)?;
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        fill(&mut file)?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, path)?;
        sync_parent(path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.map_err(write_error)
}

/// Points the symlink `path` at `target` by renaming a new link over it.
fn link_atomically(path: &Path, target: &Path) -> Result<(), InstallError> {
    let temp = temp_beside(path);
    let write_error = |source| InstallError::Write {
        path: path.to_owned(),
        source,
    };
    remove_if_present(&temp).map_err(write_error)?;
    std::os::unix::fs::symlink(target, &temp).map_err(write_error)?;
    fs::rename(&temp, path)
        .and_then(|()| sync_parent(path))
        .map_err(|source| {
            let _ = fs::remove_file(&temp);
            write_error(source)
        })
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// Makes a rename or removal in `path`'s directory durable.
fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) => fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// What uninstall does with one installed file.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Remove,
    /// Left in place, and why.
    Keep(String),
    Gone,
}

/// Removes what install wrote into `conf_dir` (and the bin dir it recorded): each file
/// only while it is still what install wrote. With no manifest there is nothing to do,
/// which is not an error, so uninstall can be run again after it was cut short.
pub fn uninstall(
    conf_dir: &Path,
    bin_dir: Option<&Path>,
    dry_run: bool,
    out: &mut dyn Write,
) -> Result<(), InstallError> {
    let manifest_path = options_manifest_path(conf_dir);
    let bytes = match fs::read(&manifest_path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            let _ = writeln!(
                out,
                "nothing to uninstall: no {} (plexus install writes it)",
                manifest_path.display()
            );
            return Ok(());
        }
        Err(source) => {
            return Err(InstallError::Read {
                path: manifest_path,
                source,
            });
        }
    };
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|error| InstallError::Manifest {
            path: manifest_path.clone(),
            reason: error.to_string(),
        })?;
    if manifest.version != MANIFEST_VERSION {
        return Err(InstallError::Manifest {
            path: manifest_path,
            reason: format!(
                "version {} (this plexus reads {MANIFEST_VERSION})",
                manifest.version
            ),
        });
    }
    if let Some(given) = bin_dir {
        let given = std::path::absolute(given).map_err(|source| InstallError::Read {
            path: given.to_owned(),
            source,
        })?;
        if given != manifest.bin_dir {
            return Err(InstallError::OtherBinDir {
                installed: manifest.bin_dir,
                given,
            });
        }
    }
    // The conflist first: the runtime takes its previous network back at once, before
    // the plugin it named goes away.
    let steps = [
        (
            manifest.conflist.path.clone(),
            conflist_verdict(&manifest.conflist.path)?,
        ),
        (
            manifest.ipam_link.path.clone(),
            link_verdict(&manifest.ipam_link)?,
        ),
        (
            manifest.binary.path.clone(),
            file_verdict(&manifest.binary)?,
        ),
        (manifest_path.clone(), Verdict::Remove),
    ];
    for (path, verdict) in steps {
        let shown = path.display();
        match verdict {
            Verdict::Remove if dry_run => {
                let _ = writeln!(out, "would remove {shown}");
            }
            Verdict::Remove => {
                remove_if_present(&path)
                    .and_then(|()| sync_parent(&path))
                    .map_err(|source| InstallError::Write {
                        path: path.clone(),
                        source,
                    })?;
                let _ = writeln!(out, "removed {shown}");
            }
            Verdict::Keep(reason) => {
                tracing::warn!(path = %shown, reason, "left in place");
                let prefix = if dry_run { "would leave" } else { "left" };
                let _ = writeln!(out, "{prefix} {shown}: {reason}");
            }
            Verdict::Gone => {
                let _ = writeln!(out, "already gone: {shown}");
            }
        }
    }
    Ok(())
}

/// The conflist is ours while it carries the marker, also if an operator edited it
/// since: leaving it would keep the runtime on a plugin that is being removed.
fn conflist_verdict(path: &Path) -> Result<Verdict, InstallError> {
    match read_if_present(path)? {
        None => Ok(Verdict::Gone),
        Some(bytes) if has_marker(&bytes) => Ok(Verdict::Remove),
        Some(_) => Ok(Verdict::Keep(format!(
            "not written by plexus install (no `{MARKER_KEY}` key)"
        ))),
    }
}

fn link_verdict(link: &InstalledLink) -> Result<Verdict, InstallError> {
    match fs::read_link(&link.path) {
        Ok(target) if target == link.target => Ok(Verdict::Remove),
        Ok(target) => Ok(Verdict::Keep(format!(
            "points at {}, not {} as installed",
            target.display(),
            link.target.display()
        ))),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Verdict::Gone),
        // Not a symlink (EINVAL): a file someone put there.
        Err(error) if error.kind() == io::ErrorKind::InvalidInput => {
            Ok(Verdict::Keep("not the symlink install made".to_owned()))
        }
        Err(source) => Err(InstallError::Read {
            path: link.path.clone(),
            source,
        }),
    }
}

fn file_verdict(file: &InstalledFile) -> Result<Verdict, InstallError> {
    match fs::symlink_metadata(&file.path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Verdict::Gone),
        Err(source) => {
            return Err(InstallError::Read {
                path: file.path.clone(),
                source,
            });
        }
        Ok(metadata) if !metadata.is_file() => {
            return Ok(Verdict::Keep("not the file install wrote".to_owned()));
        }
        Ok(_) => {}
    }
    if sha256_of_file(&file.path)? == file.sha256 {
        Ok(Verdict::Remove)
    } else {
        Ok(Verdict::Keep(
            "changed since install (another build was put there)".to_owned(),
        ))
    }
}

fn read_if_present(path: &Path) -> Result<Option<Vec<u8>>, InstallError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(InstallError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::process::Command;

    struct Node {
        dir: tempfile::TempDir,
    }

    impl Node {
        fn new() -> Self {
            let node = Self {
                dir: tempfile::tempdir().expect("temp dir"),
            };
            fs::create_dir_all(node.conf()).expect("conf dir");
            node
        }

        fn conf(&self) -> PathBuf {
            self.dir.path().join("net.d")
        }

        fn bin(&self) -> PathBuf {
            self.dir.path().join("bin")
        }

        fn options(&self) -> InstallOptions {
            InstallOptions {
                bin_dir: self.bin(),
                conf_dir: self.conf(),
                state_dir: Some(self.dir.path().join("state")),
                log_file: None,
            }
        }

        fn write(&self, file: &str, content: &Value) {
            fs::write(self.conf().join(file), content.to_string()).expect("write");
        }

        fn write_network(&self) {
            self.write(
                "10-testbr.conflist",
                &json!({"cniVersion": "0.4.0", "name": "testbr", "plugins": [
                    {"type": "bridge", "bridge": "br0", "ipam": {"type": "host-local", "subnet": "10.1.0.0/24"}},
                    {"type": "portmap", "capabilities": {"portMappings": true, "other": false}},
                ]}),
            );
            self.write(
                "20-second.conf",
                &json!({"cniVersion": "1.0.0", "name": "second", "type": "ptp"}),
            );
        }

        /// Every file under the node's directory and its content (a link's target).
        fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
            let mut found = BTreeMap::new();
            let mut pending = vec![self.dir.path().to_owned()];
            while let Some(dir) = pending.pop() {
                for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
                    let path = entry.path();
                    let kind = entry.file_type().expect("file type");
                    if kind.is_dir() {
                        pending.push(path);
                    } else if kind.is_symlink() {
                        let target = fs::read_link(&path).expect("link");
                        found.insert(path, target.into_os_string().into_encoded_bytes());
                    } else {
                        found.insert(path.clone(), fs::read(&path).expect("read"));
                    }
                }
            }
            found
        }

        fn install(&self, source: &Path) -> Result<String, InstallError> {
            let mut out = Vec::new();
            install(source, &self.options(), false, &mut out)?;
            Ok(String::from_utf8_lossy(&out).into_owned())
        }

        fn uninstall(&self, dry_run: bool) -> String {
            let mut out = Vec::new();
            uninstall(&self.conf(), Some(&self.bin()), dry_run, &mut out).expect("uninstall");
            String::from_utf8_lossy(&out).into_owned()
        }
    }

    /// A stand-in for the plexus binary: a small executable of the test's own.
    fn fake_binary(dir: &Path, content: &[u8]) -> PathBuf {
        let path = dir.join(format!("source-{}", hex::encode(Sha256::digest(content))));
        fs::write(&path, content).expect("write source");
        path
    }

    #[test]
    fn install_writes_the_binary_the_link_and_a_conflist_over_the_previous_network() {
        let node = Node::new();
        node.write_network();
        let source = fake_binary(node.dir.path(), b"binary one");
        let said = node.install(&source).expect("install");
        assert!(said.contains("testbr"), "{said}");

        let binary = node.bin().join("plexus");
        assert_eq!(fs::read(&binary).expect("binary"), b"binary one");
        let mode = fs::metadata(&binary)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            fs::read_link(node.bin().join("plexus-ipam")).expect("link"),
            Path::new("plexus")
        );
        let conflist: Value =
            serde_json::from_slice(&fs::read(node.conf().join(CONFLIST_FILE)).expect("conflist"))
                .expect("JSON");
        assert_eq!(
            conflist["cniVersion"], "0.4.0",
            "the previous file's version"
        );
        assert!(conflist.get(MARKER_KEY).is_some());
        let plugin = &conflist["plugins"][0];
        assert_eq!(plugin["type"], "plexus");
        assert_eq!(plugin["defaultNetworks"], json!(["testbr"]));
        assert_eq!(plugin["networksDir"], json!(node.conf()));
        assert_eq!(plugin["stateDir"], json!(node.dir.path().join("state")));
        assert_eq!(
            plugin["capabilities"],
            json!({POD_ANNOTATIONS_CAPABILITY: true, "portMappings": true})
        );
        // Plexus itself reads the written configuration (its own file skipped).
        let scanned = networks::scan(&node.conf()).expect("scan");
        let files: Vec<&str> = scanned.usable.iter().map(|n| n.file.as_str()).collect();
        assert_eq!(files, ["10-testbr.conflist", "20-second.conf"]);
        // No temp file is left beside anything.
        let leftovers: Vec<_> = node
            .snapshot()
            .into_keys()
            .filter(|path| path.to_string_lossy().ends_with(".plexus-new"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn dry_run_writes_nothing_and_says_what_it_would() {
        let node = Node::new();
        node.write_network();
        let source = fake_binary(node.dir.path(), b"binary");
        let before = node.snapshot();
        let mut out = Vec::new();
        install(&source, &node.options(), true, &mut out).expect("dry run");
        assert_eq!(node.snapshot(), before, "a dry run writes nothing");
        let said = String::from_utf8_lossy(&out);
        for expected in [
            "would write",
            "plexus-ipam",
            CONFLIST_FILE,
            "defaultNetworks",
            MANIFEST_FILE,
        ] {
            assert!(said.contains(expected), "{expected:?} missing from {said}");
        }

        node.install(&source).expect("install");
        let installed = node.snapshot();
        let said = node.uninstall(true);
        assert_eq!(
            node.snapshot(),
            installed,
            "a dry uninstall removes nothing"
        );
        assert!(said.contains("would remove"), "{said}");
    }

    #[test]
    fn uninstall_removes_what_install_wrote_and_leaves_foreign_files_alone() {
        let node = Node::new();
        node.write_network();
        fs::create_dir_all(node.bin()).expect("bin");
        fs::write(node.bin().join("bridge"), b"someone else's plugin").expect("write");
        let source = fake_binary(node.dir.path(), b"binary");
        let before = node.snapshot();
        node.install(&source).expect("install");
        // Things appearing after install that are not install's.
        node.write(
            "30-later.conflist",
            &json!({"cniVersion": "1.0.0", "name": "later", "plugins": [{"type": "ptp"}]}),
        );
        fs::write(node.bin().join("other"), b"another plugin").expect("write");

        let said = node.uninstall(false);
        assert!(said.contains("removed"), "{said}");
        let mut expected = before;
        expected.insert(
            node.conf().join("30-later.conflist"),
            fs::read(node.conf().join("30-later.conflist")).expect("read"),
        );
        expected.insert(node.bin().join("other"), b"another plugin".to_vec());
        assert_eq!(node.snapshot(), expected);

        let again = node.uninstall(false);
        assert!(again.contains("nothing to uninstall"), "{again}");
    }

    #[test]
    fn uninstall_leaves_a_binary_replaced_since_and_a_conflist_that_is_not_ours() {
        let node = Node::new();
        node.write_network();
        let source = fake_binary(node.dir.path(), b"binary");
        node.install(&source).expect("install");
        fs::write(node.bin().join("plexus"), b"a newer build").expect("replace");
        fs::write(node.conf().join(CONFLIST_FILE), b"{\"hand\": \"written\"}").expect("replace");

        let said = node.uninstall(false);
        assert!(said.contains("changed since install"), "{said}");
        assert!(said.contains("not written by plexus install"), "{said}");
        assert_eq!(
            fs::read(node.bin().join("plexus")).expect("kept"),
            b"a newer build"
        );
        assert!(node.conf().join(CONFLIST_FILE).exists());
        assert!(
            !node.bin().join("plexus-ipam").exists(),
            "the link was ours"
        );
        assert!(!node.conf().join(MANIFEST_FILE).exists());
    }

    #[test]
    fn install_refuses_a_conflist_it_did_not_write_and_replaces_its_own() {
        let node = Node::new();
        node.write_network();
        let source = fake_binary(node.dir.path(), b"binary");
        fs::write(node.conf().join(CONFLIST_FILE), b"{\"name\": \"mine\"}").expect("write");
        let error = node.install(&source).expect_err("foreign conflist");
        assert!(matches!(error, InstallError::Foreign { .. }), "{error}");
        assert_eq!(
            fs::read(node.conf().join(CONFLIST_FILE)).expect("kept"),
            b"{\"name\": \"mine\"}"
        );
        assert!(!node.bin().exists(), "nothing written on refusal");

        fs::remove_file(node.conf().join(CONFLIST_FILE)).expect("remove");
        node.install(&source).expect("install");
        let newer = fake_binary(node.dir.path(), b"binary two");
        let said = node.install(&newer).expect("install again");
        assert!(said.contains("replaced"), "{said}");
        assert_eq!(
            fs::read(node.bin().join("plexus")).expect("binary"),
            b"binary two"
        );
        let conflist: Value =
            serde_json::from_slice(&fs::read(node.conf().join(CONFLIST_FILE)).expect("conflist"))
                .expect("JSON");
        assert_eq!(conflist["plugins"][0]["defaultNetworks"], json!(["testbr"]));
    }

    #[test]
    fn install_needs_a_network_that_sorts_after_its_own_and_parses() {
        let node = Node::new();
        let source = fake_binary(node.dir.path(), b"binary");
        let error = node.install(&source).expect_err("no network");
        assert!(matches!(error, InstallError::NoNetwork { .. }), "{error}");

        // Byte order, as libcni sorts: "00-a" < "00-p", while "000-" > "00-p".
        node.write(
            "000-after.conf",
            &json!({"cniVersion": "1.0.0", "name": "after", "type": "ptp"}),
        );
        node.write(
            "00-aaa.conf",
            &json!({"cniVersion": "1.0.0", "name": "first", "type": "ptp"}),
        );
        let error = node.install(&source).expect_err("sorts first");
        assert!(error.to_string().contains("00-aaa.conf"), "{error}");
        fs::remove_file(node.conf().join("00-aaa.conf")).expect("remove");
        fs::remove_file(node.conf().join("000-after.conf")).expect("remove");

        fs::write(node.conf().join("10-broken.conf"), b"{not json").expect("write");
        let error = node.install(&source).expect_err("broken");
        assert!(
            matches!(error, InstallError::BrokenNetwork { .. }),
            "{error}"
        );
        assert!(!node.bin().exists(), "nothing written on refusal");
    }

    /// Kills a child of the test when the test ends, passed or failed.
    struct KillOnDrop(std::process::Child);

    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn install_over_a_running_binary_never_meets_text_file_busy() {
        let node = Node::new();
        node.write_network();
        // A real executable that can run for long or return at once.
        let source = node.dir.path().join("sleep");
        fs::copy("/bin/sleep", &source).expect("copy sleep");
        node.install(&source).expect("first install");
        let installed = node.bin().join("plexus");
        let quiet = |command: &mut Command| {
            command
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
        };
        let mut long = Command::new(&installed);
        long.arg("600");
        quiet(&mut long);
        let mut long_running = KillOnDrop(long.spawn().expect("run the installed binary"));
        // The runner is another process, as a runtime is: started before the installs,
        // it holds none of their file descriptors (a thread of this process forking
        // while a temp file is open for writing would, and its child's exec of that
        // very file would then be refused, which no runtime can meet).
        let stop = node.dir.path().join("stop");
        let mut runner = Command::new("sh");
        runner.args([
            "-c",
            r#"runs=0; while [ ! -e "$1" ]; do "$0" 0 || { echo "run $runs failed: $?" >&2; exit 1; }; runs=$((runs+1)); done; echo "$runs""#,
        ]);
        runner.arg(&installed).arg(&stop);
        quiet(&mut runner);
        let runner = runner.spawn().expect("start the runner");
        for _ in 0..20 {
            node.install(&source)
                .expect("install over the running binary");
        }
        fs::write(&stop, b"").expect("stop the runner");
        let output = runner.wait_with_output().expect("the runner ends");
        assert!(
            output.status.success(),
            "the installed binary failed to run: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let runs: u32 = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .expect("the runner counts its runs");
        assert!(runs > 0);
        assert!(
            long_running.0.try_wait().expect("wait").is_none(),
            "the long-running one keeps running its (replaced) inode"
        );
    }
}
