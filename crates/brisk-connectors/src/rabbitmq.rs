//! RabbitMQ (AMQP 0-9-1 through `lapin`), with the semantics of Flink's `RMQSource` and
//! `RMQSink`.
//!
//! - [`RabbitMQSource`]: consumes queues; deliveries are acknowledged when the checkpoint
//!   after them completes (a failure before that returns them to the queue). With
//!   [`uses_correlation_id`](RabbitMQSourceBuilder::uses_correlation_id) it is exactly once:
//!   the correlation ids of deliveries emitted but not acknowledged are in the checkpoint, so a
//!   delivery that comes again after a restore (or twice before the first is acknowledged) is
//!   acknowledged without being emitted again. That needs parallelism 1, as in Flink: a
//!   redelivery may go to any consumer of the queue. Without checkpoints nothing would ever be
//!   acknowledged, so the source then lets RabbitMQ consider deliveries acknowledged as sent.
//! - [`RabbitMQSink`]: publishes with publisher confirms, waiting for the broker's confirms at
//!   every checkpoint (at least once); a correlation id per record lets an exactly-once source
//!   downstream drop duplicates.
//!
//! `lapin` is asynchronous: each reader and writer drives its connection on a Tokio runtime
//! with one worker thread and blocks on it where the task must wait.

use crate::retry::connect_with_backoff;
use crate::unbounded::AssignedSplits;
use brisk::prelude::{Sink, SinkContext, SinkWriter, WriterInitContext};
use brisk::runtime::checkpoint::CheckpointId;
use brisk::runtime::source::{
    Boundedness, InputStatus, ReaderContext, ReaderOutput, Source, SourceReader, SourceSplit, SplitEnumerator,
};
use brisk_core::{BoxError, NonRecoverableError};
use futures_core::Stream;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use lapin::{Confirmation, PublisherConfirm};
use serde::{Deserialize, Serialize};
use std::collections::{HashSet, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

/// The RabbitMQ client the connector is built on, for what it does not wrap (tests, admin).
pub use lapin;

/// Deliveries a reader emits per poll at most.
const DELIVERIES_PER_POLL: usize = 1024;
/// How long a reader with nothing to read waits before it looks again.
const IDLE_WAIT: Duration = Duration::from_millis(10);
/// Confirms a writer lets pile up before it waits for them.
const MAX_UNCONFIRMED: usize = 10_000;

/// A connection with the runtime that drives it.
struct RabbitMQConnection {
    runtime: tokio::runtime::Runtime,
    connection: Connection,
    channel: Channel,
    uri: String,
}

impl RabbitMQConnection {
    /// Connects to `uri` (`amqp://user:password@host:port/vhost`), with retries while the
    /// server cannot be reached, and opens a channel.
    fn open(uri: &str) -> Result<RabbitMQConnection, BoxError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("rabbitmq-io")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the RabbitMQ client's runtime: {e}"))?;
        let server = server_of(uri);
        let connection = connect_with_backoff(
            &server,
            || runtime.block_on(Connection::connect(uri, ConnectionProperties::default())),
            // A refused login or an unknown virtual host does not go away by itself.
            |e| !matches!(e.kind(), lapin::ErrorKind::ProtocolError(_)),
        )?;
        let channel = runtime
            .block_on(connection.create_channel())
            .map_err(|e| format!("cannot open a channel to RabbitMQ at {server}: {e}"))?;
        Ok(RabbitMQConnection { runtime, connection, channel, uri: server })
    }

    /// Declares `queue` (durable, as Flink's source and sink do); its ready messages.
    fn declare(&self, queue: &str) -> Result<u32, BoxError> {
        let options = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
        let declared = self
            .runtime
            .block_on(self.channel.queue_declare(queue.into(), options, FieldTable::default()))
            .map_err(|e| format!("cannot declare queue '{queue}' at {}: {e}", self.uri))?;
        Ok(declared.message_count())
    }
}

/// Closing the connection returns its unacknowledged deliveries to their queues at once.
impl Drop for RabbitMQConnection {
    fn drop(&mut self) {
        if let Err(e) = self.runtime.block_on(self.connection.close(200, "closed by Brisk".into())) {
            tracing::debug!(server = self.uri, "closing the RabbitMQ connection: {e}");
        }
    }
}

/// `host:port` of an AMQP URI, for messages (never the credentials).
fn server_of(uri: &str) -> String {
    let rest = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    rest.split('/').next().unwrap_or(rest).to_string()
}

