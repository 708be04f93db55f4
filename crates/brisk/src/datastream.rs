//! `DataStream`: a typed stream and the transformations, partitionings and sinks on it.

use crate::connected::ConnectedStreams;
use crate::environment::StreamExecutionEnvironment;
use crate::format::TextFormat;
use crate::functions::Collector;
use crate::functions::{
    FilterFn, FlatMapFn, MapFn, ProcessFunction, RichFilterFunction, RichFlatMapFunction, RichMapFunction, SinkFn,
    SinkFunction,
};
use crate::key_selector::KeySelector;
use crate::keyed_stream::KeyedStream;
use crate::operators::{
    ProcessOperator, SinkOperator, StreamFilter, StreamFlatMap, StreamMap, TimestampsAndWatermarksOperator,
};
use crate::side_output::OutputTag;
use crate::sinks::{
    CollectResult, CollectSink, PrintSink, Sink, SinkTransactions, TextFileSink, TwoPhaseCommitSinkFunction,
};
use crate::sources::BadRecordPolicy;
use brisk_core::key_group::key_hash;
use brisk_core::{Data, Key};
use brisk_runtime::JobError;
use brisk_runtime::graph::stream_graph::{
    ChainingStrategy, OneInputFactory, StreamEdge, StreamNode, TwoInputFactory, one_input_factory, type_ops,
};
use brisk_runtime::network::partitioner::{CustomPartitionFn, KeyHashFn, KeyParser, PartitionKind, PartitionerSpec};
use brisk_runtime::source::watermark::WatermarkStrategy;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;

/// One input of a downstream operator: a node's main or side output, possibly repartitioned.
#[derive(Clone)]
pub(crate) struct StreamRef {
    pub node: usize,
    pub side_output: Option<String>,
    pub partitioner: Option<PartitionerSpec>,
}

/// A stream of records of type `T` (Flink's `DataStream`). Transformations return new
/// streams; the job runs when the environment executes.
pub struct DataStream<T> {
    pub(crate) env: StreamExecutionEnvironment,
    pub(crate) inputs: Vec<StreamRef>,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for DataStream<T> {
    fn clone(&self) -> Self {
        DataStream { env: self.env.clone(), inputs: self.inputs.clone(), _type: PhantomData }
    }
}

impl<T: Data> DataStream<T> {
    pub(crate) fn from_node(env: StreamExecutionEnvironment, node: usize) -> Self {
        DataStream { env, inputs: vec![StreamRef { node, side_output: None, partitioner: None }], _type: PhantomData }
    }

    pub(crate) fn with_inputs(&self, inputs: Vec<StreamRef>) -> Self {
        DataStream { env: self.env.clone(), inputs, _type: PhantomData }
    }

    /// The environment the stream belongs to.
    pub fn get_execution_environment(&self) -> &StreamExecutionEnvironment {
        &self.env
    }

    /// Adds a one-input operator reading this stream.
    pub fn transform<O: Data>(&self, name: &str, factory: Box<dyn OneInputFactory>) -> DataStream<O> {
        let node = self.env.state.borrow_mut().graph.add_node(
            name,
            brisk_runtime::graph::stream_graph::NodeKind::OneInput(factory),
            type_ops::<O>(),
        );
        self.connect_to(node, 1);
        DataStream::from_node(self.env.clone(), node)
    }

    /// Adds a two-input operator reading this stream and `other`.
    pub(crate) fn transform_two<B: Data, O: Data>(
        &self,
        other: &DataStream<B>,
        name: &str,
        factory: Box<dyn TwoInputFactory>,
    ) -> DataStream<O> {
        let node = self.env.state.borrow_mut().graph.add_node(
            name,
            brisk_runtime::graph::stream_graph::NodeKind::TwoInput(factory),
            type_ops::<O>(),
        );
        self.connect_to(node, 1);
        other.connect_to(node, 2);
        DataStream::from_node(self.env.clone(), node)
    }

