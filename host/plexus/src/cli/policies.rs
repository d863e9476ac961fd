//! `plexus policies`: the policies a node uses and where each stands: reference, kind,
//! active digest, the key its pull verified it with, last-good, and state (`active`,
//! `degraded`, `not pulled`, `unverified`). With `--config`, exactly the configured
//! policies (missing ones included); without, everything the store knows.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use plexus_oci::OciRef;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::activate::{VerifyKey, record_reference};
use super::sync::{Configured, configured};
use super::{CliError, CliResult};
use crate::state::StateLayout;
use crate::state::policies::PolicyStore;

/// One row.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Row {
    reference: String,
    kind: Option<String>,
    /// The active manifest digest (`oci://`) or the file's sha256 now (a path).
    active: Option<String>,
    verified_by: Option<String>,
    /// The previous version (`oci://`) or the last version that loaded (a path).
    last_good: Option<String>,
    state: &'static str,
    /// Why it is degraded or unverified.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// A degraded mark, as ADD writes it.
#[derive(Deserialize)]
struct Mark {
    degraded: Option<Degraded>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Degraded {
    failing: Option<String>,
    last_good: String,
    reason: String,
}

pub fn run(state_dir: &Path, config: Option<&Path>, json: bool) -> CliResult {
    let wanted: Vec<Configured> = match config {
        Some(config) => configured(config)?
            .into_iter()
            .filter(|configured| !configured.spec.starts_with("builtin:"))
            .collect(),
        None => everything_stored(state_dir)?,
    };
    let rows = wanted.iter().map(row).collect::<Result<Vec<_>, _>>()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let header = [
        "REFERENCE",
        "KIND",
        "ACTIVE",
        "VERIFIED BY",
        "LAST-GOOD",
        "STATE",
    ];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|row| {
            let or_dash = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".into());
            [
                row.reference.clone(),
                or_dash(&row.kind),
                or_dash(&row.active),
                or_dash(&row.verified_by),
                or_dash(&row.last_good),
                match &row.reason {
                    Some(reason) => format!("{} ({reason})", row.state),
                    None => row.state.to_owned(),
                },
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..6)
        .map(|column| {
            cells
                .iter()
                .map(|row| row[column].len())
                .chain([header[column].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |values: Vec<&str>| {
        let padded: Vec<String> = values
            .iter()
            .zip(&widths)
            .map(|(value, width)| format!("{value:width$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in &cells {
        line(row.iter().map(String::as_str).collect());
    }
    Ok(ExitCode::SUCCESS)
}

/// Every tag or pinned reference the store holds, every path with a last-good, every
/// policy with a degraded mark.
fn everything_stored(state_dir: &Path) -> Result<Vec<Configured>, CliError> {
    let store = PolicyStore::new(StateLayout::new(state_dir));
    let mut specs = BTreeMap::new();
    for record in store.all_refs()? {
        if record.pinned || !record.reference.contains('@') {
            specs.insert(record.reference.clone(), ());
        }
    }
    for file in store.all_files()? {
        specs.insert(file.path.display().to_string(), ());
    }
    for mark in read_marks(&store.layout().policy_states_dir())? {
        specs.insert(mark, ());
    }
    Ok(specs
        .into_keys()
        .map(|spec| Configured {
            spec,
            state_dir: state_dir.to_owned(),
            verify_key: None,
        })
        .collect())
}

/// The keys of the degraded marks (their `reference`).
fn read_marks(dir: &Path) -> Result<Vec<String>, CliError> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut keys = Vec::new();
    for entry in entries.flatten() {
        let bytes = fs::read(entry.path())?;
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes)
            && let Some(reference) = value.get("reference").and_then(|r| r.as_str())
        {
            keys.push(reference.to_owned());
        }
    }
    Ok(keys)
}

fn row(configured: &Configured) -> Result<Row, CliError> {
    let layout = StateLayout::new(&configured.state_dir);
    let store = PolicyStore::new(layout.clone());
    let spec = &configured.spec;
    let degraded = read_mark(&layout.policy_state(spec))?;
    if OciRef::is_oci(spec) {
        let oci: OciRef = spec.parse()?;
        let Some(record) = store.read_ref(&record_reference(&oci).to_string())? else {
            return Ok(Row {
                reference: spec.clone(),
                kind: None,
                active: None,
                verified_by: None,
                last_good: None,
                state: "not pulled",
                reason: None,
            });
        };
        let verified_by = record
            .verified_by
            .as_ref()
            .map(|verified| verified.key.clone());
        let unverified = match &configured.verify_key {
            Some(path) => {
                let key = VerifyKey::read(path)?;
                (verified_by.as_deref() != Some(key.id.as_str()))
                    .then(|| format!("policyVerifyKey {} is {}", path.display(), key.id))
            }
            None => None,
        };
        let (state, reason) = match (degraded, unverified) {
            (Some(degraded), _) => ("degraded", Some(degraded.reason)),
            (None, Some(reason)) => ("unverified", Some(reason)),
            (None, None) => ("active", None),
        };
        return Ok(Row {
            reference: spec.clone(),
            kind: Some(record.kind),
            active: Some(record.manifest),
            verified_by,
            last_good: record.previous.map(|previous| previous.manifest),
            state,
            reason,
        });
    }
    let last_good = store
        .all_files()?
        .into_iter()
        .find(|file| file.path == Path::new(spec))
        .map(|file| format!("sha256:{}", file.sha256.trim_start_matches("sha256:")));
    let active = fs::read(PathBuf::from(spec))
        .ok()
        .map(|bytes| format!("sha256:{}", hex::encode(Sha256::digest(bytes))));
    let (state, reason, last_good) = match degraded {
        Some(degraded) => (
            "degraded",
            Some(match degraded.failing {
                Some(failing) => format!("sha256:{failing} fails: {}", degraded.reason),
                None => degraded.reason,
            }),
            Some(format!("sha256:{}", degraded.last_good)),
        ),
        None => ("active", None, last_good),
    };
    Ok(Row {
        reference: spec.clone(),
        kind: None,
        active,
        verified_by: None,
        last_good,
        state,
        reason,
    })
}

/// A policy's degraded mark, if it has one.
fn read_mark(path: &Path) -> Result<Option<Degraded>, CliError> {
    match fs::read(path) {
        Ok(bytes) => Ok(serde_json::from_slice::<Mark>(&bytes)
            .map_err(|error| format!("{}: {error}", path.display()))?
            .degraded),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(format!("{}: {error}", path.display()).into()),
    }
}
