//! A selector whose answer the host must refuse, in the way `policyConfig` names:
//! `"duplicate"` (two attachments named eth0), `"invalid"` (an interface name with a
//! `/`), `"unknown"` (a network file that does not exist), `"huge"` (a hundred thousand
//! attachments with long names, megabytes of output).

wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "selector" });

struct BadAnswer;

fn attachment(network_file: &str, ifname: String) -> Attachment {
    Attachment {
        network_file: network_file.to_owned(),
        ifname,
        ips: Vec::new(),
        mac: None,
        cni_args: None,
        default_route: Vec::new(),
    }
}

impl Guest for BadAnswer {
    fn select(request: SelectRequest) -> Result<Vec<Attachment>, String> {
        let file = request
            .networks
            .first()
            .map(|network| network.file.clone())
            .unwrap_or_default();
        let mode = request.policy_config.trim_matches(|c| c == '"' || c == ' ');
        Ok(match mode {
            "duplicate" => vec![
                attachment(&file, "eth0".into()),
                attachment(&file, "eth0".into()),
            ],
            "invalid" => vec![attachment(&file, "eth0/../../x".into())],
            "unknown" => vec![attachment("99-nowhere.conf", "eth0".into())],
            "huge" => (0..100_000)
                .map(|i| attachment(&file, format!("{i:0>100}")))
                .collect(),
            other => return Err(format!("unknown mode {other:?}")),
        })
    }
}

export!(BadAnswer);