/// One delivery, as a deserializer sees it.
#[derive(Debug)]
pub struct RabbitMQMessage<'a> {
    /// The queue it came from.
    pub queue: &'a str,
    /// Its delivery tag on the reader's channel.
    pub delivery_tag: u64,
    /// Its correlation id, if the publisher set one.
    pub correlation_id: Option<&'a str>,
    /// Whether RabbitMQ delivered it before (to this or another consumer).
    pub redelivered: bool,
    /// Its body.
    pub body: &'a [u8],
}

/// Turns a delivery into an element, or says what is wrong with it.
type MessageDeserializer<T> = Arc<dyn Fn(&RabbitMQMessage<'_>) -> Result<T, String> + Send + Sync>;

/// A consumer of a queue, and the correlation ids it emitted that no completed checkpoint
/// acknowledged yet (what a checkpoint stores).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RabbitMQSplit {
    /// The queue.
    pub queue: String,
    /// Which of the source's consumers of the queue this is.
    pub consumer: usize,
    /// Correlation ids emitted and not acknowledged.
    pub unacknowledged_ids: Vec<String>,
}

impl SourceSplit for RabbitMQSplit {
    fn split_id(&self) -> String {
        format!("{}#{}", self.queue, self.consumer)
    }
}

/// Consumes RabbitMQ queues (Flink's `RMQSource`); build one with [`RabbitMQSource::builder`].
pub struct RabbitMQSource<T> {
    uri: String,
    queues: Vec<String>,
    prefetch_count: u16,
    uses_correlation_id: bool,
    deserializer: MessageDeserializer<T>,
}

/// Configures a [`RabbitMQSource`].
pub struct RabbitMQSourceBuilder<T> {
    uri: Option<String>,
    queues: Vec<String>,
    prefetch_count: u16,
    uses_correlation_id: bool,
    deserializer: Option<MessageDeserializer<T>>,
}

impl<T> RabbitMQSource<T> {
    /// A builder: at least once, 1000 unacknowledged deliveries per consumer at most.
    pub fn builder() -> RabbitMQSourceBuilder<T> {
        RabbitMQSourceBuilder {
            uri: None,
            queues: Vec::new(),
            prefetch_count: 1000,
            uses_correlation_id: false,
            deserializer: None,
        }
    }
}

impl<T> RabbitMQSourceBuilder<T> {
    /// The server (`amqp://user:password@host:port/vhost`, `%2f` for the default vhost).
    pub fn uri(mut self, uri: &str) -> Self {
        self.uri = Some(uri.to_string());
        self
    }

    /// The queues consumed (declared durable if missing).
    pub fn queues<S: Into<String>>(mut self, queues: impl IntoIterator<Item = S>) -> Self {
        self.queues.extend(queues.into_iter().map(Into::into));
        self
    }

    /// How many deliveries RabbitMQ hands a consumer before it acknowledges (`basic.qos`):
    /// they wait for the next completed checkpoint, so keep it above a checkpoint's worth.
    pub fn prefetch_count(mut self, count: u16) -> Self {
        self.prefetch_count = count;
        self
    }

    /// Exactly once by the messages' correlation ids (Flink's `usesCorrelationId`): needs
    /// parallelism 1 and publishers that set a unique correlation id per message.
    pub fn uses_correlation_id(mut self, uses: bool) -> Self {
        self.uses_correlation_id = uses;
        self
    }

