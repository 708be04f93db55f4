//! `socket_text_stream`: lines read from a TCP server (Flink's `SocketTextStreamFunction`);
//! the source ends when the server closes the connection.

use super::{RECORDS_PER_POLL, SplitQueue};
use brisk_core::BoxError;
use brisk_runtime::network::channel::{CancelToken, TaskWaker};
use brisk_runtime::source::{
    Boundedness, ReadStatus, ReaderContext, Source, SourceOutput, SourceReader, SourceSplit, SplitEnumerator,
    SplitReader, SplitReaders,
};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, ErrorKind};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::time::Duration;

/// Reads `delimiter`-separated text from `host:port` (parallelism 1).
#[derive(Clone, Debug)]
pub struct SocketTextStreamSource {
    host: String,
    port: u16,
    delimiter: u8,
}

impl SocketTextStreamSource {
    /// Lines from `host:port`.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        SocketTextStreamSource { host: host.into(), port, delimiter: b'\n' }
    }

    /// Splits records at `delimiter` instead of newlines.
    pub fn with_delimiter(mut self, delimiter: u8) -> Self {
        self.delimiter = delimiter;
        self
    }
}

/// The one connection of a socket source.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SocketSplit {
    /// `host:port`.
    pub address: String,
}

impl SourceSplit for SocketSplit {
    fn split_id(&self) -> String {
        self.address.clone()
    }
}

enum Event {
    Line(String),
    End,
    Failed(String),
}

impl Source<String> for SocketTextStreamSource {
    type Split = SocketSplit;

    fn boundedness(&self) -> Boundedness {
        Boundedness::ContinuousUnbounded
    }

    fn create_enumerator(&self, _parallelism: usize) -> Result<Box<dyn SplitEnumerator<SocketSplit>>, BoxError> {
        Ok(Box::new(SplitQueue::assigned(vec![SocketSplit { address: format!("{}:{}", self.host, self.port) }], 1)))
    }

    fn create_reader(&self, ctx: &ReaderContext) -> Result<Box<dyn SourceReader<String, SocketSplit>>, BoxError> {
        let (delimiter, waker, cancel) = (self.delimiter, ctx.waker.clone(), ctx.cancel.clone());
        SplitReaders::boxed(move || {
            Ok(SocketReader { delimiter, waker: waker.clone(), cancel: cancel.clone(), events: None, split: None })
        })
    }
}

struct SocketReader {
    delimiter: u8,
    waker: Arc<TaskWaker>,
    cancel: CancelToken,
    events: Option<Receiver<Event>>,
    /// The connection, so a restored job reconnects (a socket cannot replay what it sent).
    split: Option<SocketSplit>,
}

impl SplitReader<String, SocketSplit> for SocketReader {
    fn open_split(&mut self, split: SocketSplit) -> Result<(), BoxError> {
        let addr = split
            .address
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve socket address {}: {e}", split.address))?
            .next()
            .ok_or_else(|| format!("socket address {} resolves to nothing", split.address))?;
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .map_err(|e| format!("cannot connect to {}: {e}", split.address))?;
        // A read timeout lets the thread notice cancellation.
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| format!("socket {}: {e}", split.address))?;
        self.split = Some(split.clone());
        let (tx, rx) = sync_channel(RECORDS_PER_POLL * 4);
        let (waker, cancel, delimiter) = (self.waker.clone(), self.cancel.clone(), self.delimiter);
        std::thread::Builder::new()
            .name(format!("socket reader {}", split.address))
            .spawn(move || read_lines(stream, split.address, delimiter, tx, waker, cancel))
            .map_err(|e| format!("cannot start socket reader thread: {e}"))?;
        self.events = Some(rx);
        Ok(())
    }

    fn poll(&mut self, out: &mut SourceOutput<'_, String>) -> Result<ReadStatus, BoxError> {
        let Some(events) = self.events.as_ref() else { return Ok(ReadStatus::SplitFinished) };
        for _ in 0..RECORDS_PER_POLL {
            if out.should_yield() {
                break;
            }
            match events.try_recv() {
                Ok(Event::Line(line)) => out.collect(line),
                Ok(Event::End) => {
                    self.events = None;
                    return Ok(ReadStatus::SplitFinished);
                }
                Ok(Event::Failed(message)) => return Err(message.into()),
                Err(TryRecvError::Empty) => return Ok(ReadStatus::Wait(None)),
                Err(TryRecvError::Disconnected) => return Err("the socket reader thread stopped unexpectedly".into()),
            }
        }
        Ok(ReadStatus::More)
    }

    fn snapshot_state(&self) -> Vec<SocketSplit> {
        self.split.iter().cloned().collect()
    }
}

fn read_lines(
    stream: TcpStream,
    address: String,
    delimiter: u8,
    tx: SyncSender<Event>,
    waker: Arc<TaskWaker>,
    cancel: CancelToken,
) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    let mut line_number = 0u64;
    let send = |event: Event| {
        let ok = tx.send(event).is_ok();
        waker.wake();
        ok
    };
    loop {
        if cancel.is_cancelled() {
            return;
        }
        match reader.read_until(delimiter, &mut buf) {
            Ok(0) => {
                if !buf.is_empty() {
                    line_number += 1;
                    if !send_line(&send, &mut buf, delimiter, &address, line_number) {
                        return;
                    }
                }
                send(Event::End);
                return;
            }
            Ok(_) if buf.last() == Some(&delimiter) => {
                line_number += 1;
                if !send_line(&send, &mut buf, delimiter, &address, line_number) {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(e) => {
                send(Event::Failed(format!("reading from socket {address} failed: {e}")));
                return;
            }
        }
    }
}

fn send_line(send: &impl Fn(Event) -> bool, buf: &mut Vec<u8>, delimiter: u8, address: &str, line: u64) -> bool {
    let mut content = &buf[..];
    if let Some(rest) = content.strip_suffix(&[delimiter]) {
        content = rest;
    }
    if delimiter == b'\n'
        && let Some(rest) = content.strip_suffix(b"\r")
    {
        content = rest;
    }
    let event = match std::str::from_utf8(content) {
        Ok(text) => Event::Line(text.to_owned()),
        Err(_) => Event::Failed(format!("socket {address}, line {line}: the line is not valid UTF-8 text")),
    };
    buf.clear();
    let failed = matches!(event, Event::Failed(_));
    send(event) && !failed
}
