//! A DHCP server that answers one VM NIC per interface with a fixed lease: the address,
//! routes, DNS and MTU a CNI delegate gave the pod's veth, handed to the virtual machine
//! that took the veth's place (see `plexus-plumbing`'s VM-NIC transform).
//!
//! # How it runs
//!
//! One server per VM NIC, each in its own process: the binary runs
//! `plexus dhcp serve --state FILE`, detached (new session, no stdio), which loads the
//! [`ServerConfig`] from `FILE` and calls [`serve`] until SIGTERM triggers its [`Stop`].
//! A process per NIC keeps one pod's failure away from another's and makes stopping one
//! (DEL) a plain kill. The state file is all of the server's state — the lease is fixed,
//! nothing is learnt at run time — so a server killed, or gone with a node restart,
//! comes back by starting the same command on the same file: it answers the VM's next
//! renewal as if nothing happened.
//!
//! Whoever serves `FILE` holds the [`ServerLock`] beside it ([`lock_file`]) for as long
//! as it runs; [`server_pid`] asks the kernel who that is. That is how a second server
//! for one NIC is refused, how DEL finds the server to stop whoever started it, and how
//! a restart after the fact starts only the servers that are missing — for NICs that
//! are still [`Presence::Present`].
//!
//! The server listens on the VM NIC's **tap** (its `interface`), through a packet
//! socket opened inside the pod's namespace on a throw-away thread. It sees each frame
//! the VM sends before the bridge does, so it also gets renewals unicast to the
//! gateway's MAC; its replies go out of the tap to the VM only. The plumbing diverts the
//! VM's DHCP requests away from the bridge (a tc filter on the tap), so they never reach
//! the delegate's network, and the server's replies never cross the bridge.
//!
//! [`serve`] returns on [`Stop`], or by itself when the pod's namespace file disappears
//! or the tap is deleted, so a server whose pod went away without a DEL does not linger.
//!
//! # What it answers
//!
//! DISCOVER with OFFER, REQUEST (selecting, init-reboot, renewing, rebinding) for the
//! lease's address with ACK, and for any other address with NAK, from the configured MAC
//! only; RELEASE and DECLINE are logged and otherwise ignored (the lease is fixed).
//! Replies carry options 1, 3 (if a router is configured), 6, 12, 15, 26, 51, 54, 58,
//! 59, 119 and 121; see [`Lease`] for when 121 is sent and what it holds.
//!
//! With a [`Lease6`] (a state file may hold either lease or both), over IPv6 as well,
//! again to the configured MAC only:
//!
//! - **Router advertisements**: one when the server starts, one to all nodes every
//!   minute (every third of the lease time if that is shorter), and one in answer to each router solicitation (to its source, or to all
//!   nodes when it has none), with hop limit 255. They set M and O, so the VM runs
//!   DHCPv6 for its address and DNS; carry the prefix as on-link only (L=1, A=0: no
//!   SLAAC address), the MTU, DNS servers (RDNSS) and search list (DNSSL); and come from
//!   the lease's router with a router lifetime (and no source link-layer address, so
//!   the VM resolves the real router), or, without a router, from the server's own
//!   link-local address with router lifetime 0.
//! - **DHCPv6** (RFC 8415), as the server whose DUID is the DUID-LL of the tap's MAC:
//!   SOLICIT with ADVERTISE (preference 255), or with REPLY under rapid commit; REQUEST,
//!   RENEW and REBIND with REPLY holding the lease's address in the first IA_NA, whatever
//!   address was asked for (a RENEW or REBIND also gets any other address it names with
//!   lifetime 0); CONFIRM with Success or NotOnLink; RELEASE and DECLINE with Success,
//!   logged and otherwise ignored; INFORMATION-REQUEST with the DNS options. Messages
//!   naming another server, and REQUEST, RENEW, RELEASE and DECLINE naming none, are
//!   ignored. Replies carry options 1, 2, 23 and 24, go from the server's link-local
//!   address to the client's, and offer no prefix delegation.
//!
//! The IPv6 requests are diverted from the bridge like the IPv4 ones; the packet socket
//! takes IPv6 only without extension headers, as clients send these messages.

mod dhcp6;
mod error;
pub mod frame;
mod lease;
mod lease6;
mod lock;
pub mod packet;
pub mod packet6;
mod ra;
mod server;
mod socket;

pub use error::DhcpError;
pub use lease::{ClasslessRoute, Lease, LeaseError};
pub use lease6::Lease6;
pub use lock::{Claim, ServerLock, lock_file, remove_lock_file, server_pid};
pub use server::{Presence, ServerConfig, Stop, Stopped, serve};
