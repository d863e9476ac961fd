//! A selector built against `plexus:policy@0.2.0` that attaches the pod's `ifname` to the
//! second network by file name for a VM pod (`vm`), and to the first otherwise: its choice
//! shows whether `vm` reached it.

wit_bindgen::generate!({ path: "../../../wit/v0.2.0", world: "selector" });

struct VmAware;

impl Guest for VmAware {
    fn select(request: SelectRequest) -> Result<Vec<Attachment>, String> {
        let mut files: Vec<String> = request.networks.into_iter().map(|n| n.file).collect();
        files.sort();
        let index = usize::from(request.vm);
        let network_file = files
            .into_iter()
            .nth(index)
            .ok_or_else(|| format!("no network at index {index}"))?;
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

export!(VmAware);
