//! Keyed `ValueState` read-modify-write per record: WordCount with the running count in a
//! `ValueState` (a keyed rich flat map) instead of the built-in `sum`, on `words.txt`.
//!
//! `cargo bench [--features rocksdb] --bench state_rmw -- [WORDS_TXT] [PARALLELISM] [hashmap|rocksdb]`

use brisk::prelude::*;
use brisk_examples::word_count::tokenize;
use std::path::PathBuf;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Counts each word in keyed value state and emits `(word, count)`.
#[derive(Clone, Default)]
struct CountInState {
    count: Option<ValueState<i64>>,
}

impl RichFunction for CountInState {
    fn open(&mut self, ctx: &mut RuntimeContext<'_>) -> Result<(), BoxError> {
        self.count = Some(ctx.get_state(&ValueStateDescriptor::new("count"))?);
        Ok(())
    }
}

impl RichFlatMapFunction<CompactString, (CompactString, i64)> for CountInState {
    fn flat_map(&mut self, word: CompactString, out: &mut Collector<'_, (CompactString, i64)>) -> Result<(), BoxError> {
        let state = self.count.as_ref().ok_or("not opened")?;
        let count = state.value()?.unwrap_or(0) + 1;
        state.update(count)?;
        out.collect((word, count));
        Ok(())
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let input = PathBuf::from(args.first().map(String::as_str).unwrap_or("bench-data/words.txt"));
    let parallelism: usize = args.get(1).map(|p| p.parse()).transpose()?.unwrap_or(2);
    let backend = args.get(2).cloned().unwrap_or_else(|| "hashmap".into());
    let mut configuration = Configuration::new();
    configuration.set(brisk::options::STATE_BACKEND_KEY, &backend);
    configuration.set(brisk::options::PARALLELISM.key, parallelism);
    let env = StreamExecutionEnvironment::from_configuration(&configuration)?;
    env.from_source(FileSource::for_paths([input]), WatermarkStrategy::no_watermarks(), "words")
        .flat_map(|line: String, out: &mut Collector<'_, CompactString>| tokenize(&line, |w| out.collect(w)))
        .name("tokenizer")
        .key_by_field(|w: &CompactString| w)
        .rich_flat_map(CountInState::default())
        .name("count-in-state")
        .add_sink(DiscardingSink);
    let started = Instant::now();
    let result = env.execute("ValueState read-modify-write")?;
    let seconds = started.elapsed().as_secs_f64();
    let words = result.operators.iter().find(|o| o.name == "count-in-state").map(|o| o.records_in).unwrap_or(0);
    println!(
        "state rmw p={parallelism} {backend}: {words} words in {seconds:.2} s = {:.2} M words/s",
        words as f64 / seconds / 1e6
    );
    Ok(())
}