    fn connect_to(&self, node: usize, input: usize) {
        let mut state = self.env.state.borrow_mut();
        for r in &self.inputs {
            state.graph.add_edge(StreamEdge {
                source: r.node,
                target: node,
                side_output: r.side_output.clone(),
                partitioner: r.partitioner.clone(),
                input,
                type_ops: type_ops::<T>(),
            });
        }
    }

    /// Applies `f` to every record.
    pub fn map<O: Data, F: FnMut(T) -> O + Clone + Send + 'static>(&self, f: F) -> DataStream<O> {
        self.transform("Map", one_input_factory::<T, O, _, _>(move || StreamMap::new(MapFn(f.clone()), None)))
    }

    /// Applies a [`RichMapFunction`] to every record.
    pub fn rich_map<O: Data, F: RichMapFunction<T, O>>(&self, f: F) -> DataStream<O> {
        self.transform("Map", one_input_factory::<T, O, _, _>(move || StreamMap::new(f.clone(), None)))
    }

    /// Emits any number of records per record.
    pub fn flat_map<O: Data, F: FnMut(T, &mut Collector<'_, O>) + Clone + Send + 'static>(
        &self,
        f: F,
    ) -> DataStream<O> {
        self.transform(
            "Flat Map",
            one_input_factory::<T, O, _, _>(move || StreamFlatMap::new(FlatMapFn(f.clone()), None)),
        )
    }

    /// Applies a [`RichFlatMapFunction`] to every record.
    pub fn rich_flat_map<O: Data, F: RichFlatMapFunction<T, O>>(&self, f: F) -> DataStream<O> {
        self.transform("Flat Map", one_input_factory::<T, O, _, _>(move || StreamFlatMap::new(f.clone(), None)))
    }

    /// Keeps the records for which `f` returns true.
    pub fn filter<F: FnMut(&T) -> bool + Clone + Send + 'static>(&self, f: F) -> DataStream<T> {
        self.transform("Filter", one_input_factory::<T, T, _, _>(move || StreamFilter::new(FilterFn(f.clone()), None)))
    }

    /// Keeps the records a [`RichFilterFunction`] accepts.
    pub fn rich_filter<F: RichFilterFunction<T>>(&self, f: F) -> DataStream<T> {
        self.transform("Filter", one_input_factory::<T, T, _, _>(move || StreamFilter::new(f.clone(), None)))
    }

    /// Runs a [`ProcessFunction`]: records, timestamps and side outputs.
    pub fn process<O: Data, F: ProcessFunction<T, O>>(&self, f: F) -> DataStream<O> {
        self.transform("Process", one_input_factory::<T, O, _, _>(move || ProcessOperator::new(f.clone(), None)))
    }

    /// Assigns event timestamps and generates watermarks with `strategy` (Flink's
    /// `assignTimestampsAndWatermarks`).
    pub fn assign_timestamps_and_watermarks(&self, strategy: WatermarkStrategy<T>) -> DataStream<T> {
        self.transform(
            "Timestamps/Watermarks",
            one_input_factory::<T, T, _, _>(move || TimestampsAndWatermarksOperator::new(strategy.clone())),
        )
    }

