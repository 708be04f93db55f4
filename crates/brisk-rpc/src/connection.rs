//! One control-plane connection: a handshake, then requests both ways, each answered once.
//! A reader thread per connection decodes frames: it hands replies to the callers waiting for
//! them and answers the peer's requests with the connection's [`Handler`].

use crate::frame::{FrameError, read_frame, write_frame};
use crate::{Hello, HelloReply, Protocol, Role, RpcError, version_mismatch};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{BufReader, BufWriter};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tracing::{debug, warn};

/// Answers the requests a peer sends. It runs on the connection's reader thread, so it must
/// not wait for a reply on the same connection.
pub trait Handler<P: Protocol>: Send + Sync + 'static {
    /// The answer to `request`, which arrived on `connection`.
    fn handle(&self, connection: &RpcConnection<P>, request: P::Request) -> P::Response;
}

impl<P: Protocol, F: Fn(&RpcConnection<P>, P::Request) -> P::Response + Send + Sync + 'static> Handler<P> for F {
    fn handle(&self, connection: &RpcConnection<P>, request: P::Request) -> P::Response {
        self(connection, request)
    }
}

/// What travels in one frame after the handshake.
#[derive(Serialize, Deserialize)]
enum Envelope<Q, A> {
    /// A request, numbered by its sender (0: no answer wanted).
    Request {
        /// Unique per connection and direction.
        id: u64,
        /// What is asked.
        body: Q,
    },
    /// The answer to the sender's request `id`.
    Response {
        /// The request's id.
        id: u64,
        /// The answer.
        body: A,
    },
}

struct Inner<P: Protocol> {
    peer: SocketAddr,
    peer_hello: Hello,
    stream: TcpStream,
    writer: Mutex<BufWriter<TcpStream>>,
    pending: Mutex<HashMap<u64, SyncSender<P::Response>>>,
    next_id: AtomicU64,
    closed: AtomicBool,
}

/// A handshaken connection speaking protocol `P`; clones share it. It stays open until
/// either side closes it or the peer goes away.
pub struct RpcConnection<P: Protocol = crate::Cluster> {
    inner: Arc<Inner<P>>,
}

impl<P: Protocol> Clone for RpcConnection<P> {
    fn clone(&self) -> Self {
        RpcConnection { inner: self.inner.clone() }
    }
}

