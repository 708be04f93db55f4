//! The exactly-once Kafka sink, proved at the protocol level. librdkafka's mock cluster accepts
//! transactions but keeps no transaction state (a `read_committed` reader still sees aborted
//! records), so the tests put a proxy between the job and the mock broker that decodes what
//! passes: the records each producer (id, epoch) sent, and every `EndTxn` with its answer.
//! A record counts as written when its producer's transaction was committed; the committed
//! records must be the job's output, each once, with and without failures, including a crash
//! between "checkpoint complete" and the commit.
#![cfg(feature = "kafka")]

mod common;

use brisk::prelude::*;
use brisk::runtime::jobmaster::restart::RestartStrategy;
use brisk_connectors::kafka::kafka_protocol::messages::{
    ApiKey, EndTxnRequest, EndTxnResponse, FindCoordinatorResponse, MetadataResponse, ProduceRequest, ResponseHeader,
};
use brisk_connectors::kafka::kafka_protocol::protocol::{Decodable, Encodable, decode_request_header_from_buffer};
use brisk_connectors::kafka::kafka_protocol::records::RecordBatchDecoder;
use brisk_connectors::kafka::rdkafka::mocking::MockCluster;
use brisk_connectors::kafka::rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use brisk_connectors::kafka::transactions::RECOVERY_CLIENT_ID;
use brisk_connectors::kafka::{DeliveryGuarantee, KafkaSink};
use bytes::{Buf, Bytes, BytesMut};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An `EndTxn` request and the coordinator's answer.
#[derive(Clone, Debug)]
struct Ended {
    transactional_id: String,
    producer: (i64, i16),
    committed: bool,
    error_code: i16,
    client_id: String,
}

/// What the proxy saw.
#[derive(Default)]
struct Seen {
    /// Values by producer (id, epoch), each batch once (by partition and base sequence: a
    /// retried produce request carries the same batch again).
    records: HashMap<(i64, i16), Vec<String>>,
    batches: HashSet<(i64, i16, i32, i32)>,
    ended: Vec<Ended>,
}

impl Seen {
    /// The values of the transactions committed successfully, sorted.
    fn committed_values(&self) -> Vec<String> {
        let committed: HashSet<(i64, i16)> =
            self.ended.iter().filter(|e| e.committed && e.error_code == 0).map(|e| e.producer).collect();
        let mut values: Vec<String> =
            committed.iter().flat_map(|p| self.records.get(p).cloned().unwrap_or_default()).collect();
        values.sort();
        values
    }
}

/// A proxy in front of a one-broker mock cluster that tells clients it is the broker.
struct Witness {
    servers: String,
    seen: Arc<Mutex<Seen>>,
}

impl Witness {
    fn start(broker: &str) -> Witness {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (broker, shared) = (broker.to_string(), seen.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let upstream = TcpStream::connect(&broker).unwrap();
                client.set_nodelay(true).unwrap();
                upstream.set_nodelay(true).unwrap();
                let requests = Arc::new(Mutex::new(HashMap::new()));
                let (c, u) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                let (r, s) = (requests.clone(), shared.clone());
                std::thread::spawn(move || forward_requests(c, u, r, s));
                let s = shared.clone();
                std::thread::spawn(move || forward_responses(upstream, client, requests, s, port));
            }
        });
        Witness { servers: format!("127.0.0.1:{port}"), seen }
    }
}

/// A request in flight: its API, version, client id and, for `EndTxn`, the request.
type InFlight = Arc<Mutex<HashMap<i32, (i16, i16, String, Option<EndTxnRequest>)>>>;

fn read_frame(stream: &mut TcpStream) -> Option<Bytes> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).ok()?;
    let mut frame = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut frame).ok()?;
    Some(Bytes::from(frame))
}

fn write_frame(stream: &mut TcpStream, frame: &[u8]) -> Option<()> {
    let mut out = Vec::with_capacity(frame.len() + 4);
    out.extend_from_slice(&(frame.len() as i32).to_be_bytes());
    out.extend_from_slice(frame);
    stream.write_all(&out).ok()
}

fn forward_requests(mut client: TcpStream, mut broker: TcpStream, in_flight: InFlight, seen: Arc<Mutex<Seen>>) {
    while let Some(frame) = read_frame(&mut client) {
        let mut buf = frame.clone();
        let header = decode_request_header_from_buffer(&mut buf).unwrap();
        let (key, version) = (header.request_api_key, header.request_api_version);
        let client_id = header.client_id.map(|c| c.as_str().to_string()).unwrap_or_default();
        let mut end = None;
        if key == ApiKey::Produce as i16 {
            let request = ProduceRequest::decode(&mut buf, version).unwrap();
            let mut seen = seen.lock().unwrap();
            for topic in request.topic_data {
                for partition in topic.partition_data {
                    let Some(mut records) = partition.records else { continue };
                    for batch in RecordBatchDecoder::decode_all(&mut records).unwrap() {
                        let Some(first) = batch.records.first() else { continue };
                        let producer = (first.producer_id, first.producer_epoch);
                        if seen.batches.insert((producer.0, producer.1, partition.index, first.sequence)) {
                            let values = batch
                                .records
                                .iter()
                                .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned());
                            seen.records.entry(producer).or_default().extend(values);
                        }
                    }
                }
            }
        } else if key == ApiKey::EndTxn as i16 {
            end = Some(EndTxnRequest::decode(&mut buf, version).unwrap());
        }
        in_flight.lock().unwrap().insert(header.correlation_id, (key, version, client_id, end));
        if write_frame(&mut broker, &frame).is_none() {
            return;
        }
    }
}

