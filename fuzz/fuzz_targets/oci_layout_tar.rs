//! OCI layout tarballs given to `plexus policy load` (`Layout::read`).
//!
//! Properties: an accepted tarball's blobs are each named by their own sha256, and
//! writing the layout and reading it back keeps its blobs and images.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_oci::digest_of;
use plexus_oci::layout::Layout;

fuzz_target!(|data: &[u8]| {
    let Ok(layout) = Layout::read(data) else {
        return;
    };
    for (digest, bytes) in &layout.blobs {
        assert_eq!(&digest_of(bytes), digest);
    }
    let mut written = Vec::new();
    layout.write(&mut written).unwrap();
    let again = Layout::read(written.as_slice()).unwrap();
    assert_eq!(again.blobs, layout.blobs);
    assert_eq!(again.images.len(), layout.images.len());
});
