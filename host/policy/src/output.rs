//! Where a policy's stdout and stderr go: a bounded in-memory buffer, never the host's
//! own streams (the host's stdout is the CNI protocol channel).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// How much a guest may write in one `write` after one `check-write`.
const WRITE_BUDGET: usize = 64 * 1024;

/// Keeps the last `capacity` bytes written to it.
///
/// The tail, not the head, because a panic message is the last thing a guest writes:
/// a policy that logs a lot before it panics must still have its reason reported. The
/// stream never refuses or blocks a write, so a chatty guest cannot trap on its output.
#[derive(Clone)]
pub(crate) struct OutputTail {
    capacity: usize,
    buffer: Arc<Mutex<Tail>>,
}

#[derive(Default)]
struct Tail {
    bytes: VecDeque<u8>,
    dropped: bool,
}

impl OutputTail {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            buffer: Arc::default(),
        }
    }

    fn append(&self, data: &[u8]) {
        // A poisoned lock only means another writer panicked mid-append; the bytes are
        // still a valid (if incomplete) log.
        let mut tail = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
        let keep = data.len().min(self.capacity);
        tail.bytes.extend(&data[data.len() - keep..]);
        let excess = tail.bytes.len().saturating_sub(self.capacity);
        tail.bytes.drain(..excess);
        tail.dropped |= excess > 0 || keep < data.len();
    }

    /// What was kept, as text, marked when earlier output was dropped.
    pub(crate) fn text(&self) -> String {
        let tail = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
        let (front, back) = tail.bytes.as_slices();
        let text = String::from_utf8_lossy(&[front, back].concat()).into_owned();
        if tail.dropped {
            format!("[earlier output dropped]…{text}")
        } else {
            text
        }
    }
}

impl IsTerminal for OutputTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for OutputTail {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for OutputTail {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_BUDGET)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for OutputTail {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for OutputTail {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_everything_below_capacity() {
        let tail = OutputTail::new(16);
        tail.append(b"hello ");
        tail.append(b"world");
        assert_eq!(tail.text(), "hello world");
    }

    #[test]
    fn keeps_the_last_bytes_and_says_so() {
        let tail = OutputTail::new(8);
        tail.append(b"0123456789");
        tail.append(b"ab");
        assert_eq!(tail.text(), "[earlier output dropped]…456789ab");

        let fresh = OutputTail::new(8);
        fresh.append(b"one write larger than the capacity: END!");
        assert_eq!(fresh.text(), "[earlier output dropped]…ty: END!");
    }
}