impl<P: Protocol> std::fmt::Debug for RpcConnection<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RpcConnection({} {})", self.inner.peer_hello.role, self.inner.peer)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<P: Protocol> RpcConnection<P> {
    /// Dials `addr` as `role` and shakes hands, waiting at most `timeout` for each step;
    /// `handler` answers the requests the peer sends on this connection.
    pub fn connect(
        addr: &str,
        role: Role,
        handler: impl Handler<P>,
        timeout: Duration,
    ) -> Result<RpcConnection<P>, RpcError> {
        let connect_error = |source| RpcError::Connect { addr: addr.to_string(), source };
        let mut last_error = None;
        let mut stream = None;
        for candidate in addr.to_socket_addrs().map_err(connect_error)? {
            match TcpStream::connect_timeout(&candidate, timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last_error = Some(e),
            }
        }
        let stream = match (stream, last_error) {
            (Some(s), _) => s,
            (None, Some(e)) => return Err(connect_error(e)),
            (None, None) => {
                return Err(connect_error(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the address resolves to nothing",
                )));
            }
        };
        let peer = stream.peer_addr().map_err(connect_error)?;
        let io = |source| RpcError::Io { peer, source };
        let _ = stream.set_nodelay(true);
        stream.set_read_timeout(Some(timeout)).map_err(io)?;
        let ours = Hello::new(role);
        let mut writer = BufWriter::new(stream.try_clone().map_err(io)?);
        let mut reader = BufReader::new(stream.try_clone().map_err(io)?);
        write_frame(&mut writer, &ours).map_err(|e| frame_error(peer, e))?;
        let theirs = match read_frame::<HelloReply>(&mut reader).map_err(|e| frame_error(peer, e))? {
            HelloReply::Welcome(hello) => hello,
            HelloReply::Refused(reason) => return Err(RpcError::Refused { peer, reason }),
        };
        if let Some(reason) = version_mismatch(&ours, &theirs) {
            return Err(RpcError::Refused { peer, reason });
        }
        stream.set_read_timeout(None).map_err(io)?;
        Ok(Self::start(stream, writer, reader, theirs, handler))
    }

    /// Shakes hands with a dialer on an accepted `stream` as `role`, refusing a peer of
    /// another version or one `admit` refuses (with its reason).
    pub fn accept(
        stream: TcpStream,
        role: Role,
        admit: impl FnOnce(&Hello) -> Result<(), String>,
        handler: impl Handler<P>,
        timeout: Duration,
    ) -> Result<RpcConnection<P>, RpcError> {
        let peer =
            stream.peer_addr().map_err(|source| RpcError::Connect { addr: "an accepted peer".into(), source })?;
        let io = |source| RpcError::Io { peer, source };
        let _ = stream.set_nodelay(true);
        stream.set_read_timeout(Some(timeout)).map_err(io)?;
        let mut writer = BufWriter::new(stream.try_clone().map_err(io)?);
        let mut reader = BufReader::new(stream.try_clone().map_err(io)?);
        let theirs: Hello = read_frame(&mut reader).map_err(|e| frame_error(peer, e))?;
        let ours = Hello::new(role);
        if let Some(reason) = version_mismatch(&ours, &theirs).map_or_else(|| admit(&theirs).err(), Some) {
            let _ = write_frame(&mut writer, &HelloReply::Refused(reason.clone()));
            let _ = stream.shutdown(Shutdown::Both);
            return Err(RpcError::Refused { peer, reason });
        }
        write_frame(&mut writer, &HelloReply::Welcome(ours)).map_err(|e| frame_error(peer, e))?;
        stream.set_read_timeout(None).map_err(io)?;
        Ok(Self::start(stream, writer, reader, theirs, handler))
    }

    fn start(
        stream: TcpStream,
        writer: BufWriter<TcpStream>,
        reader: BufReader<TcpStream>,
        peer_hello: Hello,
        handler: impl Handler<P>,
    ) -> RpcConnection<P> {
        let peer = stream.peer_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let connection = RpcConnection {
            inner: Arc::new(Inner {
                peer,
                peer_hello,
                stream,
                writer: Mutex::new(writer),
                pending: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                closed: AtomicBool::new(false),
            }),
        };
        let reading = connection.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("brisk-rpc {peer}"))
            .spawn(move || reading.read_loop(reader, handler));
        if let Err(e) = spawned {
            warn!(%peer, "cannot start the connection's reader thread: {e}");
            connection.close();
        }
        connection
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.inner.peer
    }

    /// The peer's greeting (its role and version).
    pub fn peer_hello(&self) -> &Hello {
        &self.inner.peer_hello
    }

    /// Whether the connection is closed (by either side, or broken).
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// Closes the connection; callers waiting for replies get [`RpcError::Closed`].
    pub fn close(&self) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = self.inner.stream.shutdown(Shutdown::Both);
        // Dropping the reply senders wakes every waiting caller.
        lock(&self.inner.pending).clear();
    }

    /// Sends `request` without waiting for its answer (which is dropped when it comes).
    pub fn post(&self, request: P::Request) -> Result<(), RpcError> {
        self.send(&Envelope::Request { id: 0, body: request })
    }

    /// Sends `request` and waits at most `timeout` for its answer; an error answer
    /// ([`Protocol::error_message`]) becomes [`RpcError::Remote`].
    pub fn call(&self, request: P::Request, timeout: Duration) -> Result<P::Response, RpcError> {
        let peer = self.inner.peer;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = mpsc::sync_channel(1);
        {
            let mut pending = lock(&self.inner.pending);
            if self.is_closed() {
                return Err(RpcError::Closed(peer));
            }
            pending.insert(id, reply);
        }
        if let Err(e) = self.send(&Envelope::Request { id, body: request }) {
            lock(&self.inner.pending).remove(&id);
            return Err(e);
        }
        match answer.recv_timeout(timeout) {
            Ok(response) => match P::error_message(&response) {
                Some(message) => Err(RpcError::Remote { peer, message: message.to_string() }),
                None => Ok(response),
            },
            Err(RecvTimeoutError::Timeout) => {
                lock(&self.inner.pending).remove(&id);
                Err(RpcError::Timeout { peer, timeout_ms: timeout.as_millis() as u64 })
            }
            Err(RecvTimeoutError::Disconnected) => Err(RpcError::Closed(peer)),
        }
    }

    fn send(&self, envelope: &Envelope<P::Request, P::Response>) -> Result<(), RpcError> {
        let peer = self.inner.peer;
        if self.is_closed() {
            return Err(RpcError::Closed(peer));
        }
        let written = write_frame(&mut *lock(&self.inner.writer), envelope);
        written.map_err(|e| {
            let error = frame_error(peer, e);
            if matches!(error, RpcError::Io { .. } | RpcError::Closed(_)) {
                self.close();
            }
            error
        })
    }

    fn read_loop(self, mut reader: BufReader<TcpStream>, handler: impl Handler<P>) {
        let handler = Arc::new(handler);
        let peer = self.inner.peer;
        loop {
            let envelope = match read_frame::<Envelope<P::Request, P::Response>>(&mut reader) {
                Ok(envelope) => envelope,
                Err(_) if self.is_closed() => break,
                Err(e) => {
                    match frame_error(peer, e) {
                        RpcError::Closed(_) => debug!(%peer, "control connection closed by the peer"),
                        other => warn!(%peer, "control connection broken: {other}"),
                    }
                    break;
                }
            };
            match envelope {
                Envelope::Response { id, body } => {
                    if let Some(reply) = lock(&self.inner.pending).remove(&id) {
                        let _ = reply.send(body);
                    }
                }
                Envelope::Request { id, body } if P::runs_long(&body) => {
                    let (connection, handler) = (self.clone(), handler.clone());
                    let spawned =
                        std::thread::Builder::new().name(format!("brisk-rpc {peer} request")).spawn(move || {
                            let body = handler.handle(&connection, body);
                            if id != 0 {
                                let _ = connection.send(&Envelope::Response { id, body });
                            }
                        });
                    if let Err(e) = spawned {
                        warn!(%peer, "cannot start a thread for a request: {e}");
                        break;
                    }
                }
                Envelope::Request { id, body } => {
                    let body = handler.handle(&self, body);
                    if id != 0 && self.send(&Envelope::Response { id, body }).is_err() {
                        break;
                    }
                }
            }
        }
        self.close();
    }
}

