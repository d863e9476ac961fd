//! A selector built against `plexus:policy@0.4.0`, whose selector exports `select-networks`:
//! attaches the pod's `ifname` to the first network by file name, like `pick-first`.

wit_bindgen::generate!({ path: "../../../wit/v0.4.0", world: "selector" });

struct PickFirst;

impl Guest for PickFirst {
    fn select_networks(request: SelectRequest) -> Result<Vec<Attachment>, String> {
        let network_file = request
            .networks
            .into_iter()
            .map(|network| network.file)
            .min()
            .ok_or("no networks")?;
        Ok(vec![Attachment {
            network_file,
            ifname: request.pod.ifname,
            ips: Vec::new(),
            mac: None,
            cni_args: None,
            default_route: Vec::new(),
        }])
    }

    fn metadata() -> PolicyMetadata {
        PolicyMetadata {
            name: env!("CARGO_PKG_NAME").to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            min_host_version: "0.1.0".to_owned(),
        }
    }
}

export!(PickFirst);
