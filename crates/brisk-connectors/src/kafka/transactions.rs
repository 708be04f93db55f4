//! Commits a pre-committed Kafka transaction by its producer id and epoch, speaking Kafka's
//! protocol directly: librdkafka cannot resume a transaction another producer (a failed
//! attempt's) opened, so after a restore the sink asks the transaction coordinator itself,
//! as Flink does.

use super::KafkaCommittable;
use brisk_core::{BoxError, NonRecoverableError};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::{
    ApiVersionsRequest, EndTxnRequest, FindCoordinatorRequest, ProducerId, RequestHeader, ResponseHeader,
    TransactionalId,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The client id the coordinator sees for these requests.
pub const RECOVERY_CLIENT_ID: &str = "brisk-transaction-recovery";

/// Kafka's error codes after which a request is tried again.
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const NOT_COORDINATOR: i16 = 16;
const CONCURRENT_TRANSACTIONS: i16 = 51;

/// The largest response accepted (a coordinator's answers are tiny).
const MAX_RESPONSE: usize = 1 << 20;

/// Commits `transaction` through the brokers at `bootstrap` (`host:port,...`), trying again
/// while the coordinator moves or is busy, for up to `timeout`. Committing a transaction that
/// is already committed succeeds (the coordinator treats it as a retry). A coordinator that
/// refuses it (aborted after `transaction.timeout.ms`, fenced) is a non-recoverable error:
/// no restart brings the transaction back.
pub fn commit(bootstrap: &str, transaction: &KafkaCommittable, timeout: Duration) -> Result<(), BoxError> {
    let deadline = Instant::now() + timeout;
    let what = format!(
        "transaction '{}' (producer id {}, epoch {})",
        transaction.transactional_id, transaction.producer_id, transaction.epoch
    );
    let mut last_error = String::new();
    while Instant::now() < deadline {
        match try_commit(bootstrap, transaction, deadline) {
            Ok(()) => return Ok(()),
            Err(Attempt::Retry(e)) => last_error = e,
            Err(Attempt::Fail(e)) => {
                return Err(NonRecoverableError::new(format!(
                    "cannot commit {what}: {e}; the brokers no longer hold it (aborted after \
                     transaction.timeout.ms, or fenced), so its records are lost"
                ))
                .into());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("cannot commit {what} within {timeout:?}: {last_error}").into())
}

/// Why one attempt failed.
enum Attempt {
    /// Worth trying again (the coordinator moved, is loading, or is ending the transaction).
    Retry(String),
    /// Final.
    Fail(String),
}

fn try_commit(bootstrap: &str, transaction: &KafkaCommittable, deadline: Instant) -> Result<(), Attempt> {
    let mut bootstrap = Connection::to_any(bootstrap, deadline).map_err(Attempt::Retry)?;
    let key = StrBytes::from_string(transaction.transactional_id.clone());
    // Versions 1-3 carry one key; the transaction coordinator is key type 1.
    let version = bootstrap.version::<FindCoordinatorRequest>(1..=3).map_err(Attempt::Fail)?;
    let found = bootstrap
        .call(&FindCoordinatorRequest::default().with_key(key.clone()).with_key_type(1), version)
        .map_err(Attempt::Retry)?;
    check(found.error_code, "finding its coordinator")?;
    let address = format!("{}:{}", found.host.as_str(), found.port);
    let mut coordinator = Connection::to_any(&address, deadline).map_err(Attempt::Retry)?;
    let request = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(key))
        .with_producer_id(ProducerId(transaction.producer_id))
        .with_producer_epoch(transaction.epoch)
        .with_committed(true);
    // Versions 4 and up carry the semantics of Kafka's second transaction protocol (the epoch
    // bumped at every end), which librdkafka's transactions do not use.
    let version = coordinator.version::<EndTxnRequest>(0..=3).map_err(Attempt::Fail)?;
    let ended = coordinator.call(&request, version).map_err(Attempt::Retry)?;
    check(ended.error_code, &format!("ending it at coordinator {address}"))
}

/// Sorts a response's error code into success, retry or failure.
fn check(code: i16, doing: &str) -> Result<(), Attempt> {
    match code.err() {
        None => Ok(()),
        Some(e) => {
            let message = format!("{doing}: {e:?} (Kafka error {code})");
            match code {
                COORDINATOR_LOAD_IN_PROGRESS
                | COORDINATOR_NOT_AVAILABLE
                | NOT_COORDINATOR
                | CONCURRENT_TRANSACTIONS => Err(Attempt::Retry(message)),
                _ => Err(Attempt::Fail(message)),
            }
        }
    }
}

/// One broker connection with the API versions it supports.
struct Connection {
    stream: TcpStream,
    address: String,
    correlation_id: i32,
    /// (api key, min, max) as the broker announced.
    versions: Vec<(i16, i16, i16)>,
}

impl Connection {
    /// Connects to the first reachable broker of `servers` and asks for its API versions.
    fn to_any(servers: &str, deadline: Instant) -> Result<Connection, String> {
        let mut errors = Vec::new();
        for server in servers.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match Self::open(server, deadline) {
                Ok(connection) => return Ok(connection),
                Err(e) => errors.push(e),
            }
        }
        Err(errors.join("; "))
    }

    fn open(server: &str, deadline: Instant) -> Result<Connection, String> {
        let remaining = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
        let address = server
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve broker '{server}': {e}"))?
            .next()
            .ok_or_else(|| format!("broker '{server}' resolves to no address"))?;
        let stream = TcpStream::connect_timeout(&address, remaining)
            .map_err(|e| format!("cannot connect to broker {server}: {e}"))?;
        stream.set_read_timeout(Some(remaining)).map_err(|e| e.to_string())?;
        stream.set_write_timeout(Some(remaining)).map_err(|e| e.to_string())?;
        let mut connection =
            Connection { stream, address: server.to_string(), correlation_id: 0, versions: Vec::new() };
        // Version 0 is the one every broker answers.
        let versions = connection.call(&ApiVersionsRequest::default(), 0)?;
        if let Some(e) = versions.error_code.err() {
            return Err(format!("broker {server} refused its API versions: {e:?}"));
        }
        connection.versions = versions.api_keys.iter().map(|v| (v.api_key, v.min_version, v.max_version)).collect();
        Ok(connection)
    }

    /// The newest version of `R` within `wanted` that both sides speak.
    fn version<R: Request>(&self, wanted: std::ops::RangeInclusive<i16>) -> Result<i16, String> {
        let (_, min, max) = self
            .versions
            .iter()
            .find(|(key, _, _)| *key == R::KEY)
            .ok_or_else(|| format!("broker {} does not support Kafka API {}", self.address, R::KEY))?;
        let high = (*max).min(R::VERSIONS.max).min(*wanted.end());
        let low = (*min).max(R::VERSIONS.min).max(*wanted.start());
        if low > high {
            return Err(format!("broker {} speaks no common version of Kafka API {}", self.address, R::KEY));
        }
        Ok(high)
    }

    /// Sends `request` at `version` and reads its response.
    fn call<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response, String> {
        let failed = |e: &dyn std::fmt::Display| format!("request {} to broker {} failed: {e}", R::KEY, self.address);
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(RECOVERY_CLIENT_ID)));
        let mut body = BytesMut::new();
        header.encode(&mut body, R::header_version(version)).map_err(|e| failed(&e))?;
        request.encode(&mut body, version).map_err(|e| failed(&e))?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.put_slice(&body);
        self.stream.write_all(&frame).map_err(|e| failed(&e))?;

        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).map_err(|e| failed(&e))?;
        let size = i32::from_be_bytes(size);
        let size = usize::try_from(size)
            .ok()
            .filter(|s| *s <= MAX_RESPONSE)
            .ok_or_else(|| failed(&format_args!("the response claims {size} bytes")))?;
        let mut response = vec![0u8; size];
        self.stream.read_exact(&mut response).map_err(|e| failed(&e))?;
        let mut response = Bytes::from(response);
        let header =
            ResponseHeader::decode(&mut response, R::Response::header_version(version)).map_err(|e| failed(&e))?;
        if header.correlation_id != self.correlation_id {
            return Err(failed(&format_args!(
                "the response answers request {} instead of {}",
                header.correlation_id, self.correlation_id
            )));
        }
        R::Response::decode(&mut response, version).map_err(|e| failed(&e))
    }
}