    /// Each delivery's element.
    pub fn deserializer(
        mut self,
        f: impl Fn(&RabbitMQMessage<'_>) -> Result<T, String> + Send + Sync + 'static,
    ) -> Self {
        self.deserializer = Some(Arc::new(f));
        self
    }

    /// Each delivery's element, from its body.
    pub fn body_deserializer(self, f: impl Fn(&[u8]) -> Result<T, String> + Send + Sync + 'static) -> Self {
        self.deserializer(move |message| f(message.body))
    }

    /// The source, or what is missing in its configuration.
    pub fn build(self) -> Result<RabbitMQSource<T>, String> {
        let uri = self.uri.filter(|u| !u.is_empty()).ok_or("the RabbitMQ source needs a server URI")?;
        if self.queues.is_empty() {
            return Err("the RabbitMQ source needs at least one queue".into());
        }
        if self.prefetch_count == 0 {
            return Err("the RabbitMQ source's prefetch count must be positive".into());
        }
        let deserializer = self.deserializer.ok_or("the RabbitMQ source needs a deserializer")?;
        Ok(RabbitMQSource {
            uri,
            queues: self.queues,
            prefetch_count: self.prefetch_count,
            uses_correlation_id: self.uses_correlation_id,
            deserializer,
        })
    }
}

/// A delivery on its way from the connection's thread to the reader.
struct Received {
    split: usize,
    tag: u64,
    correlation_id: Option<String>,
    redelivered: bool,
    body: Vec<u8>,
}

/// What a consumer's forwarding task hands the reader.
enum Forwarded {
    Delivery(Received),
    /// The consumer ended (cancelled by the server, its queue deleted, its channel closed).
    Ended {
        split: usize,
        reason: String,
    },
}

/// A consumer of one queue, on a channel of its own: delivery tags count per channel, and
/// one ordered stream per channel makes "every tag up to the last polled" exact.
struct Consuming {
    split: RabbitMQSplit,
    channel: Channel,
    /// The tag of the last delivery polled.
    last_tag: Option<u64>,
    /// The highest tag acknowledged: acknowledging a tag twice closes the channel.
    acknowledged: Option<u64>,
    /// Ids restored from the checkpoint: deliveries carrying them were emitted before.
    restored_ids: HashSet<String>,
    /// Ids emitted since the last snapshot.
    session_ids: HashSet<String>,
}

/// A consumer at a barrier: the tag of its last delivery polled, and the correlation ids it
/// emitted since the barrier before.
type ConsumerSnapshot = (Option<u64>, Vec<String>);

/// One connection and channel consuming the queues of a subtask.
struct RabbitMQReader<T> {
    connection: RabbitMQConnection,
    source_uses_correlation_id: bool,
    prefetch_count: u16,
    deserializer: MessageDeserializer<T>,
    consuming: Vec<Consuming>,
    sender: Sender<Forwarded>,
    deliveries: Receiver<Forwarded>,
    /// Whether deliveries wait for checkpoints to be acknowledged (else RabbitMQ counts them
    /// acknowledged as sent).
    acknowledge_at_checkpoints: bool,
    /// Per checkpoint not yet completed, per consumer: what it emitted before the barrier.
    snapshots: VecDeque<(CheckpointId, Vec<ConsumerSnapshot>)>,
}

impl<T> RabbitMQReader<T> {
    /// The ids emitted and not acknowledged of consumer `index`.
    fn unacknowledged(&self, index: usize) -> Vec<String> {
        let consuming = &self.consuming[index];
        let mut ids: Vec<String> = consuming.restored_ids.iter().cloned().collect();
        for (_, consumers) in &self.snapshots {
            ids.extend(consumers.get(index).into_iter().flat_map(|(_, emitted)| emitted).cloned());
        }
        ids.extend(consuming.session_ids.iter().cloned());
        ids.sort();
        ids.dedup();
        ids
    }
}

impl<T: 'static> SourceReader<T, RabbitMQSplit> for RabbitMQReader<T> {
    fn add_splits(&mut self, splits: Vec<RabbitMQSplit>) -> Result<(), BoxError> {
        let runtime = &self.connection.runtime;
        let uri = &self.connection.uri;
        for split in splits {
            self.connection.declare(&split.queue)?;
            let channel = runtime
                .block_on(self.connection.connection.create_channel())
                .map_err(|e| format!("cannot open a channel to RabbitMQ at {uri}: {e}"))?;
            runtime
                .block_on(channel.basic_qos(self.prefetch_count, BasicQosOptions::default()))
                .map_err(|e| format!("cannot set the prefetch count at {uri}: {e}"))?;
            let mut consumer = runtime
                .block_on(channel.basic_consume(
                    split.queue.as_str().into(),
                    format!("brisk-{}-{}", split.split_id(), brisk_core::hash::unique_id("rabbitmq consumer")).into(),
                    BasicConsumeOptions { no_ack: !self.acknowledge_at_checkpoints, ..BasicConsumeOptions::default() },
                    FieldTable::default(),
                ))
                .map_err(|e| format!("cannot consume queue '{}' at {uri}: {e}", split.queue))?;
            let (index, sender) = (self.consuming.len(), self.sender.clone());
            // One task per consumer forwards its deliveries in order.
            runtime.spawn(async move {
                let reason = loop {
                    let delivery = match std::future::poll_fn(|cx| Pin::new(&mut consumer).poll_next(cx)).await {
                        Some(Ok(delivery)) => delivery,
                        Some(Err(e)) => break e.to_string(),
                        None => break "the server cancelled the consumer".to_string(),
                    };
                    let received = Received {
                        split: index,
                        tag: delivery.delivery_tag,
                        correlation_id: delivery.properties.correlation_id().as_ref().map(|id| id.to_string()),
                        redelivered: delivery.redelivered,
                        body: delivery.data,
                    };
                    // The reader is gone: its deliveries return to the queue with the connection.
                    if sender.send(Forwarded::Delivery(received)).is_err() {
                        return;
                    }
                };
                let _ = sender.send(Forwarded::Ended { split: index, reason });
            });
            let restored_ids = split.unacknowledged_ids.iter().cloned().collect();
            self.consuming.push(Consuming {
                split,
                channel,
                last_tag: None,
                acknowledged: None,
                restored_ids,
                session_ids: HashSet::new(),
            });
            for (_, consumers) in &mut self.snapshots {
                consumers.push((None, Vec::new()));
            }
        }
        Ok(())
    }

