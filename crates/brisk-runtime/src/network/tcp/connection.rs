//! One connection to a peer process: a reader thread that decodes frames into the local
//! channels of consuming tasks, and a writer thread that drains the local channels of producing
//! tasks against credit and announces the credit of the consuming ones.

use super::frame::{self, Body, FrameError};
use super::{NetworkError, Service};
use crate::error::lock;
use crate::network::channel::{
    CancelToken, ChannelReceiver, ChannelSender, Message, ReceiverEvent, TaskWaker, TryRecv,
};
use crate::network::wire;
use brisk_core::Data;
use std::collections::{HashMap, HashSet};
use std::io::{self, BufReader, BufWriter, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tracing::{debug, warn};

const READ_BUFFER: usize = 64 << 10;
const WRITE_BUFFER: usize = 64 << 10;
/// Passes over the outputs before the writer looks at its inbox again, so a channel with much
/// credit does not hold back the credit this side owes its peer.
const PUMP_ROUNDS: usize = 16;
/// Pairs per `CREDIT` frame, far below the frame limit.
const CREDIT_PAIRS: usize = 4096;

/// The credit of one consuming channel, shared by its consumer (who frees credit by taking
/// messages), the writer (who announces it) and the reader (who checks data against it).
#[derive(Default)]
pub(super) struct InputCredit {
    /// Credit freed but not announced yet (the initial credit, then one per message taken).
    to_announce: AtomicUsize,
    /// Credit announced so far, in total.
    announced: AtomicU64,
    /// The consumer dropped its receiver.
    dropped: AtomicBool,
    /// The writer to wake, once the channel is bound to a connection.
    waker: OnceLock<Arc<TaskWaker>>,
}

impl InputCredit {
    fn on_event(&self, event: ReceiverEvent) {
        match event {
            // A priority barrier came without credit, so taking it frees none.
            ReceiverEvent::Took { priority: true } => return,
            ReceiverEvent::Took { priority: false } => {
                self.to_announce.fetch_add(1, Ordering::AcqRel);
            }
            ReceiverEvent::Dropped => self.dropped.store(true, Ordering::Release),
        }
        if let Some(waker) = self.waker.get() {
            waker.wake();
        }
    }
}

/// A consumer's channel, registered before or after its producer opened it.
pub(super) struct Registration {
    input: Box<dyn RemoteInput>,
    credit: Arc<InputCredit>,
    credits: usize,
}

impl Registration {
    /// Wraps the local sender of a consuming channel; `None` if something else already observes
    /// its receiver.
    pub(super) fn new<T: Data>(sender: ChannelSender<T>, credits: usize) -> Option<Self> {
        let credit = Arc::new(InputCredit::default());
        let observer = credit.clone();
        if !sender.observe_receiver(move |event| observer.on_event(event)) {
            return None;
        }
        Some(Registration { input: Box::new(TypedInput { sender }), credit, credits })
    }
}

enum Delivery {
    Delivered,
    ConsumerGone,
}

/// The typed end of a consuming channel, behind which the reader need not know `T`.
trait RemoteInput: Send {
    /// Decodes one message into the local channel: never waits, the credit bounds the queue.
    fn deliver(&mut self, priority: bool, payload: &[u8]) -> Result<Delivery, String>;
}

struct TypedInput<T> {
    sender: ChannelSender<T>,
}

impl<T: Data> RemoteInput for TypedInput<T> {
    fn deliver(&mut self, priority: bool, payload: &[u8]) -> Result<Delivery, String> {
        let sender = &self.sender;
        let message = wire::decode_message::<T>(payload, |n| sender.take_buffer(n)).map_err(|e| e.to_string())?;
        let sent = match (priority, message) {
            // Everything that still follows on the producer's side belongs before the barrier;
            // what was sent ahead of it is already queued here and counted by the channel.
            (true, Message::OvertakingBarrier { barrier, overtaken }) => sender.send_overtaking(barrier, overtaken),
            (true, _) => return Err("a priority frame without an overtaking barrier".into()),
            (false, Message::OvertakingBarrier { .. }) => {
                return Err("an overtaking barrier in an ordinary data frame".into());
            }
            (false, message) => sender.send_credited(message),
        };
        Ok(if sent.is_ok() { Delivery::Delivered } else { Delivery::ConsumerGone })
    }
}

/// What an output had for the writer.
enum Polled {
    /// A message that uses a credit was encoded.
    Data,
    /// An overtaking barrier was encoded.
    Priority,
    /// Nothing to send now.
    Empty,
    /// The producer dropped its sender and everything was sent.
    Ended,
}

/// The typed end of a producing channel, behind which the writer need not know `T`.
trait RemoteOutput: Send {
    /// Encodes the next message to send into `out`: an overtaking barrier always, others only
    /// with `credit`.
    fn poll(&mut self, credit: bool, out: &mut Vec<u8>) -> Result<Polled, wire::WireError>;
    /// Whether the producing job was cancelled.
    fn is_cancelled(&self) -> bool;
    /// Closes the channel so that its producer's next send fails with `reason`.
    fn fail(self: Box<Self>, reason: String);
}

struct TypedOutput<T> {
    receiver: ChannelReceiver<T>,
    cancel: CancelToken,
}

impl<T: Data> RemoteOutput for TypedOutput<T> {
    fn poll(&mut self, credit: bool, out: &mut Vec<u8>) -> Result<Polled, wire::WireError> {
        let message = match self.receiver.try_recv_priority() {
            Some(message) => message,
            None if !credit => return Ok(Polled::Empty),
            None => match self.receiver.try_recv() {
                TryRecv::Message(message) => message,
                TryRecv::Empty => return Ok(Polled::Empty),
                TryRecv::Disconnected => return Ok(Polled::Ended),
            },
        };
        wire::encode_message(&message, out)?;
        Ok(match message {
            Message::OvertakingBarrier { .. } => Polled::Priority,
            Message::Records(buffer) => {
                self.receiver.recycle(buffer);
                Polled::Data
            }
            _ => Polled::Data,
        })
    }

    fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    fn fail(self: Box<Self>, reason: String) {
        self.receiver.close_because(reason);
    }
}

/// A consuming channel as the reader holds it.
struct InputEntry {
    input: Box<dyn RemoteInput>,
    credit: Arc<InputCredit>,
    /// Data frames received, checked against the credit announced.
    received: u64,
}

/// What the reader, the writer and the threads of tasks hand each other.
#[derive(Default)]
struct ConnShared {
    /// Consuming channels bound to this connection, for the reader to take over.
    new_inputs: Vec<(u64, InputEntry)>,
    /// The credit of every consuming channel bound here, for the writer.
    input_credit: HashMap<u64, Arc<InputCredit>>,
    /// `CANCEL` frames to send for channels the reader refused.
    cancels: Vec<u64>,
    /// Producing channels for the writer to take over.
    new_outputs: Vec<(u64, Box<dyn RemoteOutput>)>,
    /// Every producing channel on this connection until its `CLOSE` went out.
    output_ids: HashSet<u64>,
    /// Credit the peer announced, for the writer.
    credits: Vec<(u64, u32)>,
    /// Producing channels whose consumer went away.
    cancelled_outputs: Vec<u64>,
}

/// One TCP connection with a peer process, shared by all channels between the two.
pub(super) struct Connection {
    /// Unique within the service.
    pub(super) serial: u64,
    /// The peer's service id.
    pub(super) peer_id: u64,
    /// The peer's end of the socket.
    pub(super) peer: SocketAddr,
    /// This side's end of the socket.
    pub(super) local: SocketAddr,
    stream: TcpStream,
    /// The writer sleeps on it; producers' channels, freed credit and the reader wake it.
    pub(super) waker: Arc<TaskWaker>,
    closed: AtomicBool,
    has_new_inputs: AtomicBool,
    shared: Mutex<ConnShared>,
}

impl Connection {
    /// A connection over `stream`, whose handshake with `peer_id` is done.
    pub(super) fn new(serial: u64, peer_id: u64, stream: TcpStream) -> io::Result<Arc<Self>> {
        Ok(Arc::new(Connection {
            serial,
            peer_id,
            peer: stream.peer_addr()?,
            local: stream.local_addr()?,
            stream,
            waker: TaskWaker::new(),
            closed: AtomicBool::new(false),
            has_new_inputs: AtomicBool::new(false),
            shared: Mutex::new(ConnShared::default()),
        }))
    }

    /// A second handle on the socket, for a thread.
    pub(super) fn clone_stream(&self) -> io::Result<TcpStream> {
        self.stream.try_clone()
    }

    /// Whether the connection was closed, by either side.
    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn protocol(&self, channel: Option<u64>, reason: impl Into<String>) -> NetworkError {
        NetworkError::Protocol { peer: self.peer, channel, reason: reason.into() }
    }

    /// Closes the socket and lets go of every channel on it: consumers see their channel end
    /// without an end of input (an error, as when a local producer fails), producers' sends
    /// fail. `reason` is `None` for a close this side wanted.
    pub(super) fn close(self: &Arc<Self>, service: &Service, reason: Option<NetworkError>) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        #[cfg(test)]
        if let Some(e) = &reason {
            lock(&service.failures).push(e.to_string());
        }
        match reason {
            // A peer that closes in order has shut down; the tasks of channels still open on
            // the connection report their own failure, so this is no warning of its own.
            Some(e @ NetworkError::PeerClosed(_)) => {
                debug!(peer = %self.peer, "network connection closed by the peer: {e}")
            }
            Some(e) if !service.is_shutting_down() => warn!(peer = %self.peer, "network connection broken: {e}"),
            Some(e) => debug!(peer = %self.peer, "network connection closed during shutdown: {e}"),
            None => debug!(peer = %self.peer, "network connection closed"),
        }
        let _ = self.stream.shutdown(Shutdown::Both);
        service.forget_connection(self);
        let (inputs, outputs) = {
            let mut shared = lock(&self.shared);
            shared.input_credit.clear();
            (std::mem::take(&mut shared.new_inputs), std::mem::take(&mut shared.new_outputs))
        };
        // Outside the lock: dropping channel ends wakes their tasks.
        drop(inputs);
        drop(outputs);
        self.waker.wake();
    }

    /// Binds a consuming channel to this connection and announces its initial credit; a closed
    /// connection drops it at once, so its consumer sees the channel fail.
    pub(super) fn bind(&self, channel: u64, registration: Registration) {
        let Registration { input, credit, credits } = registration;
        let mut shared = lock(&self.shared);
        // Checked under the lock: `close` empties these after setting the flag.
        if self.is_closed() {
            drop(shared);
            drop(input);
            return;
        }
        let _ = credit.waker.set(self.waker.clone());
        credit.to_announce.fetch_add(credits, Ordering::AcqRel);
        shared.input_credit.insert(channel, credit.clone());
        shared.new_inputs.push((channel, InputEntry { input, credit, received: 0 }));
        self.has_new_inputs.store(true, Ordering::Release);
        drop(shared);
        debug!(peer = %self.peer, channel, credits, "remote input channel bound");
        self.waker.wake();
    }

    /// Adds a producing channel whose messages the writer sends to the peer.
    pub(super) fn add_output<T: Data>(
        &self,
        channel: u64,
        receiver: ChannelReceiver<T>,
        cancel: CancelToken,
    ) -> Result<(), NetworkError> {
        let mut shared = lock(&self.shared);
        if self.is_closed() {
            return Err(NetworkError::Closed(self.peer));
        }
        if !shared.output_ids.insert(channel) {
            return Err(NetworkError::DuplicateChannel(channel));
        }
        shared.new_outputs.push((channel, Box::new(TypedOutput { receiver, cancel })));
        drop(shared);
        debug!(peer = %self.peer, channel, "remote output channel opened");
        self.waker.wake();
        Ok(())
    }

    /// The reader thread: decodes frames until the connection fails or is closed.
    pub(super) fn run_reader(self: Arc<Self>, service: Arc<Service>, stream: TcpStream) {
        let mut input = BufReader::with_capacity(READ_BUFFER, stream);
        let mut reader = ReaderState::default();
        let mut body = Vec::new();
        let error = loop {
            let kind = match frame::read_frame(&mut input, &mut body, frame::MAX_FRAME) {
                Ok(kind) => kind,
                Err(_) if self.is_closed() => break None,
                Err(FrameError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    break Some(NetworkError::PeerClosed(self.peer));
                }
                Err(FrameError::Io(e)) => break Some(NetworkError::Io { peer: self.peer, source: e }),
                Err(FrameError::Malformed(m)) => break Some(self.protocol(None, m)),
            };
            if self.has_new_inputs.swap(false, Ordering::AcqRel) {
                reader.inputs.extend(std::mem::take(&mut lock(&self.shared).new_inputs));
            }
            if let Err(e) = self.handle_frame(&service, &mut reader, kind, &body) {
                break Some(e);
            }
        };
        self.close(&service, error);
        // Only now: a consumer must not see its channel end before the connection is gone.
        drop(reader);
    }

    fn handle_frame(
        self: &Arc<Self>,
        service: &Service,
        reader: &mut ReaderState,
        kind: u8,
        body: &[u8],
    ) -> Result<(), NetworkError> {
        let mut body = Body(body);
        let channel_id = |body: &mut Body<'_>| body.u64("channel id").map_err(|e| self.protocol(None, e));
        match kind {
            frame::OPEN => {
                let channel = channel_id(&mut body)?;
                body.end("OPEN").map_err(|e| self.protocol(Some(channel), e))?;
                if !service.open_input(self, channel) {
                    warn!(peer = %self.peer, channel, "channel opened by a second producer: refused");
                    reader.cancelled.insert(channel);
                    self.queue_cancel(channel);
                }
                Ok(())
            }
            frame::DATA | frame::PRIORITY => {
                let channel = channel_id(&mut body)?;
                self.deliver(reader, channel, kind == frame::PRIORITY, body.rest())
            }
            frame::CREDIT => {
                let count = body.u32("credit count").map_err(|e| self.protocol(None, e))?;
                let mut credits = Vec::with_capacity((count as usize).min(CREDIT_PAIRS));
                for _ in 0..count {
                    let channel = channel_id(&mut body)?;
                    let credit = body.u32("credit").map_err(|e| self.protocol(Some(channel), e))?;
                    credits.push((channel, credit));
                }
                body.end("CREDIT").map_err(|e| self.protocol(None, e))?;
                lock(&self.shared).credits.extend(credits);
                self.waker.wake();
                Ok(())
            }
            frame::CLOSE => {
                let channel = channel_id(&mut body)?;
                body.end("CLOSE").map_err(|e| self.protocol(Some(channel), e))?;
                service.release_input(self.serial, channel);
                let known = reader.inputs.remove(&channel).is_some() | reader.cancelled.remove(&channel);
                if !known {
                    return Err(self.protocol(Some(channel), "CLOSE for a channel that is not open"));
                }
                lock(&self.shared).input_credit.remove(&channel);
                debug!(peer = %self.peer, channel, "remote input channel closed by its producer");
                Ok(())
            }
            frame::CANCEL => {
                let channel = channel_id(&mut body)?;
                body.end("CANCEL").map_err(|e| self.protocol(Some(channel), e))?;
                lock(&self.shared).cancelled_outputs.push(channel);
                self.waker.wake();
                Ok(())
            }
            other => Err(self.protocol(None, format!("unexpected frame kind {other}"))),
        }
    }

    fn deliver(
        &self,
        reader: &mut ReaderState,
        channel: u64,
        priority: bool,
        payload: &[u8],
    ) -> Result<(), NetworkError> {
        let Some(entry) = reader.inputs.get_mut(&channel) else {
            // Still in flight when the consumer went away: nobody wants it.
            if reader.cancelled.contains(&channel) {
                return Ok(());
            }
            return Err(self.protocol(Some(channel), "a message for a channel that was given no credit"));
        };
        if !priority {
            let announced = entry.credit.announced.load(Ordering::Acquire);
            if entry.received >= announced {
                return Err(self.protocol(Some(channel), format!("a message beyond the {announced} credits announced")));
            }
            entry.received += 1;
        }
        match entry.input.deliver(priority, payload) {
            Ok(Delivery::Delivered) => Ok(()),
            Ok(Delivery::ConsumerGone) => {
                // The writer saw the receiver drop (or will) and cancels the channel.
                reader.inputs.remove(&channel);
                reader.cancelled.insert(channel);
                Ok(())
            }
            Err(e) => Err(self.protocol(Some(channel), e)),
        }
    }

    fn queue_cancel(&self, channel: u64) {
        let mut shared = lock(&self.shared);
        if !self.is_closed() {
            shared.cancels.push(channel);
        }
        drop(shared);
        self.waker.wake();
    }

    /// The writer thread: sends until the connection fails or is closed.
    pub(super) fn run_writer(self: Arc<Self>, service: Arc<Service>, stream: TcpStream) {
        let mut writer = Writer { out: BufWriter::with_capacity(WRITE_BUFFER, stream), frame: Vec::new() };
        let mut outputs = Vec::new();
        let result = self.write_loop(&mut writer, &mut outputs);
        // Before the producers' receivers drop, so that their failing sends find it closed.
        self.close(&service, result.err().filter(|_| !self.is_closed()));
        drop(outputs);
    }

    fn write_loop(&self, writer: &mut Writer, outputs: &mut Vec<OutputState>) -> Result<(), NetworkError> {
        let io = |e: io::Error| NetworkError::Io { peer: self.peer, source: e };
        while !self.is_closed() {
            let inbox = self.take_inbox();
            for channel in inbox.cancels {
                writer.channel_frame(frame::CANCEL, channel).map_err(io)?;
            }
            for chunk in inbox.grants.chunks(CREDIT_PAIRS) {
                frame::begin(&mut writer.frame, frame::CREDIT);
                writer.frame.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
                for &(channel, credit) in chunk {
                    writer.frame.extend_from_slice(&channel.to_be_bytes());
                    writer.frame.extend_from_slice(&credit.to_be_bytes());
                }
                writer.send().map_err(io)?;
            }
            for (channel, output) in inbox.new_outputs {
                writer.channel_frame(frame::OPEN, channel).map_err(io)?;
                outputs.push(OutputState { channel, output: Some(output), credit: 0, announced: false });
            }
            for (channel, credit) in inbox.credits {
                if let Some(o) = outputs.iter_mut().find(|o| o.channel == channel) {
                    o.credit = o.credit.saturating_add(credit as usize);
                    o.announced = true;
                }
            }
            for channel in inbox.cancelled_outputs {
                if let Some(o) = outputs.iter_mut().find(|o| o.channel == channel) {
                    debug!(peer = %self.peer, channel, "remote consumer cancelled the channel");
                    // Dropping the receiver makes the producer's sends fail, as locally.
                    o.output = None;
                    o.announced = true;
                }
            }
            if !self.pump(writer, outputs).map_err(io)? {
                writer.out.flush().map_err(io)?;
                self.waker.wait_until(None);
            }
        }
        Ok(())
    }

    fn take_inbox(&self) -> Inbox {
        let mut shared = lock(&self.shared);
        let ConnShared { input_credit, cancels, new_outputs, credits, cancelled_outputs, .. } = &mut *shared;
        let mut inbox = Inbox {
            cancels: std::mem::take(cancels),
            grants: Vec::new(),
            new_outputs: std::mem::take(new_outputs),
            credits: std::mem::take(credits),
            cancelled_outputs: std::mem::take(cancelled_outputs),
        };
        input_credit.retain(|&channel, credit| {
            if credit.dropped.load(Ordering::Acquire) {
                debug!(peer = %self.peer, channel, "remote input channel dropped by its consumer");
                inbox.cancels.push(channel);
                return false;
            }
            let freed = credit.to_announce.swap(0, Ordering::AcqRel);
            if freed > 0 {
                let grant = freed.min(u32::MAX as usize);
                if freed > grant {
                    credit.to_announce.fetch_add(freed - grant, Ordering::AcqRel);
                }
                // Counted before the frame leaves, so data sent against it is never early.
                credit.announced.fetch_add(grant as u64, Ordering::AcqRel);
                inbox.grants.push((channel, grant as u32));
            }
            true
        });
        inbox
    }

    /// Sends what the outputs have and their credit allows, round robin; whether anything moved.
    fn pump(&self, writer: &mut Writer, outputs: &mut Vec<OutputState>) -> io::Result<bool> {
        let mut progressed = false;
        for _ in 0..PUMP_ROUNDS {
            let mut moved = false;
            let mut i = 0;
            while i < outputs.len() {
                let o = &mut outputs[i];
                if o.output.as_ref().is_some_and(|output| output.is_cancelled()) {
                    debug!(peer = %self.peer, channel = o.channel, "producing job cancelled: channel dropped");
                    o.output = None;
                }
                let Some(output) = o.output.as_mut() else {
                    // A `CLOSE` before the consumer registered would find nobody to tell.
                    if o.announced {
                        writer.channel_frame(frame::CLOSE, o.channel)?;
                        lock(&self.shared).output_ids.remove(&o.channel);
                        outputs.swap_remove(i);
                        moved = true;
                    } else {
                        i += 1;
                    }
                    continue;
                };
                // Before the consumer registered, even a priority barrier has nowhere to go.
                if !o.announced {
                    i += 1;
                    continue;
                }
                frame::begin(&mut writer.frame, frame::DATA);
                writer.frame.extend_from_slice(&o.channel.to_be_bytes());
                let polled = output.poll(o.credit > 0, &mut writer.frame).map_err(|e| e.to_string());
                let sent = match polled {
                    Ok(Polled::Empty) => {
                        i += 1;
                        continue;
                    }
                    Ok(Polled::Ended) => {
                        debug!(peer = %self.peer, channel = o.channel, "remote output channel ended");
                        o.output = None;
                        continue;
                    }
                    Ok(Polled::Priority) => {
                        writer.frame[4] = frame::PRIORITY;
                        writer.send_checked()
                    }
                    Ok(Polled::Data) => {
                        o.credit -= 1;
                        writer.send_checked()
                    }
                    Err(e) => Err(e),
                };
                match sent {
                    Ok(result) => result?,
                    Err(e) => {
                        // The producing task fails with the reason; its consumer sees the
                        // channel end without end of input, a consequence of that failure.
                        debug!(peer = %self.peer, channel = o.channel, "cannot send a message, closing the channel: {e}");
                        if let Some(output) = o.output.take() {
                            output
                                .fail(format!("cannot send a message of channel {} to {}: {e}", o.channel, self.peer));
                        }
                        continue;
                    }
                }
                moved = true;
                i += 1;
            }
            if !moved {
                break;
            }
            progressed = true;
        }
        Ok(progressed)
    }
}

