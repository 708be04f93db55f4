//! What a job usually needs: `use brisk::prelude::*;`.

pub use crate::CompactString;
pub use crate::async_io::{AsyncDataStream, AsyncFunction, ResultFuture};
pub use crate::broadcast::{BroadcastContext, BroadcastProcessFunction, BroadcastStream, ReadOnlyBroadcastContext};
pub use crate::connected::ConnectedStreams;
pub use crate::datastream::{DataStream, DataStreamSink};
pub use crate::environment::{RuntimeExecutionMode, StreamExecutionEnvironment};
pub use crate::format::TextFormat;
pub use crate::functions::{
    CoProcessFunction, Collector, FunctionInitializationContext, FunctionSnapshotContext, KeyedProcessContext,
    KeyedProcessFunction, ProcessContext, ProcessFunction, RichCoFlatMapFunction, RichCoMapFunction,
    RichFilterFunction, RichFlatMapFunction, RichFunction, RichMapFunction, RuntimeContext, SinkContext, SinkFunction,
    TimerService,
};
pub use crate::joins::{ProcessJoinContext, ProcessJoinFunction, TaggedUnion};
pub use crate::key_selector::KeySelector;
pub use crate::keyed_stream::KeyedStream;
pub use crate::side_output::OutputTag;
pub use crate::sinks::{
    CollectResult, DiscardingSink, FileSink, PrintSink, Sink, SinkWriter, TextFileSink, TwoPhaseCommitSink,
    TwoPhaseCommitSinkFunction, WriterInitContext,
};
pub use crate::sources::{
    BadRecord, BadRecordPolicy, DataGeneratorSource, FileSource, NumberSequenceSource, SocketTextStreamSource,
    dead_letters,
};
pub use crate::windowing::{
    ContinuousEventTimeTrigger, ContinuousProcessingTimeTrigger, CountEvictor, CountTrigger, DeltaEvictor,
    EventTimeSessionWindows, EventTimeTrigger, Evictor, GlobalWindow, GlobalWindows, ProcessWindowContext,
    ProcessWindowFunction, ProcessingTimeSessionWindows, ProcessingTimeTrigger, PurgingTrigger,
    SlidingEventTimeWindows, SlidingProcessingTimeWindows, TimeEvictor, TimeWindow, Trigger, TriggerContext,
    TriggerResult, TumblingEventTimeWindows, TumblingProcessingTimeWindows, Window, WindowAssigner, WindowedStream,
};
pub use brisk_core::{BoxError, Configuration, Data, Key};
pub use brisk_core::{Watermark, WatermarkStatus};
pub use brisk_runtime::checkpoint::SnapshotLocation;
pub use brisk_runtime::metrics::{DoubleCounter, Histogram, LongCounter, LongMaximum, LongMinimum};
pub use brisk_runtime::source::watermark::{WatermarkGenerator, WatermarkOutput, WatermarkStrategy};
pub use brisk_runtime::{JobClient, JobError, JobExecutionResult};
pub use brisk_state::{
    AggregateFunction, AggregatingState, AggregatingStateDescriptor, ListState, ListStateDescriptor, MapState,
    MapStateDescriptor, ReducingState, ReducingStateDescriptor, StateBackendConfig, StateBackendKind, StateError,
    StateTtlConfig, StateVisibility, TimeDomain, TtlUpdateType, ValueState, ValueStateDescriptor,
};