    fn poll(&mut self, out: &mut ReaderOutput<'_, T>) -> Result<InputStatus, BoxError> {
        let mut read = 0;
        while read < DELIVERIES_PER_POLL && !out.should_yield() {
            let received = match self.deliveries.try_recv() {
                Ok(Forwarded::Delivery(received)) => received,
                Ok(Forwarded::Ended { split, reason }) => {
                    let queue = &self.consuming[split].split.queue;
                    return Err(
                        format!("consuming queue '{queue}' at {} stopped: {reason}", self.connection.uri).into()
                    );
                }
                Err(_) => break,
            };
            read += 1;
            let consuming = &mut self.consuming[received.split];
            consuming.last_tag = Some(received.tag);
            let split_id = consuming.split.split_id();
            let mut output = out.split(&split_id);
            if self.source_uses_correlation_id {
                let Some(id) = &received.correlation_id else {
                    output.bad_record(
                        received.tag,
                        format!("delivery {} of queue '{}' has no correlation id", received.tag, consuming.split.queue),
                        &received.body,
                    );
                    continue;
                };
                // Emitted before the restore, or a duplicate: acknowledged with the others, its
                // id kept with them until then.
                let restored = consuming.restored_ids.contains(id);
                if !consuming.session_ids.insert(id.clone()) || restored {
                    continue;
                }
            }
            let message = RabbitMQMessage {
                queue: &consuming.split.queue,
                delivery_tag: received.tag,
                correlation_id: received.correlation_id.as_deref(),
                redelivered: received.redelivered,
                body: &received.body,
            };
            match (self.deserializer)(&message) {
                Ok(value) => output.collect(value),
                Err(reason) => output.bad_record(
                    received.tag,
                    format!("delivery {} of queue '{}': {reason}", received.tag, consuming.split.queue),
                    &received.body,
                ),
            }
        }
        Ok(if read > 0 { InputStatus::MoreAvailable } else { InputStatus::NothingAvailable(Some(IDLE_WAIT)) })
    }

    fn takes_splits_while_reading(&self) -> bool {
        true
    }

    fn snapshot_state(&mut self, checkpoint: CheckpointId) -> Vec<RabbitMQSplit> {
        let consumers = self.consuming.iter_mut().map(|c| (c.last_tag, c.session_ids.drain().collect())).collect();
        self.snapshots.push_back((checkpoint, consumers));
        (0..self.consuming.len())
            .map(|index| RabbitMQSplit {
                unacknowledged_ids: self.unacknowledged(index),
                ..self.consuming[index].split.clone()
            })
            .collect()
    }

    fn notify_checkpoint_complete(&mut self, checkpoint: CheckpointId) -> Result<(), BoxError> {
        let mut covered = None;
        while self.snapshots.front().is_some_and(|(id, _)| *id <= checkpoint) {
            covered = self.snapshots.pop_front();
        }
        let Some((_, consumers)) = covered else { return Ok(()) };
        // The restored ids were redelivered before this checkpoint's barrier (the old
        // connection closed before the restore); those not acknowledged yet are session ids.
        for consuming in &mut self.consuming {
            consuming.restored_ids.clear();
        }
        for (consuming, (tag, _)) in self.consuming.iter_mut().zip(consumers) {
            let Some(tag) = tag.filter(|tag| consuming.acknowledged.is_none_or(|done| *tag > done)) else { continue };
            // Every delivery of this channel up to `tag` was emitted before the barrier.
            let acked =
                self.connection.runtime.block_on(consuming.channel.basic_ack(tag, BasicAckOptions { multiple: true }));
            // Unacknowledged deliveries return to the queue when the channel closes; with
            // correlation ids they are recognised then.
            acked.map_err(|e| format!("cannot acknowledge deliveries at {}: {e}", self.connection.uri))?;
            consuming.acknowledged = Some(tag);
        }
        Ok(())
    }
}