/// The reader's own view of the consuming channels on its connection.
#[derive(Default)]
struct ReaderState {
    inputs: HashMap<u64, InputEntry>,
    /// Channels whose consumer went away or which were refused, until the producer's `CLOSE`.
    cancelled: HashSet<u64>,
}

/// What the writer takes from the shared state in one go.
struct Inbox {
    cancels: Vec<u64>,
    grants: Vec<(u64, u32)>,
    new_outputs: Vec<(u64, Box<dyn RemoteOutput>)>,
    credits: Vec<(u64, u32)>,
    cancelled_outputs: Vec<u64>,
}

/// A producing channel as the writer holds it.
struct OutputState {
    channel: u64,
    /// `None` once the producer is gone or cancelled: only a `CLOSE` is left to send.
    output: Option<Box<dyn RemoteOutput>>,
    credit: usize,
    /// The consumer registered (its first credit came).
    announced: bool,
}

struct Writer {
    out: BufWriter<TcpStream>,
    frame: Vec<u8>,
}

impl Writer {
    fn channel_frame(&mut self, kind: u8, channel: u64) -> io::Result<()> {
        frame::begin(&mut self.frame, kind);
        self.frame.extend_from_slice(&channel.to_be_bytes());
        self.send()
    }

    fn send(&mut self) -> io::Result<()> {
        frame::finish(&mut self.frame).map_err(io::Error::other)?;
        self.out.write_all(&self.frame)
    }

    /// Sends the frame; the outer error is a frame over the size limit (only its channel
    /// fails), the inner one the socket's.
    fn send_checked(&mut self) -> Result<io::Result<()>, String> {
        frame::finish(&mut self.frame)?;
        Ok(self.out.write_all(&self.frame))
    }
}