    /// Partitions by key: records with equal keys go to the same subtask, and keyed state and
    /// aggregations are per key.
    pub fn key_by<K: Key, F: Fn(&T) -> K + Send + Sync + 'static>(&self, key_selector: F) -> KeyedStream<T, K> {
        self.keyed(KeySelector::Computed(Arc::new(key_selector)))
    }

    /// Partitions by a field of the record, e.g. `key_by_field(|t| &t.0)`: like `key_by`, but
    /// the key is borrowed to hash and look it up, so it is only copied when a new key is stored.
    pub fn key_by_field<K: Key, F>(&self, field: F) -> KeyedStream<T, K>
    where
        F: for<'a> Fn(&'a T) -> &'a K + Send + Sync + 'static,
    {
        self.keyed(KeySelector::Field(Arc::new(field)))
    }

    fn keyed<K: Key>(&self, selector: KeySelector<T, K>) -> KeyedStream<T, K> {
        let hashing = selector.clone();
        let hash: KeyHashFn<T> = Arc::new(move |v: &T| hashing.with_key(v, key_hash));
        let parser: KeyParser = Arc::new(|text: &str| {
            // JSON (`42`, `"a"`, `[1,"b"]`), or a bare string for string keys.
            let key: K = serde_json::from_str(text)
                .or_else(|_| serde_json::from_value(serde_json::Value::String(text.to_string())))
                .map_err(|e| format!("'{text}' is not a key of type {}: {e}", std::any::type_name::<K>()))?;
            Ok((key_hash(&key), brisk_state::codec::encode(&key)?))
        });
        KeyedStream::new(self.repartition(PartitionerSpec::hash(hash).with_key_parser(parser)), selector)
    }

    fn repartition(&self, spec: PartitionerSpec) -> DataStream<T> {
        self.with_inputs(
            self.inputs.iter().map(|r| StreamRef { partitioner: Some(spec.clone()), ..r.clone() }).collect(),
        )
    }

    /// Sends each record to the subtask with the same index (requires equal parallelism).
    pub fn forward(&self) -> DataStream<T> {
        self.repartition(PartitionerSpec::of(PartitionKind::Forward))
    }

    /// Spreads records round-robin over all downstream subtasks.
    pub fn rebalance(&self) -> DataStream<T> {
        self.repartition(PartitionerSpec::of(PartitionKind::Rebalance))
    }

    /// Spreads records round-robin over a local group of downstream subtasks.
    pub fn rescale(&self) -> DataStream<T> {
        self.repartition(PartitionerSpec::of(PartitionKind::Rescale))
    }

    /// Spreads records uniformly at random.
    pub fn shuffle(&self) -> DataStream<T> {
        self.repartition(PartitionerSpec::of(PartitionKind::Shuffle))
    }

    /// Sends every record to every downstream subtask.
    pub fn broadcast(&self) -> DataStream<T> {
        self.repartition(PartitionerSpec::of(PartitionKind::Broadcast))
    }

    /// Sends every record to the first downstream subtask.
    pub fn global(&self) -> DataStream<T> {
        self.repartition(PartitionerSpec::of(PartitionKind::Global))
    }

    /// Chooses the downstream subtask with `partitioner(key, number_of_subtasks)`.
    pub fn partition_custom<K, P, S>(&self, partitioner: P, key_selector: S) -> DataStream<T>
    where
        P: Fn(&K, usize) -> usize + Send + Sync + 'static,
        S: Fn(&T) -> K + Send + Sync + 'static,
    {
        let f: CustomPartitionFn<T> = Arc::new(move |v: &T, n| partitioner(&key_selector(v), n));
        self.repartition(PartitionerSpec::custom(f))
    }

    /// Merges streams of the same type.
    pub fn union(&self, other: &DataStream<T>) -> DataStream<T> {
        let mut inputs = self.inputs.clone();
        inputs.extend(other.inputs.iter().cloned());
        self.with_inputs(inputs)
    }

    /// Connects with a stream of another type, for operators that see both.
    pub fn connect<B: Data>(&self, other: &DataStream<B>) -> ConnectedStreams<T, B> {
        ConnectedStreams::new(self.clone(), other.clone())
    }

    /// The records an operator emitted to the side output `tag`.
    pub fn get_side_output<X: Data>(&self, tag: &OutputTag<X>) -> DataStream<X> {
        let Some(node) = self.single_node("get_side_output") else {
            return DataStream { env: self.env.clone(), inputs: Vec::new(), _type: PhantomData };
        };
        let ops = type_ops::<X>();
        let clash = self.env.with_node(node, |n| match n.side_outputs.iter().find(|(id, _)| id == tag.id()) {
            Some((_, existing)) => existing.type_name() != ops.type_name(),
            None => {
                n.side_outputs.push((tag.id().to_string(), ops.clone()));
                false
            }
        });
        if clash {
            self.env.record_error(format!("side output '{}' is used with two different types", tag.id()));
        }
        DataStream {
            env: self.env.clone(),
            inputs: vec![StreamRef { node, side_output: Some(tag.id().to_string()), partitioner: None }],
            _type: PhantomData,
        }
    }

    /// The node behind a plain operator output; records an error for unions, side outputs and
    /// repartitioned streams, which have no single operator to configure.
    fn single_node(&self, what: &str) -> Option<usize> {
        match self.inputs.as_slice() {
            [StreamRef { node, side_output: None, partitioner: None }] => Some(*node),
            _ => {
                self.env.record_error(format!(
                    "{what} applies to an operator's output, not to a union, side output or repartitioned stream"
                ));
                None
            }
        }
    }

    fn configure(self, what: &str, f: impl FnOnce(&mut StreamNode)) -> Self {
        if let Some(node) = self.single_node(what) {
            self.env.with_node(node, f);
        }
        self
    }

    /// Names the operator (shown in logs, metrics and the job graph).
    pub fn name(self, name: &str) -> Self {
        self.configure("name", |n| {
            n.name = if n.name.starts_with("Source: ") { format!("Source: {name}") } else { name.to_string() }
        })
    }

    /// What the source does with records it cannot read: fail the job (the default), skip
    /// and count them (`numRecordsInErrors`), or send them to the side output
    /// [`dead_letters`](crate::sources::dead_letters). Only for a stream straight from a source.
    pub fn on_bad_records(self, policy: BadRecordPolicy) -> Self {
        let mut applied = false;
        let stream = self.configure("on_bad_records", |n| {
            if let brisk_runtime::graph::stream_graph::NodeKind::Source(factory) = &mut n.kind {
                factory.set_bad_record_policy(policy);
                applied = true;
            }
        });
        if !applied && !stream.inputs.is_empty() {
            stream.env.record_error(
                "on_bad_records applies to a stream read from a source, not to an operator's output".into(),
            );
        }
        stream
    }

    /// Gives the operator a stable id, so its state maps across job versions.
    pub fn uid(self, uid: &str) -> Self {
        self.configure("uid", |n| n.uid = Some(uid.to_string()))
    }

    /// Sets the operator's parallelism.
    pub fn set_parallelism(self, parallelism: usize) -> Self {
        if parallelism == 0 {
            self.env.record_error("parallelism must be at least 1, not 0".into());
            return self;
        }
        self.configure("set_parallelism", |n| n.parallelism = Some(parallelism))
    }

    /// Marks the operator non-parallel: a parallelism above 1 is a build error.
    pub(crate) fn not_parallel(self) -> Self {
        self.configure("not_parallel", |n| n.max_allowed_parallelism = Some(1))
    }

    /// Sets the operator's number of key groups.
    pub fn set_max_parallelism(self, max_parallelism: usize) -> Self {
        self.configure("set_max_parallelism", |n| n.max_parallelism = Some(max_parallelism))
    }

    /// Runs the operator in a task of its own, chained to neither neighbour.
    pub fn disable_chaining(self) -> Self {
        self.configure("disable_chaining", |n| n.chaining = ChainingStrategy::Never)
    }

    /// Starts a new chain at this operator.
    pub fn start_new_chain(self) -> Self {
        self.configure("start_new_chain", |n| n.chaining = ChainingStrategy::Head)
    }

    /// Puts the operator in a slot sharing group (operators in different groups never share a
    /// slot or a chain).
    pub fn slot_sharing_group(self, group: &str) -> Self {
        self.configure("slot_sharing_group", |n| n.slot_sharing_group = group.to_string())
    }

    /// Writes to a [`SinkFunction`].
    pub fn add_sink<F: SinkFunction<T>>(&self, sink: F) -> DataStreamSink {
        self.sink("Sink: Unnamed", sink)
    }

    /// Writes the stream with `sink` (Flink's `sinkTo`): its writers' committables are
    /// committed when checkpoints complete.
    pub fn sink_to<S: Sink<T>>(&self, sink: S) -> DataStreamSink {
        self.sink("Sink: Writer", TwoPhaseCommitSinkFunction::new(SinkTransactions::new(sink)))
    }

    /// Calls `f` for every record (a sink from a closure).
    pub fn for_each<F: FnMut(T) + Clone + Send + 'static>(&self, f: F) -> DataStreamSink {
        self.sink("Sink: For Each", SinkFn(f))
    }

    fn sink<F: SinkFunction<T>>(&self, name: &str, sink: F) -> DataStreamSink {
        if let Err(e) = sink.validate() {
            self.env.record_error(format!("{name}: {e}"));
        }
        let stream: DataStream<()> =
            self.transform(name, one_input_factory::<T, (), _, _>(move || SinkOperator::new(sink.clone())));
        DataStreamSink { stream }
    }
}

