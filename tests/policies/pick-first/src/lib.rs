//! A selector that attaches the pod's `ifname` to the first network, by file name.

const INDEX: usize = 0;

include!("../../pick-nth.rs");