/// Encodes a rewritten response behind its header.
fn reencode(header: &ResponseHeader, header_version: i16, body: &impl Encodable, version: i16) -> Bytes {
    let mut out = BytesMut::new();
    header.encode(&mut out, header_version).unwrap();
    body.encode(&mut out, version).unwrap();
    out.freeze()
}

fn forward_responses(
    mut broker: TcpStream,
    mut client: TcpStream,
    in_flight: InFlight,
    seen: Arc<Mutex<Seen>>,
    port: u16,
) {
    while let Some(mut frame) = read_frame(&mut broker) {
        let correlation_id = frame.clone().get_i32();
        let request = in_flight.lock().unwrap().remove(&correlation_id);
        if let Some((key, version, client_id, end)) = request {
            let api = ApiKey::try_from(key).unwrap();
            let header_version = api.response_header_version(version);
            let mut buf = frame.clone();
            let header = ResponseHeader::decode(&mut buf, header_version).unwrap();
            if api == ApiKey::Metadata {
                let mut response = MetadataResponse::decode(&mut buf, version).unwrap();
                for broker in &mut response.brokers {
                    broker.port = port as i32;
                }
                frame = reencode(&header, header_version, &response, version);
            } else if api == ApiKey::FindCoordinator {
                let mut response = FindCoordinatorResponse::decode(&mut buf, version).unwrap();
                response.port = port as i32;
                for coordinator in &mut response.coordinators {
                    coordinator.port = port as i32;
                }
                frame = reencode(&header, header_version, &response, version);
            } else if let Some(end) = end {
                let response = EndTxnResponse::decode(&mut buf, version).unwrap();
                seen.lock().unwrap().ended.push(Ended {
                    transactional_id: end.transactional_id.0.to_string(),
                    producer: (end.producer_id.0, end.producer_epoch),
                    committed: end.committed,
                    error_code: response.error_code,
                    client_id,
                });
            }
        }
        if write_frame(&mut client, &frame).is_none() {
            return;
        }
    }
}

fn values(n: u64) -> Vec<String> {
    let mut values: Vec<String> = (0..n).map(|i| format!("v{i:05}")).collect();
    values.sort();
    values
}

/// `n` numbers through `map` at parallelism 2 with checkpoints every 50 ms into an
/// exactly-once Kafka sink writing `topic` through `witness`.
fn run(witness: &Witness, topic: &str, n: u64, map: common::FailOnce) {
    let env = StreamExecutionEnvironment::get_execution_environment();
    env.set_parallelism(2);
    env.enable_checkpointing(Duration::from_millis(50));
    env.set_restart_strategy(RestartStrategy::FixedDelay { attempts: 3, delay: Duration::from_millis(10) });
    let sink = KafkaSink::builder()
        .bootstrap_servers(&witness.servers)
        .topic(topic)
        .delivery_guarantee(DeliveryGuarantee::ExactlyOnce)
        .transactional_id_prefix(topic)
        .value_serializer(|v: &String| v.clone().into_bytes())
        .build()
        .unwrap();
    env.from_sequence(0, n as i64 - 1).map(|i: i64| format!("v{i:05}")).rich_map(map.pausing_every(50)).sink_to(sink);
    env.execute(topic).unwrap();
}

fn mock_cluster(
    topic: &str,
) -> MockCluster<'static, brisk_connectors::kafka::rdkafka::producer::DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("a mock Kafka cluster");
    cluster.create_topic(topic, 2, 1).expect("a topic");
    cluster
}

#[test]
fn committed_transactions_hold_every_record_once_with_and_without_a_failure() {
    let cluster = mock_cluster("calm");
    cluster.create_topic("failing", 2, 1).unwrap();
    let witness = Witness::start(&cluster.bootstrap_servers());
    run(&witness, "calm", 4000, common::FailOnce::after(1500).disarmed());
    let calm = witness.seen.lock().unwrap().committed_values();
    assert_eq!(calm, values(4000));

    let witness = Witness::start(&cluster.bootstrap_servers());
    run(&witness, "failing", 4000, common::FailOnce::after(1500));
    let seen = witness.seen.lock().unwrap();
    assert_eq!(seen.committed_values(), calm);
    // No transaction was aborted by an end request or refused (those of the failed attempt
    // after its last checkpoint were never ended); the restored ones were committed again.
    for end in &seen.ended {
        assert!(end.committed && end.error_code == 0, "{end:?}");
        assert!(end.transactional_id.starts_with("failing-"), "{end:?}");
    }
}

#[test]
fn a_transaction_whose_commit_was_lost_is_committed_by_producer_id_after_the_restore() {
    let cluster = mock_cluster("lost");
    let witness = Witness::start(&cluster.bootstrap_servers());
    // The first commit fails: the task fails after its checkpoint completed, before the
    // transaction was committed (as a crash would leave it).
    cluster.request_errors(RDKafkaApiKey::EndTxn, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_TXN_STATE]);
    run(&witness, "lost", 4000, common::FailOnce::after(u64::MAX).disarmed());
    let seen = witness.seen.lock().unwrap();
    let refused: Vec<&Ended> = seen.ended.iter().filter(|e| e.error_code != 0).collect();
    assert_eq!(refused.len(), 1, "{:?}", seen.ended);
    // After the restore, the refused transaction was committed by its producer id and epoch,
    // not by the producer that opened it.
    let recovered = seen.ended.iter().find(|e| {
        e.client_id == RECOVERY_CLIENT_ID && e.transactional_id == refused[0].transactional_id && e.error_code == 0
    });
    let recovered = recovered.unwrap_or_else(|| panic!("no commit after the restore: {:?}", seen.ended));
    assert_eq!(recovered.producer, refused[0].producer);
    assert!(recovered.committed);
    assert_eq!(seen.committed_values(), values(4000));
}
