//! A guest's stdout or stderr, forwarded live as Spin does: every complete
//! line goes to the host's own stream as soon as the guest writes it,
//! labelled with the component, so a request's log lines are out before its
//! response is. A last line without a newline is written when the request
//! ends ([`GuestOutput::finish`]).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// What one request may print; the rest is dropped with a notice, so a
/// runaway guest cannot flood the host's log.
const CAPACITY: usize = 1 << 20;
/// A line longer than this is written in pieces.
const LONGEST_LINE: usize = 16 << 10;

#[derive(Clone)]
pub struct GuestOutput(Arc<Mutex<Lines>>);

/// Where finished lines go: the component, the bytes, whether to stderr.
type Sink = fn(&str, &[u8], bool);

struct Lines {
    sink: Sink,
    component: String,
    to_stderr: bool,
    partial: Vec<u8>,
    taken: usize,
    truncated: bool,
}

impl GuestOutput {
    pub fn new(component: &str, to_stderr: bool) -> Self {
        Self::with_sink(component, to_stderr, crate::log::guest_output)
    }

    fn with_sink(component: &str, to_stderr: bool, sink: Sink) -> Self {
        Self(Arc::new(Mutex::new(Lines {
            sink,
            component: component.to_string(),
            to_stderr,
            partial: Vec::new(),
            taken: 0,
            truncated: false,
        })))
    }

    /// Takes what the guest wrote and writes out every line it completes.
    fn push(&self, bytes: &[u8]) {
        let mut lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let room = CAPACITY.saturating_sub(lines.taken);
        if bytes.len() > room && !lines.truncated {
            lines.truncated = true;
            let notice = format!("(output beyond {CAPACITY} bytes dropped)\n");
            (lines.sink)(&lines.component, notice.as_bytes(), lines.to_stderr);
        }
        let bytes = &bytes[..bytes.len().min(room)];
        lines.taken += bytes.len();
        lines.partial.extend_from_slice(bytes);
        let complete = match lines.partial.iter().rposition(|&b| b == b'\n') {
            Some(end) => end + 1,
            None if lines.partial.len() >= LONGEST_LINE => lines.partial.len(),
            None => return,
        };
        let rest = lines.partial.split_off(complete);
        let done = std::mem::replace(&mut lines.partial, rest);
        (lines.sink)(&lines.component, &done, lines.to_stderr);
    }

    /// Writes out a last, unterminated line.
    pub fn finish(&self) {
        let mut lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let done = std::mem::take(&mut lines.partial);
        (lines.sink)(&lines.component, &done, lines.to_stderr);
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always ready: writes past the capacity are dropped, not refused.
        Ok(LONGEST_LINE)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    thread_local! {
        static WRITTEN: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }

    fn collect(_: &str, bytes: &[u8], _: bool) {
        WRITTEN.with(|w| w.borrow_mut().extend_from_slice(bytes));
    }

    fn written() -> Vec<u8> {
        WRITTEN.with(|w| std::mem::take(&mut *w.borrow_mut()))
    }

    #[test]
    fn complete_lines_leave_at_once_and_a_partial_one_waits() {
        let output = GuestOutput::with_sink("probe", false, collect);
        output.push(b"one\ntw");
        assert_eq!(written(), b"one\n");
        output.push(b"o\nthr");
        assert_eq!(written(), b"two\n");
        output.finish();
        assert_eq!(written(), b"thr");
        output.finish();
        assert_eq!(written(), b"");
    }

    #[test]
    fn output_past_the_capacity_is_dropped_with_a_notice() {
        let output = GuestOutput::with_sink("probe", true, collect);
        let line = [b'x'; 1023];
        for _ in 0..CAPACITY / 1024 + 10 {
            output.push(&line);
            output.push(b"\n");
        }
        let all = written();
        let notice = format!("(output beyond {CAPACITY} bytes dropped)\n");
        assert_eq!(all.len(), CAPACITY + notice.len());
        assert!(all.ends_with(notice.as_bytes()));
    }

    #[test]
    fn an_endless_line_is_written_in_pieces() {
        let output = GuestOutput::with_sink("probe", false, collect);
        output.push(&[b'y'; LONGEST_LINE + 5]);
        assert_eq!(written().len(), LONGEST_LINE + 5);
    }
}
