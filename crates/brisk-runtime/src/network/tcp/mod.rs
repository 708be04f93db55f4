//! The data exchange between processes over TCP, with credit-based flow control (Flink's
//! netty network stack, on std threads).
//!
//! Each process runs one [`ConnectionManager`]. Two processes share at most one TCP connection,
//! whichever of them dialed, and every logical channel between them is multiplexed on it under
//! a `u64` id that the caller makes unique. Tasks never see the network: a producer writes into
//! an ordinary bounded [`ChannelSender`] (so backpressure is the local one) that the connection's
//! writer thread drains, and a consumer reads an ordinary [`ChannelReceiver`] that the reader
//! thread fills.
//!
//! **Credit.** A consumer announces as many credits as it lets wait in its local channel, and one
//! more each time it takes a message off it. A producer sends one message per credit, so the
//! reader never waits to hand a message over and a slow consumer cannot hold up the other
//! channels on the connection (no head-of-line blocking). Overtaking barriers (unaligned
//! checkpoints) are priority frames that need no credit; they carry the number of messages still
//! queued behind them on the producer's side, which the consumer passes to
//! [`ChannelSender::send_overtaking`], so the barrier overtakes exactly as it would locally.
//!
//! **Handshake.** The dialer sends `HELLO` (protocol version, service id); the acceptor refuses
//! another version, naming both. When both processes dial each other at once, the one with the
//! smaller service id decides which connection stays: as acceptor it refuses a second one, as
//! dialer it `CONFIRM`s or `ABANDON`s after the `WELCOME`. `frame.rs` lists the frames.
//!
//! **Failure.** A broken connection (the peer died, a malformed frame) drops the consumers'
//! local senders without an end of input, so their input gates fail with
//! [`TaskError::Disconnected`] as for a failed local producer, and drops the producers' local
//! receivers, so their sends fail.
//!
//! [`ChannelReceiver`]: crate::network::channel::ChannelReceiver

mod connection;
mod frame;
mod handshake;
#[cfg(test)]
mod tests;

use crate::error::{TaskError, lock};
use crate::network::channel::{CancelToken, ChannelSender};
use brisk_core::Data;
use connection::{Connection, Registration};
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;
use tracing::{debug, warn};

/// The version of the frame protocol; peers speaking another one are refused.
pub const PROTOCOL_VERSION: u32 = 2;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a network operation failed.
#[derive(Debug, Error)]
pub enum NetworkError {
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The socket error.
        source: io::Error,
    },
    /// A socket operation with a peer failed.
    #[error("network connection with {peer} failed: {source}")]
    Io {
        /// The peer.
        peer: SocketAddr,
        /// The socket error.
        source: io::Error,
    },
    /// The peer closed the connection (its process ended or shut its network down).
    #[error("the connection with {0} was closed by the peer")]
    PeerClosed(SocketAddr),
    /// The peer speaks another protocol version.
    #[error("peer {peer} speaks network protocol version {theirs}, this process speaks version {ours}")]
    VersionMismatch {
        /// The peer.
        peer: SocketAddr,
        /// This process's version.
        ours: u32,
        /// The peer's version.
        theirs: u32,
    },
    /// The peer refused the connection.
    #[error("peer {peer} refused the connection: {reason}")]
    Refused {
        /// The peer.
        peer: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The peer sent something that is not a valid frame here; the connection is closed.
    #[error(
        "protocol error on the connection with {peer}{}: {reason}",
        channel.map(|c| format!(", channel {c}")).unwrap_or_default()
    )]
    Protocol {
        /// The peer.
        peer: SocketAddr,
        /// The channel the frame was for, when it names one.
        channel: Option<u64>,
        /// What was wrong.
        reason: String,
    },
    /// A channel id was registered twice.
    #[error("channel {0} is already registered")]
    DuplicateChannel(u64),
    /// A consumer offered no credit: its producer could never send.
    #[error("channel {0} needs at least one credit")]
    NoCredit(u64),
    /// The local sender already feeds another network channel.
    #[error("the sender of channel {0} is already observed by another consumer")]
    AlreadyObserved(u64),
    /// The connection closed while being used.
    #[error("the connection with {0} is closed")]
    Closed(SocketAddr),
    /// The manager was shut down.
    #[error("the network service is shut down")]
    Shutdown,
    /// The caller's job was cancelled while waiting for a connection.
    #[error("cancelled while connecting")]
    Cancelled,
}