/// Hands each consumer of each queue to one reader.
impl<T: Send + 'static> Source<T> for RabbitMQSource<T> {
    type Split = RabbitMQSplit;

    fn boundedness(&self) -> Boundedness {
        Boundedness::ContinuousUnbounded
    }

    fn create_enumerator(&self, parallelism: usize) -> Result<Box<dyn SplitEnumerator<RabbitMQSplit>>, BoxError> {
        if self.uses_correlation_id && parallelism > 1 {
            return Err(NonRecoverableError::new(format!(
                "the RabbitMQ source with correlation ids runs at parallelism 1 (not {parallelism}): a redelivered \
                 message may reach another consumer, which cannot recognise it"
            ))
            .into());
        }
        let splits = self
            .queues
            .iter()
            .flat_map(|queue| {
                (0..parallelism.max(1)).map(|consumer| RabbitMQSplit {
                    queue: queue.clone(),
                    consumer,
                    unacknowledged_ids: Vec::new(),
                })
            })
            .collect();
        Ok(Box::new(AssignedSplits::new(splits, parallelism)))
    }

    fn create_reader(&self, ctx: &ReaderContext) -> Result<Box<dyn SourceReader<T, RabbitMQSplit>>, BoxError> {
        let (sender, deliveries) = channel();
        Ok(Box::new(RabbitMQReader {
            connection: RabbitMQConnection::open(&self.uri)?,
            source_uses_correlation_id: self.uses_correlation_id,
            prefetch_count: self.prefetch_count,
            deserializer: self.deserializer.clone(),
            consuming: Vec::new(),
            sender,
            deliveries,
            acknowledge_at_checkpoints: ctx.checkpointing,
            snapshots: VecDeque::new(),
        }))
    }
}

/// Turns an element into a message body.
type BodySerializer<T> = Arc<dyn Fn(&T) -> Vec<u8> + Send + Sync>;
/// An element's correlation id.
type CorrelationId<T> = Arc<dyn Fn(&T) -> String + Send + Sync>;

/// Publishes to a RabbitMQ queue (Flink's `RMQSink`), at least once; build one with
/// [`RabbitMQSink::builder`].
pub struct RabbitMQSink<T> {
    uri: String,
    queue: String,
    serializer: BodySerializer<T>,
    correlation_id: Option<CorrelationId<T>>,
}

impl<T> Clone for RabbitMQSink<T> {
    fn clone(&self) -> Self {
        RabbitMQSink {
            uri: self.uri.clone(),
            queue: self.queue.clone(),
            serializer: self.serializer.clone(),
            correlation_id: self.correlation_id.clone(),
        }
    }
}

/// Configures a [`RabbitMQSink`].
pub struct RabbitMQSinkBuilder<T> {
    uri: Option<String>,
    queue: Option<String>,
    serializer: Option<BodySerializer<T>>,
    correlation_id: Option<CorrelationId<T>>,
}

impl<T> RabbitMQSink<T> {
    /// A builder.
    pub fn builder() -> RabbitMQSinkBuilder<T> {
        RabbitMQSinkBuilder { uri: None, queue: None, serializer: None, correlation_id: None }
    }
}

impl<T> RabbitMQSinkBuilder<T> {
    /// The server (`amqp://user:password@host:port/vhost`).
    pub fn uri(mut self, uri: &str) -> Self {
        self.uri = Some(uri.to_string());
        self
    }

    /// The queue published to (through the default exchange; declared durable if missing).
    pub fn queue(mut self, queue: &str) -> Self {
        self.queue = Some(queue.to_string());
        self
    }

    /// Each element's message body.
    pub fn serializer(mut self, f: impl Fn(&T) -> Vec<u8> + Send + Sync + 'static) -> Self {
        self.serializer = Some(Arc::new(f));
        self
    }

    /// Each element's correlation id, for a source that reads exactly once by them.
    pub fn correlation_id(mut self, f: impl Fn(&T) -> String + Send + Sync + 'static) -> Self {
        self.correlation_id = Some(Arc::new(f));
        self
    }

