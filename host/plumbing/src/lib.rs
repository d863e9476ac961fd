//! Network-namespace plumbing for Plexus: namespace handles, links, addresses, routes,
//! bridges and taps over netlink, and the VM-NIC transform that turns a delegate's veth
//! into a bridge + tap a virtual machine can use.
//!
//! Nothing here knows CNI or WebAssembly. Work inside a namespace never moves a thread
//! that anything else reuses into it: sockets and devices are opened on a short-lived
//! thread that enters the namespace and exits ([`Netns::run`]), then used from the
//! caller's thread.

mod error;
mod mac;
mod netlink;
mod netns;
mod router;
mod tap;
#[cfg(feature = "test-support")]
pub mod testing;
mod vm_nic;

pub use error::{PlumbingError, Result};
pub use mac::{MacAddr, ParseMacError};
pub use netlink::{AddressRecord, Link, Netlink, RouteRecord};
pub use netns::Netns;
pub use router::router_link_local;
pub use tap::{TapOptions, create_tap};
pub use vm_nic::{
    VmNic, attach_vm_nic, bridge_name, delete_vm_nic_links, detach_vm_nic, hand_back_veth,
    plan_vm_nic, tap_name,
};
