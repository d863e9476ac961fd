//! A minimal HTTP/1.1 server for the metrics: `GET /metrics` (or `/`), one request per
//! connection, on a thread of its own. Nothing in the crate graph serves HTTP without
//! an async runtime, and a scrape a second needs none.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use tracing::debug;

use super::Agent;
use super::metrics::CONTENT_TYPE;

/// How long a client may take to send its request or read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest request head read; a scraper's is a few hundred bytes.
const MAX_HEAD_BYTES: u64 = 16 << 10;

pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
}

/// Answers connections one at a time until the process ends.
pub fn serve(listener: &TcpListener, agent: &Agent) {
    for stream in listener.incoming() {
        let answered = stream.and_then(|stream| answer(stream, agent));
        if let Err(error) = answered {
            // A scraper that hung up is its own business.
            debug!(%error, "metrics request failed");
        }
    }
}

fn answer(stream: TcpStream, agent: &Agent) -> io::Result<()> {
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut reader = BufReader::new(io::Read::take(&stream, MAX_HEAD_BYTES));
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // The rest of the head is read and ignored: nothing in it changes the answer.
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics" | "/") => ("200 OK", CONTENT_TYPE, agent.render()),
        ("GET" | "HEAD", _) => ("404 Not Found", "text/plain", "not found\n".to_owned()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_owned(),
        ),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if method != "HEAD" {
        stream.write_all(body.as_bytes())?;
    }
    stream.flush()
}
