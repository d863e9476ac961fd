//! `plexus vm describe`: a VM pod's NICs, as its VM runtime reads them.

use std::path::Path;
use std::process::ExitCode;

use serde_json::Value;

use super::CliResult;
use crate::state::StateStore;
use crate::vm::VM_DESCRIPTION_VERSION;

/// Prints `stateDir/vm/<container>.json`, after checking that it is of the version this
/// plexus writes (a runtime reading it expects that schema).
pub fn describe(container_id: &str, state_dir: &Path) -> CliResult {
    plexus_cni::validate_container_id(container_id)
        .map_err(|reason| format!("container id {container_id:?}: {reason}"))?;
    let store = StateStore::open(state_dir)?;
    let Some(description) = store.read_vm_description(container_id)? else {
        return Err(format!(
            "no VM description for container {container_id} in {}: it is not a VM pod, or not added",
            state_dir.display()
        )
        .into());
    };
    let version = description.get("version").and_then(Value::as_u64);
    if version != Some(VM_DESCRIPTION_VERSION) {
        return Err(format!(
            "the VM description of container {container_id} is of version {}, not {VM_DESCRIPTION_VERSION}, the one this plexus reads",
            version.map_or_else(|| "(none)".to_owned(), |version| version.to_string())
        )
        .into());
    }
    println!("{}", serde_json::to_string_pretty(&description)?);
    Ok(ExitCode::SUCCESS)
}