impl From<NetworkError> for TaskError {
    fn from(e: NetworkError) -> Self {
        match e {
            NetworkError::Cancelled => TaskError::Cancelled,
            other => TaskError::User(Box::new(other)),
        }
    }
}

/// The network endpoint of one process (Flink's `NettyConnectionManager` with its
/// `NettyShuffleEnvironment`): listens for peers, keeps one connection per peer process and
/// multiplexes channels on them. Dropping it shuts it down.
pub struct ConnectionManager {
    service: Arc<Service>,
    acceptor: Mutex<Option<JoinHandle<()>>>,
}

impl ConnectionManager {
    /// Listens on `addr` (port 0 picks a free one) and accepts peers on a background thread.
    pub fn bind(addr: impl ToSocketAddrs + std::fmt::Debug) -> Result<Self, NetworkError> {
        Self::bind_with_version(addr, PROTOCOL_VERSION)
    }

    fn bind_with_version(addr: impl ToSocketAddrs + std::fmt::Debug, version: u32) -> Result<Self, NetworkError> {
        let bind_error = |source| NetworkError::Bind { addr: format!("{addr:?}"), source };
        let listener = TcpListener::bind(&addr).map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let service = Arc::new(Service {
            id: new_service_id(),
            version,
            local_addr,
            shutting_down: AtomicBool::new(false),
            next_serial: AtomicU64::new(0),
            state: Mutex::new(ServiceState::default()),
            changed: Condvar::new(),
            #[cfg(test)]
            failures: Mutex::new(Vec::new()),
        });
        let accepting = service.clone();
        let acceptor = std::thread::Builder::new()
            .name(format!("brisk-net accept {local_addr}"))
            .spawn(move || accepting.accept_loop(listener))
            .map_err(bind_error)?;
        debug!(%local_addr, id = service.id, "network service listening");
        Ok(ConnectionManager { service, acceptor: Mutex::new(Some(acceptor)) })
    }

    /// The address peers connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.service.local_addr
    }

    /// Feeds channel `channel` from the network into `sender`, whose receiver a consuming task
    /// reads; the producer may send `credits` messages ahead of it (at most the channel's
    /// capacity makes sense). The producer may connect before or after this call.
    pub fn register_input<T: Data>(
        &self,
        channel: u64,
        sender: ChannelSender<T>,
        credits: usize,
    ) -> Result<(), NetworkError> {
        if credits == 0 {
            return Err(NetworkError::NoCredit(channel));
        }
        let registration = Registration::new(sender, credits).ok_or(NetworkError::AlreadyObserved(channel))?;
        self.service.register_input(channel, registration)
    }

    /// A sender whose messages go to channel `channel` of the process at `peer`: a bounded
    /// local queue of `capacity` messages (the producer waits while it is full, as locally),
    /// drained as the consumer gives credit. Connects to `peer` unless already connected.
    pub fn connect_output<T: Data>(
        &self,
        peer: SocketAddr,
        channel: u64,
        capacity: usize,
        cancel: &CancelToken,
    ) -> Result<ChannelSender<T>, NetworkError> {
        let connection = self.service.connect(peer, cancel)?;
        let (sender, receiver) = crate::network::channel::channel::<T>(capacity, connection.waker.clone());
        connection.add_output(channel, receiver, cancel.clone())?;
        Ok(sender)
    }

    /// Number of open connections to peer processes.
    pub fn connection_count(&self) -> usize {
        lock(&self.service.state).connections.len()
    }

    /// Stops accepting, closes every connection (their channels fail as if the peer had died)
    /// and joins the network threads. Idempotent.
    pub fn shutdown(&self) {
        let service = &self.service;
        if service.shutting_down.swap(true, Ordering::AcqRel) {
            return;
        }
        // `accept` only returns for a connection: make one.
        let mut wake = service.local_addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        let acceptor = lock(&self.acceptor).take();
        match TcpStream::connect_timeout(&wake, CONNECT_TIMEOUT) {
            Ok(_) => {
                if let Some(acceptor) = acceptor {
                    let _ = acceptor.join();
                }
            }
            Err(e) => warn!(addr = %wake, "cannot wake the network acceptor thread, leaving it: {e}"),
        }
        let (connections, handshakes, inputs) = {
            let mut state = lock(&service.state);
            (
                state.connections.drain().map(|(_, c)| c).collect::<Vec<_>>(),
                state.handshaking.drain().map(|(_, s)| s).collect::<Vec<_>>(),
                std::mem::take(&mut state.inputs),
            )
        };
        for stream in handshakes {
            let _ = stream.shutdown(Shutdown::Both);
        }
        for connection in connections {
            connection.close(service, None);
        }
        drop(inputs);
        service.changed.notify_all();
        loop {
            let threads = std::mem::take(&mut lock(&service.state).threads);
            if threads.is_empty() {
                break;
            }
            for thread in threads {
                let _ = thread.join();
            }
        }
        debug!(local_addr = %service.local_addr, "network service shut down");
    }

    #[cfg(test)]
    fn connection_endpoints(&self) -> Vec<(SocketAddr, SocketAddr)> {
        lock(&self.service.state).connections.values().map(|c| (c.local, c.peer)).collect()
    }
}

