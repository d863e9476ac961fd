//! Example merge policy: every delegate's interfaces and addresses, but the default
//! route and DNS of the primary (first) attachment only.
//!
//! Two delegates that each set a default route and their own DNS make a pod whose
//! traffic and name resolution depend on the order the runtime applies them; this
//! policy makes the primary network the pod's one way out and one resolver. Routes to
//! specific destinations are kept from every delegate.

use plexus_policy_sdk::types::{CniResult, MergeRequest};
use plexus_policy_sdk::{Merger, results};

pub struct PrimaryRoutes;

impl Merger for PrimaryRoutes {
    fn merge(request: MergeRequest) -> Result<CniResult, String> {
        merge(request)
    }
}

plexus_policy_sdk::export_merger!(PrimaryRoutes);

fn is_default(dst: &str) -> bool {
    dst == "0.0.0.0/0" || dst == "::/0"
}

pub fn merge(request: MergeRequest) -> Result<CniResult, String> {
    let mut delegates = request.results.into_iter();
    let primary = delegates
        .next()
        .ok_or("primary-routes: no delegate results to merge")?;
    let mut merged = primary.result;
    for delegate in delegates {
        let mut secondary = delegate.result;
        secondary.routes.retain(|route| !is_default(&route.dst));
        secondary.dns = Default::default();
        results::append(&mut merged, secondary)?;
    }
    Ok(merged)
}
