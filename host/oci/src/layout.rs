//! OCI layout tarballs: written by `plexus policy save`, read by `plexus policy load`.