impl<T: Data + TextFormat> DataStream<T> {
    /// Prints every record to stdout (`2> record` when the sink is parallel).
    pub fn print(&self) -> DataStreamSink {
        self.sink("Sink: Print to Std. Out", PrintSink::stdout())
    }

    /// Prints every record to stdout, prefixed with `identifier`.
    pub fn print_with_identifier(&self, identifier: &str) -> DataStreamSink {
        self.sink("Sink: Print to Std. Out", PrintSink::stdout().with_identifier(identifier))
    }

    /// Prints every record to stderr.
    pub fn print_to_err(&self) -> DataStreamSink {
        self.sink("Sink: Print to Std. Err", PrintSink::stderr())
    }

    /// Writes records as text lines: a file at parallelism 1, else a directory of part files.
    pub fn write_as_text(&self, path: impl Into<PathBuf>) -> DataStreamSink {
        self.sink("Sink: Text File", TextFileSink::<T>::text(path))
    }

    /// Writes records as CSV rows: a file at parallelism 1, else a directory of part files.
    pub fn write_as_csv(&self, path: impl Into<PathBuf>) -> DataStreamSink {
        self.sink("Sink: CSV File", TextFileSink::<T>::csv(path))
    }
}

impl<T: Data> DataStream<T> {
    /// Collects the records for the caller; read them after the job ran. Like Flink's collect
    /// sink it has one subtask, so the records of each upstream subtask keep their order.
    pub fn collect_async(&self) -> CollectResult<T> {
        let (sink, result) = CollectSink::new();
        self.sink("Sink: Collect", sink).set_parallelism(1);
        result
    }

