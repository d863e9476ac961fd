//! An IPAM policy built against `plexus:policy@0.4.0`: claims the one address 10.40.0.2
//! under the key `10.40.0.2` of the store (0.4.0's `store` import) for the container, and
//! refuses a second container while the first holds it.

use plexus::policy::store::{self, StoreError};
use plexus::policy::types::{Dns, IpConfig};

wit_bindgen::generate!({ path: "../../../wit/v0.4.0", world: "ipam" });

const ADDRESS: &str = "10.40.0.2";

struct ClaimOneAddress;

fn store_error(error: StoreError) -> String {
    match error {
        StoreError::Unavailable(message) => format!("store unavailable: {message}"),
        StoreError::Invalid(message) => format!("store refused: {message}"),
    }
}

impl Guest for ClaimOneAddress {
    fn allocate(request: IpamRequest) -> Result<CniResult, String> {
        let holder = request.pod.container_id;
        match store::get(ADDRESS).map_err(store_error)? {
            Some(entry) if entry.value != holder => {
                return Err(format!("{ADDRESS} is held by {}", entry.value));
            }
            Some(_) => {}
            None => {
                if !store::compare_and_swap(ADDRESS, None, &holder).map_err(store_error)? {
                    return Err(format!("{ADDRESS} was taken meanwhile"));
                }
            }
        }
        Ok(CniResult {
            interfaces: Vec::new(),
            ips: vec![IpConfig {
                address: format!("{ADDRESS}/24"),
                gateway: None,
                interface: None,
            }],
            routes: Vec::new(),
            dns: Dns {
                nameservers: Vec::new(),
                domain: None,
                search: Vec::new(),
                options: Vec::new(),
            },
        })
    }

    fn release(request: IpamRequest) -> Result<(), String> {
        match store::get(ADDRESS).map_err(store_error)? {
            Some(entry) if entry.value == request.pod.container_id => {
                store::delete(ADDRESS, entry.revision).map_err(store_error)?;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn check(_: IpamRequest) -> Result<(), String> {
        Ok(())
    }

    fn gc(_: GcRequest) -> Result<(), String> {
        Ok(())
    }

    fn metadata() -> PolicyMetadata {
        PolicyMetadata {
            name: env!("CARGO_PKG_NAME").to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            min_host_version: "0.1.0".to_owned(),
        }
    }
}

export!(ClaimOneAddress);