impl Drop for ConnectionManager {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A consuming channel, as the service knows it.
enum InputSlot {
    /// Registered; its producer has not opened it yet.
    Waiting(Registration),
    /// Opened by a producer on this connection; its consumer has not registered yet.
    Opened(Arc<Connection>),
    /// Both: it lives on the connection with this serial.
    Bound(u64),
}

#[derive(Default)]
struct ServiceState {
    /// Open connections by the peer's service id.
    connections: HashMap<u64, Arc<Connection>>,
    /// The service id behind each address dialed.
    aliases: HashMap<SocketAddr, u64>,
    /// Addresses being dialed: a second caller waits rather than dialing again.
    dialing: HashSet<SocketAddr>,
    inputs: HashMap<u64, InputSlot>,
    /// Sockets in their handshake, by serial, so that a shutdown can close them.
    handshaking: HashMap<u64, TcpStream>,
    threads: Vec<JoinHandle<()>>,
}

/// The shared part of a [`ConnectionManager`], also held by its threads.
struct Service {
    id: u64,
    version: u32,
    local_addr: SocketAddr,
    shutting_down: AtomicBool,
    next_serial: AtomicU64,
    state: Mutex<ServiceState>,
    /// Signalled when a connection is registered or a dial ends.
    changed: Condvar,
    /// Why connections broke, for tests to check.
    #[cfg(test)]
    failures: Mutex<Vec<String>>,
}

/// How a dial ended, when it did not fail.
enum Dialed {
    Connected(Arc<Connection>),
    /// The peer already has a connection with this process; this side will have it soon.
    Duplicate,
}

impl Service {
    fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    fn register_input(&self, channel: u64, registration: Registration) -> Result<(), NetworkError> {
        let mut state = lock(&self.state);
        if self.is_shutting_down() {
            return Err(NetworkError::Shutdown);
        }
        match state.inputs.remove(&channel) {
            None => {
                state.inputs.insert(channel, InputSlot::Waiting(registration));
                debug!(channel, "remote input channel waiting for its producer");
            }
            Some(InputSlot::Opened(connection)) => {
                state.inputs.insert(channel, InputSlot::Bound(connection.serial));
                connection.bind(channel, registration);
            }
            Some(slot) => {
                state.inputs.insert(channel, slot);
                return Err(NetworkError::DuplicateChannel(channel));
            }
        }
        Ok(())
    }

