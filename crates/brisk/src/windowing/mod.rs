//! Windows (Flink's windowing API): assigners, triggers, evictors, window functions and the
//! window operator.

pub mod assigners;
mod contents;
pub mod evictors;
pub mod functions;
mod merging;
pub mod operator;
mod panes;
pub mod stream;
pub mod triggers;
pub mod window;

pub use assigners::{
    EventTimeSessionWindows, GlobalWindows, ProcessingTimeSessionWindows, SessionWindows, SlidingEventTimeWindows,
    SlidingProcessingTimeWindows, SlidingWindows, TumblingEventTimeWindows, TumblingProcessingTimeWindows,
    TumblingWindows, WindowAssigner,
};
pub use evictors::{CountEvictor, DeltaEvictor, Evictor, TimeEvictor, TimestampedValue};
pub use functions::{PassThrough, ProcessWindowContext, ProcessWindowFunction};
pub use stream::WindowedStream;
pub use triggers::{
    ContinuousEventTimeTrigger, ContinuousProcessingTimeTrigger, CountTrigger, EventTimeTrigger, NeverTrigger,
    ProcessingTimeTrigger, PurgingTrigger, Trigger, TriggerContext, TriggerResult,
};
pub use window::{GlobalWindow, TimeWindow, Window};
