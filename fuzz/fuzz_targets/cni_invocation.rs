//! The `CNI_*` environment of an invocation, as `Invocation::from_lookup` reads it.
//!
//! The input is the values of `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`,
//! `CNI_IFNAME`, `CNI_ARGS` and `CNI_PATH`, separated by NUL bytes (which no
//! environment value can hold); a missing field is an unset variable.
//!
//! Properties: an invocation that is accepted has a known command; unless it is VERSION,
//! at least one non-empty `CNI_PATH` directory; for ADD, DEL and CHECK a valid
//! container id and interface name, a netns for ADD and CHECK, and `args` exactly
//! `parse_cni_args(CNI_ARGS)`; other commands read none of those. A refusal names a
//! variable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_cni::{
    Command, EnvError, Invocation, parse_cni_args, validate_container_id, validate_ifname,
};
use plexus_fuzz::fields;

const VARS: [&str; 6] = [
    "CNI_COMMAND",
    "CNI_CONTAINERID",
    "CNI_NETNS",
    "CNI_IFNAME",
    "CNI_ARGS",
    "CNI_PATH",
];

fuzz_target!(|data: &[u8]| {
    let values: [String; 6] = fields(data);
    // The field count decides which variables are set at all.
    let set = data.iter().filter(|&&b| b == 0).count() + 1;
    let lookup = |name: &str| {
        let index = VARS
            .iter()
            .position(|v| *v == name)
            .expect("a CNI variable");
        (index < set).then(|| values[index].clone())
    };
    let get = |name: &str| lookup(name).filter(|v| !v.is_empty());

    let invocation = match Invocation::from_lookup(lookup) {
        Ok(invocation) => invocation,
        Err(EnvError::Missing { var } | EnvError::Invalid { var, .. }) => {
            assert!(VARS.contains(&var), "{var}");
            return;
        }
    };
    let command = get("CNI_COMMAND").unwrap();
    assert_eq!(invocation.command.as_str(), command);
    assert_eq!(command.parse::<Command>(), Ok(invocation.command));
    if invocation.command != Command::Version {
        assert!(!invocation.path.is_empty());
    }
    assert!(invocation.path.iter().all(|d| !d.as_os_str().is_empty()));
    assert_eq!(invocation.raw_args, get("CNI_ARGS").unwrap_or_default());
    if invocation.command.is_attachment() {
        let id = invocation.container_id.as_deref().unwrap();
        validate_container_id(id).unwrap();
        validate_ifname(invocation.ifname.as_deref().unwrap()).unwrap();
        assert_eq!(
            invocation.args,
            parse_cni_args(&invocation.raw_args).unwrap()
        );
        if invocation.command != Command::Del {
            assert!(invocation.netns.is_some());
        }
        assert_eq!(invocation.netns, get("CNI_NETNS"));
    } else {
        assert_eq!(invocation.container_id, None);
        assert_eq!(invocation.ifname, None);
        assert_eq!(invocation.netns, None);
        assert!(invocation.args.is_empty());
    }
});