fn frame_error(peer: SocketAddr, error: FrameError) -> RpcError {
    match error {
        FrameError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => RpcError::Closed(peer),
        FrameError::Io(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
            RpcError::Protocol { peer, reason: "no handshake within the timeout".into() }
        }
        FrameError::Io(source) => RpcError::Io { peer, source },
        FrameError::Malformed(reason) => RpcError::Protocol { peer, reason },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClusterOverview, Request, Response, TaskManagerHeartbeat};
    use std::net::TcpListener;
    use std::time::Instant;

    fn overview() -> Response {
        Response::Overview(ClusterOverview {
            jobmanager_id: "jm".into(),
            version: "v".into(),
            taskmanagers: vec![],
            rest_address: None,
        })
    }

    /// A listener answering every connection with `handler`, as `role`, admitting `admit`.
    fn serve(
        role: Role,
        admit: fn(&Hello) -> Result<(), String>,
        handler: fn(&RpcConnection, Request) -> Response,
    ) -> (SocketAddr, mpsc::Receiver<Result<RpcConnection, RpcError>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let accepted = RpcConnection::accept(stream.unwrap(), role, admit, handler, Duration::from_secs(5));
                if tx.send(accepted).is_err() {
                    break;
                }
            }
        });
        (addr, rx)
    }

    fn no_requests(_: &RpcConnection, request: Request) -> Response {
        Response::Error(format!("unexpected {request:?}"))
    }

    #[test]
    fn requests_go_both_ways_and_are_answered() {
        let (addr, accepted) = serve(Role::JobManager, |_| Ok(()), |_, _| overview());
        let client = RpcConnection::connect(
            &addr.to_string(),
            Role::TaskManager,
            |_: &RpcConnection, request: Request| match request {
                Request::Heartbeat { .. } => Response::Heartbeat(TaskManagerHeartbeat {
                    resource_id: "tm".into(),
                    slots: 2,
                    free_slots: 1,
                    memory_used: 0,
                    physical_memory: 0,
                }),
                other => Response::Error(format!("unexpected {other:?}")),
            },
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(client.peer_hello().role, Role::JobManager);
        assert_eq!(client.call(Request::ClusterOverview, Duration::from_secs(5)).unwrap(), overview());
        let server = accepted.recv().unwrap().unwrap();
        assert_eq!(server.peer_hello().role, Role::TaskManager);
        let heartbeat = server.call(Request::Heartbeat { jobmanager_id: "jm".into() }, Duration::from_secs(5)).unwrap();
        assert_eq!(
            heartbeat,
            Response::Heartbeat(TaskManagerHeartbeat {
                resource_id: "tm".into(),
                slots: 2,
                free_slots: 1,
                memory_used: 0,
                physical_memory: 0,
            })
        );
    }

    #[test]
    fn many_callers_get_their_own_answers() {
        let (addr, _accepted) = serve(
            Role::JobManager,
            |_| Ok(()),
            |_, request| match request {
                Request::Heartbeat { jobmanager_id } => Response::Error(jobmanager_id),
                _ => Response::Error("?".into()),
            },
        );
        let client =
            RpcConnection::connect(&addr.to_string(), Role::Client, no_requests, Duration::from_secs(5)).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let client = client.clone();
                std::thread::spawn(move || {
                    for j in 0..50 {
                        let tag = format!("{i}-{j}");
                        match client.call(Request::Heartbeat { jobmanager_id: tag.clone() }, Duration::from_secs(5)) {
                            Err(RpcError::Remote { message, .. }) => assert_eq!(message, tag),
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
    }

    #[test]
    fn another_version_is_refused_with_both_versions_named() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            RpcConnection::accept(stream, Role::JobManager, |_| Ok(()), no_requests, Duration::from_secs(5))
        });
        // A peer from the future, speaking the handshake by hand.
        let mut stream = TcpStream::connect(addr).unwrap();
        let theirs = Hello { protocol: crate::PROTOCOL_VERSION + 1, version: "9.9.9".into(), role: Role::TaskManager };
        write_frame(&mut stream, &theirs).unwrap();
        let reply: HelloReply = read_frame(&mut stream).unwrap();
        let HelloReply::Refused(reason) = reply else { panic!("expected a refusal, got {reply:?}") };
        assert!(reason.contains("9.9.9") && reason.contains(crate::BRISK_VERSION), "{reason}");
        let accepted = server.join().unwrap();
        assert!(matches!(accepted, Err(RpcError::Refused { .. })), "{accepted:?}");
    }

    #[test]
    fn a_role_the_acceptor_does_not_admit_is_refused() {
        let (addr, _accepted) = serve(
            Role::TaskManager,
            |hello| Err(format!("a TaskManager does not serve a {}", hello.role)),
            no_requests,
        );
        let refused = RpcConnection::connect(&addr.to_string(), Role::Client, no_requests, Duration::from_secs(5));
        match refused {
            Err(RpcError::Refused { reason, .. }) => assert!(reason.contains("does not serve a client"), "{reason}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_silent_peer_times_out_and_a_closed_one_fails_waiting_callers() {
        let (addr, accepted) = serve(
            Role::JobManager,
            |_| Ok(()),
            |_, _| {
                std::thread::sleep(Duration::from_millis(400));
                Response::Error("late".into())
            },
        );
        let client =
            RpcConnection::connect(&addr.to_string(), Role::Client, no_requests, Duration::from_secs(5)).unwrap();
        let started = Instant::now();
        let timed_out = client.call(Request::ClusterOverview, Duration::from_millis(50));
        assert!(matches!(timed_out, Err(RpcError::Timeout { timeout_ms: 50, .. })), "{timed_out:?}");
        assert!(started.elapsed() < Duration::from_millis(350));
        let server = accepted.recv().unwrap().unwrap();
        let waiting = {
            let client = client.clone();
            std::thread::spawn(move || client.call(Request::ClusterOverview, Duration::from_secs(30)))
        };
        std::thread::sleep(Duration::from_millis(20));
        server.close();
        let failed = waiting.join().unwrap();
        assert!(matches!(failed, Err(RpcError::Closed(_)) | Err(RpcError::Remote { .. })), "{failed:?}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !client.is_closed() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(client.is_closed(), "the client saw the close");
        assert!(matches!(client.call(Request::ClusterOverview, Duration::from_secs(1)), Err(RpcError::Closed(_))));
    }

    #[test]
    fn a_long_request_does_not_hold_up_the_others() {
        let (addr, _accepted) = serve(
            Role::JobManager,
            |_| Ok(()),
            |_, request| match request {
                Request::RegisterCoordinator(_) => {
                    std::thread::sleep(Duration::from_millis(1500));
                    Response::SlotsGranted { worker_slots: vec![1] }
                }
                _ => overview(),
            },
        );
        let client =
            RpcConnection::connect(&addr.to_string(), Role::Client, no_requests, Duration::from_secs(5)).unwrap();
        let long = {
            let client = client.clone();
            std::thread::spawn(move || {
                let registration = crate::CoordinatorRegistration {
                    job_id: "j".into(),
                    job_name: "n".into(),
                    slots: 1,
                    address: "a".into(),
                    checkpoint_dir: None,
                    earlier_checkpoints: 0,
                    max_parallelism: 128,
                    delete_on_cancellation: true,
                };
                client.call(Request::RegisterCoordinator(registration), Duration::from_secs(10))
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        let started = Instant::now();
        assert_eq!(client.call(Request::ClusterOverview, Duration::from_secs(5)).unwrap(), overview());
        assert!(started.elapsed() < Duration::from_millis(1000), "answered while the long request ran");
        assert_eq!(long.join().unwrap().unwrap(), Response::SlotsGranted { worker_slots: vec![1] });
    }

    #[test]
    fn nobody_listening_is_a_connect_error_naming_the_address() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        match RpcConnection::connect(&addr, Role::Client, no_requests, Duration::from_secs(1)) {
            Err(e @ RpcError::Connect { .. }) => assert!(e.to_string().contains(&addr), "{e}"),
            other => panic!("expected a connect error, got {other:?}"),
        }
    }
}
