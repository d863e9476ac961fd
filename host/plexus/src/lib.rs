//! The `plexus` node binary as a library: the CNI meta-plugin ([`plugin`]), the IPAM
//! plugin ([`ipam`]) and the command-line tools ([`cli`]), over the crates that speak CNI,
//! run policies, plumb links and serve DHCP. `main.rs` only picks one of the three.
//!
//! It is a library so that the binary stays a dispatcher and the fuzz targets, the demo
//! and tests can call the code in-process. It is not a stable API.

pub mod agent;
mod builtins;
mod canary;
pub mod cli;
mod cni_io;
pub mod config;
mod crash_point;
mod dhcp_process;
mod error;
pub mod fds;
mod flock;
pub mod ipam;
mod logging;
mod network_status;
mod networks;
mod phase;
pub mod plugin;
pub mod pod;
mod policy_io;
pub mod policy_ref;
mod recording;
mod requested;
mod selection;
pub mod state;
mod stored_policy;
pub mod trace;
mod vm;

/// The name `plexus` answers to as a delegate's `ipam.type`.
pub const IPAM_NAME: &str = "plexus-ipam";
