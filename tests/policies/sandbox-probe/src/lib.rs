//! A selector that tries what a policy must not be able to do, and reports what it saw
//! as its error message, for the host's tests to check.

wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "selector" });

use std::io::Read;
use std::net::{TcpStream, UdpSocket};

struct SandboxProbe;

fn outcome<T, E>(result: Result<T, E>) -> &'static str {
    if result.is_ok() { "allowed" } else { "denied" }
}

impl Guest for SandboxProbe {
    fn select(_request: SelectRequest) -> Result<Vec<Attachment>, String> {
        // Written where the host's CNI protocol output would be, were it not captured.
        println!("{{\"cniVersion\": \"1.1.0\", \"written-by\": \"a policy\"}}");
        let mut stdin = String::new();
        let stdin_bytes = std::io::stdin().read_to_string(&mut stdin).unwrap_or(0);
        Err(format!(
            "env={} args={} root={} passwd={} stdin={stdin_bytes} tcp={} udp={} dns={}",
            std::env::vars_os().count(),
            std::env::args_os().count(),
            outcome(std::fs::read_dir("/")),
            outcome(std::fs::read("/etc/passwd")),
            outcome(TcpStream::connect("127.0.0.1:22")),
            outcome(UdpSocket::bind("127.0.0.1:0")),
            outcome(std::net::ToSocketAddrs::to_socket_addrs("localhost:80")),
        ))
    }
}

export!(SandboxProbe);
