// Shared by `pick-first` and `pick-second`, which differ only in `INDEX`: two
// components whose choices differ, so that replacing one `.wasm` with the other on disk
// shows up in the next selection.

wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "selector" });

struct PickNth;

impl Guest for PickNth {
    fn select(request: SelectRequest) -> Result<Vec<Attachment>, String> {
        let mut files: Vec<String> = request.networks.into_iter().map(|n| n.file).collect();
        files.sort();
        let network_file = files
            .into_iter()
            .nth(INDEX)
            .ok_or_else(|| format!("no network at index {INDEX}"))?;
        Ok(vec![Attachment {
            network_file,
            ifname: request.pod.ifname,
            ips: Vec::new(),
            mac: None,
            cni_args: None,
            default_route: Vec::new(),
        }])
    }
}

export!(PickNth);
