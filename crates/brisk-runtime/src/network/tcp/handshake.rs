//! Making a connection: dialing a peer or accepting one, the `HELLO`/`WELCOME` exchange, and
//! the rule that keeps one connection per pair of processes when both dial at once.

use super::connection::Connection;
use super::frame::{self, Body};
use super::{CONNECT_TIMEOUT, Dialed, HANDSHAKE_TIMEOUT, NetworkError, Service};
use crate::error::lock;
use crate::network::channel::CancelToken;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tracing::{debug, warn};

impl Service {
    /// The connection with the process at `peer`, dialing it if there is none.
    pub(super) fn connect(
        self: &Arc<Self>,
        peer: SocketAddr,
        cancel: &CancelToken,
    ) -> Result<Arc<Connection>, NetworkError> {
        let deadline = Instant::now() + CONNECT_TIMEOUT + HANDSHAKE_TIMEOUT;
        // Set after the peer refused a dial as a duplicate: wait a moment for the connection
        // it knows to be registered here before dialing again.
        let mut duplicate = false;
        let mut refused_as_duplicate = false;
        loop {
            let mut state = lock(&self.state);
            loop {
                if self.is_shutting_down() {
                    return Err(NetworkError::Shutdown);
                }
                if cancel.is_cancelled() {
                    return Err(NetworkError::Cancelled);
                }
                let known = state.aliases.get(&peer).and_then(|id| state.connections.get(id));
                if let Some(connection) = known.filter(|c| !c.is_closed()) {
                    return Ok(connection.clone());
                }
                if Instant::now() >= deadline {
                    let reason = if refused_as_duplicate {
                        "it reports a connection with this process that this process does not have"
                    } else {
                        "timed out waiting for another connection attempt"
                    };
                    return Err(NetworkError::Refused { peer, reason: reason.into() });
                }
                // After a refusal as a duplicate, the connection is about to be registered here.
                if !duplicate && state.dialing.insert(peer) {
                    break;
                }
                duplicate = false;
                state = self
                    .changed
                    .wait_timeout(state, Duration::from_millis(100))
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
            drop(state);
            let outcome = self.dial(peer);
            lock(&self.state).dialing.remove(&peer);
            self.changed.notify_all();
            match outcome? {
                Dialed::Connected(connection) => return Ok(connection),
                Dialed::Duplicate => (duplicate, refused_as_duplicate) = (true, true),
            }
        }
    }

    fn dial(self: &Arc<Self>, peer: SocketAddr) -> Result<Dialed, NetworkError> {
        let io_error = |source| NetworkError::Io { peer, source };
        let stream = TcpStream::connect_timeout(&peer, CONNECT_TIMEOUT).map_err(io_error)?;
        let serial = self.track_handshake(&stream).map_err(io_error)?;
        let outcome = self.dial_handshake(peer, stream);
        lock(&self.state).handshaking.remove(&serial);
        outcome
    }

    fn dial_handshake(self: &Arc<Self>, peer: SocketAddr, mut stream: TcpStream) -> Result<Dialed, NetworkError> {
        let io_error = |source| NetworkError::Io { peer, source };
        let protocol = |reason: String| NetworkError::Protocol { peer, channel: None, reason };
        stream.set_nodelay(true).map_err(io_error)?;
        stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT)).map_err(io_error)?;
        let mut hello = Vec::with_capacity(16);
        hello.extend_from_slice(frame::MAGIC);
        hello.extend_from_slice(&self.version.to_be_bytes());
        hello.extend_from_slice(&self.id.to_be_bytes());
        frame::write_frame(&mut stream, frame::HELLO, &hello).map_err(io_error)?;
        let mut body = Vec::new();
        let kind = read_handshake_frame(peer, &mut stream, &mut body)?;
        let mut reply = Body(&body);
        match kind {
            frame::WELCOME => {
                let version = reply.u32("version").map_err(protocol)?;
                if version != self.version {
                    return Err(NetworkError::VersionMismatch { peer, ours: self.version, theirs: version });
                }
                let peer_id = reply.u64("service id").map_err(protocol)?;
                reply.end("WELCOME").map_err(protocol)?;
                stream.set_read_timeout(None).map_err(io_error)?;
                let connection = self.new_connection(peer_id, &stream).map_err(io_error)?;
                let mut state = lock(&self.state);
                state.aliases.insert(peer, peer_id);
                if self.id < peer_id {
                    // This side decides which connection the pair keeps.
                    if let Some(existing) = state.connections.get(&peer_id).filter(|c| !c.is_closed()) {
                        let existing = existing.clone();
                        drop(state);
                        debug!(%peer, "already connected with this peer: abandoning the new connection");
                        let _ = frame::write_frame(&mut stream, frame::ABANDON, &[]);
                        return Ok(Dialed::Connected(existing));
                    }
                    let stale = self.register(&mut state, &connection)?;
                    drop(state);
                    self.close_stale(stale);
                    if let Err(e) = frame::write_frame(&mut stream, frame::CONFIRM, &[]) {
                        connection.close(self, Some(io_error(e)));
                        return Err(NetworkError::Closed(peer));
                    }
                } else {
                    let stale = self.register(&mut state, &connection)?;
                    drop(state);
                    self.close_stale(stale);
                }
                self.start(&connection);
                Ok(Dialed::Connected(connection))
            }
            frame::REFUSE => {
                let code = reply.u8("refusal code").map_err(protocol)?;
                match code {
                    frame::REFUSED_VERSION => {
                        let theirs = reply.u32("version").map_err(protocol)?;
                        Err(NetworkError::VersionMismatch { peer, ours: self.version, theirs })
                    }
                    frame::REFUSED_DUPLICATE => {
                        let peer_id = reply.u64("service id").map_err(protocol)?;
                        lock(&self.state).aliases.insert(peer, peer_id);
                        debug!(%peer, "peer already has a connection with this process");
                        Ok(Dialed::Duplicate)
                    }
                    _ => {
                        Err(NetworkError::Refused { peer, reason: String::from_utf8_lossy(reply.rest()).into_owned() })
                    }
                }
            }
            other => Err(protocol(format!("expected WELCOME or REFUSE, got frame kind {other}"))),
        }
    }

    pub(super) fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        for stream in listener.incoming() {
            if self.is_shutting_down() {
                break;
            }
            match stream {
                Ok(stream) => {
                    let service = self.clone();
                    let spawned = std::thread::Builder::new()
                        .name("brisk-net handshake".into())
                        .spawn(move || service.accept(stream));
                    match spawned {
                        Ok(thread) => self.keep_thread(thread),
                        Err(e) => warn!("cannot start a network handshake thread: {e}"),
                    }
                }
                Err(e) => {
                    // Typically out of file descriptors: do not spin.
                    warn!(local_addr = %self.local_addr, "cannot accept a network connection: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    fn accept(self: Arc<Self>, stream: TcpStream) {
        let peer = match stream.peer_addr() {
            Ok(peer) => peer,
            Err(e) => return debug!("accepted a socket that is already gone: {e}"),
        };
        let Ok(serial) = self.track_handshake(&stream) else { return };
        let outcome = self.accept_handshake(peer, stream);
        lock(&self.state).handshaking.remove(&serial);
        if let Err(e) = outcome {
            if self.is_shutting_down() {
                debug!(%peer, "network handshake ended by shutdown: {e}");
            } else {
                warn!(%peer, "network handshake failed: {e}");
            }
        }
    }

    fn accept_handshake(self: &Arc<Self>, peer: SocketAddr, mut stream: TcpStream) -> Result<(), NetworkError> {
        let io_error = |source| NetworkError::Io { peer, source };
        let protocol = |reason: String| NetworkError::Protocol { peer, channel: None, reason };
        stream.set_nodelay(true).map_err(io_error)?;
        stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT)).map_err(io_error)?;
        let mut body = Vec::new();
        let kind = read_handshake_frame(peer, &mut stream, &mut body)?;
        if kind != frame::HELLO {
            return Err(protocol(format!("expected HELLO, got frame kind {kind}")));
        }
        let mut hello = Body(&body);
        if hello.magic().map_err(protocol)? != *frame::MAGIC {
            return Err(protocol("not a Brisk peer (bad magic)".into()));
        }
        let theirs = hello.u32("version").map_err(protocol)?;
        if theirs != self.version {
            let error = NetworkError::VersionMismatch { peer, ours: self.version, theirs };
            refuse(&mut stream, frame::REFUSED_VERSION, &self.version.to_be_bytes(), &error.to_string());
            return Err(error);
        }
        let peer_id = hello.u64("service id").map_err(protocol)?;
        hello.end("HELLO").map_err(protocol)?;
        if peer_id == self.id {
            refuse(&mut stream, frame::REFUSED_OTHER, &[], "a process cannot connect to itself");
            return Err(NetworkError::Refused { peer, reason: "a connection from this process itself".into() });
        }
        let mut welcome = Vec::with_capacity(12);
        welcome.extend_from_slice(&self.version.to_be_bytes());
        welcome.extend_from_slice(&self.id.to_be_bytes());
        let connection = if self.id < peer_id {
            // This side decides which connection the pair keeps.
            let mut state = lock(&self.state);
            if state.connections.get(&peer_id).is_some_and(|c| !c.is_closed()) {
                drop(state);
                debug!(%peer, "already connected with this peer: refusing the new connection");
                refuse(&mut stream, frame::REFUSED_DUPLICATE, &self.id.to_be_bytes(), "already connected");
                return Ok(());
            }
            let connection = self.new_connection(peer_id, &stream).map_err(io_error)?;
            let stale = self.register(&mut state, &connection)?;
            drop(state);
            self.close_stale(stale);
            if let Err(e) = frame::write_frame(&mut stream, frame::WELCOME, &welcome) {
                connection.close(self, Some(io_error(e)));
                return Ok(());
            }
            connection
        } else {
            frame::write_frame(&mut stream, frame::WELCOME, &welcome).map_err(io_error)?;
            match read_handshake_frame(peer, &mut stream, &mut body)? {
                frame::CONFIRM => {}
                frame::ABANDON => {
                    debug!(%peer, "peer abandoned a second connection");
                    return Ok(());
                }
                other => return Err(protocol(format!("expected CONFIRM or ABANDON, got frame kind {other}"))),
            }
            let connection = self.new_connection(peer_id, &stream).map_err(io_error)?;
            let stale = self.register(&mut lock(&self.state), &connection)?;
            self.close_stale(stale);
            connection
        };
        stream.set_read_timeout(None).map_err(io_error)?;
        self.start(&connection);
        Ok(())
    }

    /// Remembers a socket in its handshake so a shutdown can close it; its serial.
    fn track_handshake(&self, stream: &TcpStream) -> io::Result<u64> {
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        let clone = stream.try_clone()?;
        let mut state = lock(&self.state);
        if self.is_shutting_down() {
            return Err(io::Error::other("the network service is shut down"));
        }
        state.handshaking.insert(serial, clone);
        Ok(serial)
    }
}

fn read_handshake_frame(peer: SocketAddr, stream: &mut TcpStream, body: &mut Vec<u8>) -> Result<u8, NetworkError> {
    frame::read_frame(stream, body, frame::MAX_HANDSHAKE_FRAME).map_err(|e| match e {
        frame::FrameError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => NetworkError::PeerClosed(peer),
        frame::FrameError::Io(source) => NetworkError::Io { peer, source },
        frame::FrameError::Malformed(reason) => NetworkError::Protocol { peer, channel: None, reason },
    })
}

/// Tells the dialer why it is refused; it may already be gone.
fn refuse(stream: &mut TcpStream, code: u8, data: &[u8], text: &str) {
    let mut body = vec![code];
    body.extend_from_slice(data);
    body.extend_from_slice(text.as_bytes());
    let _ = frame::write_frame(stream, frame::REFUSE, &body).and_then(|()| stream.flush());
}
