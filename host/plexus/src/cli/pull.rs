//! `plexus policy pull`: brings a policy from a registry into this node's policy store
//! (see [`activate`](super::activate)).

use std::path::Path;
use std::process::ExitCode;

use plexus_oci::OciRef;
use plexus_oci::registry::Registry;

use super::CliResult;
use super::activate::{self, VerifyKey};
use crate::state::StateLayout;
use crate::state::policies::PolicyStore;

pub fn run(
    reference: &str,
    verify_key: Option<&Path>,
    state_dir: &Path,
    plain_http: bool,
) -> CliResult {
    let oci: OciRef = reference.parse()?;
    let verify = verify_key.map(VerifyKey::read).transpose()?;
    let registry = Registry::new(plain_http)?;
    let store = PolicyStore::new(StateLayout::new(state_dir));
    let outcome = activate::activate(&store, &oci, &registry, verify.as_ref())?;
    println!("{}", outcome.describe(&oci));
    Ok(ExitCode::SUCCESS)
}
