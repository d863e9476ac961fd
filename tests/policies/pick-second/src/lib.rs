//! A selector that attaches the pod's `ifname` to the second network, by file name.

const INDEX: usize = 1;

include!("../../pick-nth.rs");
