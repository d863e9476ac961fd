//! Persistent tap devices, made through `/dev/net/tun`.

use std::{ffi::c_int, fs::OpenOptions, io, os::fd::AsRawFd};

use serde::{Deserialize, Serialize};

use crate::{
    error::{PlumbingError, Result},
    netns::Netns,
};

/// How a tap is created. The VM runtime that opens it later must ask for the same
/// `multi_queue` setting (the kernel refuses a mismatch with EINVAL); `vnet_hdr` it may
/// change, since each open sets it anew.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapOptions {
    /// Create it with `IFF_VNET_HDR` (virtio-net offload headers).
    #[serde(default)]
    pub vnet_hdr: bool,
    /// Create it with `IFF_MULTI_QUEUE`.
    #[serde(default)]
    pub multi_queue: bool,
    /// Let this user open it without `CAP_NET_ADMIN` (`TUNSETOWNER`), e.g. an
    /// unprivileged QEMU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<u32>,
    /// Let members of this group open it without `CAP_NET_ADMIN` (`TUNSETGROUP`). With
    /// both set, the kernel asks for both: the owner, as a member of the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<u32>,
}

/// Creates the persistent tap `name` in `netns`. The tap takes the namespace of the
/// `/dev/net/tun` file it is made through, so that file is opened inside the namespace
/// (on a throw-away thread); the tap outlives the file (`TUNSETPERSIST`) until deleted.
// The tun ioctls: nix has no safe wrappers for them.
#[allow(unsafe_code)]
pub fn create_tap(netns: &Netns, name: &str, options: &TapOptions) -> Result<()> {
    let fail = |source: io::Error| PlumbingError::Op {
        netns: netns.name(),
        link: name.to_owned(),
        op: "create tap".into(),
        source,
    };
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', ':']) {
        return Err(fail(io::Error::new(
            io::ErrorKind::InvalidInput,
            "invalid interface name",
        )));
    }
    let mut flags = libc::IFF_TAP | libc::IFF_NO_PI;
    if options.vnet_hdr {
        flags |= libc::IFF_VNET_HDR;
    }
    if options.multi_queue {
        flags |= libc::IFF_MULTI_QUEUE;
    }
    let (owner, group) = (options.owner, options.group);
    netns
        .run("create tap", move || -> io::Result<()> {
            let tun = OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/net/tun")?;
            let fd = tun.as_raw_fd();
            let mut request = libc::ifreq {
                ifr_name: [0; libc::IFNAMSIZ],
                ifr_ifru: libc::__c_anonymous_ifr_ifru {
                    ifru_flags: flags as libc::c_short,
                },
            };
            for (slot, byte) in request.ifr_name.iter_mut().zip(name.bytes()) {
                *slot = byte as libc::c_char;
            }
            // SAFETY: `request` is a valid ifreq that outlives the call.
            check(unsafe { libc::ioctl(fd, libc::TUNSETIFF, &request) })?;
            if let Some(uid) = owner {
                // SAFETY: TUNSETOWNER, TUNSETGROUP and TUNSETPERSIST take their argument
                // by value.
                check(unsafe { libc::ioctl(fd, libc::TUNSETOWNER, uid as libc::c_ulong) })?;
            }
            if let Some(gid) = group {
                // SAFETY: as above.
                check(unsafe { libc::ioctl(fd, libc::TUNSETGROUP, gid as libc::c_ulong) })?;
            }
            // SAFETY: as above.
            check(unsafe { libc::ioctl(fd, libc::TUNSETPERSIST, 1 as libc::c_ulong) })?;
            Ok(())
        })?
        .map_err(fail)
}

fn check(result: c_int) -> io::Result<()> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
