//! Which pods a canary policy decides for: a deterministic share by pod UID.
//!
//! A pod is a canary pod when the first 8 bytes of `sha256("plexus-canary\0" ‖ uid)`, as
//! a big-endian integer, are below `percent` modulo 100. The same pod is always in the
//! same bucket (re-ADD, DEL with no record), whatever the candidate's version; raising the
//! percentage only adds pods; and the bucket is easy to compute elsewhere
//! (`printf 'plexus-canary\0%s' UID | sha256sum`, first 16 hex digits).

use sha2::{Digest, Sha256};

/// The pod's bucket, 0..100.
pub fn bucket(pod_uid: &str) -> u8 {
    let digest = Sha256::new()
        .chain_update(b"plexus-canary\0")
        .chain_update(pod_uid.as_bytes())
        .finalize();
    let head = u64::from_be_bytes(digest[..8].try_into().expect("a sha256 has 8 bytes"));
    u8::try_from(head % 100).expect("below 100")
}

/// Whether the pod with `pod_uid` goes to a canary given `percent` of the pods. A pod
/// without a UID never does: its bucket would not be its own.
pub fn is_canary(pod_uid: Option<&str>, percent: u8) -> bool {
    pod_uid.is_some_and(|uid| !uid.is_empty() && bucket(uid) < percent)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The UIDs the end-to-end test uses, `00000000-0000-4000-8000-0000000000NN`.
    fn uid(index: usize) -> String {
        format!("00000000-0000-4000-8000-{index:012}")
    }

    #[test]
    fn buckets_are_golden() {
        // `printf 'plexus-canary\0%s' UID | sha256sum`, the first 16 hex digits mod 100.
        assert_eq!(bucket(&uid(0)), GOLDEN[0]);
        assert_eq!(bucket(&uid(1)), GOLDEN[1]);
        assert_eq!(bucket(&uid(39)), GOLDEN[2]);
    }

    const GOLDEN: [u8; 3] = [66, 69, 46];

    #[test]
    fn half_of_forty_uids_is_seventeen() {
        let canaries = (0..40).filter(|&i| is_canary(Some(&uid(i)), 50)).count();
        assert_eq!(canaries, 17);
    }

    #[test]
    fn shares_are_monotonic_and_bounded() {
        for index in 0..200 {
            let uid = uid(index);
            assert!(!is_canary(Some(&uid), 0));
            assert!(is_canary(Some(&uid), 100));
            let from = (0..=100).find(|&p| is_canary(Some(&uid), p)).unwrap();
            assert!((from..=100).all(|p| is_canary(Some(&uid), p)));
        }
        assert!(!is_canary(None, 100));
        assert!(!is_canary(Some(""), 100));
    }
}