    /// A producer opened `channel` on `connection`: binds it if its consumer registered. False
    /// when another producer already opened it.
    fn open_input(&self, connection: &Arc<Connection>, channel: u64) -> bool {
        let mut state = lock(&self.state);
        match state.inputs.remove(&channel) {
            Some(InputSlot::Waiting(registration)) => {
                state.inputs.insert(channel, InputSlot::Bound(connection.serial));
                connection.bind(channel, registration);
                true
            }
            Some(slot) => {
                state.inputs.insert(channel, slot);
                false
            }
            None => {
                state.inputs.insert(channel, InputSlot::Opened(connection.clone()));
                debug!(peer = %connection.peer, channel, "remote channel opened before its consumer registered");
                true
            }
        }
    }

    /// The producer of `channel` on connection `serial` closed it.
    fn release_input(&self, serial: u64, channel: u64) {
        let mut state = lock(&self.state);
        if matches!(state.inputs.get(&channel), Some(InputSlot::Bound(s)) if *s == serial) {
            state.inputs.remove(&channel);
        }
    }

    /// Drops what refers to a closed connection.
    fn forget_connection(&self, connection: &Arc<Connection>) {
        let mut state = lock(&self.state);
        if state.connections.get(&connection.peer_id).is_some_and(|c| Arc::ptr_eq(c, connection)) {
            state.connections.remove(&connection.peer_id);
        }
        state.inputs.retain(|_, slot| match slot {
            InputSlot::Waiting(_) => true,
            InputSlot::Opened(c) => !Arc::ptr_eq(c, connection),
            InputSlot::Bound(serial) => *serial != connection.serial,
        });
        drop(state);
        self.changed.notify_all();
    }

    fn new_connection(&self, peer_id: u64, stream: &TcpStream) -> io::Result<Arc<Connection>> {
        Connection::new(self.next_serial.fetch_add(1, Ordering::Relaxed), peer_id, stream.try_clone()?)
    }

    /// Makes `connection` the one with its peer. A previous one is returned, for the caller to
    /// close once it let go of the state: the peer found it broken, or it would not have agreed
    /// to a new one.
    fn register(
        &self,
        state: &mut ServiceState,
        connection: &Arc<Connection>,
    ) -> Result<Option<Arc<Connection>>, NetworkError> {
        if self.is_shutting_down() {
            return Err(NetworkError::Shutdown);
        }
        let stale = state.connections.insert(connection.peer_id, connection.clone());
        debug!(peer = %connection.peer, local = %connection.local, "network connection established");
        self.changed.notify_all();
        Ok(stale)
    }

    fn close_stale(&self, stale: Option<Arc<Connection>>) {
        if let Some(stale) = stale {
            stale.close(
                self,
                Some(NetworkError::Refused { peer: stale.peer, reason: "replaced by a new connection".into() }),
            );
        }
    }

    /// Starts the reader and writer threads of a registered connection.
    fn start(self: &Arc<Self>, connection: &Arc<Connection>) {
        let mut state = lock(&self.state);
        if self.is_shutting_down() {
            drop(state);
            return connection.close(self, None);
        }
        for reader in [true, false] {
            let (service, conn) = (self.clone(), connection.clone());
            let role = if reader { "read" } else { "write" };
            let spawned = connection.clone_stream().and_then(|stream| {
                std::thread::Builder::new().name(format!("brisk-net {role} {}", connection.peer)).spawn(move || {
                    if reader { conn.run_reader(service, stream) } else { conn.run_writer(service, stream) }
                })
            });
            match spawned {
                Ok(thread) => state.threads.push(thread),
                Err(e) => {
                    drop(state);
                    return connection.close(self, Some(NetworkError::Io { peer: connection.peer, source: e }));
                }
            }
        }
    }

    fn keep_thread(&self, thread: JoinHandle<()>) {
        let mut state = lock(&self.state);
        state.threads.retain(|t| !t.is_finished());
        state.threads.push(thread);
    }
}

/// An id telling this process's service apart from every other one the peers know.
fn new_service_id() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}