    /// The sink, or what is missing in its configuration.
    pub fn build(self) -> Result<RabbitMQSink<T>, String> {
        let uri = self.uri.filter(|u| !u.is_empty()).ok_or("the RabbitMQ sink needs a server URI")?;
        let queue = self.queue.filter(|q| !q.is_empty()).ok_or("the RabbitMQ sink needs a queue")?;
        let serializer = self.serializer.ok_or("the RabbitMQ sink needs a serializer")?;
        Ok(RabbitMQSink { uri, queue, serializer, correlation_id: self.correlation_id })
    }
}

/// One subtask's publishing channel, with the confirms it still waits for.
pub struct RabbitMQWriter<T> {
    connection: RabbitMQConnection,
    sink: RabbitMQSink<T>,
    unconfirmed: Vec<PublisherConfirm>,
}

impl<T> RabbitMQWriter<T> {
    /// Waits for every outstanding confirm.
    fn await_confirms(&mut self) -> Result<(), BoxError> {
        for confirm in self.unconfirmed.drain(..) {
            let confirmation = self.connection.runtime.block_on(confirm).map_err(|e| {
                format!("no confirm for a message to '{}' at {}: {e}", self.sink.queue, self.connection.uri)
            })?;
            let (uri, queue) = (&self.connection.uri, &self.sink.queue);
            match confirmation {
                Confirmation::Nack(_) => return Err(format!("RabbitMQ at {uri} refused a message to '{queue}'").into()),
                Confirmation::Ack(Some(_)) => {
                    return Err(format!("RabbitMQ at {uri} returned a message: queue '{queue}' does not exist").into());
                }
                Confirmation::Ack(None) | Confirmation::NotRequested => {}
            }
        }
        Ok(())
    }
}

impl<T: Send + 'static> SinkWriter<T, ()> for RabbitMQWriter<T> {
    fn write(&mut self, value: T, _: &SinkContext<'_>) -> Result<(), BoxError> {
        let body = (self.sink.serializer)(&value);
        // Persistent messages (delivery mode 2), as a queue that survives restarts expects.
        let mut properties = BasicProperties::default().with_delivery_mode(2);
        if let Some(id) = &self.sink.correlation_id {
            properties = properties.with_correlation_id(id(&value).into());
        }
        let published = self.connection.runtime.block_on(self.connection.channel.basic_publish(
            "".into(),
            self.sink.queue.as_str().into(),
            // Returned instead of dropped when the queue is gone.
            BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() },
            &body,
            properties,
        ));
        let confirm = published
            .map_err(|e| format!("cannot publish to '{}' at {}: {e}", self.sink.queue, self.connection.uri))?;
        self.unconfirmed.push(confirm);
        if self.unconfirmed.len() >= MAX_UNCONFIRMED {
            self.await_confirms()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BoxError> {
        self.await_confirms()
    }
}

impl<T: Send + 'static> Sink<T> for RabbitMQSink<T> {
    type Committable = ();
    type Writer = RabbitMQWriter<T>;

    fn create_writer(&mut self, _: &WriterInitContext<'_, '_, ()>) -> Result<RabbitMQWriter<T>, BoxError> {
        let connection = RabbitMQConnection::open(&self.uri)?;
        connection
            .runtime
            .block_on(connection.channel.confirm_select(ConfirmSelectOptions::default()))
            .map_err(|e| format!("cannot enable publisher confirms at {}: {e}", connection.uri))?;
        connection.declare(&self.queue)?;
        Ok(RabbitMQWriter { connection, sink: self.clone(), unconfirmed: Vec::new() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_server_without_credentials() {
        assert_eq!(server_of("amqp://guest:secret@127.0.0.1:5672/%2f"), "127.0.0.1:5672");
        assert_eq!(server_of("amqp://rabbit:5672"), "rabbit:5672");
    }

    #[test]
    fn exactly_once_by_correlation_id_needs_parallelism_one() {
        let source = RabbitMQSource::builder()
            .uri("amqp://127.0.0.1:1/%2f")
            .queues(["q"])
            .uses_correlation_id(true)
            .body_deserializer(|b: &[u8]| Ok(b.to_vec()))
            .build()
            .unwrap();
        let error = source.create_enumerator(2).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("parallelism 1 (not 2)"), "{error}");
        assert!(source.create_enumerator(1).is_ok());
    }
}