    /// Runs the job and returns every record of this stream (Flink's `executeAndCollect`).
    pub fn execute_and_collect(&self, job_name: &str) -> Result<Vec<T>, JobError> {
        let result = self.collect_async();
        self.env.execute(job_name)?;
        Ok(result.take())
    }
}

/// The end of a stream: a sink operator, configurable like any operator.
pub struct DataStreamSink {
    stream: DataStream<()>,
}

impl DataStreamSink {
    /// Names the sink.
    pub fn name(self, name: &str) -> Self {
        DataStreamSink { stream: self.stream.name(&format!("Sink: {name}")) }
    }

    /// Gives the sink a stable id.
    pub fn uid(self, uid: &str) -> Self {
        DataStreamSink { stream: self.stream.uid(uid) }
    }

    /// Sets the sink's parallelism.
    pub fn set_parallelism(self, parallelism: usize) -> Self {
        DataStreamSink { stream: self.stream.set_parallelism(parallelism) }
    }

    /// Runs the sink in a task of its own.
    pub fn disable_chaining(self) -> Self {
        DataStreamSink { stream: self.stream.disable_chaining() }
    }

    /// Puts the sink in a slot sharing group.
    pub fn slot_sharing_group(self, group: &str) -> Self {
        DataStreamSink { stream: self.stream.slot_sharing_group(group) }
    }
}
